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


# The longest single tests (pytest --durations -n 0 per file, 2-core machine,
# 2026-12-04), longest first: moved to the front of the collection, so that
# the scheduler below (which keeps collection order) starts them first and
# none of them is the tail, one worker busy while the other has nothing left.
LONGEST_FIRST = (
    "test_nodynamo.py::test_same_answer_with_and_without_the_stand_in",  # ~21 s
    "test_properties.py::test_a_broken_model_is_restored_exactly",  # 8-11 s
    "test_worker.py::test_language_server_keeps_the_worker_until_a_dependency_changes",  # ~7 s
    "test_pre_commit.py::test_real_pre_commit_",  # ~7 s
    "test_zoo.py::test_one_batch_restores_every_broken_model",  # ~6 s
    "test_properties.py::test_black_formatted_fix_still_traces_clean_and_is_stable",  # 5-6 s
)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """The tests named in ``LONGEST_FIRST`` (by node id) move to the front of the
    collection, in its order; every other test keeps its place."""

    def rank(item):
        return next((i for i, name in enumerate(LONGEST_FIRST) if name in item.nodeid),
                    len(LONGEST_FIRST))

    items.sort(key=rank)  # stable


# Test modules whose tests share one costly module fixture (test_lsp: one
# language server), kept on one worker.
SHARED_MODULES = ("test_lsp.py",)


def pytest_xdist_make_scheduler(config, log):
    """Under ``--dist loadscope`` (pyproject's addopts): each fixture case's
    tests on one worker, as they share the case's runs (test_fixtures.Runs);
    a module of SHARED_MODULES on one worker; every other test on its own.

    Not xdist_group marks and ``--dist loadgroup``: xdist passes a mark's
    group by renaming the test's node id, which pytest 9.2 no longer lets it
    do (pytest-dev/pytest-xdist#1386), so every case's runs were made on both
    workers, silently."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByCase(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return ByCase(config, log)


def scope_of(nodeid: str) -> str:
    """The unit of work ``nodeid`` is scheduled with (see above)."""
    path, _, test = nodeid.partition("::")
    name = path.rpartition("/")[2]
    if name in SHARED_MODULES:
        return path
    if name == "test_fixtures.py" and test.endswith("]"):
        return "case " + test[test.index("[") + 1:-1]
    return nodeid


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

    def invoke(args, cwd, input=None):
        from dimfix.cli import main

        monkeypatch.chdir(cwd)
        result = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
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
