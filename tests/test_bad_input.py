"""Bad input: exit 2, one line on stderr, no traceback, nothing written.

The cases run dimfix's click command in this process (the ``cli`` fixture),
except where the process is what is tested: click's own parse errors, which
only the console entry point (cli.run) turns into one line, a control case
through a real interpreter, warnings a fresh interpreter prints, and Ctrl-C.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_process

DATA = ROOT / "tests" / "data"

CASES = {
    "missing file": (["nope.py::Net", "--input", "1x4"], "no such file"),
    "file, --input, several models": (["bad_models.py", "--input", "1x4"], "name one as bad_models.py::NAME"),
    "folder without models": (["."], "no models found"),
    "folder as PATH::NAME": ([".::Net", "--input", "1x4"], "is a directory"),
    "no target": ([], "give a target"),
    "unknown name": (["bad_models.py::Missing", "--input", "1x4"], "no model named 'Missing'"),
    "not a model (int)": (["bad_models.py::NOT_A_MODEL", "--input", "1x4"], "is not a model"),
    "not a model (class)": (["bad_models.py::Plain", "--input", "1x4"], "not an nn.Module subclass"),
    "factory returns int": (["bad_models.py::returns_int", "--input", "1x4"], "not an nn.Module"),
    "raises in __init__": (["bad_models.py::RaisesInInit", "--input", "1x4"],
                           "bad_models.py:12: in __init__: building RaisesInInit raised ValueError"),
    "raises in forward": (["bad_models.py::RaisesInForward", "--input", "1x4"],
                          "bad_models.py:21: in forward: forward raised KeyError"),
    "no forward": (["bad_models.py::NoForward", "--input", "1x4"], "has no forward method"),
    "too many inputs": (["bad_models.py::Good", "--input", "1x4", "--input", "1x4"],
                        "does not accept the 2 --input tensors"),
    "no --input": (["bad_models.py::Good"], "give a sample input with --input"),
    "unbatched input": (["bad_models.py::TinyConv", "--input", "3x8x8"],
                        "--input 3x8x8 looks unbatched to conv (Conv2d); did you mean 1x3x8x8? "
                        "(pass --unbatched if not)"),
    "several outputs, no --output": (["bad_models.py::TwoHeads", "--input", "2x4", "--num-classes",
                                      "3"], "name the one holding the classes with --output KEY"),
    "shape 3xAx4": (["bad_models.py::Good", "--input", "3xAx4"], "'A' is not a positive whole number"),
    "shape 0x3": (["bad_models.py::Good", "--input", "0x3"], "sizes must be at least 1"),
    "shape -1x3": (["bad_models.py::Good", "--input", "-1x3"], "'-1' is not a positive whole number"),
    "shape huge": (["bad_models.py::Good", "--input", "1x3x99999999999"], "is too large"),
    "bad dtype": (["bad_models.py::Good", "--input", "complex:1x4"], "unknown dtype 'complex'"),
    "init not literal": (["bad_models.py::Good", "--input", "1x4", "--init", "width=os.getcwd()"],
                         "is not a Python literal"),
    "init unknown key": (["bad_models.py::Good", "--input", "1x4", "--init", "depth=3"],
                         "takes no keyword 'depth'"),
    "init no =": (["bad_models.py::Good", "--input", "1x4", "--init", "width"], "must be KEY=VALUE"),
    "num-classes 0": (["bad_models.py::Good", "--input", "1x4", "--num-classes", "0"],
                      "--num-classes must be at least 1"),
    "num-classes not int": (["bad_models.py::Good", "--input", "1x4", "--num-classes", "ten"],
                            "'ten' is not a valid integer"),
    "unknown option": (["bad_models.py::Good", "--input", "1x4", "--frobnicate"], "No such option"),
    "too few inputs": (["bad_models.py::NeedsTwo", "--input", "1x4"],
                       "missing a required argument: 'y'"),
    "factory raises": (["bad_models.py::factory_raises", "--input", "1x4"],
                       "building factory_raises raised RuntimeError: no such checkpoint"),
    "not Python": (["notes.txt::Net", "--input", "1x4"], "notes.txt:1:"),
    "syntax error": (["syntax_error.py::Net", "--input", "1x4"], "syntax_error.py:1:7: cannot parse"),
    "forward never returns": (["bad_models.py::Forever", "--input", "1x4", "--timeout", "1"],
                              "timed out after 1 s (--timeout)"),  # spinning: 1 s of CPU
    "bad --max-memory": (["bad_models.py::Good", "--input", "1x4", "--max-memory", "lots"],
                         "write a size like 4GiB"),
    "bad --format": (["bad_models.py::Good", "--input", "1x4", "--format", "xml"],
                     "'xml' is not one of"),
    "not UTF-8, no cookie": (["latin1.py::Net", "--input", "1x4"], "cannot decode"),
}


# Click's parse errors become one line in cli.run, the console entry point;
# "missing file" is the control that a real interpreter says the same as the
# command run in-process.
PROCESS = {"num-classes not int", "unknown option", "bad --format", "missing file"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad")
    shutil.copy(DATA / "bad_models.py", path)
    (path / "syntax_error.py").write_text("def f(:\n    pass\n")
    (path / "latin1.py").write_bytes("# caf\xe9\nimport torch\n".encode("latin-1"))
    (path / "notes.txt").write_text("Remember: conv sizes must match.\n")
    return path


def _snapshot(folder):
    return {p.name: (p.read_bytes(), os.stat(p).st_mtime_ns) for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_one_clear_line(case, folder, cli):
    args, message = CASES[case]
    before = _snapshot(folder)
    run = run_process(args, folder) if case in PROCESS else cli(args, folder)
    assert run.code == 2, run
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run
    assert lines[0].startswith("dimfix: error: "), run
    assert message in lines[0], run
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
    assert _snapshot(folder) == before


def test_verbose_shows_the_traceback(folder, cli):
    run = cli(["bad_models.py::RaisesInForward", "--input", "1x4", "--verbose"], folder)
    assert run.code == 2
    assert "Traceback" in run.stderr
    assert run.stderr.splitlines()[-1].startswith("dimfix: error: ")


def test_clean_run_prints_no_warnings(folder):
    run = run_process(["bad_models.py::Good", "--input", "1x4"], folder)
    assert run.code == 0, run
    assert "Warning" not in run.stderr and "NumPy" not in run.stderr, run
    assert run.stderr.splitlines() == ["bad_models.py: layer sizes are consistent, nothing to fix"]


def test_ctrl_c_during_the_trace_writes_nothing(folder):
    """A real SIGINT to the process group, as a terminal sends it: the model's
    child is killed, the parent says so, nothing is written."""
    before = _snapshot(folder)
    # The absolute path makes the command line this test's own: another run
    # of the suite on the machine must not count as a leftover child.
    target = f"{folder / 'bad_models.py'}::Forever"
    proc = subprocess.Popen([sys.executable, "-m", "dimfix", target,
                             "--input", "1x4"], cwd=folder, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for_the_models_child(target, proc)
    time.sleep(0.3)  # into its forward, spinning
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.strip() == "dimfix: interrupted; nothing written"
    assert _snapshot(folder) == before
    time.sleep(0.2)
    assert _running(target) == [], "a child outlived the interrupt"


def test_a_model_raising_keyboard_interrupt_is_the_models_error(folder, cli):
    run = cli(["bad_models.py::Interrupted", "--input", "1x4"], folder)
    assert run.code == 2, run
    assert run.stderr.strip() == ("dimfix: error: bad_models.py:64: in forward: the model's code "
                                  "raised KeyboardInterrupt")


def _wait_for_the_models_child(argument, proc, timeout=120.0):
    """Until the model runs: a process of ``argument`` that is neither dimfix
    nor its child (its warm worker) but the step's child the worker forked
    (without workers, dimfix's own child). A fixed sleep had to cover torch's
    import on a loaded machine, and the model spun on a core for the rest."""
    not_the_models = {proc.pid, None} if os.environ.get("DIMFIX_WORKER", "1") != "0" else {None}
    deadline = time.monotonic() + timeout
    while not any(pid != proc.pid and _parent(pid) not in not_the_models
                  for pid in _running(argument)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the model never started"
        time.sleep(0.05)


def _parent(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _running(argument):
    """Processes (the parent, or a forked child of it) with ``argument`` in their command line."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if argument.encode() in args:
                found.append(int(entry))
    return found


def test_a_file_copied_out_of_its_package_says_to_copy_the_package(tmp_path, cli):
    """torchvision's alexnet.py copied alone: its relative import fails, and
    the one line says what to do about it."""
    (tmp_path / "alexnet.py").write_text(
        "import torch.nn as nn\n"
        "from ._utils import widen\n\n\n"
        "class AlexNet(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(8, widen(4))\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(x)\n")
    before = (tmp_path / "alexnet.py").read_bytes()
    run = cli(["alexnet.py::AlexNet", "--input", "2x8"], tmp_path)
    assert run.code == 2, run
    assert run.stderr == (
        "dimfix: error: alexnet.py:2: in <module>: importing alexnet.py raised ImportError: "
        "attempted relative import with no known parent package (the file is part of a "
        "package: run dimfix on it inside a copy of the whole package, beside its "
        "__init__.py)\n")
    assert (tmp_path / "alexnet.py").read_bytes() == before
