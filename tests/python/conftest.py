"""Shared helpers of the Python tests: the built tool, and stage modules written for a test.

ctest sets MICROMODELS_CLI (the tool) and PYTHONPATH (the folder of the built `micromodels`
module); run by hand:
  MICROMODELS_CLI=build/apps/micromodels/micromodels PYTHONPATH=build/src/python \
    /usr/bin/python3 -m pytest tests/python
"""
import os
import subprocess
import textwrap

import pytest

SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def cli():
    path = os.environ.get("MICROMODELS_CLI")
    if not path:
        pytest.fail("MICROMODELS_CLI is not set: point it at build/apps/micromodels/micromodels")
    return path


@pytest.fixture
def stages(tmp_path):
    """Writes a Python module of stages into tmp_path: stages("name", source)."""

    def write(name, source):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return str(tmp_path)

    return write


@pytest.fixture
def pipeline(tmp_path):
    """Writes a pipeline file into tmp_path and returns its path."""

    def write(text, name="pipeline.yaml"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return str(path)

    return write


def run(cli, *args, timeout=120, cwd=None):
    return subprocess.run([cli, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or SOURCE_DIR)
