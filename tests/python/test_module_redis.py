"""The `micromodels` Python module on Redis: a file's `broker:` means the same in Python as in
the tool. Runs against the test Redis (MICROMODELS_REDIS_URL); without one these tests skip, or
fail when MICROMODELS_REQUIRE_REDIS=1 (the test command)."""
import json
import os
import subprocess

import pytest

import micromodels


@pytest.fixture
def redis_url():
    url = os.environ.get("MICROMODELS_REDIS_URL")
    if not url:
        if os.environ.get("MICROMODELS_REQUIRE_REDIS") == "1":
            pytest.fail("MICROMODELS_REDIS_URL is not set (scripts/test.sh starts a redis-server)")
        pytest.skip("no test Redis: set MICROMODELS_REDIS_URL=redis://127.0.0.1:PORT")
    return url


@pytest.fixture
def name(request):
    """A pipeline name of this test and process: its keys in Redis are its own."""
    return f"py{os.getpid()}_{request.node.name[5:40]}"


def pipeline_of(name, out, count=40, work="service_ms: 1", broker=None):
    return micromodels.Pipeline.from_yaml_string(f"""
pipeline: {name}
{f"broker: {broker}" if broker else ""}
stages:
  - {{ name: source, type: synthetic.source, params: {{ count: {count} }} }}
  - {{ name: work, type: model.sleep, params: {{ {work} }} }}
  - {{ name: sink, type: sink.jsonl, ordered: true, params: {{ path: {out} }} }}
""")


def seqs(path):
    with open(path) as f:
        return [json.loads(line)["seq"] for line in f]


def test_a_file_whose_broker_is_redis_runs_on_redis(redis_url, name, tmp_path):
    out = tmp_path / "out.jsonl"
    runner = micromodels.Runner(pipeline_of(name, out, broker=redis_url))
    runner.start()
    runner.wait()
    assert seqs(out) == list(range(40))
    # Every hop went through Redis: the report counts its entries, from Redis's own totals.
    report = runner.report()
    assert "source         -> work                   40 packets" in report, report
    assert "work           -> sink                   40 packets" in report, report
    assert runner.metrics().stage("work").processed == 40
    # The same file in one process: no report, the same output.
    assert micromodels.Runner(pipeline_of(name, tmp_path / "memory.jsonl")).report() == ""


def test_a_python_worker_serves_a_stage_of_a_run(redis_url, name, tmp_path):
    out = tmp_path / "out.jsonl"
    pipeline = pipeline_of(name, out)
    worker = micromodels.Runner(pipeline, broker=redis_url, stages=["work"])
    worker.start()
    try:
        # The run serves nothing but its source and sink: the worker does all the work.
        metrics = micromodels.run(pipeline, broker=redis_url, serve="none")
        assert metrics.stage("work") is None
        assert metrics.packets_out == 40
        assert seqs(out) == list(range(40))
        assert worker.metrics().stage("work").processed == 40
    finally:
        worker.stop()
        worker.wait()


def test_the_tool_runs_what_a_python_worker_serves(redis_url, name, tmp_path, cli, pipeline):
    out = tmp_path / "out.jsonl"
    path = pipeline(f"""
        pipeline: {name}
        stages:
          - {{ name: source, type: synthetic.source, params: {{ count: 20 }} }}
          - {{ name: work, type: model.sleep, params: {{ service_ms: 1, fail_every: 1 }} }}
          - {{ name: sink, type: sink.jsonl, ordered: true, params: {{ path: {out} }} }}
        """)
    worker = micromodels.Runner(micromodels.Pipeline.from_yaml_file(path), broker=redis_url,
                                stages=["work"])
    worker.start()
    try:
        run = subprocess.run([cli, "run", path, "--broker", redis_url, "--serve", "none", "-q"],
                             capture_output=True, text=True, timeout=60)
        # Every packet failed on the Python worker: the tool's run says so, as in one process.
        assert run.returncode == 1, run.stderr
        assert "error: stage 'work' (20 of 20) failed every packet it took" in run.stderr
        assert worker.metrics().stage("work").failed == 20
    finally:
        worker.stop()
        worker.wait()


def test_a_wrong_broker_serve_or_stages_is_refused_with_what_to_do(redis_url, name, tmp_path):
    pipeline = pipeline_of(name, tmp_path / "out.jsonl")
    with pytest.raises(micromodels.BrokerError, match="127.0.0.1:1.*broker= in Python"):
        micromodels.Runner(pipeline, broker="redis://127.0.0.1:1")
    with pytest.raises(micromodels.ConfigError, match="stages= makes this process a worker"):
        micromodels.Runner(pipeline, stages=["work"])
    with pytest.raises(micromodels.ConfigError, match="serve='some': use 'missing'"):
        micromodels.run(pipeline, broker=redis_url, serve="some")
    with pytest.raises(micromodels.ConfigError, match="has no stage 'nosuch' to serve"):
        micromodels.Runner(pipeline, broker=redis_url, stages=["nosuch"])
    with pytest.raises(micromodels.ConfigError, match="is a sink, which the run serves"):
        micromodels.Runner(pipeline, broker=redis_url, stages=["sink"])
