"""pipelines/eye_contact_python.yaml (the blend in Python) against pipelines/eye_contact.yaml."""
import os

import cv2
import numpy as np
import pytest

from conftest import SOURCE_DIR, run

FRAMES = 48


def media():
    cache = os.environ.get("MICROMODELS_CACHE", os.path.join(SOURCE_DIR, ".cache", "micromodels"))
    path = os.path.join(cache, "media", "franck.mp4")
    if not os.path.exists(path):
        message = f"{path} is missing: run scripts/fetch_media.sh"
        if os.environ.get("MICROMODELS_REQUIRE_MEDIA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def frames(path):
    capture = cv2.VideoCapture(path)
    images = []
    while True:
        ok, image = capture.read()
        if not ok:
            return images
        images.append(image.astype(np.int16))


def render(cli, pipeline, tmp_path, name):
    out = tmp_path / f"{name}.mp4"
    result = run(cli, "run", "-q", pipeline, "--set", f"source.path={media()}",
                 "--set", f"source.max_frames={FRAMES}", "--set", f"sink.path={out}",
                 "--set", f"side_by_side.path={tmp_path / (name + '_sbs.mp4')}",
                 "--set", f"side_by_side.contact_sheet={tmp_path / (name + '_sheet.png')}",
                 "--set", f"side_by_side.eye_strip={tmp_path / (name + '_eyes.png')}",
                 timeout=300)
    assert result.returncode == 0, result.stderr
    assert " failed" not in result.stderr
    return frames(str(out))


def test_the_blend_in_python_gives_the_same_video(cli, tmp_path):
    cpp = render(cli, "pipelines/eye_contact.yaml", tmp_path, "cpp")
    python = render(cli, "pipelines/eye_contact_python.yaml", tmp_path, "python")
    assert len(cpp) == len(python) == FRAMES
    inputs = frames(media())[:FRAMES]
    changed = 0
    for a, b, original in zip(cpp, python, inputs):
        # Same pixels in, so the encoder's output is the same up to its own noise.
        assert np.abs(a - b).mean() < 0.5
        changed += np.abs(a - original).max() > 0
    assert changed > 0  # the eyes were redirected: the comparison is not of two copies of the input
