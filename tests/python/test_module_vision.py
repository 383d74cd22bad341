"""The vision stages in the Python module: a video pipeline file means the same from Python as
from the tool."""
import cv2
import numpy as np

import micromodels
from conftest import run
from test_eye_contact_python import FRAMES, frames, media


def test_the_module_has_the_vision_stages():
    types = micromodels.types()
    for name in ("video.source", "video.sink", "face.detect", "eye.iris", "gaze.redirect"):
        assert name in types
    assert "pass" in types and "python" in types


def test_eye_contact_from_python_writes_the_video_the_tool_writes(cli, tmp_path):
    def settings(name):
        return [f"source.path={media()}", f"source.max_frames={FRAMES}",
                f"sink.path={tmp_path / (name + '.mp4')}",
                f"side_by_side.path={tmp_path / (name + '_sbs.mp4')}",
                f"side_by_side.contact_sheet={tmp_path / (name + '_sheet.png')}",
                f"side_by_side.eye_strip={tmp_path / (name + '_eyes.png')}"]

    pipeline = micromodels.Pipeline.from_yaml_file("pipelines/eye_contact.yaml")
    for setting in settings("python"):
        pipeline.set_param(setting)
    pipeline.validate()
    metrics = micromodels.run(pipeline)
    assert metrics.packets_in == metrics.packets_out == FRAMES
    assert metrics.stage("generate").failed == 0

    args = ["run", "-q", "pipelines/eye_contact.yaml"]
    for setting in settings("tool"):
        args += ["--set", setting]
    result = run(cli, *args, timeout=300)
    assert result.returncode == 0, result.stderr

    from_python = frames(str(tmp_path / "python.mp4"))
    from_tool = frames(str(tmp_path / "tool.mp4"))
    inputs = frames(media())[:FRAMES]
    assert len(from_python) == len(from_tool) == FRAMES
    changed = 0
    for a, b, original in zip(from_python, from_tool, inputs):
        assert np.abs(a - b).mean() < 0.5  # the same pixels in, so the same up to the encoder
        changed += np.abs(a - original).max() > 0
    assert changed > 0  # the eyes were redirected in both
    assert cv2.imread(str(tmp_path / "python_eyes.png")) is not None
