import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


def pytest_configure(config):
    """Compile dimfix's bytecode once, before xdist starts its workers (only the
    controller has no ``workerinput``): where PYTHONDONTWRITEBYTECODE is set,
    as on the CI machines, every ``python -m dimfix`` and language server a
    test starts would otherwise compile the package from source (~0.5 s of
    CPU each). Python reads bytecode whatever that variable says."""
    if not hasattr(config, "workerinput"):
        import compileall

        compileall.compile_dir(str(ROOT / "dimfix"), quiet=1)


def cases():
    """Fixture pairs: every folder under fixtures/ with an ``args`` file."""
    return sorted(p.parent.name for p in FIXTURES.glob("*/args"))


def copy_case(name: str, tmp_path: Path) -> Path:
    """A private copy of the case folder (package cases need their siblings)."""
    dest = tmp_path / name
    shutil.copytree(FIXTURES / name, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


class Run:
    def __init__(self, code, stdout, stderr):
        self.code, self.stdout, self.stderr = code, stdout, stderr

    def __repr__(self):
        return f"<exit {self.code}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}>"


@pytest.fixture
def cli(monkeypatch):
    """Run dimfix's click command in-process, in a given folder."""

    def invoke(args, cwd):
        from dimfix.cli import main

        monkeypatch.chdir(cwd)
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        return Run(result.exit_code, result.stdout, result.stderr)

    return invoke


def run_process(args, cwd, env=None):
    """Run ``python -m dimfix`` as a user would, in a fresh process."""
    proc = subprocess.run(
        [sys.executable, "-m", "dimfix", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session", autouse=True)
def warm_children():
    """Every test's children fork from this process: load torch, libcst, black
    and torch's meta kernels once here, and settle, as the language server does."""
    from dimfix.isolate import settle, warm

    warm(plan=True, meta=True)
    settle()
