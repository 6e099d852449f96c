"""Issue 26: the rough edges a new user hit, tried as one would, one test per
item (the suppression comment has its fixture, suppress_ignore_comment)."""

import subprocess
import sys

import pytest

from conftest import copy_case

NET = '''\
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(10, 20)
        self.b = nn.Linear(30, 5)

    def forward(self, x):
        return self.b(self.a(x))
'''


@pytest.fixture
def project(tmp_path):
    (tmp_path / ".git").mkdir()  # the project root: config lookup stops here
    return tmp_path


def stdin(args, cwd, text):
    proc = subprocess.run([sys.executable, "-m", "dimfix", *args], cwd=cwd, input=text.encode(),
                          capture_output=True, timeout=300)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def test_check_diff_prints_the_diff_and_exits_1_as_black_does(cli, project):
    (project / "net.py").write_text(NET)
    run = cli(["net.py::Net", "--input", "2x10", "--check", "--diff"], project)
    assert run.code == 1, run
    assert run.stdout.startswith("--- net.py\n+++ net.py  (fixed)\n"), run
    assert "+        self.b = nn.Linear(20, 5)" in run.stdout
    assert "1 fix pending, nothing written (--check)" in run.stderr
    assert (project / "net.py").read_text() == NET
    run = cli(["net.py::Net", "--input", "2x10", "--check"], project)
    assert (run.code, run.stdout) == (1, ""), run  # --check alone prints no diff
    clean = NET.replace("Linear(30, 5)", "Linear(20, 5)")
    (project / "net.py").write_text(clean)
    run = cli(["net.py::Net", "--input", "2x10", "--check", "--diff"], project)
    assert (run.code, run.stdout) == (0, ""), run


def test_dash_reads_stdin_as_black_does(project):
    (project / "net.py").write_text(NET)
    code, out, err = stdin(["-", "--stdin-filename", "net.py", "--input", "2x10"], project, NET)
    assert code == 0 and out == NET.replace("Linear(30, 5)", "Linear(20, 5)"), err
    code, out, err = stdin(["-::Net", "--input", "2x10", "--check", "--diff"], project, NET)
    assert code == 1 and out.startswith("--- stdin.py\n+++ stdin.py  (fixed)\n"), (out, err)
    assert "stdin.py:8:28: b (Linear) in_features 30 -> 20" in err, err
    code, out, err = stdin(["-", "net.py"], project, NET)
    assert code == 2 and "'-' (stdin) must be the only target" in err, err
    assert (project / "net.py").read_text() == NET


def test_a_model_named_in_the_stdin_filename_is_shown_where_it_goes(cli, project):
    """``--stdin-filename net.py::Net`` (the model in the path): one line that
    says where the name goes, not "name one as net.py::Net::NAME"; and, as in
    every failure in editor mode, the buffer that came in goes back out whole."""
    run = cli(["--stdin-filename", "net.py::Net", "--input", "2x10"], project, input=NET)
    assert run.code == 2 and run.stdout == NET, run
    assert run.stderr == ("dimfix: error: --stdin-filename takes a path; name the model on the "
                          "target: dimfix -::Net --stdin-filename net.py\n"), run
    # Bad input found before the buffer is read (an unparsable --input): the same.
    run = cli(["-::Net", "--stdin-filename", "net.py", "--input", "2y10"], project, input=NET)
    assert run.code == 2 and run.stdout == NET, run
    # --diff prints a diff or nothing: nothing.
    run = cli(["--stdin-filename", "net.py::Net", "--input", "2x10", "--diff"], project,
              input=NET)
    assert run.code == 2 and run.stdout == "", run


MNIST = '''\
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.fc1 = nn.Linear(5408, 10)

    def forward(self, x):
        return self.fc1(F.max_pool2d(F.relu(self.conv1(x)), 2).flatten(1))


# dimfix:
class Marked(Net):
    pass
'''


def test_a_config_default_input_is_for_declared_models_and_its_origin_is_said(cli, project):
    (project / "pyproject.toml").write_text('[tool.dimfix]\ninput = ["2x3x32x32"]\n')
    (project / "mnist.py").write_text(MNIST)
    run = cli(["mnist.py::Net", "--check"], project)  # forgot --input: not rewritten for RGB
    assert run.code == 2, run
    assert ("give a sample input with --input SHAPE, e.g. --input 1x3x32x32 (input = 2x3x32x32 "
            "in pyproject.toml is a default only for the models a '# dimfix:' pragma or "
            "[[tool.dimfix.models]] declares)") in run.stderr, run
    run = cli(["mnist.py::Marked", "--check"], project)  # declared: the default applies
    assert run.code == 1, run
    assert "mnist.py::Marked: input 2x3x32x32 from [tool.dimfix] input in pyproject.toml" \
        in run.stderr, run
    run = cli(["mnist.py::Net", "--input", "2x1x28x28", "--check"], project)
    assert run.code == 0 and "from" not in run.stderr, run  # given: nothing to say
    (project / "mnist.py").write_text(MNIST.replace("# dimfix:", "# dimfix: input=2x1x28x28"))
    run = cli(["mnist.py::Marked", "--check"], project)
    assert run.code == 0, run
    assert "mnist.py::Marked: input 2x1x28x28 from its '# dimfix:' pragma" in run.stderr, run
    run = cli(["mnist.py", "--check"], project)  # the file's declared models: nothing to say
    assert run.code == 0 and "from its" not in run.stderr, run
    assert (project / "mnist.py").read_text().count("nn.Conv2d(1, 32, 3, 1)") == 1


def test_a_model_named_with_one_colon_is_shown_the_two(cli, project):
    (project / "net.py").write_text(NET)
    run = cli(["net.py:Net", "--input", "2x10"], project)
    assert run.code == 2, run
    assert run.stderr == ("dimfix: error: net.py:Net: no such file or folder; to name a model "
                          "write PATH::NAME: net.py::Net\n"), run


def test_a_syntax_error_without_a_name_is_said_with_its_position(cli, project):
    (project / "net.py").write_text(NET.replace("def __init__(self):", "def __init__(self)"))
    run = cli(["net.py", "--input", "2x10"], project)
    assert run.code == 2, run
    assert "dimfix: error: net.py:5:23: cannot parse: expected ':'" in run.stderr, run
    assert "no nn.Module subclass" not in run.stderr


def test_a_class_that_takes_a_class_names_the_factories_that_build_it(cli, tmp_path):
    case = copy_case("knock_on_residual_width", tmp_path)
    run = cli(["broken.py::ResNet", "--input", "2x3x32x32"], case)
    assert run.code == 2, run
    assert ("ResNet needs arguments (block, num_blocks); this file builds it in ResNet18(): "
            "name that as the target, broken.py::ResNet18") in run.stderr, run
    assert "--init" not in run.stderr


EMBED = '''\
import torch.nn as nn


class TextClassificationModel(nn.Module):
    def __init__(self, vocab_size=95811, embed_dim=64, num_class=4):
        super(TextClassificationModel, self).__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.fc = nn.Linear(embed_dim, num_class)

    def forward(self, text):
        return self.fc(self.embedding(text).mean(1))
'''


def test_token_ids_given_as_floats_say_use_long(cli, project):
    (project / "text.py").write_text(EMBED)
    run = cli(["text.py::TextClassificationModel", "--input", "4x20"], project)
    assert run.code == 2, run
    assert ("--input 4x20 gives embedding (Embedding) floats, but it takes token ids: use "
            "--input long:4x20") in run.stderr, run
    run = cli(["text.py::TextClassificationModel", "--input", "long:4x20"], project)
    assert run.code == 0, run


IGNORED = '''\
import torch.nn as nn


def conv_bn(i, o):
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = conv_bn(1, 8)  # dimfix: ignore
        self.fc = nn.Linear(400, 10)

    def forward(self, x):
        x = self.stem(x)
        x = x.view(-1, 400)  # dimfix: ignore
        return self.fc(x)
'''


def test_ignore_on_a_helper_call_and_on_a_view(cli, project):
    """The comment on the call of a helper that builds layers, and on a view:
    neither is fixed or reported, and the trace goes on past them."""
    (project / "net.py").write_text(IGNORED)
    run = cli(["net.py::Net", "--input", "2x3x4x4"], project)
    assert run.code == 0, run
    assert (project / "net.py").read_text() == IGNORED.replace("Linear(400, 10)", "Linear(128, 10)")
    assert "stem" not in run.stderr and "view" not in run.stderr, run


ENV_WIDTH = '''\
import os

import torch.nn as nn

HIDDEN = int(os.environ.get("HIDDEN", "64"))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(20, 32)
        self.fc2 = nn.Linear(HIDDEN, 10)

    def forward(self, x):
        return self.fc2(self.fc1(x))
'''


def test_a_name_kept_says_other_uses_only_where_there_are_some(cli, project):
    """``HIDDEN`` comes from the environment and only fc2 reads it: the literal
    at the call is the fix, and the reason does not claim other code needs it."""
    (project / "net.py").write_text(ENV_WIDTH)
    run = cli(["net.py::Net", "--input", "2x20", "--dry-run"], project)
    assert run.code == 0, run
    assert "+        self.fc2 = nn.Linear(32, 10)" in run.stdout, run
    assert ("net.py:12:30: fc2 (Linear) in_features 64 -> 32: input arrives as 2x32 (`HIDDEN` is "
            "read only here; dimfix cannot follow it to where its value is written)") \
        in run.stderr, run
    assert "other uses" not in run.stderr, run
    (project / "net.py").write_text(ENV_WIDTH.replace(
        "nn.Linear(20, 32)", "nn.Linear(20, 32)\n        self.width = HIDDEN"))
    run = cli(["net.py::Net", "--input", "2x20", "--dry-run"], project)
    assert "(`HIDDEN` kept: other uses need it as it is)" in run.stderr, run


def test_a_lone_file_with_an_undeclared_model_says_how_to_name_it(cli, project):
    """``dimfix net.py`` means "check this": a file that defines a model but
    declares none is one error line, exit 2, not a silent 'no models found'.
    pre-commit's hooks (--force-exclude), several files and folders keep
    passing files that declare no model."""
    (project / "net.py").write_text(NET)
    run = cli(["net.py", "--dry-run"], project)
    assert (run.code, run.stdout) == (2, ""), run
    assert run.stderr == ("dimfix: error: net.py: no model declared; name it and give a sample "
                          "input: dimfix net.py::Net --input SHAPE, or mark it with a "
                          "'# dimfix: input=SHAPE' pragma above its class\n"), run
    (project / "util.py").write_text("def square(x):\n    return x * x\n")
    for args in (["net.py", "--check", "--force-exclude"], ["net.py", "util.py", "--check"],
                 ["util.py", "--check"]):
        run = cli(args, project)
        assert run.code == 0, (args, run)
    (project / "net.py").write_text(NET + NET.replace("class Net", "class Other"))
    run = cli(["net.py"], project)
    assert run.code == 2 and "dimfix net.py::NAME --input SHAPE (it defines Net, Other)" \
        in run.stderr, run
    assert (project / "net.py").read_text() == NET + NET.replace("class Net", "class Other")


def _notebook(*cells):
    """nbformat 4 JSON: a markdown cell for each str starting with '#! ', code else."""
    import json

    def cell(text):
        lines = text.splitlines(keepends=True)
        if text.startswith("#! "):
            return {"cell_type": "markdown", "metadata": {}, "source": [text[3:]]}
        return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                "source": lines}

    return json.dumps({"cells": [cell(c) for c in cells], "metadata": {}, "nbformat": 4,
                       "nbformat_minor": 5}, indent=1)


ECG_CELLS = (
    "#! # ECG beats\n",
    "import torch\nimport torch.nn as nn\n",
    "#! ## The model\n",
    "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
    "        self.fc = nn.Linear(10, 2)\n\n    def forward(self, x):",
    "#! Train it\n",
    "model = Net()\nprint(model)\n",
)


def test_a_notebook_that_does_not_parse_names_the_cell_and_line_of_the_cause(cli, project):
    """forward's body is missing at the end of cell 4; Python finds the gap in
    cell 6 and names the def by its line in the joined script (line 9). The
    error is placed at the def, in its cell, and says the line as the cell's."""
    (project / "nb.ipynb").write_text(_notebook(*ECG_CELLS))
    expected = ("dimfix: error: nb.ipynb:cell 4:6: cannot parse: expected an indented block "
                "after function definition on line 6\n")
    for args in (["nb.ipynb::Net", "--input", "2x10"], ["nb.ipynb", "--input", "2x10"]):
        run = cli(args, project)
        assert (run.code, run.stderr) == (2, expected), (args, run)
    cells = list(ECG_CELLS)
    cells[3] = cells[3].replace("def __init__(self):", "def __init__(self)")
    (project / "nb.ipynb").write_text(_notebook(*cells))
    run = cli(["nb.ipynb", "--input", "2x10"], project)  # not its JSON read as Python
    assert run.stderr == "dimfix: error: nb.ipynb:cell 4:2:23: cannot parse: expected ':'\n", run


def test_a_failed_model_of_stdin_or_a_folder_is_one_line(project, cli):
    """The contract: an error is one line on stderr, exit 2; a run of one model
    that failed adds no '1 model failed.' summary. (The folder's run needs no
    stdin, nor a process of its own.)"""
    bad = NET.replace("def __init__(self):", "def __init__(self)")
    code, out, err = stdin(["-::Net", "--input", "2x10"], project, bad)
    assert (code, err) == (2, "stdin.py::Net: error: stdin.py:5:23: cannot parse: "
                           "expected ':'\n"), err
    (project / "models").mkdir()
    marked = bad.replace("class Net", "# dimfix: input=2x10\nclass Net")
    (project / "models" / "net.py").write_text(marked)
    run = cli(["models"], project)
    assert (run.code, run.stderr) == (2, "models/net.py::Net: error: models/net.py:6:23: cannot "
                                      "parse: expected ':'\n"), run
