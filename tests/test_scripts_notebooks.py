"""Training scripts and notebooks: definitions-only loading, --set, --exec-module,
and notebooks fixed in their cells (the fixtures script_* and notebook_*)."""

import json
import os

import pytest

from conftest import copy_case


def _listing(folder):
    return sorted(os.listdir(folder))


def test_training_script_dry_run_runs_no_training_and_leaves_no_file(tmp_path, cli):
    folder = copy_case("script_training_loop", tmp_path)
    before = _listing(folder)
    raw = (folder / "broken.py").read_bytes()
    run = cli(["broken.py::ConvNet", "--input", "1x1x32x32", "--dry-run", "-v"], folder)
    assert run.code == 0, run
    assert "-        self.fc = nn.Linear(7 * 7 * 32, num_classes)" in run.stdout
    assert "+        self.fc = nn.Linear(8 * 8 * 32, num_classes)" in run.stdout
    assert "Epoch [" not in run.stderr  # the loop's prints: it never ran
    assert _listing(folder) == before  # no model.ckpt, no temporary file
    assert (folder / "broken.py").read_bytes() == raw


def test_training_script_is_fixed_with_the_one_literal(tmp_path, cli):
    folder = copy_case("script_training_loop", tmp_path)
    before = _listing(folder)
    run = cli(["broken.py::ConvNet", "--input", "1x1x32x32"], folder)
    assert run.code == 0, run
    assert _listing(folder) == before
    assert (folder / "broken.py").read_bytes() == (folder / "expected.py").read_bytes()


def test_verbose_lists_the_skipped_statements(tmp_path, cli):
    folder = copy_case("script_training_loop", tmp_path)
    run = cli(["broken.py::ConvNet", "--input", "1x1x32x32", "--check", "-v"], folder)
    assert run.code == 1, run
    assert ("broken.py: note: broken.py:54: skipped (does work at import): "
            "for epoch in range(num_epochs): ...") in run.stderr
    assert "broken.py: note: broken.py:72: skipped (does work at import): torch.save(" \
        in run.stderr
    quiet = cli(["broken.py::ConvNet", "--input", "1x1x32x32", "--check"], folder)
    assert "skipped" not in quiet.stderr


def test_argparse_defaults_resolve_and_nothing_is_created(tmp_path, cli):
    folder = copy_case("script_argparse_defaults", tmp_path)
    before = _listing(folder)
    run = cli(["broken.py::Generator", "--input", "2x100", "--dry-run", "-v"], folder)
    assert run.code == 0, run
    assert "parse_args(...) reads defaults: parse_args([])" in run.stderr
    assert _listing(folder) == before  # os.makedirs("images") was skipped


VOCAB_ERROR = ("dimfix: error: broken.py:12: vocab_size is set by a statement dimfix skips "
               "(it does work at import); pass --set vocab_size=VALUE or --exec-module")


def test_a_name_only_a_skipped_statement_sets_is_one_line_with_the_fix(tmp_path, cli):
    folder = copy_case("script_dataset_vocab", tmp_path)
    raw = (folder / "broken.py").read_bytes()
    run = cli(["broken.py::CharRNN", "--input", "long:1x32"], folder)
    assert run.code == 2, run
    assert run.stderr.splitlines() == [VOCAB_ERROR]
    assert (folder / "broken.py").read_bytes() == raw


@pytest.mark.parametrize("flags, says", [
    (["--set", "embedding_dim=32"], "broken.py:5: --set embedding_dim: embedding_dim is set "
                                    "by a statement dimfix runs"),
    (["--set", "nothing=1"], "broken.py: --set nothing: the file has no statement that binds "
                             "nothing"),
    (["--set", "vocab_size=len(chars)"], "--set 'vocab_size=len(chars)': 'len(chars)' is not "
                                         "a Python literal"),
    (["--set", "vocab_size"], "--set 'vocab_size' must be KEY=VALUE"),
    (["--set", "vocab_size=65", "--exec-module"], "with --exec-module nothing is skipped"),
])
def test_bad_set_is_one_line_and_writes_nothing(tmp_path, cli, flags, says):
    folder = copy_case("script_dataset_vocab", tmp_path)
    raw = (folder / "broken.py").read_bytes()
    run = cli(["broken.py::CharRNN", "--input", "long:1x32", *flags], folder)
    assert run.code == 2, run
    assert len(run.stderr.splitlines()) == 1 and says in run.stderr, run
    assert (folder / "broken.py").read_bytes() == raw


MARKER = """\
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x)


with open("ran.txt", "w") as f:
    f.write("the module ran")
"""


def test_exec_module_executes_the_whole_file(tmp_path, cli):
    (tmp_path / "net.py").write_text(MARKER)
    assert cli(["net.py::Net", "--input", "1x4", "--dry-run"], tmp_path).code == 0
    assert not (tmp_path / "ran.txt").exists()
    run = cli(["net.py::Net", "--input", "1x4", "--dry-run", "--exec-module"], tmp_path)
    assert run.code == 0, run
    assert (tmp_path / "ran.txt").exists()


def test_a_model_instance_target_runs_its_own_statement_only(tmp_path, cli):
    (tmp_path / "net.py").write_text(MARKER + "\nmodel = Net()\n")
    run = cli(["net.py::model", "--input", "1x4"], tmp_path)
    assert run.code == 0, run
    assert "nn.Linear(4, 2)" in (tmp_path / "net.py").read_text()
    assert not (tmp_path / "ran.txt").exists()


def test_an_instance_built_inside_a_block_names_its_class(tmp_path, cli):
    (tmp_path / "net.py").write_text(MARKER + "\nfor _ in range(1):\n    model = Net()\n")
    run = cli(["net.py::model", "--input", "1x4"], tmp_path)
    assert run.code == 2, run
    assert run.stderr.splitlines() == [
        "dimfix: error: net.py:17: model is set by a statement dimfix skips (it does work at "
        "import); name the model's class or factory, or pass --exec-module"]


# -- notebooks -------------------------------------------------------------------------------


def test_notebook_changes_one_line_and_keeps_outputs(tmp_path, cli):
    nbformat = pytest.importorskip("nbformat")
    folder = copy_case("notebook_magics_outputs", tmp_path)
    before = (folder / "broken.ipynb").read_bytes()
    run = cli(["broken.ipynb::Net", "--input", "64x1x28x28"], folder)
    assert run.code == 0, run
    after = (folder / "broken.ipynb").read_bytes()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(before.splitlines()) == len(after.splitlines())
    assert changed == [(b'    "        self.fc1 = nn.Linear(64 * 14 * 14, 128)  # 28x28 in\\n",',
                        b'    "        self.fc1 = nn.Linear(64 * 12 * 12, 128)  # 28x28 in\\n",')]
    old, new = json.loads(before), json.loads(after)
    for a, b in zip(old["cells"], new["cells"]):
        assert {k: v for k, v in a.items() if k != "source"} == \
            {k: v for k, v in b.items() if k != "source"}
    nbformat.validate(nbformat.reads(after.decode(), as_version=4))
    assert "--- broken.ipynb:cell 5\n+++ broken.ipynb:cell 5  (fixed)\n" in run.stdout
    assert "broken.ipynb:cell 5:6:30: fc1 (Linear) in_features 12544 -> 9216" in run.stderr


def test_notebook_positions_name_the_cell_in_lines_and_json(tmp_path, cli):
    folder = copy_case("notebook_magics_outputs", tmp_path)
    args = ["broken.ipynb::Net", "--input", "64x1x28x28", "--check"]
    lines = cli(args + ["--format", "lines"], folder)
    assert lines.code == 1, lines
    assert lines.stdout.startswith("broken.ipynb:cell 5:6:30: DIM001 fc1 (Linear) in_features")
    doc = json.loads(cli(args + ["--format", "json"], folder).stdout)
    fix = doc["models"][0]["fixes"][0]
    assert (doc["models"][0]["file"], fix["file"], fix["line"], fix["col"]) == \
        ("broken.ipynb", "broken.ipynb:cell 5", 6, 30)


def test_notebook_pragma_and_folder_discovery(tmp_path, cli):
    folder = copy_case("notebook_cells_apart", tmp_path)
    run = cli([".", "--check"], folder)
    assert run.code == 1, run
    assert "broken.ipynb:cell 2:1:15: in_channels 1 -> 3" in run.stderr


NOTEBOOK_VOCAB = {
    "cells": [
        {"cell_type": "code", "execution_count": None, "id": "a", "metadata": {}, "outputs": [],
         "source": ["import torch.nn as nn\n", "words = open('words.txt').read().split()\n",
                    "vocab_size = len(set(words))"]},
        {"cell_type": "code", "execution_count": None, "id": "b", "metadata": {}, "outputs": [],
         "source": ["class Net(nn.Module):\n", "    def __init__(self):\n",
                    "        super().__init__()\n", "        self.fc = nn.Linear(8, vocab_size)\n",
                    "\n", "    def forward(self, x):\n", "        return self.fc(x)"]},
    ],
    "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
}


def test_notebook_errors_name_the_cell(tmp_path, cli):
    (tmp_path / "nb.ipynb").write_text(json.dumps(NOTEBOOK_VOCAB, indent=1) + "\n")
    run = cli(["nb.ipynb::Net", "--input", "1x8"], tmp_path)
    assert run.code == 2, run
    assert run.stderr.splitlines() == [
        "dimfix: error: nb.ipynb:cell 1:3: vocab_size is set by a statement dimfix skips (it "
        "does work at import); pass --set vocab_size=VALUE or --exec-module"]
    assert cli(["nb.ipynb::Net", "--input", "1x8", "--set", "vocab_size=100"], tmp_path).code == 0


def test_a_broken_notebook_is_one_line(tmp_path, cli):
    (tmp_path / "nb.ipynb").write_text('{"cells": [')
    run = cli(["nb.ipynb::Net", "--input", "1x8"], tmp_path)
    assert run.code == 2, run
    assert len(run.stderr.splitlines()) == 1
    assert run.stderr.startswith("dimfix: error: nb.ipynb: cannot read the notebook: ")
