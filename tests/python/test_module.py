"""The `micromodels` Python module: load, check, run, metrics, scale, swap, Ctrl-C."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import micromodels

SOURCE = """
pipeline: from_python
stages:
  - name: source
    type: synthetic.source
    params: { count: 300 }
  - name: work
    type: model.spin
    params: { service_ms: 0.05 }
  - name: sink
    type: pass
"""


def test_load_and_validate_report_the_file_position():
    pipeline = micromodels.Pipeline.from_yaml_string(SOURCE)
    pipeline.validate()
    assert pipeline.name == "from_python"
    assert pipeline.stages == ["source", "work", "sink"]
    broken = micromodels.Pipeline.from_yaml_string(SOURCE.replace("model.spin", "model.spinn"),
                                                   "broken.yaml")
    with pytest.raises(micromodels.ConfigError, match=r"broken.yaml:8:\d+: .*model.spinn"):
        broken.validate()


def test_run_returns_the_metrics():
    metrics = micromodels.run(micromodels.Pipeline.from_yaml_string(SOURCE))
    assert metrics.packets_in == 300 and metrics.packets_out == 300
    assert metrics.stage("work").processed == 300
    assert "work" in metrics.to_table()


def test_live_metrics_count_the_drops_by_reason():
    # A source of 2 x 400 unpaced packets never waits for a 1 ms stage: each stream keeps its
    # newest, and every packet is either processed at the end or dropped once.
    metrics = micromodels.run(micromodels.Pipeline.from_yaml_string("""
pipeline: live
live: { max_age_ms: 0 }
stages:
  - { name: source, type: synthetic.source, params: { count: 400, streams: 2 } }
  - { name: work, type: model.sleep, params: { service_ms: 1 } }
"""))
    work = metrics.stage("work")
    assert work.dropped_newest > 0
    assert work.dropped == work.dropped_newest + work.dropped_age
    assert work.dropped_unserved == 0  # one process serves every stage
    assert work.processed + work.dropped == metrics.packets_in == 800


def test_a_python_stage_runs_in_this_interpreter(stages):
    path = stages("here", """
        import threading
        SEEN = set()

        class Tag:
            reads = {"value": "int"}
            writes = {"tag": "text"}
            def process(self, packet):
                SEEN.add(threading.get_ident())
                packet["tag"] = "t%d" % packet["value"]
                return packet
    """)
    pipeline = micromodels.Pipeline.from_yaml_string(f"""
pipeline: here
stages:
  - {{ name: source, type: synthetic.source, params: {{ count: 100 }} }}
  - {{ name: tag, type: python, consumers: 2, params: {{ module: here, class: Tag, path: {path} }} }}
""")
    metrics = micromodels.run(pipeline)
    assert metrics.stage("tag").processed == 100
    import here  # the very module the stage ran: same interpreter, same sys.modules
    assert 1 <= len(here.SEEN) <= 2 and threading_ident() not in here.SEEN


def threading_ident():
    import threading
    return threading.get_ident()


def test_a_bad_value_given_by_set_param_is_named_as_such():
    pipeline = micromodels.Pipeline.from_yaml_string(SOURCE)
    pipeline.set_param("work.service_ms=fast")
    with pytest.raises(micromodels.ConfigError,
                       match=r"^set_param work\.service_ms=fast: .*service_ms"):
        pipeline.validate()


def test_scale_and_swap_while_it_runs():
    runner = micromodels.Runner(micromodels.Pipeline.from_yaml_string(
        SOURCE.replace("count: 300", "count: 100000000")))
    runner.start()
    runner.scale("work", 2)
    runner.swap("work", {"service_ms": 0.01})  # a number, or text as on the command line
    runner.swap("work", {"service_ms": "0.01"})
    with pytest.raises(micromodels.ConfigError, match="service_ms"):
        runner.swap("work", {"service_ms": "fast"})
    time.sleep(0.3)
    assert not runner.wait_for(10)
    metrics = runner.metrics()
    assert metrics.stage("work").consumers == 2
    assert metrics.stage("work").processed > 0
    runner.stop()
    assert runner.wait_for(30000)
    assert runner.progress().done == runner.metrics().packets_out


def test_ctrl_c_stops_the_run_cleanly(tmp_path):
    script = tmp_path / "long.py"
    long_run = SOURCE.replace("count: 300", "count: 100000000")
    script.write_text(f"LONG_RUN = {long_run!r}\n" + textwrap.dedent("""
        import micromodels
        pipeline = micromodels.Pipeline.from_yaml_string(LONG_RUN)
        runner = micromodels.Runner(pipeline)
        runner.start()
        print("started", flush=True)
        try:
            runner.wait()
        except KeyboardInterrupt:
            m = runner.metrics()
            print("interrupted", m.packets_in, m.packets_out, flush=True)
    """))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                               env=os.environ)
    assert process.stdout.readline().strip() == "started"
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    word, packets_in, packets_out = out.split()
    assert word == "interrupted"
    assert 0 < int(packets_in) == int(packets_out) < 100000000  # drained: nothing lost in flight


def test_exiting_with_a_run_going_stops_it_and_drains_it_first(stages, tmp_path):
    # The interpreter exits while a run with a Python stage goes on: the run is stopped and
    # drained before Python finalizes, so that the process ends cleanly and the sink has every
    # packet the source made, in order (it aborted with "exception not rethrown" before).
    path = stages("square", """
        class Square:
            reads = {"value": "int"}
            writes = {"square": "int"}
            def process(self, packet):
                packet["square"] = packet["value"] ** 2
                return packet
    """)
    out = tmp_path / "out.jsonl"
    script = tmp_path / "leave.py"
    script.write_text(textwrap.dedent(f"""
        import time
        import micromodels
        runner = micromodels.Runner(micromodels.Pipeline.from_yaml_string('''
        pipeline: leave
        stages:
          - {{ name: source, type: synthetic.source, params: {{ count: 100000000, rate: 2000 }} }}
          - {{ name: square, type: python, params: {{ module: square, class: Square, path: {path} }} }}
          - {{ name: sink, type: sink.jsonl, params: {{ path: {out} }} }}
        '''))
        runner.start()
        time.sleep(0.5)
        print("leaving", flush=True)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=os.environ, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "leaving"
    seqs = [json.loads(line)["seq"] for line in out.read_text().splitlines()]
    assert len(seqs) > 100
    assert seqs == list(range(len(seqs)))


def test_a_plugin_the_file_names_is_loaded_as_the_tool_loads_it(tmp_path):
    # `plugins:` is read from Python too: a missing file is an error naming the line.
    file = tmp_path / "plugged.yaml"
    file.write_text("pipeline: plugged\nplugins: [nowhere.so]\nstages:\n"
                    "  - { name: source, type: synthetic.source, params: { count: 3 } }\n")
    with pytest.raises(micromodels.ConfigError, match=r"plugged.yaml:2:\d+: .*nowhere.so"):
        micromodels.Pipeline.from_yaml_file(str(file))


def test_a_cpp_plugin_serves_its_stage_type_from_python(tmp_path):
    # The README's plugin (examples/plugin), built by the tests: its stage runs in a pipeline
    # read from Python as it runs in the tool.
    plugin = os.environ.get("MICROMODELS_TEST_PLUGIN")
    if not plugin:
        pytest.skip("MICROMODELS_TEST_PLUGIN is not set (ctest sets it to the built plugin)")
    out = tmp_path / "labels.jsonl"
    pipeline = micromodels.Pipeline.from_yaml_string(
        f"pipeline: plugged\nplugins: [{plugin}]\nstages:\n"
        "  - { name: source, type: synthetic.source, params: { count: 5 } }\n"
        "  - { name: label, type: example.label, params: { prefix: 'f-' } }\n"
        f"  - {{ name: sink, type: sink.jsonl, ordered: true, params: {{ path: '{out}' }} }}\n")
    micromodels.run(pipeline)
    labels = [json.loads(line)["fields"]["label"] for line in out.read_text().splitlines()]
    assert labels == [f"f-{seq}" for seq in range(5)]


def test_count_outside_a_python_stage_says_where_to_call_it():
    with pytest.raises(RuntimeError, match=r"call it from there"):
        micromodels.count("nowhere")
