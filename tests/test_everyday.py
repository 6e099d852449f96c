"""Issue 13: the rough edges of everyday use (CI, pre-commit, editors), one
test per item. The real pre-commit run is in test_pre_commit.py, the API in
test_api.py.

Items about what the command does run dimfix's click command in this process
(the ``cli`` fixture); a real ``python -m dimfix`` where the process is the
point: stdin mode, escape codes into a pipe, a quiet run's silence (what a real
interpreter would print, warnings included), shell completion.
"""

import os
import subprocess
import sys

import pytest

from conftest import copy_case, run_process

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
MARKED = NET.replace("class Net", "# dimfix: input=2x10\nclass Net")


def model(name, width=30, sleep=False):
    body = "time.sleep(300)\n        " if sleep else ""
    return f'''

# dimfix: input=2x10
class {name}(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(10, 20)
        self.b = nn.Linear({width}, 5)

    def forward(self, x):
        {body}return self.b(self.a(x))
'''


@pytest.fixture
def project(tmp_path):
    (tmp_path / ".git").mkdir()  # the project root: config lookup stops here
    return tmp_path


def stdin(args, cwd, text):
    proc = subprocess.run([sys.executable, "-m", "dimfix", *args], cwd=cwd, input=text.encode(),
                          capture_output=True, timeout=300)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


# 1 -------------------------------------------------------------------------------------------

def test_1_named_files_without_models_pass_and_force_exclude_applies_the_config(project, cli):
    (project / "utils").mkdir()
    (project / "utils" / "mathy.py").write_text("def square(x):\n    return x * x\n")
    run = cli(["utils/mathy.py", "--check"], project)  # as the hook names it
    assert run.code == 0, run
    (project / "legacy.py").write_text(MARKED)
    (project / "pyproject.toml").write_text('[tool.dimfix]\nexclude = ["legacy.py"]\n')
    run = cli(["legacy.py", "utils/mathy.py", "--check", "--force-exclude"], project)
    assert run.code == 0, run
    run = cli(["legacy.py", "--check"], project)  # named without the flag: checked
    assert run.code == 1, run
    run = cli(["."], project)  # a folder with nothing marked is still an error
    assert run.code == 2, run


# 2 -------------------------------------------------------------------------------------------

def test_2_stdin_input_without_a_name_uses_the_one_model_with_file_exit_codes(project, cli):
    (project / "net.py").write_text(NET)
    code, out, err = stdin(["--stdin-filename", "net.py", "--input", "2x10", "--check"],
                           project, NET)
    assert code == 1 and "b (Linear) in_features 30 -> 20" in err, err
    run = cli(["net.py", "--input", "2x10", "--check"], project)
    assert run.code == 1 and run.stdout == "" and "in_features 30 -> 20" in run.stderr, run
    assert (project / "net.py").read_text() == NET  # --check writes nothing
    code, out, err = stdin(["--stdin-filename", "net.py", "--input", "2x10", "--diff"],
                           project, NET)
    assert code == 0, err
    assert out.startswith("--- net.py\n+++ net.py  (fixed)\n") and "+        self.b = nn.Linear(20, 5)" in out
    two = NET + NET.replace("class Net", "class Other").split("\n\n\n", 1)[1]
    code, out, err = stdin(["--stdin-filename", "net.py", "--input", "2x10"], project, two)
    assert code == 2 and "Net, Other: name one as net.py::NAME" in err, err
    assert (project / "net.py").read_text() == NET


# 3 -------------------------------------------------------------------------------------------

def test_3_timeout_is_reported_as_given_and_a_fast_neighbour_keeps_its_fix(project, cli):
    (project / "models").mkdir()
    both = "import time\n\nimport torch.nn as nn\n" + model("Slow", sleep=True) + model("Fast")
    (project / "models" / "both.py").write_text(both)
    (project / "models" / "other.py").write_text("import torch.nn as nn\n" + model("Other"))
    run = cli(["models", "--timeout", "3", "--jobs", "2"], project)
    assert run.code == 2, run
    assert "models/both.py::Slow: error: timed out after 3 s (--timeout)" in run.stderr, run
    assert "Fast: error" not in run.stderr
    assert "nn.Linear(20, 5)" in (project / "models" / "other.py").read_text()
    fixed = (project / "models" / "both.py").read_text()
    assert fixed == both.replace(model("Fast"), model("Fast", width=20)), fixed


# 4 -------------------------------------------------------------------------------------------

def test_4_color_forces_escape_codes_into_a_pipe(project):
    (project / "net.py").write_text(NET)
    run = run_process(["net.py::Net", "--input", "2x10", "--dry-run", "--color"], project)
    assert "\x1b[" in run.stdout, run
    run = run_process(["net.py::Net", "--input", "2x10", "--dry-run"], project)
    assert "\x1b[" not in run.stdout


# 5 -------------------------------------------------------------------------------------------

def test_5_files_and_models_come_in_sorted_order(project, cli):
    from dimfix.config import ModelSpec
    from dimfix.discover import discover

    for name in ("b.py", "a.py"):
        (project / name).write_text("import torch.nn as nn\n" + model("Zed") + model("Alpha"))
    jobs, _ = discover([str(project / "b.py"), str(project / "a.py")], ModelSpec("", ""))
    assert [os.path.basename(j.path) for j in jobs] == ["a.py", "b.py"]
    assert [m.name for m in jobs[0].models] == ["Alpha", "Zed"]
    run = cli(["b.py", "a.py", "--format", "lines", "--check"], project)
    where = [line.split(": DIM")[0] for line in run.stdout.splitlines()]
    assert where == ["a.py:20:28", "a.py:9:28", "b.py:20:28", "b.py:9:28"], run  # Alpha, Zed


# 6 -------------------------------------------------------------------------------------------

def test_6_exclude_is_relative_to_the_current_folder(project, cli):
    models = project / "mypkg" / "models"
    models.mkdir(parents=True)
    (models / "net.py").write_text(MARKED)
    run = cli(["mypkg", "--exclude", "mypkg/models/*", "--check"], project)
    assert run.code == 2 and "no models found" in run.stderr, run  # nothing left
    run = cli(["mypkg", "--exclude", "models/*", "--check"], project)  # as before
    assert run.code == 2 and "no models found" in run.stderr, run


# 7 -------------------------------------------------------------------------------------------

def test_7_lines_format_puts_a_failed_model_at_the_line_it_names(project, cli):
    (project / "net.py").write_text(NET.replace("return self.b(self.a(x))",
                                                "raise ValueError('boom')"))
    run = cli(["net.py::Net", "--input", "2x10", "--format", "lines"], project)
    assert run.code == 2, run
    assert run.stdout.startswith("net.py:11:1: DIM003 Net: net.py:11: in forward:"), run


# 8 -------------------------------------------------------------------------------------------

def test_8_a_mistyped_keyword_input_and_model_name_are_named(project, cli):
    text = NET.replace("forward(self, x)", "forward(self, text)").replace("self.a(x)", "self.a(text)")
    # A script's main() returns nothing: it is no factory, and not listed.
    (project / "net.py").write_text(text + "\n\ndef make():\n    return Net()\n\n\ninst = Net()\n"
                                    "\n\ndef main():\n    print(make())\n    return\n")
    run = cli(["net.py::Net", "--input", "txt=2x10"], project)
    assert run.code == 2, run
    assert run.stderr == ("dimfix: error: --input txt=...: Net.forward takes no argument 'txt' "
                          "(it takes: text)\n")
    run = cli(["net.py::Nett", "--input", "2x10"], project)
    assert run.code == 2 and "(models in it: Net, make(), inst)" in run.stderr, run


# 10 ------------------------------------------------------------------------------------------

def test_10_diff_quiet_config_and_completion(project, cli):
    (project / "net.py").write_text(NET)
    run = cli(["net.py::Net", "--input", "2x10", "--diff"], project)
    assert run.code == 0 and "+        self.b = nn.Linear(20, 5)" in run.stdout, run
    assert (project / "net.py").read_text() == NET
    run = run_process(["net.py::Net", "--input", "2x10", "--check", "-q"], project)
    assert (run.code, run.stdout, run.stderr) == (1, "", ""), run
    (project / "elsewhere").mkdir()
    (project / "elsewhere" / "pyproject.toml").write_text('[tool.dimfix]\ninput = ["2x10"]\n')
    (project / "marked.py").write_text(NET.replace("class Net", "# dimfix:\nclass Net"))
    run = cli(["marked.py", "--check", "--config", "elsewhere/pyproject.toml"], project)
    assert run.code == 1 and "in_features 30 -> 20" in run.stderr, run
    run = run_process([], project, env={"_DIMFIX_COMPLETE": "bash_source"})
    assert run.code == 0 and "_DIMFIX_COMPLETE=bash_complete" in run.stdout, run


def test_the_summary_names_the_other_file_a_fix_is_written_in(cli, tmp_path):
    case = copy_case("cross_file_edit", tmp_path)
    run = cli(["broken.py::Net", "--input", "2x3x32x32", "--dry-run"], case)
    assert run.code == 0, run
    assert run.stderr.rstrip().endswith(
        "broken.py: 1 fix pending (in encoder.py), nothing written (--dry-run)"), run
