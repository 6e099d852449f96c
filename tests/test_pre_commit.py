"""Issue 13, item 1: the README's pre-commit config, validated and run by a real
pre-commit in a temporary git repository (offline: the hooks are
``language: system`` and ``repo: local``, so nothing is cloned or installed).
About 15-30 s: a few commits, each tracing at most one small model."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from test_api import readme_block
from test_everyday import MARKED

BIN = Path(sys.executable).parent


def sh(args, cwd, env):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def repo(tmp_path):
    if shutil.which("pre-commit", path=str(BIN)) is None or shutil.which("git") is None:
        pytest.skip("needs git and pre-commit (pip install -e '.[test]')")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "PRE_COMMIT_HOME": str(tmp_path / "cache"), "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_CONFIG_NOSYSTEM": "1"}
    work = tmp_path / "repo"
    work.mkdir()
    (work / ".pre-commit-config.yaml").write_text(readme_block("pre-commit-config"))
    assert sh(["git", "init", "-q", "-b", "main"], work, env).returncode == 0
    return work, env


def test_readme_hooks_are_the_shipped_hooks():
    readme = yaml.safe_load(readme_block("pre-commit-config"))["repos"][0]["hooks"]
    shipped = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    keys = ("id", "entry", "language", "types", "require_serial")
    assert [{k: h[k] for k in keys} for h in readme] == [{k: h[k] for k in keys} for h in shipped]
    assert [h["id"] for h in shipped] == ["dimfix", "dimfix-fix"]


def test_real_pre_commit_passes_model_free_files_fails_broken_models_and_fixes_them(repo):
    work, env = repo
    pc = [str(BIN / "pre-commit")]
    run = sh(pc + ["validate-config", ".pre-commit-config.yaml"], work, env)
    assert run.returncode == 0, run.stdout + run.stderr
    run = sh(pc + ["validate-manifest", str(ROOT / ".pre-commit-hooks.yaml")], work, env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert sh(pc + ["install"], work, env).returncode == 0

    (work / "utils").mkdir()
    (work / "utils" / "mathy.py").write_text("def square(x):\n    return x * x\n")
    sh(["git", "add", "."], work, env)
    run = sh(["git", "commit", "-qm", "model-free"], work, env)
    assert run.returncode == 0, run.stdout + run.stderr

    (work / "net.py").write_text(MARKED)
    sh(["git", "add", "net.py"], work, env)
    run = sh(["git", "commit", "-qm", "broken model"], work, env)
    assert run.returncode != 0, run.stdout + run.stderr
    assert "in_features 30 -> 20" in run.stdout + run.stderr
    assert (work / "net.py").read_text() == MARKED

    run = sh(pc + ["run", "dimfix-fix", "--hook-stage", "manual", "--files", "net.py"], work, env)
    assert run.returncode == 1 and "files were modified by this hook" in run.stdout, run.stdout
    assert (work / "net.py").read_text() == MARKED.replace("nn.Linear(30, 5)", "nn.Linear(20, 5)")
    sh(["git", "add", "net.py"], work, env)
    run = sh(["git", "commit", "-qm", "fixed model"], work, env)
    assert run.returncode == 0, run.stdout + run.stderr
