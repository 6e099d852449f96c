"""The boundary around the user's code (tests/data/hostile): nothing a model
does -- exit, print, hang, start threads, ignore signals, crash, allocate --
decides dimfix's exit code or output, and files keep every byte dimfix did
not mean to change.

Most cases run dimfix's click command in this process (the ``cli`` fixture):
the model's code runs in a forked child either way. A real ``python -m
dimfix`` stays where the process is what is tested: its exit code and one
line from a real interpreter (one case per output mode), a thread that must
not keep it alive, what reaches its stdout (a leak would bypass the in-process
runner), stdin mode, and files that would block or never end when read.
"""

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from conftest import ROOT, run_process

HOSTILE = ROOT / "tests" / "data" / "hostile"


@pytest.fixture
def folder(tmp_path):
    dest = tmp_path / "hostile"
    shutil.copytree(HOSTILE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _listing(folder):
    return sorted((p.relative_to(folder).as_posix(), p.read_bytes())
                  for p in folder.rglob("*") if p.is_file())


EXITS = {
    "ExitsInInit": "exits.py:14: in __init__: the model's code called sys.exit(0)",
    "ExitsInForward": "exits.py:26: in forward: the model's code called sys.exit(3)",
    "HardExit": "the model's code ended the process (os._exit(0)) before dimfix had a result",
    "Weird": "exits.py:44: in forward: the model's code raised BaseException: weird",
    "GenExit": "exits.py:53: in forward: the model's code raised GeneratorExit",
    "Segfaults": "the model's process died of signal SIGSEGV",
}


# One case per mode also through a real interpreter's exit status and streams.
REAL_PROCESS = {("HardExit", "--check"), ("Segfaults", "--dry-run"),
                ("ExitsInForward", "--format=json")}


@pytest.mark.parametrize("name", sorted(EXITS))
@pytest.mark.parametrize("mode", ["--check", "--dry-run", "--format=json"])
def test_a_model_that_leaves_is_exit_2_with_one_line(folder, name, mode, cli):
    before = _listing(folder)
    dimfix = run_process if (name, mode) in REAL_PROCESS else cli
    run = dimfix([f"exits.py::{name}", "--input", "2x3", mode], folder)
    assert run.code == 2, run
    assert "Traceback" not in run.stderr
    assert _listing(folder) == before
    if mode == "--format=json":
        doc = json.loads(run.stdout)
        assert doc["exit_code"] == 2
        assert doc["models"][0]["error"]["message"].endswith(EXITS[name])
    else:
        assert run.stderr.splitlines() == [f"dimfix: error: {EXITS[name]}"]


@pytest.mark.parametrize("name", ["SwallowsTimeout", "IgnoresAlarm"])
def test_the_timeout_stops_what_a_model_does_to_resist_it(folder, name, cli):
    run = cli([f"exits.py::{name}", "--input", "2x3", "--timeout", "2"], folder)
    assert run.code == 2, run
    assert run.stderr.splitlines() == ["dimfix: error: timed out after 2 s (--timeout)"]


def test_a_thread_left_running_does_not_keep_dimfix_alive(folder):
    run = run_process(["exits.py::StartsThread", "--input", "2x6"], folder)
    assert run.code == 0, run
    assert "nn.Linear(6, 2)" in (folder / "exits.py").read_text()


def test_max_memory_kills_a_model_that_allocates_past_it(folder, cli):
    run = cli(["exits.py::Allocates", "--input", "2x3", "--max-memory", "64MiB"], folder)
    assert run.code == 2, run
    assert len(run.stderr.splitlines()) == 1
    assert "memory" in run.stderr, run


def test_an_input_larger_than_max_memory_is_refused_up_front(folder, cli):
    run = cli(["plain.py::Net", "--input", "100000x100000x1000x30"], folder)
    assert run.code == 2, run
    assert run.stderr.startswith("dimfix: error: --input 100000x100000x1000x30: the input alone "
                                 "needs 1117587.1 GiB, over the "), run
    assert run.stderr.endswith(" limit (--max-memory)\n")


def test_the_models_prints_stay_out_of_json_and_the_editor_buffer(folder, cli):
    run = run_process(["prints.py::Chatty", "--input", "2x6", "--format", "json", "--check"], folder)
    assert run.code == 1, run
    doc = json.loads(run.stdout)
    assert doc["models"][0]["status"] == "would-fix"
    source = (folder / "prints.py").read_bytes()
    proc = subprocess.run([sys.executable, "-m", "dimfix", "--stdin-filename", "prints.py",
                           "prints.py::Chatty", "--input", "2x6"], cwd=folder, input=source,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == source.replace(b"nn.Linear(4, 2)", b"nn.Linear(6, 2)")
    verbose = cli(["prints.py::Chatty", "--input", "2x6", "--check", "-v",
                   "--exec-module"], folder)
    assert "hello from import" in verbose.stderr and "forward" in verbose.stderr


def test_stdin_mode_gives_the_buffer_back_when_the_model_exits(folder):
    source = (folder / "exits.py").read_bytes()
    proc = subprocess.run([sys.executable, "-m", "dimfix", "--stdin-filename", "exits.py",
                           "exits.py::ExitsInInit", "--input", "2x3"], cwd=folder, input=source,
                          capture_output=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == source


def test_the_module_runs_once_per_trace_and_data_beside_it_is_found(folder, cli):
    # Reading a file at import is work: by default it is skipped (definitions.py).
    run = cli(["beside.py::ReadsConfig", "--input", "2x6"], folder)
    assert run.code == 2 and "CFG is set by a statement dimfix skips" in run.stderr, run
    run = cli(["beside.py::ReadsConfig", "--input", "2x6", "--exec-module"], folder)
    assert run.code == 0, run
    assert 'nn.Linear(6, CFG["classes"])' in (folder / "beside.py").read_text()
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in HOSTILE.iterdir()
                                                              if p.name != "__pycache__")
    run = cli(["prints.py::Chatty", "--input", "2x6", "--dry-run", "-v",
               "--exec-module"], folder)
    # one import for the trace, one for the verification of the new text
    assert run.stderr.count("hello from import") == 2, run.stderr
    run = cli(["prints.py::Chatty", "--input", "2x6", "--dry-run", "-v"], folder)
    assert "\nhello from import" not in run.stderr and "\nbuilding" in run.stderr, run.stderr


@pytest.mark.parametrize("target", ["plain.py::os.makedirs", "plain.py::torch.os.renames",
                                    "plain.py::Linear", "plain.py::os"])
def test_name_must_be_defined_in_the_file(folder, target, cli):
    run = cli([target, "--input", "1x4", "--init", f"name='{folder}/PWNED'"], folder)
    assert run.code == 2, run
    assert not (folder / "PWNED").exists()
    assert len(run.stderr.splitlines()) == 1 and "Traceback" not in run.stderr


def test_a_nested_class_is_a_target(folder, cli):
    run = cli(["plain.py::Outer.Inner", "--input", "1x6"], folder)
    assert run.code == 0, run
    assert "nn.Linear(6, 2)" in (folder / "plain.py").read_text()


def test_branches_taken_only_in_training_are_fixed(folder, cli):
    run = cli(["modes.py::TrainOnlyHead", "--input", "2x8"], folder)
    assert run.code == 0, run
    assert "self.aux = nn.Linear(16, 4)" in (folder / "modes.py").read_text()


def test_modes_that_need_different_sizes_are_reported_not_written(folder, cli):
    before = _listing(folder)
    run = cli(["modes.py::ModesDisagree", "--input", "2x8"], folder)
    assert run.code == 1, run
    assert "cannot fix" in run.stderr
    assert _listing(folder) == before


def test_batchnorm_at_batch_one_in_train_mode_does_not_block_a_fix(folder, cli):
    run = cli(["modes.py::BatchNormAtBatchOne", "--input", "1x8", "-v"], folder)
    assert run.code == 0, run
    assert "self.fc2 = nn.Linear(16, 4)" in (folder / "modes.py").read_text()
    assert "in train mode" in run.stderr


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_only_regular_files_are_read(folder, kind):
    if kind == "fifo":
        os.mkfifo(folder / "fifo.py")
        target = "fifo.py::Net"
    else:
        target = "/dev/zero::Net"
    run = run_process([target, "--input", "1x4"], folder)
    assert run.code == 2, run
    assert "not a regular file" in run.stderr
    if kind == "fifo":
        run = run_process([".", "--input", "1x4"], folder)  # a folder holding a FIFO
        assert run.code == 2 and "Traceback" not in run.stderr, run


def test_odd_targets_get_one_line(folder, cli):
    (folder / "nul.py").write_bytes(b"import torch\n\x00\n")
    run = cli(["nul.py::Net", "--input", "1x4"], folder)
    assert run.stderr == "dimfix: error: nul.py:2: cannot parse: the file contains a NUL byte\n"
    run = cli(["a::b.py", "--input", "1x4"], folder)
    assert run.code == 2
    assert "'b.py' is not a Python name" in run.stderr, run
    run = cli(["plain.py::Net", "--input", "1x4", "--num-classes", "1000000000000"], folder)
    assert run.code == 2 and "internal error" not in run.stderr, run
    assert len(run.stderr.splitlines()) == 1, run


# -- bytes kept exactly ----------------------------------------------------------------------

NET = "import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n" \
      "        super().__init__()\n{body}\n    def forward(self, x):\n        return self.fc(x)\n"


def _fix(cli, folder, body, newline="\n"):
    text = NET.format(body=body).replace("\n", newline)
    path = folder / "net.py"
    path.write_bytes(text.encode("utf-8"))
    run = cli(["net.py::Net", "--input", "2x6"], folder)
    assert run.code == 0, run
    return text, path.read_bytes().decode("utf-8")


def test_form_feed_and_line_separator_are_not_line_breaks(folder, cli):
    body = "        # \u2028 a comment with a line separator\n        self.fc = nn.Linear(4, 2)\x0c\n"
    text, fixed = _fix(cli, folder, body)
    assert fixed == text.replace("Linear(4, 2)", "Linear(6, 2)")


def test_a_cr_only_file_keeps_its_newlines(folder, cli):
    text, fixed = _fix(cli, folder, "        self.fc = nn.Linear(4, 2)\n", newline="\r")
    assert fixed == text.replace("Linear(4, 2)", "Linear(6, 2)")


def test_whitespace_only_lines_beside_the_fix_are_kept(folder, cli):
    body = "        \n        self.fc = nn.Linear(4,2)   \n    \t\n"
    text, fixed = _fix(cli, folder, body)
    assert fixed == text.replace("Linear(4,2)", "Linear(6,2)")


def test_setuid_bits_and_hard_links_are_kept(folder, cli):
    path = folder / "net.py"
    path.write_text(NET.format(body="        self.fc = nn.Linear(4, 2)\n"))
    os.chmod(path, 0o4755)
    os.link(path, folder / "twin.py")
    inode = os.stat(path).st_ino
    run = cli(["net.py::Net", "--input", "2x6"], folder)
    assert run.code == 0, run
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o4755
    assert st.st_ino == inode
    assert (folder / "twin.py").read_text() == path.read_text()
    assert "nn.Linear(6, 2)" in path.read_text()


def test_a_value_written_in_an_installed_package_is_reported_not_edited(tmp_path, cli):
    lib = tmp_path / "vendor" / "site-packages" / "headlib"
    lib.mkdir(parents=True)
    helper = "import torch.nn as nn\n\n\ndef make_head(width=32):\n    return nn.Linear(width, 10)\n"
    (lib / "__init__.py").write_text(helper)
    (tmp_path / "net.py").write_text(
        "import os\nimport sys\n\nsys.path.insert(0, os.path.join(os.path.dirname(__file__), "
        "'vendor', 'site-packages'))\n\nimport torch.nn as nn\nfrom headlib import make_head\n\n\n"
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.body = nn.Linear(8, 64)\n        self.head = make_head()\n\n"
        "    def forward(self, x):\n        return self.head(self.body(x))\n")
    before = _listing(tmp_path)
    run = cli(["net.py::Net", "--input", "2x8"], tmp_path)
    assert run.code == 1, run
    assert "headlib.make_head, installed code that dimfix does not edit" in run.stderr, run
    assert _listing(tmp_path) == before


def test_a_model_that_requires_cuda_says_so(folder, cli):
    run = cli(["needs_gpu.py::NeedsCuda", "--input", "2x4"], folder)
    assert run.code == 2, run
    assert len(run.stderr.splitlines()) == 1
    assert "the model requires CUDA" in run.stderr, run


def test_a_parent_that_ran_parallel_cpu_work_still_gets_results(tmp_path):
    """OpenMP does not survive fork: an editor's server or a notebook that ran
    torch on several threads before calling the API must not hang the child."""
    import torch

    from conftest import copy_case
    from dimfix.api import fix_file

    torch.set_num_threads(2)
    torch.ones(512, 512) @ torch.ones(512, 512)
    case = copy_case("three_wrong_layers", tmp_path)
    result = fix_file(str(case / "broken.py"), ["2x3x32x32"], name="SmallConvNet", timeout=30)
    assert len(result.edits) == 3


def test_the_guards_step_aside_when_told(tmp_path, cli):
    """Negative controls: --unbatched and --output say the input and output are meant."""
    shutil.copy(ROOT / "tests" / "data" / "bad_models.py", tmp_path / "bad_models.py")
    run = cli(["bad_models.py::TinyConv", "--input", "3x8x8", "--unbatched", "--check"],
              tmp_path)
    assert run.code == 0, run
    run = cli(["bad_models.py::TwoHeads", "--input", "2x4", "--num-classes", "3",
               "--output", "scores", "--dry-run"], tmp_path)
    assert run.code == 0 and "scores (Linear) out_features 5 -> 3" in run.stderr, run
    assert "box (Linear)" not in run.stderr, run  # the regressor keeps its 4 outputs
    assert "box" not in run.stdout.replace("self.box", "")


@pytest.mark.parametrize("name", ["FoldsTheBatch", "FoldsTheBatchInTraining"])
def test_a_size_that_fits_one_batch_only_is_not_written(folder, cli, name):
    before = _listing(folder)
    run = cli([f"modes.py::{name}", "--input", "1x8"], folder)
    assert run.code == 2, run
    assert "with the batch doubled" in run.stderr and "depends on the batch size" in run.stderr
    assert _listing(folder) == before
