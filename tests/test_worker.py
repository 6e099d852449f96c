"""The warm worker (issue 24): every step's child is forked from one process
per project that imported torch and the project's package; a child executes
again only the modules whose text changed, and registries take them again.

Most tests run dimfix's click command in this process (the ``cli`` fixture):
its workers are forked from this process as from ``python -m dimfix``, with
the log's path in the environment they inherit. A real process stays where
it is the point: the spare worker ``python -m dimfix`` forks before it knows
the project (test_only_what_changed_runs_again), kill -9 of dimfix, and a
package importing torch._dynamo (this process's imports must not decide it).
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import run_process

REGISTRY = '''\
# A registry that refuses a second registration, as torchvision's _api.py does.
BUILTIN_MODELS = {}


def register_model(fn):
    if fn.__name__ in BUILTIN_MODELS:
        raise ValueError(f"An entry is already registered under the name '{fn.__name__}'.")
    BUILTIN_MODELS[fn.__name__] = fn
    return fn
'''

COUNTED = '''\
import os

with open(os.environ["DIMFIX_TEST_LOG"], "a") as _log:
    _log.write(__name__ + "\\n")
'''

LAYERS = COUNTED + '''
import torch.nn as nn

HIDDEN = 48


def block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU())


def head(classes):
    return nn.Linear(HIDDEN, classes)
'''

STEM = COUNTED + '''
import torch.nn as nn


def stem():
    return nn.Conv2d(3, 16, 3, padding=1)
'''

NET = COUNTED + '''
import torch.nn as nn

from ._registry import register_model
from .layers import block, head
from .stem import stem


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = stem()
        self.body = block(16, 32)
        self.head = head(10)

    def forward(self, x):
        return self.head(self.body(self.stem(x)).mean((2, 3)))


@register_model
def net():
    return Net()
'''

INIT = '''\
from ._registry import BUILTIN_MODELS, register_model
from .net import *  # noqa: F401,F403 - the package imports its models
'''


@pytest.fixture
def package(tmp_path, monkeypatch):
    pkg = tmp_path / "zoo"
    pkg.mkdir()
    (tmp_path / ".git").mkdir()
    for name, text in {"__init__.py": INIT, "_registry.py": REGISTRY, "layers.py": LAYERS,
                       "stem.py": STEM, "net.py": NET}.items():
        (pkg / name).write_text(text)
    log = tmp_path / "executed.log"
    monkeypatch.setenv("DIMFIX_TEST_LOG", str(log))
    return tmp_path


def _executed(root):
    return (root / "executed.log").read_text().split()


def test_a_constant_in_another_module_is_fixed_through_the_worker(package, cli):
    run = cli(["zoo/net.py::net", "--input", "2x3x8x8"], package)
    assert run.code == 0, run
    assert "HIDDEN = 32" in (package / "zoo" / "layers.py").read_text()
    assert (package / "zoo" / "net.py").read_text() == NET


def test_only_what_changed_runs_again(package):
    run = run_process(["zoo/net.py::net", "--input", "2x3x8x8"], package)
    assert run.code == 0, run
    executed = _executed(package)
    # The worker imported the package once; the draft's child took the
    # unchanged target from it (its model is a function, built later); the
    # verifying child executed the changed layers.py and net, which holds
    # layers' functions; stem.py, unchanged and held by nothing that
    # changed, ran once.
    assert executed.count("zoo.stem") == 1, executed
    assert executed.count("zoo.layers") == 2, executed
    assert executed.count("zoo.net") == 2, executed


def test_a_package_executed_again_finds_its_submodules_that_stayed_loaded(package, cli):
    """An ``__init__`` that reads its submodules as attributes after importing
    them by absolute name (as attention-is-all-you-need-pytorch's does): run
    again in a child, it must find ``zoo.stem``, which stayed loaded."""
    zoo = package / "zoo"
    (zoo / "__init__.py").write_text("import zoo.stem\nimport zoo.net\n\n"
                                     "__all__ = [zoo.stem, zoo.net]\n")
    run = cli(["zoo/net.py::net", "--input", "2x3x8x8"], package)
    assert run.code == 0, run
    assert "HIDDEN = 32" in (zoo / "layers.py").read_text()


def test_what_holds_a_changed_value_runs_again_and_nothing_else(package, cli):
    """Modules are executed again by what they hold, not by what they import:
    one that took a constant of the changed layers.py runs again; one that
    takes only the registry from the package (which re-exports the target)
    does not, though it imports that package."""
    zoo = package / "zoo"
    (zoo / "widths.py").write_text(COUNTED + "\nfrom .layers import HIDDEN\n\nWIDTH = HIDDEN\n")
    (zoo / "catalog.py").write_text(COUNTED + "\nfrom zoo import BUILTIN_MODELS\n")
    (zoo / "__init__.py").write_text(INIT + "from . import catalog, widths  # noqa: F401\n")
    run = cli(["zoo/net.py::net", "--input", "2x3x8x8"], package)
    assert run.code == 0, run
    executed = _executed(package)
    assert executed.count("zoo.catalog") == 1, executed
    assert executed.count("zoo.widths") == 2, executed  # the worker, and verification
    assert executed.count("zoo.stem") == 1, executed


def test_without_the_worker_the_answer_is_the_same(package, cli, monkeypatch):
    monkeypatch.setenv("DIMFIX_WORKER", "0")
    run = cli(["zoo/net.py::net", "--input", "2x3x8x8", "--dry-run"], package)
    monkeypatch.delenv("DIMFIX_WORKER")
    warm = cli(["zoo/net.py::net", "--input", "2x3x8x8", "--dry-run"], package)
    assert run.code == warm.code == 0
    assert run.stdout == warm.stdout and run.stderr == warm.stderr


def test_the_worker_dies_with_dimfix(package):
    """kill -9 of dimfix leaves no worker and no child behind (parent-death signal)."""
    (package / "zoo" / "net.py").write_text(NET.replace(
        "        return self.head(", "        import time\n        time.sleep(60)\n"
        "        return self.head("))
    proc = subprocess.Popen([sys.executable, "-m", "dimfix", "zoo/net.py::net", "--input",
                             "2x3x8x8"], cwd=package, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_descendants(proc.pid)) < 2:
            time.sleep(0.1)
        below = _descendants(proc.pid)
        assert len(below) >= 2, below  # the worker and the step's child
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in below):
        time.sleep(0.1)
    assert not any(_alive(p) for p in below)


def _descendants(pid):
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            kids = []
        found += kids
        todo += kids
    return found


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_a_package_that_fails_to_import_reports_its_own_error(tmp_path):
    """The worker's import of a broken package is undone for the package's
    modules only: torch._dynamo, which it pulled in, registered operators
    with torch and cannot be imported twice in the child."""
    (tmp_path / ".git").mkdir()
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import torch._dynamo\nfrom .net import Net\n"
                                     "raise RuntimeError('broken package')\n")
    (pkg / "net.py").write_text("import torch.nn as nn\n\n\nclass Net(nn.Module):\n"
                                "    def __init__(self):\n        super().__init__()\n"
                                "        self.fc = nn.Linear(4, 2)\n\n"
                                "    def forward(self, x):\n        return self.fc(x)\n")
    run = run_process(["pkg/net.py::Net", "--input", "1x4", "--check"], tmp_path)
    assert run.code == 2, run
    assert "broken package" in run.stderr and "TORCH_LIBRARY" not in run.stderr, run.stderr


PRAGMA_NET = NET.replace("@register_model\ndef net", "# dimfix: input=2x3x8x8\n@register_model\ndef net")
NET2 = COUNTED + '''
import torch.nn as nn

from .stem import stem


# dimfix: input=2x3x8x8
class Net2(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = stem()
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(self.stem(x).mean((2, 3)))
'''


def test_batch_mode_imports_the_package_once_for_all_its_files(package, cli):
    (package / "zoo" / "net.py").write_text(PRAGMA_NET)
    (package / "zoo" / "net2.py").write_text(NET2)
    run = cli(["zoo", "--check", "--jobs", "2"], package)
    assert run.code == 1, run  # net's head is wrong; Net2 is clean
    assert "1 model would be fixed, 1 clean" in run.stderr, run
    executed = _executed(package)
    assert executed.count("zoo.stem") == 1, executed  # one worker for both files
    assert executed.count("zoo.net2") == 1, executed  # unchanged: taken from it


def test_language_server_keeps_the_worker_until_a_dependency_changes(package):
    pytest.importorskip("pygls")
    import asyncio

    from lsp_session import Session

    net = package / "zoo" / "net.py"
    net.write_text(PRAGMA_NET)

    async def body():
        session = Session(package)
        await session.start()
        try:
            uri = session.open(net)
            await session.diagnostics(uri, timeout=120)  # the wrong value is in layers.py
            for _ in range(2):
                mark = session.mark()
                session.save(net)
                await session.diagnostics(uri, mark, timeout=120)
            kept = _executed(package).count("zoo.stem")
            stem = package / "zoo" / "stem.py"
            stem.write_text(stem.read_text() + "\n# edited\n")
            mark = session.mark()
            session.save(net)
            await session.diagnostics(uri, mark, timeout=120)
            return kept, _executed(package).count("zoo.stem")
        finally:
            await session.stop()

    kept, after = asyncio.run(body())
    assert kept == 1  # open and two saves: the worker's one import
    assert after == 2  # stem.py changed on disk: a fresh worker imported it again


def _segfault():  # runs in the step's child
    os.kill(os.getpid(), signal.SIGSEGV)


def test_a_child_that_dies_is_reaped_once_and_nothing_waits_for_a_second_report(monkeypatch,
                                                                                 tmp_path):
    """The worker reports a child's end once: dimfix reads it when the child
    dies without a result and must not wait for it again as it closes the
    child (a segfaulting model took 5 s more, the report's timeout)."""
    from dimfix.errors import ErrorKind
    from dimfix.isolate import Child
    from dimfix.steps import Limits
    from dimfix.worker import Worker

    worker = Worker(str(tmp_path), None)
    asked = []
    status = worker.status
    monkeypatch.setattr(worker, "status", lambda token, timeout=5.0: asked.append(token)
                        or status(token, timeout))
    try:
        child = Child(_segfault, (), Limits(30), worker=worker)
        result = child.wait()
        child.close()
    finally:
        worker.close()
    assert result.problem.kind is ErrorKind.CRASHED
    assert "SIGSEGV" in result.problem.message
    assert child.token is not None and asked == [child.token]
