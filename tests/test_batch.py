"""Batch runs: discovery, isolation, machine output, editors.

Most tests run dimfix's click command in this process (the ``cli`` fixture):
the models run in forked children either way. A real ``python -m dimfix``
stays where the process is the point: stdin mode, and a batch whose models
hang and end their process (the real exit status and summary).
"""

import json
import re
import subprocess
import sys

import jsonschema
import pytest

from conftest import ROOT, run_process

TWO_MODELS = '''\
import torch.nn as nn


# dimfix: input=2x10
class Chain(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(10, 20)
        self.b = nn.Linear(30, 5)

    def forward(self, x):
        return self.b(self.a(x))


# dimfix: input=2x8 num-classes=3
def make_head():
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
'''

HANGS = '''\
import torch.nn as nn


# dimfix: input=2x4
class Hangs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x):
        while True:
            pass
'''

CRASHES = '''\
import os

import torch.nn as nn


# dimfix: input=2x4
class Crashes(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x):
        os._exit(3)
'''

FIXED = TWO_MODELS.replace("nn.Linear(30, 5)", "nn.Linear(20, 5)").replace(
    "nn.Linear(16, 4))", "nn.Linear(16, 3))"
)
SCHEMA = json.loads((ROOT / "dimfix" / "schema.json").read_text())
LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<code>DIM\d{3}) (?P<message>.+)$")


@pytest.fixture
def project(tmp_path):
    (tmp_path / ".git").mkdir()  # the project root: config lookup stops here
    models = tmp_path / "models"
    models.mkdir()
    (models / "two.py").write_text(TWO_MODELS)
    (models / "plain.py").write_text("WIDTH = 3\n")
    return tmp_path


def test_folder_fixes_every_marked_model_in_one_combined_edit(project, cli):
    run = cli(["models"], project)
    assert run.code == 0, run
    assert (project / "models" / "two.py").read_text() == FIXED
    assert run.stderr.splitlines()[-1] == "2 models fixed."


def test_hanging_and_crashing_models_are_reported_and_the_rest_fixed(project):
    (project / "models" / "hangs.py").write_text(HANGS)
    (project / "models" / "crashes.py").write_text(CRASHES)
    run = run_process(["models", "--timeout", "3", "--jobs", "2"], project)
    assert run.code == 2, run
    assert (project / "models" / "two.py").read_text() == FIXED
    assert "models/hangs.py::Hangs: error: timed out after 3 s (--timeout)" in run.stderr
    assert ("models/crashes.py::Crashes: error: the model's code ended the process (os._exit(3)) "
            "before dimfix had a result") in run.stderr
    assert run.stderr.splitlines()[-1] == "2 models fixed, 2 failed."


def test_json_output_follows_the_schema(project, cli):
    (project / "models" / "crashes.py").write_text(CRASHES)
    run = cli(["models", "--format", "json", "--check"], project)
    doc = json.loads(run.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["exit_code"] == run.code == 2
    by_name = {m["name"]: m for m in doc["models"]}
    assert by_name["Chain"]["status"] == "would-fix"
    fix = by_name["Chain"]["fixes"][0]
    assert (fix["line"], fix["argument"], fix["old"], fix["new"]) == (9, "in_features", 30, 20)
    assert fix["replacement"] == "20"
    assert by_name["Crashes"]["error"]["kind"] == "Crashed"
    assert doc["summary"] == dict(models=3, fixed=0, pending=2, clean=0, cannot_fix=0, failed=1)
    assert (project / "models" / "two.py").read_text() == TWO_MODELS


def test_lines_output_matches_a_problem_matcher(project, cli):
    run = cli(["models", "--format", "lines", "--check"], project)
    assert run.code == 1, run
    lines = run.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        match = LINE.match(line)
        assert match, line
        assert match["code"] == "DIM001"
    assert lines[0].startswith("models/two.py:9:28: DIM001 b (Linear) in_features 30 -> 20")


def test_stdin_filename_round_trip(project):
    proc = subprocess.run(
        [sys.executable, "-m", "dimfix", "--stdin-filename", "models/two.py"],
        cwd=project, input=TWO_MODELS.encode(), capture_output=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() == FIXED
    assert (project / "models" / "two.py").read_text() == TWO_MODELS  # the buffer, not the file


def test_config_table_declares_models(project, cli):
    (project / "models" / "two.py").write_text(TWO_MODELS.replace("# dimfix: input=2x10\n", ""))
    (project / "pyproject.toml").write_text(
        '[tool.dimfix]\n\n[[tool.dimfix.models]]\ntarget = "models/two.py::Chain"\n'
        'input = ["2x10"]\n'
    )
    run = cli(["models/two.py", "--check"], project)
    assert run.code == 1, run
    assert "b (Linear) in_features 30 -> 20" in run.stderr


@pytest.mark.parametrize(
    "pyproject, message",
    [
        ('[tool.dimfix]\ninputs = ["2x10"]\n', "unknown key 'inputs'"),
        ('[tool.dimfix]\ninput = ["2xQ"]\n', "'Q' is not a positive whole number"),
        ('[[tool.dimfix.models]]\ninput = ["2x10"]\n', "'target' is missing"),
        ('[tool.dimfix]\nnum-classes = 0\n', "'num-classes' must be a whole number"),
        ("[tool.dimfix\n", "invalid TOML"),
    ],
)
def test_bad_config_is_one_clear_line(project, pyproject, message, cli):
    (project / "pyproject.toml").write_text(pyproject)
    run = cli(["models"], project)
    assert run.code == 2, run
    assert len(run.stderr.splitlines()) == 1, run
    assert "pyproject.toml" in run.stderr and message in run.stderr, run
    assert (project / "models" / "two.py").read_text() == TWO_MODELS


def test_bad_pragma_names_the_line_and_key(project, cli):
    (project / "models" / "two.py").write_text(TWO_MODELS.replace("input=2x10", "inptu=2x10"))
    run = cli(["models"], project)
    assert run.code == 2, run
    assert "models/two.py:4: unknown pragma key 'inptu'" in run.stderr


def test_exclude_skips_matching_files(project, cli):
    run = cli(["models", "--exclude", "two.py"], project)
    assert run.code == 2 and "no models found" in run.stderr, run
    assert (project / "models" / "two.py").read_text() == TWO_MODELS


def test_pre_commit_hook_entry_is_dimfix_check():
    hook = (ROOT / ".pre-commit-hooks.yaml").read_text()
    assert "entry: dimfix --check" in hook and "id: dimfix" in hook


PRINTS_THEN_RAISES = '''\
import torch.nn as nn


# dimfix: input=2x4
class Loud(nn.Module):
    def __init__(self):
        super().__init__()
        print("building Loud with care")
        self.a = nn.Linear(4, 4)

    def forward(self, x):
        print("about to fail")
        raise ValueError("no such luck")
'''


def test_verbose_batch_shows_what_a_failing_model_printed(project, cli):
    """Issue 22: -v in batch mode lost a failed model's printed output."""
    (project / "models" / "loud.py").write_text(PRINTS_THEN_RAISES)
    run = cli(["models", "-v", "--check"], project)
    assert run.code == 2, run
    assert "models/loud.py::Loud: the model's code printed:" in run.stderr, run
    assert "building Loud with care\nabout to fail" in run.stderr, run
    assert "models/loud.py:13: in forward: forward raised ValueError: no such luck" in run.stderr
