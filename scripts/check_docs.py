#!/usr/bin/env python3
"""Runs the examples in the docs: every fenced block of README.md, docs/*.md and examples/README.md.

    scripts/check_docs.py                     every block (what scripts/test.sh's docs phase runs)
    scripts/check_docs.py docs/cli.md         the blocks of one file
    scripts/check_docs.py docs/cli.md:123     the block whose fence is on that line
    scripts/check_docs.py --list              what would be done with each block, running nothing

A fence's info string says what its block is (docs/testing.md, "Executable docs"):
  sh        commands, run as one bash script (set -e -o pipefail): every command must succeed
  console   "$ command" lines, each followed by output the command must print (those lines, in
            order; "..." stands for anything). A command must exit 0, or non-zero when its
            output shows a line starting with "error:". `console figures-vary`: every number
            in the shown output (with its unit: 3.2µs, 1.20ms) stands for any number.
  yaml      a pipeline file: `micromodels inspect` must accept it
  text, cpp, json      not run: output, pictures, code
Any of sh, console and yaml followed by `norun: REASON` is not run; the reason is required.

Each block runs in a fresh scratch folder that links every top-level entry of the repository
(pipelines/, scripts/, build/, .cache/, ...) except out/, with `micromodels` (the main build's) first
on PATH, and `in.mp4` (the first 24 frames of franck.mp4) when the block names it. The ports the
docs use, 6379 (Redis), 9464 and 41234 (control endpoints), become free ports; a block that names
6379 and starts no redis-server gets a fresh one. A line that ends in `&` waits until the ports it
names accept connections. When the block ends, whatever it left running is stopped. A block may
take at most 60 seconds. A failure names the file and line.
"""

import argparse
import glob
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC_PORTS = ("6379", "9464", "41234")
REDIS_PORT = "6379"
BLOCK_TIMEOUT_S = 60
CHECKED = {"sh": "sh", "console": "console", "yaml": "yaml"}
UNCHECKED = {"text", "cpp", "json"}


class Block:
    def __init__(self, path, line, info, lines):
        self.path = path  # relative to the repository
        self.line = line  # 1-based line of the opening fence
        self.info = info
        self.lines = lines
        words = info.split(None, 1)
        self.lang = words[0] if words else ""
        rest = words[1] if len(words) > 1 else ""
        self.norun = None
        if "norun:" in rest:
            rest, reason = rest.split("norun:", 1)
            self.norun = reason.strip()
        self.flags = rest.split()

    def where(self, offset=0):
        return f"{self.path}:{self.line + offset}"


def read_blocks(path):
    """The fenced blocks of a Markdown file, and the problems found in their fences."""
    blocks, problems = [], []
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        text = f.read().split("\n")
    i = 0
    while i < len(text):
        m = re.match(r"^( *)(`{3,}|~{3,})(.*)$", text[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m.group(1)), m.group(2), m.group(3).strip()
        start, body = i + 1, []
        i += 1
        while i < len(text) and not re.match(r"^ *" + re.escape(fence[0]) + "{%d,}\\s*$" % len(fence),
                                             text[i]):
            line = text[i]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            i += 1
        if i == len(text):
            problems.append(f"{path}:{start}: the fence opened here is never closed")
        i += 1
        blocks.append(Block(path, start, info, body))
    return blocks, problems


def fence_problem(block):
    lang = block.lang
    if lang == "":
        return ("a fence without a language: write sh, console or yaml (checked), or text, cpp "
                "or json (not run)")
    if lang not in CHECKED and lang not in UNCHECKED:
        return f"unknown language '{lang}': use sh, console, yaml, text, cpp or json"
    if block.norun is not None and lang not in CHECKED:
        return f"'norun:' is for sh, console and yaml blocks; a {lang} block is never run"
    if block.norun == "":
        return "'norun:' needs a reason"
    allowed = {"figures-vary"} if CHECKED.get(lang) == "console" else set()
    unknown = [flag for flag in block.flags if flag not in allowed]
    if unknown:
        return f"unknown word '{unknown[0]}' after '{lang}'" + (
            "; did you mean 'norun: REASON'?" if unknown[0].startswith("norun") else "")
    if lang == "text":
        for n, line in enumerate(block.lines, 1):
            if line.startswith("$ "):
                return f"line {block.line + n}: '$ ' starts a command: make the block console"
    return None


# ---------------------------------------------------------------------------------------------
# Running a block


def free_port():
    """A port nothing listens on, below the ephemeral range (32768-), so that no client
    connection takes it between this check and the block's server binding it."""
    while True:
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return str(port)


def wait_for_port(port, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", int(port)), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Scratch:
    """A fresh folder for one block, looking like the repository without its out/."""

    def __init__(self, cli, fixtures):
        self.dir = tempfile.mkdtemp(prefix="check-docs-")
        for name in os.listdir(ROOT):
            if name not in ("out", ".git"):
                os.symlink(os.path.join(ROOT, name), os.path.join(self.dir, name))
        self.bin = os.path.join(self.dir, ".check-docs-bin")
        os.mkdir(self.bin)
        os.symlink(cli, os.path.join(self.bin, "micromodels"))
        self.fixtures = fixtures
        self.env = dict(os.environ, PATH=self.bin + os.pathsep + os.environ.get("PATH", ""))
        self.env.pop("MICROMODELS_TOKEN", None)
        self.redis = None

    def prepare(self, text):
        """Ports and fixtures for this block's text; returns the text with free ports in it."""
        for port in DOC_PORTS:
            if re.search(r"\b%s\b" % port, text):
                new = free_port()
                if port == REDIS_PORT and not re.search(r"\bredis-server\b", text):
                    self.start_redis(new)
                text = re.sub(r"\b%s\b" % port, new, text)
        if re.search(r"\bin\.mp4\b", text):
            os.symlink(self.fixtures.clip(), os.path.join(self.dir, "in.mp4"))
        return text

    def start_redis(self, port):
        self.redis = subprocess.Popen(
            ["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_for_port(port):
            raise RuntimeError(f"redis-server did not start on port {port}")

    def close(self):
        if self.redis:
            self.redis.terminate()
            self.redis.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Fixtures:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="check-docs-fixtures-")
        self._clip = None

    def clip(self):
        if self._clip is None:
            cache = os.environ.get("MICROMODELS_CACHE") or os.path.join(ROOT, ".cache", "micromodels")
            source = os.path.join(cache, "media", "franck.mp4")
            if not os.path.exists(source):
                raise RuntimeError(f"{source} is missing: run scripts/fetch_media.sh")
            self._clip = os.path.join(self.dir, "in.mp4")
            subprocess.run(["ffmpeg", "-v", "error", "-i", source, "-frames:v", "24", "-an",
                            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                            self._clip], check=True)
        return self._clip

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# Helpers on the script's first line, so that the block's line n is the script's line n + 1.
PROLOGUE = (
    "__check_docs_wait() { local pid=$1 port i; shift; for port in \"$@\"; do i=0; "
    "until (exec 3<>\"/dev/tcp/127.0.0.1/$port\") 2>/dev/null; do "
    "kill -0 \"$pid\" 2>/dev/null || { echo \"check_docs: the command sent to the background "
    "ended before port $port opened\" >&2; return 1; }; i=$((i + 1)); "
    "[ $i -gt 400 ] && { echo \"check_docs: nothing listens on port $port after 20 s\" >&2; "
    "return 1; }; sleep 0.05; done; done; }; "
)


def background_waits(line):
    """`cmd & # comment` -> `cmd & __check_docs_wait $! PORTS # comment`."""
    m = re.match(r"^(.*[^&])&(\s*(#.*)?)$", line)
    if not m or m.group(1).rstrip().endswith("&"):
        return line
    ports = re.findall(r"(?::|--port\s+)(\d{2,5})\b", m.group(1))
    return f"{m.group(1)}& __check_docs_wait $! {' '.join(ports)}{m.group(2)}"


def run_script(script, scratch, timeout):
    """Runs a bash script in the scratch folder, in a process group of its own; returns
    (exit code or None on timeout, output). The output goes to a file, not a pipe: a command
    the block sent to the background would hold a pipe open after the script ended."""
    path = os.path.join(scratch.dir, ".check-docs-block.sh")
    with open(path, "w", encoding="utf-8") as f:
        f.write(script)
    log = os.path.join(scratch.dir, ".check-docs-block.log")
    with open(log, "wb") as out:
        process = subprocess.Popen(["bash", path], cwd=scratch.dir, env=scratch.env,
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            rc = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        # What the block left running (a run sent to the background, a redis-server) goes too.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        process.wait()
    with open(log, "rb") as f:
        return rc, f.read().decode("utf-8", errors="replace")


def run_sh(block, scratch):
    text = scratch.prepare("\n".join(block.lines))
    body = "\n".join(background_waits(line) for line in text.split("\n"))
    trap = ("trap 'echo \"__check_docs_failed__ $((LINENO - 1)) $?\" >&2' ERR; "
            "set -eo pipefail\n")
    rc, out = run_script(PROLOGUE + trap + body + "\n", scratch, BLOCK_TIMEOUT_S)
    if rc is None:
        return f"{block.where()}: took longer than {BLOCK_TIMEOUT_S} s", out
    if rc != 0:
        m = re.search(r"__check_docs_failed__ (\d+) (\d+)", out)
        if m:
            n = int(m.group(1))
            shown = block.lines[n - 1].strip() if 0 < n <= len(block.lines) else ""
            return f"{block.where(n)}: exit {m.group(2)}: {shown}", out
        return f"{block.where()}: the block exited with {rc}", out
    return None, out


def console_commands(block):
    """[(offset of the command's line in the block, command, [shown output lines])]."""
    commands = []
    lines = block.lines
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            offset, command = i + 1, line[2:]
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command += "\n" + lines[i]
            commands.append((offset, command, []))
        elif commands:
            commands[-1][2].append(line)
        elif line.strip():
            return None
        i += 1
    return commands


FIGURE = r"[0-9]+(?:\.[0-9]+)?(?:µs|us|ms|s)?"


def line_pattern(expected, figures_vary):
    """A shown line as a regular expression: runs of blanks match any blanks, "..." anything,
    and with figures_vary every number (with its unit) any number."""
    parts = []
    figure = FIGURE if figures_vary else r"(?!)"
    token = re.compile(r"(\s+)|(\.\.\.)|(" + figure + ")")
    pos = 0
    for m in token.finditer(expected):
        parts.append(re.escape(expected[pos:m.start()]))
        if m.group(1):
            parts.append(r"\s+")
        elif m.group(2):
            parts.append(".*")
        elif m.group(3):
            parts.append(FIGURE)
        pos = m.end()
    parts.append(re.escape(expected[pos:]))
    return re.compile("".join(parts))


def compare(shown, actual, figures_vary):
    """The first shown line that the actual output lacks (in order), or None."""
    got = [line.strip() for line in actual.split("\n") if line.strip()]
    at = 0
    for expected in shown:
        expected = expected.strip()
        if expected in ("", "..."):
            continue
        pattern = line_pattern(expected, figures_vary)
        while at < len(got) and not pattern.fullmatch(got[at]):
            at += 1
        if at == len(got):
            return expected
        at += 1
    return None


def run_console(block, scratch):
    commands = console_commands(block)
    if not commands:
        return f"{block.where()}: a console block holds '$ command' lines and their output", ""
    text = scratch.prepare("\n".join(block.lines))
    lines = text.split("\n")
    script = [PROLOGUE]
    for k, (offset, _, _) in enumerate(commands):
        end = commands[k + 1][0] - 1 if k + 1 < len(commands) else len(lines)
        command = lines[offset - 1][2:]
        n = offset
        while command.endswith("\\") and n < end:
            command += "\n" + lines[n]
            n += 1
        script.append(f"printf '\\n__check_docs_command__ {k}\\n'\n"
                      f"(set -o pipefail\n{background_waits(command)}\n)\n"
                      f"printf '\\n__check_docs_status__ {k} %d\\n' $?\n")
    rc, out = run_script("".join(script), scratch, BLOCK_TIMEOUT_S)
    if rc is None:
        return f"{block.where()}: took longer than {BLOCK_TIMEOUT_S} s", out
    pieces = re.split(r"\n?__check_docs_command__ \d+\n", out)[1:]
    for k, (offset, command, shown) in enumerate(commands):
        if k >= len(pieces):
            return f"{block.where(offset)}: never ran: $ {command}", out
        m = re.search(r"\n?__check_docs_status__ \d+ (\d+)\n", pieces[k])
        if not m:
            return f"{block.where(offset)}: did not finish: $ {command}", out
        output, status = pieces[k][:m.start()], int(m.group(1))
        wants_error = any(line.strip().startswith("error:") for line in shown)
        if wants_error and status == 0:
            return f"{block.where(offset)}: exit 0, but the doc shows an error: $ {command}", output
        if not wants_error and status != 0:
            return f"{block.where(offset)}: exit {status}: $ {command}", output
        missing = compare(shown, output, "figures-vary" in block.flags)
        if missing is not None:
            n = offset + 1 + next(i for i, line in enumerate(shown) if line.strip() == missing)
            return f"{block.where(n)}: not in the output of `{command}`: {missing}", output
    return None, out


def run_yaml(block, scratch, cli):
    path = os.path.join(scratch.dir, "doc-example.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(block.lines) + "\n")
    result = subprocess.run([cli, "inspect", path], cwd=scratch.dir, env=scratch.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            timeout=BLOCK_TIMEOUT_S)
    out = result.stdout.decode("utf-8", errors="replace")
    # The message names the temporary file's line: name the doc's instead.
    out = re.sub(re.escape(path) + r":(\d+)",
                 lambda m: block.where(int(m.group(1))), out)
    if result.returncode != 0:
        first = next((line for line in out.split("\n") if line.startswith("error:")), out.strip())
        return f"{block.where()}: micromodels inspect refused it: {first}", out
    return None, out


# ---------------------------------------------------------------------------------------------


def build_state():
    """The main build's configuration, which no block may change (the scratch folder links build/)."""
    try:
        return os.stat(os.path.join(ROOT, "build", "CMakeCache.txt")).st_mtime_ns
    except OSError:
        return None


def doc_files():
    files = ["README.md"] + sorted(glob.glob("docs/*.md", root_dir=ROOT)) + ["examples/README.md"]
    return [f for f in files if os.path.exists(os.path.join(ROOT, f))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("only", nargs="*", help="FILE or FILE:LINE (default: every doc)")
    parser.add_argument("--cli", default=os.path.join(ROOT, "build/apps/micromodels/micromodels"),
                        help="the micromodels binary (default: the main build's)")
    parser.add_argument("--list", action="store_true", help="list the blocks, run nothing")
    args = parser.parse_args()

    blocks, problems = [], []
    for path in doc_files():
        found, bad = read_blocks(path)
        blocks += found
        problems += bad
    def target(wanted):  # "docs/cli.md:384" -> ("docs/cli.md", 384)
        path, _, line = wanted.partition(":")
        return os.path.relpath(os.path.abspath(path), ROOT), int(line) if line else None

    targets = [target(wanted) for wanted in args.only]
    for (path, line), wanted in zip(targets, args.only):
        if not any(b.path == path and line in (None, b.line) for b in blocks):
            print(f"check_docs: no block at {wanted}", file=sys.stderr)
            return 2
    if targets:
        blocks = [b for b in blocks if any(b.path == p and l in (None, b.line) for p, l in targets)]

    if not args.list and not os.access(args.cli, os.X_OK):
        print(f"check_docs: {args.cli} is missing: build it first (cmake --build build)",
              file=sys.stderr)
        return 2

    passed, not_run = 0, 0
    failed, failures = len(problems), list(problems)
    fixtures = Fixtures()
    start_all = time.monotonic()
    try:
        for block in blocks:
            problem = fence_problem(block)
            if problem:
                failures.append(f"{block.where()}: {problem}")
                print(f"FAIL     {block.where()}: {problem}")
                failed += 1
                continue
            kind = CHECKED.get(block.lang)
            if kind is None or block.norun is not None:
                not_run += 1
                if args.list:
                    print(f"not run  {block.where()} {block.lang}" + (f": {block.norun}" if block.norun else ""))
                continue
            if args.list:
                print(f"{kind:8} {block.where()}")
                continue
            start = time.monotonic()
            build_before = build_state()
            scratch = Scratch(os.path.abspath(args.cli), fixtures)
            try:
                if kind == "sh":
                    error, out = run_sh(block, scratch)
                elif kind == "console":
                    error, out = run_console(block, scratch)
                else:
                    error, out = run_yaml(block, scratch, os.path.abspath(args.cli))
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                error, out = f"{block.where()}: {e}", ""
            finally:
                scratch.close()
            took = time.monotonic() - start
            if not error and build_state() != build_before:
                error = (f"{block.where()}: the block reconfigured build/ (its CMakeCache.txt "
                         "changed): mark it norun, or make it use a build folder of its own")
            if error:
                failed += 1
                failures.append(error)
                print(f"FAIL     {block.where()} {kind} ({took:.1f} s)\n  {error}")
                shown = [line for line in out.rstrip().split("\n") if "__check_docs_" not in line][-40:]
                print("  | " + "\n  | ".join(shown))
            else:
                passed += 1
                print(f"ok       {block.where()} {kind} ({took:.1f} s)")
            sys.stdout.flush()
    finally:
        fixtures.close()
    if args.list:
        return 0
    print(f"\ncheck_docs: {passed} passed, {failed} failed, {not_run} not run (marked norun, or "
          f"text, cpp, json) in {time.monotonic() - start_all:.1f} s")
    for failure in failures:
        print(f"  {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
