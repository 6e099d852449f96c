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
