"""A pygls client that starts the real ``dimfix-lsp`` over stdio (tests and bench)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import List, Optional

from lsprotocol import types
from pygls.lsp.client import BaseLanguageClient
from pygls.uris import from_fs_path


class Session:
    """One server process, one client; diagnostics collected as they come."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.client = BaseLanguageClient("dimfix-tests", "1")
        self.published: List[types.PublishDiagnosticsParams] = []
        self.arrived = asyncio.Condition()
        self.versions = {}

        @self.client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        async def on_diagnostics(ls, params):
            async with self.arrived:
                self.published.append(params)
                self.arrived.notify_all()

    async def start(self) -> None:
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        await self.client.start_io(sys.executable, "-m", "dimfix.lsp", cwd=str(self.root),
                                   env=env)
        await self.client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(), root_uri=from_fs_path(str(self.root)),
            process_id=os.getpid()))
        self.client.initialized(types.InitializedParams())

    async def stop(self) -> None:
        try:
            await asyncio.wait_for(self.client.shutdown_async(None), 10)
            self.client.exit(None)
        finally:
            await asyncio.wait_for(self.client.stop(), 10)

    # -- documents -------------------------------------------------------------------

    def uri(self, path: Path) -> str:
        return from_fs_path(str(path))

    def open(self, path: Path) -> str:
        uri = self.uri(path)
        self.versions[uri] = 1
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri, "python", 1, path.read_text())))
        return uri

    def save(self, path: Path, text: Optional[str] = None) -> str:
        """Write ``text`` (if given) to disk as the editor would, then didSave."""
        uri = self.uri(path)
        if text is not None:
            path.write_text(text)
            self.versions[uri] = self.versions.get(uri, 0) + 1
            self.client.text_document_did_change(types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(self.versions[uri], uri),
                [types.TextDocumentContentChangeWholeDocument(text)]))
        self.client.text_document_did_save(types.DidSaveTextDocumentParams(
            types.TextDocumentIdentifier(uri)))
        return uri

    async def diagnostics(self, uri: str, after: int = 0, timeout: float = 60.0):
        """The first diagnostics published for ``uri`` after ``after`` publications,
        of its latest text (the check of an older one may finish after a save)."""
        version = self.versions.get(uri)

        def found():
            for p in self.published[after:]:
                if p.uri == uri and (p.version is None or version is None or p.version >= version):
                    return p.diagnostics
            return None

        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: found() is not None), timeout)
            return found()

    def mark(self) -> int:
        return len(self.published)

    async def code_actions(self, uri: str, diagnostics) -> list:
        rng = diagnostics[0].range if diagnostics else types.Range(
            types.Position(0, 0), types.Position(0, 0))
        return await self.client.text_document_code_action_async(types.CodeActionParams(
            types.TextDocumentIdentifier(uri), rng, types.CodeActionContext(list(diagnostics))))

    async def hover(self, uri: str, line: int, character: int):
        return await self.client.text_document_hover_async(types.HoverParams(
            types.TextDocumentIdentifier(uri), types.Position(line, character)))


def apply_edit(text: str, edit: types.TextEdit) -> str:
    """Apply one LSP TextEdit (UTF-16 positions) to ``text``."""
    lines = text.split("\n")

    def offset(pos):
        before = sum(len(line) + 1 for line in lines[:pos.line])
        line = lines[pos.line] if pos.line < len(lines) else ""
        units, chars = 0, 0
        for ch in line:
            if units >= pos.character:
                break
            units += 2 if ord(ch) > 0xFFFF else 1
            chars += 1
        return before + chars

    start, end = offset(edit.range.start), offset(edit.range.end)
    return text[:start] + edit.new_text + text[end:]
