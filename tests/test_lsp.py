"""End to end: the real ``dimfix-lsp`` process, spoken to over stdio by pygls's client.

One server serves the whole module (starting one costs ~4 s of CPU: torch, the
meta warm-up, settle()); each test gets its own project folder and documents,
and waits for the diagnostics of its own document's latest version, so no test
reads another's results. The first test to run also sees the server's warm-up.
"""

import asyncio
import shutil
from pathlib import Path

import pytest

pytest.importorskip("pygls")

from lsp_session import Session, apply_edit  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BROKEN = (ROOT / "fixtures/three_wrong_layers/broken.py").read_text().replace(
    "class SmallConvNet", "# dimfix: input=2x3x32x32\nclass SmallConvNet")

HANGS = '''import torch.nn as nn


# dimfix: input=1x4
class Spins(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        while True:
            pass
'''


class Server:
    """A started Session and the event loop its client runs on."""

    def __init__(self, root: Path) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.session = self.loop.run_until_complete(self._start(root))
        except BaseException:
            self.loop.close()
            raise

    @staticmethod
    async def _start(root: Path) -> Session:
        session = Session(root)  # made in the loop, as its asyncio.Condition expects
        await session.start()
        return session

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.session.stop())
        finally:
            self.loop.close()


# One server for the module: under xdist its tests run on one worker
# (conftest.SHARED_MODULES).
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("lsp-root"))
    yield server
    server.close()


@pytest.fixture
def project(tmp_path):
    """The test's own project: its pyproject.toml (nearest to its files) and net.py."""
    (tmp_path / "pyproject.toml").write_text("[tool.dimfix]\ntimeout = 3\n")
    (tmp_path / "net.py").write_text(BROKEN)
    return tmp_path


@pytest.fixture
def run(server):
    """Run one test's ``body(session)`` on the module's server."""

    def run_body(session_body):
        server.loop.run_until_complete(session_body(server.session))

    return run_body


def test_broken_file_diagnostics_at_the_wrong_arguments(project, run):
    async def body(s):
        uri = s.open(project / "net.py")
        diags = await s.diagnostics(uri)
        lines = BROKEN.split("\n")
        got = sorted((d.code, lines[d.range.start.line][d.range.start.character:d.range.end.character],
                      d.range.start.line) for d in diags)
        assert got == [("DIM001", "16", 12), ("DIM001", "32", 13), ("DIM001", "64 * 7 * 7", 15)]
        assert all(d.source == "dimfix" for d in diags)
        assert any("in_features 3136 -> 4096" in d.message for d in diags)

    run(body)


def test_code_action_edit_makes_the_file_clean(project, run):
    async def body(s):
        path = project / "net.py"
        uri = s.open(path)
        diags = await s.diagnostics(uri)
        actions = await s.code_actions(uri, diags)
        assert [a.title for a in actions] == ["Fix layer size"]
        edits = actions[0].edit.changes[uri]
        text = BROKEN
        for edit in edits:
            text = apply_edit(text, edit)
        expected = (ROOT / "fixtures/three_wrong_layers/expected.py").read_text().replace(
            "class SmallConvNet", "# dimfix: input=2x3x32x32\nclass SmallConvNet")
        assert text == expected
        mark = s.mark()
        s.save(path, text)
        assert not await s.diagnostics(uri, mark)
        assert path.read_text() == expected

    run(body)


def test_hover_shows_declared_and_arriving_shapes(project, run):
    async def body(s):
        uri = s.open(project / "net.py")
        await s.diagnostics(uri)
        hover = await s.hover(uri, 15, 25)  # inside nn.Linear(64 * 7 * 7, 128)
        text = hover.contents.value
        assert "**fc1** (Linear)" in text
        assert "in_features=3136" in text and "arrives: 2x4096" in text
        assert "in_features 3136 -> 4096" in text
        assert await s.hover(uri, 0, 0) is None

    run(body)


def test_saving_a_fixed_file_clears_diagnostics(project, run):
    async def body(s):
        path = project / "net.py"
        uri = s.open(path)
        assert len(await s.diagnostics(uri)) == 3
        fixed = (ROOT / "fixtures/three_wrong_layers/expected.py").read_text().replace(
            "class SmallConvNet", "# dimfix: input=2x3x32x32\nclass SmallConvNet")
        mark = s.mark()
        s.save(path, fixed)
        assert not await s.diagnostics(uri, mark)

    run(body)


def test_a_hanging_model_times_out_and_the_server_lives_on(project, run):
    # Its own pyproject.toml (the nearest one) gives it 1 s: it spins on a core
    # until then. net.py, checked after it, keeps the project's 3 s.
    (project / "spin").mkdir()
    (project / "spin" / "pyproject.toml").write_text("[tool.dimfix]\ntimeout = 1\n")
    (project / "spin" / "spin.py").write_text(HANGS)

    async def body(s):
        uri = s.open(project / "spin" / "spin.py")
        diags = await s.diagnostics(uri, timeout=30)
        assert [d.code for d in diags] == ["DIM003"]
        assert "timed out after 1 s" in diags[0].message
        assert diags[0].range.start.line == 4  # the class name
        # Still serving: another file is checked as usual.
        other = s.open(project / "net.py")
        assert len(await s.diagnostics(other)) == 3

    run(body)


def test_rapid_saves_publish_for_the_latest_text(project, run):
    shutil.copy(project / "net.py", project / "net2.py")

    async def body(s):
        path = project / "net2.py"
        uri = s.open(path)
        fixed = (ROOT / "fixtures/three_wrong_layers/expected.py").read_text().replace(
            "class SmallConvNet", "# dimfix: input=2x3x32x32\nclass SmallConvNet")
        mark = s.mark()
        s.save(path, BROKEN + "\n")
        s.save(path, fixed)  # at once: the traces of the older texts are cancelled
        assert not await s.diagnostics(uri, mark)
        await asyncio.sleep(1.0)
        later = [p for p in s.published[mark:] if p.uri == uri]
        assert not later[-1].diagnostics  # no stale result lands after the newest

    run(body)


def test_file_without_declared_models_gets_no_diagnostics(tmp_path, run):
    (tmp_path / ".git").mkdir()  # no pyproject.toml above it counts
    (tmp_path / "plain.py").write_text("import torch.nn as nn\nfc = nn.Linear(3, 4)\n")

    async def body(s):
        uri = s.open(tmp_path / "plain.py")
        assert not await s.diagnostics(uri)

    run(body)
