"""`micromodels run` with `type: python` stages, end to end: the tool embeds the interpreter.

About 700 lines: one test per behaviour of a Python stage, on the helpers at the top.
"""
import json
import os
import re
import signal
import subprocess
import textwrap
import time

import pytest

from conftest import SOURCE_DIR, run

COUNTING = """
    class Double:
        reads = {"value": "int"}
        writes = {"double": "int", "label": "text", "box": "rects", "xy": "points",
                  "stats": "scalars", "half": "number", "from_numpy": "scalars", "raw": "bytes"}

        def process(self, packet):
            import micromodels
            import numpy as np
            v = packet["value"]
            packet["from_numpy"] = np.array([v, 1.5])
            packet["raw"] = bytes(range(v % 5))
            packet["double"] = 2 * v
            packet["label"] = f"n{v}"
            packet["box"] = [micromodels.Rect(v, 1, 2, 3, 0.5)]
            packet["xy"] = [micromodels.Point(v, -v)]
            packet["stats"] = [v, v / 2]
            packet["half"] = v / 2
            return packet
"""


def counting_pipeline(pipeline, path, out, count=50, extra=""):
    return pipeline(f"""
        pipeline: counting
        {extra}
        stages:
          - name: source
            type: synthetic.source
            params: {{ count: {count} }}
          - name: double
            type: python
            consumers: 2
            params: {{ module: counting, class: Double, path: {path} }}
          - name: sink
            type: sink.jsonl
            ordered: true
            params: {{ path: {out} }}
    """)


def run_one_stage(cli, pipeline, path, module, cls, out):
    """Runs 3 packets through the Python stage `module.cls` into a JSONL sink at `out`."""
    return run(cli, "run", "-q", pipeline(f"""
        pipeline: {module}
        stages:
          - {{ name: source, type: synthetic.source, params: {{ count: 3 }} }}
          - {{ name: work, type: python, params: {{ module: {module}, class: {cls}, path: {path} }} }}
          - {{ name: sink, type: sink.jsonl, params: {{ path: {out} }} }}
    """))


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_types_lists_python(cli):
    result = run(cli, "types")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\s*python\b", result.stdout, re.M), result.stdout


def test_fields_of_every_kind_round_trip(cli, stages, pipeline, tmp_path):
    path = stages("counting", COUNTING)
    out = tmp_path / "out.jsonl"
    result = run(cli, "run", "-q", counting_pipeline(pipeline, path, out))
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(out)
    assert [r["seq"] for r in rows] == list(range(50))
    row = rows[7]["fields"]
    assert row["double"] == 14 and row["label"] == "n7" and row["half"] == 3.5
    assert row["stats"] == [7, 3.5]
    assert row["from_numpy"] == [7, 1.5]
    assert row["raw"] == {"bytes": 2}
    assert row["box"] == [[7, 1, 2, 3, 0.5]]  # x, y, width, height, score
    assert row["xy"] == [[7, -7]]


def test_images_reach_python_without_a_copy_and_come_back(cli, stages, pipeline, tmp_path):
    path = stages("imaging", """
        import numpy as np

        class Draw:
            reads = {"value": "int"}
            writes = {"image": "image", "gray": "image", "t": "tensor"}
            def process(self, packet):
                v = packet["value"]
                packet["image"] = np.full((4, 6, 3), v, np.uint8)
                packet["gray"] = np.arange(24, dtype=np.uint8).reshape(4, 6)[:, ::2]  # strided
                packet["t"] = np.full((2, 3), v / 4, np.float32)
                return packet

        class Check:
            reads = {"image": "image", "gray": "image", "t": "tensor"}
            writes = {"checks": "text"}
            def process(self, packet):
                image, gray, t = packet["image"], packet["gray"], packet["t"]
                assert image.shape == (4, 6, 3) and image.dtype == np.uint8
                assert not image.flags.writeable and not image.flags.owndata
                assert gray.shape == (4, 3) and gray[1].tolist() == [6, 8, 10]
                assert t.dtype == np.float32 and t.shape == (2, 3)
                try:
                    image[0, 0, 0] = 1
                    raise RuntimeError("the packet's image was writable")
                except ValueError:
                    pass
                packet["checks"] = f"{int(image[3, 5, 2])} {float(t[1, 2])}"
                return packet
    """)
    out = tmp_path / "out.jsonl"
    result = run(cli, "run", "-q", pipeline(f"""
        pipeline: imaging
        stages:
          - {{ name: source, type: synthetic.source, params: {{ count: 20 }} }}
          - {{ name: draw, type: python, params: {{ module: imaging, class: Draw, path: {path} }} }}
          - {{ name: check, type: python, params: {{ module: imaging, class: Check, path: {path} }} }}
          - {{ name: sink, type: sink.jsonl, ordered: true, params: {{ path: {out} }} }}
    """))
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(out)
    assert len(rows) == 20
    assert rows[8]["fields"]["checks"] == "8 2.0"


def test_an_exception_fails_the_packet_with_its_traceback(cli, stages, pipeline, tmp_path):
    path = stages("faulty", """
        class Faulty:
            reads = {"value": "int"}
            writes = {"ok": "int"}
            def process(self, packet):
                if packet["value"] % 10 == 3:
                    raise ValueError(f"no threes: {packet['value']}")
                packet["ok"] = 1
                return packet
    """)
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    result = run(cli, "run", "-q", "--metrics-json", str(tmp_path / "m.json"), pipeline(f"""
        pipeline: faulty
        dead_letter: failed
        stages:
          - {{ name: source, type: synthetic.source, params: {{ count: 40 }} }}
          - {{ name: work, type: python, params: {{ module: faulty, class: Faulty, path: {path} }} }}
          - {{ name: sink, type: sink.jsonl, ordered: true, params: {{ path: {out} }} }}
          - {{ name: failed, type: sink.jsonl, params: {{ path: {dead} }} }}
    """))
    assert result.returncode == 0, result.stderr
    assert len(read_jsonl(out)) == 36
    dead_rows = sorted(read_jsonl(dead), key=lambda r: r["seq"])
    assert [r["seq"] for r in dead_rows] == [3, 13, 23, 33]
    error = dead_rows[0]["fields"]["error"]
    assert "Traceback (most recent call last)" in error
    assert "faulty.py\", line 7, in process" in error
    assert "ValueError: no threes: 3" in error
    assert "ValueError: no threes" in result.stderr  # the log
    metrics = json.load(open(tmp_path / "m.json"))
    work = next(s for s in metrics["stages"] if s["name"] == "work")
    assert work["failed"] == 4 and work["processed"] == 36


def test_a_python_stage_counts_events_into_the_metrics(cli, stages, pipeline, tmp_path):
    path = stages("counting", """
        import micromodels

        class Counting:
            reads = {"value": "int"}
            writes = {}
            def process(self, packet):
                if packet["value"] % 4 == 0:
                    micromodels.count("fours")
                micromodels.count("seen", 2)
                return packet

        class Batches:
            reads = {"value": "int"}
            writes = {}
            def process(self, packet):
                return packet
            def process_batch(self, packets):
                micromodels.count("batches")
                return packets

        class Wrong:
            reads = {"value": "int"}
            writes = {}
            def process(self, packet):
                micromodels.count("lost", -1)
                return packet
    """)
    metrics_file = tmp_path / "m.json"
    result = run(cli, "run", "-q", "--metrics-json", str(metrics_file), pipeline(f"""
        pipeline: counting
        stages:
          - {{ name: source, type: synthetic.source, params: {{ count: 40 }} }}
          - {{ name: work, type: python, consumers: 2,
              params: {{ module: counting, class: Counting, path: {path} }} }}
          - {{ name: batched, type: python, batch: {{ max_batch: 8 }},
              params: {{ module: counting, class: Batches, path: {path} }} }}
          - {{ name: sink, type: sink.jsonl, params: {{ path: {tmp_path / "out.jsonl"} }} }}
    """))
    assert result.returncode == 0, result.stderr
    stages_by_name = {s["name"]: s for s in json.load(open(metrics_file))["stages"]}
    assert stages_by_name["work"]["events"] == {"fours": 10, "seen": 80}
    batches = stages_by_name["batched"]["events"]["batches"]
    assert 5 <= batches <= 40, batches  # one per batch of at most 8

    # A negative count fails the packet with the reason.
    result = run(cli, "run", "-q", "--metrics-json", str(metrics_file), pipeline(f"""
        pipeline: wrong
        stages:
          - {{ name: source, type: synthetic.source, params: {{ count: 3 }} }}
          - {{ name: work, type: python, params: {{ module: counting, class: Wrong, path: {path} }} }}
          - {{ name: sink, type: sink.jsonl, params: {{ path: {tmp_path / "out.jsonl"} }} }}
    """))
    # Every packet failed there: the run says so and exits 1, after writing its metrics.
    assert result.returncode == 1, result.stderr
    assert "error: stage 'work' (3 of 3) failed every packet it took" in result.stderr
    assert "a count only grows; n must be >= 0" in result.stderr
    work = next(s for s in json.load(open(metrics_file))["stages"] if s["name"] == "work")
    assert work["failed"] == 3


def test_a_wrong_return_type_fails_the_packet(cli, stages, pipeline, tmp_path):
    path = stages("wrong", """
        class Wrong:
            def process(self, packet):
                return 42 if packet.seq % 2 else [packet]
    """)
    out = tmp_path / "out.jsonl"
    result = run(cli, "run", "-q", pipeline(f"""
        pipeline: wrong
        stages:
          - {{ name: source, type: synthetic.source, params: {{ count: 10 }} }}
          - {{ name: work, type: python, params: {{ module: wrong, class: Wrong, path: {path} }} }}
          - {{ name: sink, type: sink.jsonl, ordered: true, params: {{ path: {out} }} }}
    """))
    assert result.returncode == 0, result.stderr
    assert [r["seq"] for r in read_jsonl(out)] == [0, 2, 4, 6, 8]
    assert "process returned int; return the packet, a list of packets, or None" in result.stderr


def test_a_value_of_the_wrong_type_fails_the_packet(cli, stages, pipeline, tmp_path):
    path = stages("badvalue", """
        class BadValue:
            writes = {"image": "image"}
            def process(self, packet):
                packet["image"] = "not pixels"
                return packet
    """)
    result = run_one_stage(cli, pipeline, path, "badvalue", "BadValue", tmp_path / "o.jsonl")
    assert result.returncode == 1, result.stderr  # every packet failed at 'work'
    assert "TypeError: field 'image' is declared image; got str" in result.stderr


def test_a_field_the_class_did_not_declare_says_how_to_declare_it(cli, stages, pipeline, tmp_path):
    path = stages("undeclared", """
        import micromodels
        class Undeclared:
            def process(self, packet):
                if packet.seq == 0:
                    packet["score"] = 0.5
                elif packet.seq == 1:
                    packet["boxes"] = [micromodels.Rect(1, 2, 3, 4)]
                else:
                    return packet["frame"]
                return packet
    """)
    result = run_one_stage(cli, pipeline, path, "undeclared", "Undeclared", tmp_path / "o.jsonl")
    assert result.returncode == 1, result.stderr  # every packet failed at 'work'
    # The example's type follows the value written; the message reads without escapes.
    types = "the types: image, tensor, rects, points, scalars, int, number, text, bytes"
    assert ("KeyError: 'field score is not declared: add it with its type to the writes of the "
            'class, e.g. writes = {"score": "number"}; ' + types) in result.stderr
    assert 'e.g. writes = {"boxes": "rects"}' in result.stderr
    assert ("KeyError: 'field frame is not declared: add it with its type to the reads (or "
            'optional_reads) of the class, e.g. reads = {"frame": "image"}; ' + types
            ) in result.stderr
    assert "\\'" not in result.stderr


def bad_input(cli, pipeline, path, module, cls="Stage"):
    """Runs a one-stage pipeline whose Python stage is broken; returns the result and the file."""
    file = pipeline(f"""
        pipeline: broken
        stages:
          - name: source
            type: synthetic.source
          - name: work
            type: python
            params:
              module: {module}
              class: {cls}
              path: {path}
    """)
    return run(cli, "run", "-q", file), file


def test_a_module_that_does_not_import_names_the_file_line_and_the_python_error(
        cli, stages, pipeline):
    path = stages("broken_syntax", "def f(:\n    pass\n")
    result, file = bad_input(cli, pipeline, path, "broken_syntax")
    assert result.returncode == 2, result.stderr
    assert f"{file}:9:" in result.stderr  # the `module:` line
    assert "Python module 'broken_syntax'" in result.stderr
    assert "SyntaxError" in result.stderr
    result, file = bad_input(cli, pipeline, path, "no_such_module")
    assert result.returncode == 2
    assert f"{file}:9:" in result.stderr and "ModuleNotFoundError" in result.stderr
    # A relative path is taken from the working directory, not the pipeline file's: said whole.
    result, file = bad_input(cli, pipeline, "my_stages", "no_such_module")
    assert result.returncode == 2
    assert (f"(searched first in 'my_stages', which is {SOURCE_DIR}/my_stages from the working "
            "directory) does not import") in result.stderr, result.stderr


def test_two_modules_of_one_name_in_different_paths_are_refused(cli, pipeline, tmp_path):
    # Python keeps one module per name in a process: the second stage would run the first
    # one's class (or a standard module's) instead of the file in its own path.
    for name, field in (("det", "box"), ("cls", "label")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.py").write_text(textwrap.dedent(f"""
            class Model:
                writes = {{"{field}": "text"}}
                def process(self, packet):
                    packet["{field}"] = "{name}"
                    return packet
        """))
    out = tmp_path / "out.jsonl"
    file = pipeline(f"""
        pipeline: same_name
        stages:
          - name: source
            type: synthetic.source
            params: {{ count: 3 }}
          - name: det
            type: python
            params: {{ module: model, class: Model, path: {tmp_path / 'det'} }}
          - name: cls
            type: python
            params:
              module: model
              class: Model
              path: {tmp_path / 'cls'}
          - name: sink
            type: sink.jsonl
            params: {{ path: {out} }}
    """)
    result = run(cli, "run", "-q", file)
    assert result.returncode == 2, result.stderr
    assert f"{file}:13:" in result.stderr, result.stderr  # the second stage's `module:` line
    assert (f"Python module 'model' is already imported from '{tmp_path / 'det' / 'model.py'}'"
            in result.stderr), result.stderr
    assert str(tmp_path / "cls" / "model.py") in result.stderr
    assert not out.exists()

    # A module named like a standard one that Python has imported already: the same.
    (tmp_path / "std").mkdir()
    (tmp_path / "std" / "types.py").write_text("class Stage:\n    def process(self, p):\n        return p\n")
    result, file = bad_input(cli, pipeline, str(tmp_path / "std"), "types")
    assert result.returncode == 2, result.stderr
    assert f"{file}:9:" in result.stderr, result.stderr
    assert "Python module 'types' is already imported from" in result.stderr, result.stderr


def test_a_missing_class_or_process_is_a_configuration_error(cli, stages, pipeline):
    path = stages("half", """
        class Other:
            def process(self, packet):
                return packet

        class NoProcess:
            reads = {"value": "int"}
    """)
    result, file = bad_input(cli, pipeline, path, "half", "Missing")
    assert result.returncode == 2
    assert f"{file}:10:" in result.stderr  # the `class:` line
    assert "has no class 'Missing'; its classes: Other, NoProcess" in result.stderr
    result, file = bad_input(cli, pipeline, path, "half", "NoProcess")
    assert result.returncode == 2
    assert f"{file}:10:" in result.stderr and "has no method process(self, packet)" in result.stderr


def test_declarations_that_are_not_dicts_of_names_to_types_are_configuration_errors(
        cli, stages, pipeline):
    path = stages("notdict", """
        class Stage:
            reads = ["image"]
            def process(self, packet):
                return packet
    """)
    result, file = bad_input(cli, pipeline, path, "notdict")
    assert result.returncode == 2
    assert f"{file}:10:" in result.stderr
    assert "notdict.Stage.reads must be a dict of field name to type" in result.stderr


def test_a_field_of_an_unknown_type_is_a_configuration_error(cli, stages, pipeline):
    path = stages("typo", """
        class Stage:
            writes = {"blurred": "imgae"}
            def process(self, packet):
                return packet
    """)
    result, file = bad_input(cli, pipeline, path, "typo")
    assert result.returncode == 2
    assert f"{file}:10:" in result.stderr
    assert "typo.Stage.writes['blurred'] has unknown type 'imgae'; the types are image, tensor" in result.stderr


def test_reads_are_checked_by_the_plan(cli, stages, pipeline):
    path = stages("reader", """
        class Stage:
            reads = {"faces": "rects"}
            def process(self, packet):
                return packet
    """)
    result, _ = bad_input(cli, pipeline, path, "reader")
    assert result.returncode == 2
    assert "faces" in result.stderr


def test_a_python_stage_holding_the_gil_does_not_stall_the_cpp_stages(cli, stages, pipeline, tmp_path):
    """A pure-Python busy loop in one branch; a C++ branch beside it keeps its rate."""
    path = stages("hog", """
        import time

        class Hog:
            reads = {"value": "int"}
            writes = {"spins": "int"}
            def process(self, packet):
                end, spins = time.perf_counter() + 0.05, 0
                while time.perf_counter() < end:  # holds the GIL, except at Python's switches
                    spins += 1
                packet["spins"] = spins
                return packet
    """)

    def cpp_rate(with_hog):
        lines = [
            "pipeline: beside",
            "workers: 2",
            "stages:",
            "  - { name: source, type: synthetic.source, params: { count: 400, rate: 200 } }",
            "  - { name: spin, type: model.spin, inputs: [source], params: { service_ms: 1 } }",
            f"  - {{ name: sink, type: sink.jsonl, inputs: [spin], params: {{ path: {tmp_path / 's.jsonl'} }} }}",
        ]
        if with_hog:
            lines += [
                f"  - {{ name: hog, type: python, consumers: 2, inputs: [source], params: {{ module: hog, class: Hog, path: {path} }} }}",
                f"  - {{ name: hog_sink, type: sink.jsonl, inputs: [hog], params: {{ path: {tmp_path / 'h.jsonl'} }} }}",
            ]
        metrics = tmp_path / f"m{with_hog}.json"
        result = run(cli, "run", "-q", "--metrics-json", str(metrics),
                     pipeline("\n".join(lines) + "\n", name=f"beside{with_hog}.yaml"))
        assert result.returncode == 0, result.stderr
        m = json.load(open(metrics))
        spin = next(s for s in m["stages"] if s["name"] == "spin")
        assert spin["processed"] == 400
        return spin["service_us"]["p50"], spin["queue_wait_us"]["p50"]

    # The hog branch runs 400 x 50 ms of pure Python on 2 consumers (10 s under one GIL); the
    # C++ branch is paced at 200 packets/s. Had the hog's consumers taken the worker pool's
    # threads (one running Python, the other waiting for the GIL), the spin stage's packets would
    # wait for them: tens of milliseconds each. On their own threads, it keeps its pace; its
    # service time may grow with the CPU the hog takes, not with the GIL.
    alone_service, alone_wait = cpp_rate(False)
    beside_service, beside_wait = cpp_rate(True)
    assert beside_service < 3 * alone_service + 500, (alone_service, beside_service)
    assert beside_wait < 10_000, (alone_wait, beside_wait)


def test_swap_reimports_the_module_while_the_run_goes_on(cli, stages, pipeline, tmp_path):
    path = stages("versioned", """
        class Stage:
            reads = {"value": "int"}
            writes = {"version": "int"}
            def process(self, packet):
                packet["version"] = 1
                return packet
    """)
    out = tmp_path / "out.jsonl"
    file = pipeline(f"""
        pipeline: swapping
        stages:
          - {{ name: source, type: synthetic.source, params: {{ count: 100000, rate: 1000 }} }}
          - {{ name: work, type: python, params: {{ module: versioned, class: Stage, path: {path} }} }}
          - {{ name: sink, type: sink.jsonl, params: {{ path: {out} }} }}
    """)
    process = subprocess.Popen([cli, "run", "-q", file, "--listen", "127.0.0.1:0"],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               cwd=SOURCE_DIR)
    try:
        url = None
        while url is None:
            line = process.stderr.readline()
            assert line, "the run ended before printing its control address"
            found = re.search(r"control: (http://\S+)", line)
            url = found.group(1) if found else None
        time.sleep(0.5)
        stages("versioned", """
            class Stage:
                reads = {"value": "int"}
                writes = {"version": "int"}
                def process(self, packet):
                    packet["version"] = 2
                    return packet
        """)
        swapped = run(cli, "ctl", url, "swap", "work")
        assert swapped.returncode == 0, swapped.stderr
        time.sleep(0.5)
        # A change to what it declares is refused; the running instance stays.
        stages("versioned", """
            class Stage:
                reads = {"value": "int"}
                writes = {"other": "int"}
                def process(self, packet):
                    return packet
        """)
        refused = run(cli, "ctl", url, "swap", "work")
        assert refused.returncode == 2
        assert "declares other reads, writes, batching or params" in refused.stderr
        # A read that nothing upstream writes is refused as the pipeline's check says.
        stages("versioned", """
            class Stage:
                reads = {"value": "int", "zzz": "int"}
                writes = {"version": "int"}
                def process(self, packet):
                    return packet
        """)
        refused = run(cli, "ctl", url, "swap", "work")
        assert refused.returncode == 2
        assert "'zzz'" in refused.stderr, refused.stderr
        time.sleep(0.3)
        # With the file put right, the next swap takes: a refused one leaves nothing behind.
        stages("versioned", """
            class Stage:
                reads = {"value": "int"}
                writes = {"version": "int"}
                def process(self, packet):
                    packet["version"] = 3
                    return packet
        """)
        again = run(cli, "ctl", url, "swap", "work")
        assert again.returncode == 0, again.stderr
        time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    versions = [r["fields"]["version"] for r in read_jsonl(out)]
    assert versions[0] == 1 and versions[-1] == 3 and 2 in versions
    assert versions == sorted(versions)  # one stage instance at a time, in order (1 consumer)


SCALE = """
    class Scale:
        reads = {"value": "int"}
        writes = {"scaled": "number", "note": "text"}
        params = {"factor": 2, "offset": (0.5, "added after scaling"), "note": "x",
                  "loud": False, "weights": [1, 2]}

        def __init__(self):
            # The params are attributes already when __init__ runs.
            self.total_weight = sum(self.weights)

        def process(self, packet):
            packet["scaled"] = packet["value"] * self.factor + self.offset
            packet["note"] = (self.note.upper() if self.loud else self.note) + str(self.total_weight)
            return packet
"""


def scale_pipeline(pipeline, path, out, params=""):
    return pipeline(f"""
        pipeline: scaling
        stages:
          - name: source
            type: synthetic.source
            params: {{ count: 5 }}
          - name: work
            type: python
            params:
              module: scale
              class: Scale
              path: {path}
              {params}
          - name: sink
            type: sink.jsonl
            ordered: true
            params: {{ path: {out} }}
    """)


def test_a_python_stage_takes_the_params_its_class_declares(cli, stages, pipeline, tmp_path):
    path = stages("scale", SCALE)
    out = tmp_path / "out.jsonl"
    # The defaults, as the class declares them.
    result = run(cli, "run", "-q", scale_pipeline(pipeline, path, out))
    assert result.returncode == 0, result.stderr
    assert [r["fields"]["scaled"] for r in read_jsonl(out)] == [0.5, 2.5, 4.5, 6.5, 8.5]
    assert read_jsonl(out)[0]["fields"]["note"] == "x3.0"  # a list param holds floats
    # From the file, and from --set over it; an integer is taken where a float is declared.
    file = scale_pipeline(pipeline, path, out, "factor: 10\n              loud: true")
    result = run(cli, "run", "-q", file, "--set", "work.offset=1", "--set", "work.note=y",
                 "--set", "work.weights=[4, 5.5]")
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(out)
    assert [r["fields"]["scaled"] for r in rows] == [1, 11, 21, 31, 41]
    assert rows[0]["fields"]["note"] == "Y9.5"


def test_inspect_params_shows_the_params_a_class_declares(cli, stages, pipeline, tmp_path):
    path = stages("scale", SCALE)
    file = scale_pipeline(pipeline, path, tmp_path / "out.jsonl", "factor: 10")
    result = run(cli, "inspect", file, "--params", "--set", "work.note=y")
    assert result.returncode == 0, result.stderr
    work = next(line for line in result.stdout.splitlines() if line.startswith("  work:"))
    assert "factor=10 " in work and "note=y " in work, work
    assert "offset=0.5 (default)" in work and "loud=false (default)" in work, work


def test_a_param_the_class_does_not_declare_or_of_the_wrong_type_is_refused(
        cli, stages, pipeline, tmp_path):
    path = stages("scale", SCALE)
    out = tmp_path / "out.jsonl"
    file = scale_pipeline(pipeline, path, out, "radius: 3")
    result = run(cli, "run", "-q", file)
    assert result.returncode == 2, result.stderr
    assert f"{file}:13:" in result.stderr  # the `radius:` line
    assert "param 'radius': unknown param" in result.stderr
    for name in ("factor", "offset", "note", "loud", "weights"):
        assert name in result.stderr, result.stderr
    file = scale_pipeline(pipeline, path, out, "factor: 2.5")
    result = run(cli, "run", "-q", file)
    assert result.returncode == 2, result.stderr
    assert f"{file}:13:" in result.stderr
    assert "param 'factor': expected an integer, got 2.5" in result.stderr
    result = run(cli, "run", "-q", scale_pipeline(pipeline, path, out), "--set", "work.loud=maybe")
    assert result.returncode == 2, result.stderr
    assert "work.loud=maybe" in result.stderr and "expected true or false" in result.stderr


RANGED = """
    class Ranged:
        reads = {"value": "int"}
        writes = {"scaled": "number"}
        params = {"factor": (2, "multiplier", (1, None)),
                  "share": (0.5, "kept share", (0, 1)),
                  "sizes": ([8, 8], "widths", (1, None))}

        def process(self, packet):
            packet["scaled"] = packet["value"] * self.factor * self.share
            return packet
"""


def test_a_param_declared_with_a_range_refuses_a_value_outside_it(cli, stages, pipeline):
    path = stages("ranged", RANGED)
    file = pipeline(f"""
        pipeline: ranged
        stages:
          - name: source
            type: synthetic.source
          - name: work
            type: python
            params:
              module: ranged
              class: Ranged
              path: {path}
              share: 2
    """)
    result = run(cli, "inspect", file)
    assert result.returncode == 2, result.stderr
    assert f"{file}:12:" in result.stderr  # the `share:` line
    assert "stage 'work': param 'share' must be within 0..1; got 2" in result.stderr
    result = run(cli, "inspect", file, "--set", "work.share=1", "--set", "work.factor=0")
    assert result.returncode == 2, result.stderr
    assert "work.factor=0: stage 'work': param 'factor' must be at least 1; got 0" in result.stderr
    result = run(cli, "inspect", file, "--set", "work.share=1", "--set", "work.sizes=[8, 0]")
    assert "param 'sizes' must be at least 1 each; got [8, 0]" in result.stderr, result.stderr
    result = run(cli, "inspect", file, "--set", "work.share=1")
    assert result.returncode == 0, result.stderr


def test_params_declarations_that_cannot_be_params_are_configuration_errors(
        cli, stages, pipeline):
    cases = {
        "params = ['radius']": "notparams.Stage.params must be a dict of param name to its default",
        "params = {'radius': None}":
            "notparams.Stage.params['radius'] = None: a param's default is a bool, int (64-bit), "
            "finite float, str or a list of numbers",
        "params = {'gain': float('nan')}": "notparams.Stage.params['gain'] = nan: a param's default is",
        "params = {'process': 1}":
            "notparams.Stage.params['process']: the class has an attribute 'process' already",
        "params = {'path': 'x'}": "param 'path': declared again; type 'python' has a param",
        "params = {'radius': (3, 4)}": "notparams.Stage.params['radius'] is a tuple: write (default, \"help\")",
        "params = {'radius': (3, 'r', 1)}":
            "notparams.Stage.params['radius']: the range 1 is not (low, high), each a number or None",
        "params = {'radius': (0, 'r', (1, None))}": "param 'radius': the default 0 is not at least 1",
        "params = {'name': ('a', 'r', (1, 2))}":
            "param 'name': a range is for integer, number and list of numbers params, not text",
        "params = {'two words': 1}": "must map param names (identifiers, as they become attributes)",
    }
    for declaration, message in cases.items():
        path = stages("notparams", f"""
            class Stage:
                {declaration}
                def process(self, packet):
                    return packet
        """)
        result, file = bad_input(cli, pipeline, path, "notparams")
        assert result.returncode == 2, (declaration, result.stderr)
        assert f"{file}:" in result.stderr, result.stderr
        assert message in result.stderr, (declaration, result.stderr)


def test_swap_changes_a_python_stages_param_while_the_run_goes_on(cli, stages, pipeline, tmp_path):
    path = stages("tagged", """
        class Stage:
            writes = {"tag": "int"}
            params = {"tag": 1}
            def process(self, packet):
                packet["tag"] = self.tag
                return packet
    """)
    out = tmp_path / "out.jsonl"
    file = pipeline(f"""
        pipeline: swapping
        stages:
          - {{ name: source, type: synthetic.source, params: {{ count: 100000, rate: 1000 }} }}
          - {{ name: work, type: python, params: {{ module: tagged, class: Stage, path: {path} }} }}
          - {{ name: sink, type: sink.jsonl, params: {{ path: {out} }} }}
    """)
    process = subprocess.Popen([cli, "run", "-q", file, "--listen", "127.0.0.1:0"],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               cwd=SOURCE_DIR)
    try:
        url = None
        while url is None:
            line = process.stderr.readline()
            assert line, "the run ended before printing its control address"
            found = re.search(r"control: (http://\S+)", line)
            url = found.group(1) if found else None
        time.sleep(0.5)
        refused = run(cli, "ctl", url, "swap", "work", "tag=two")
        assert refused.returncode == 2
        assert "param 'tag': expected an integer" in refused.stderr, refused.stderr
        swapped = run(cli, "ctl", url, "swap", "work", "tag=2")
        assert swapped.returncode == 0, swapped.stderr
        time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    tags = [r["fields"]["tag"] for r in read_jsonl(out)]
    assert tags[0] == 1 and tags[-1] == 2
    assert set(tags) == {1, 2}


def test_the_example_runs(cli, tmp_path):
    result = run(cli, "run", "-q", "examples/python/blur.yaml",
                 "--set", f"sink.path={tmp_path / 'blur.jsonl'}")
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(tmp_path / "blur.jsonl")
    assert len(rows) == 200
    assert all(0 < r["fields"]["brightness"] < 255 for r in rows)


def test_process_batch_gets_the_batch(cli, stages, pipeline, tmp_path):
    path = stages("batched", """
        class Sum:
            reads = {"value": "int"}
            writes = {"batch_size": "int"}
            def process(self, packet):
                raise RuntimeError("process_batch should have been called")
            def process_batch(self, packets):
                for p in packets:
                    p["batch_size"] = len(packets)
                return packets
    """)
    out = tmp_path / "out.jsonl"
    file = pipeline(f"""
        pipeline: batched
        stages:
          - {{ name: source, type: synthetic.source, params: {{ count: 64 }} }}
          - name: work
            type: python
            batch: {{ max_batch: 8, max_delay_ms: 50 }}
            params: {{ module: batched, class: Sum, path: {path} }}
          - {{ name: sink, type: sink.jsonl, ordered: true, params: {{ path: {out} }} }}
    """)
    inspected = run(cli, "inspect", file)
    assert inspected.returncode == 0, inspected.stderr
    assert re.search(r"work +python", inspected.stdout)
    result = run(cli, "run", "-q", file)
    assert result.returncode == 0, result.stderr
    sizes = [r["fields"]["batch_size"] for r in read_jsonl(out)]
    assert len(sizes) == 64 and max(sizes) > 1 and max(sizes) <= 8


def test_process_batch_that_returns_nothing_fails_its_packets(cli, stages, pipeline, tmp_path):
    # A process_batch that changes the packets in place and forgets `return packets` returns
    # None: its packets fail (counted, dead-lettered), rather than vanish as filtered.
    path = stages("noreturn", """
        class InPlace:
            reads = {"value": "int"}
            writes = {"y": "number"}
            def process(self, packet):
                return packet
            def process_batch(self, packets):
                for p in packets:
                    p["y"] = 1.0
    """)
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    metrics = tmp_path / "m.json"
    result = run(cli, "run", "-q", "--metrics-json", str(metrics), pipeline(f"""
        pipeline: noreturn
        dead_letter: dead
        stages:
          - {{ name: source, type: synthetic.source, params: {{ count: 40 }} }}
          - name: work
            type: python
            batch: {{ max_batch: 8, max_delay_ms: 5 }}
            params: {{ module: noreturn, class: InPlace, path: {path} }}
          - {{ name: sink, type: sink.jsonl, ordered: true, params: {{ path: {out} }} }}
          - {{ name: dead, type: sink.jsonl, params: {{ path: {dead} }} }}
    """))
    assert result.returncode == 1, result.stderr  # every packet failed at 'work'
    assert ("noreturn.InPlace: process_batch returned None; return the list of packets "
            "(an empty list when none goes on)") in result.stderr, result.stderr
    work = next(s for s in json.load(open(metrics))["stages"] if s["name"] == "work")
    assert work["failed"] == 40 and work["processed"] == 0
    assert sorted(r["seq"] for r in read_jsonl(dead)) == list(range(40))
    assert read_jsonl(out) == []

    # An empty list is how a batch's packets are all filtered out: no failure.
    (tmp_path / "noreturn.py").write_text(
        (tmp_path / "noreturn.py").read_text().replace("p[\"y\"] = 1.0", "p[\"y\"] = 1.0\n        return []"))
    result = run(cli, "run", "-q", "--metrics-json", str(metrics), pipeline(f"""
        pipeline: noreturn
        stages:
          - {{ name: source, type: synthetic.source, params: {{ count: 40 }} }}
          - name: work
            type: python
            batch: {{ max_batch: 8, max_delay_ms: 5 }}
            params: {{ module: noreturn, class: InPlace, path: {path} }}
          - {{ name: sink, type: sink.jsonl, ordered: true, params: {{ path: {out} }} }}
    """))
    assert result.returncode == 0, result.stderr
    work = next(s for s in json.load(open(metrics))["stages"] if s["name"] == "work")
    assert work["failed"] == 0 and work["processed"] == 40 and work["emitted"] == 0


def test_python_stages_in_a_worker_on_redis(cli, stages, pipeline, tmp_path):
    """Across processes each has its own interpreter; a hop carries the declared fields."""
    url = os.environ.get("MICROMODELS_REDIS_URL")
    if not url:
        pytest.skip("MICROMODELS_REDIS_URL is not set (scripts/test.sh starts a redis-server)")
    path = stages("remote", """
        import os
        import numpy as np
        import micromodels

        class Draw:
            reads = {"value": "int"}
            writes = {"image": "image"}
            def process(self, packet):
                packet["image"] = np.full((48, 64, 3), packet["value"] % 256, np.uint8)
                return packet

        class Mean:
            reads = {"image": "image"}
            writes = {"mean": "number", "pid": "int"}
            def process(self, packet):
                packet["mean"] = float(packet["image"].mean())
                packet["pid"] = os.getpid()
                if packet.seq % 7 == 0:
                    micromodels.count("sevens")
                return packet
    """)
    out = tmp_path / "out.jsonl"
    metrics = tmp_path / "run.json"
    file = pipeline(f"""
        pipeline: python_on_redis_{os.getpid()}
        stages:
          - {{ name: source, type: synthetic.source, params: {{ count: 100 }} }}
          - {{ name: draw, type: python, params: {{ module: remote, class: Draw, path: {path} }} }}
          - {{ name: mean, type: python, consumers: 2, params: {{ module: remote, class: Mean, path: {path} }} }}
          - {{ name: sink, type: sink.jsonl, ordered: true, params: {{ path: {out} }} }}
    """)
    worker = subprocess.Popen([cli, "worker", file, "--broker", url, "--stages", "draw,mean"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              cwd=SOURCE_DIR)
    try:
        assert "worker: serving" in worker.stderr.readline()
        time.sleep(0.5)  # its heartbeat, so that the run leaves the stages to it
        result = run(cli, "run", file, "--broker", url, "-q", "--metrics-json", str(metrics))
        assert result.returncode == 0, result.stderr
    finally:
        worker.send_signal(signal.SIGINT)
        _, worker_err = worker.communicate(timeout=60)
    assert worker.returncode == 0, worker_err
    rows = read_jsonl(out)
    assert [r["seq"] for r in rows] == list(range(100))
    assert all(r["fields"]["mean"] == r["seq"] % 256 for r in rows)
    assert worker.pid in {r["fields"]["pid"] for r in rows}, "the worker served mean"
    # What the stage counted in the worker is in the run's totals: 0, 7, ..., 98.
    elsewhere = {s["name"]: s for s in json.loads(metrics.read_text())["served_elsewhere"]}
    assert elsewhere["mean"]["events"] == {"sevens": 15}, elsewhere
    assert re.search(r"\n  mean +processed +100 .* sevens 15\n", result.stdout), result.stdout


def test_the_autoscaler_takes_back_consumers_a_gil_bound_stage_cannot_use(
        cli, stages, pipeline, tmp_path):
    # A pure-Python loop holds the GIL: more consumers wait for one another. The model promises
    # them a gain; the autoscaler gives them, finds in the next interval that the stage took no
    # more packets per second, and gives them back for good.
    path = stages("busy", """
        import time

        class Busy:
            reads = {}
            writes = {}
            def process(self, packet):
                end = time.perf_counter() + 0.002
                while time.perf_counter() < end:
                    pass
                return packet
    """)
    metrics_file = tmp_path / "m.json"
    result = run(cli, "run", "-q", "--metrics-json", str(metrics_file), pipeline(f"""
        pipeline: busy
        autoscale: {{ budget: 5, max_consumers: 6, interval_ms: 300 }}
        stages:
          - {{ name: source, type: synthetic.source, params: {{ count: 2000 }} }}
          - {{ name: py, type: python, params: {{ module: busy, class: Busy, path: {path} }} }}
          - {{ name: sink, type: sink.jsonl, params: {{ path: {tmp_path / "out.jsonl"} }} }}
    """))
    assert result.returncode == 0, result.stderr
    assert re.search(r"autoscale: py 1->\d", result.stderr), result.stderr
    assert re.search(r"autoscale: py \d->1: .* do not run in parallel here", result.stderr), \
        result.stderr
    py = next(s for s in json.load(open(metrics_file))["stages"] if s["name"] == "py")
    assert py["consumers"] == 1
    assert py["processed"] == 2000
