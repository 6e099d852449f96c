"""``dimfix-lsp``: a language server over stdio (pygls).

On open and save of a Python file whose models are declared (a ``# dimfix:``
pragma or ``[tool.dimfix]``), it traces them and publishes DIM001 (a size
dimfix fixes), DIM002 (a mismatch it cannot fix) and DIM003 (the model failed:
raised, timed out, ran out of memory) at the wrong argument. The code action
"Fix layer size" applies the verified fix to every file it edits; hover over
a layer's constructor call shows the sizes it declares and the shapes that
arrive, from the last trace.

This process imports torch (and libcst, black, torch's meta kernels) once, in
a thread started with it, while it already answers ``initialize`` (an editor
waits for that answer before it shows the file); a check waits for the warm-up
to end before it forks. It never imports the user's code: every trace is a
child forked from it (lsp_check.py), killed at the timeout or memory limit of
[tool.dimfix], or as soon as a newer save of the same file makes its answer
stale.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import signal
import sys
from typing import Dict, Optional, Set

from dimfix import __version__

FIX_TITLE = "Fix layer size"


def warm_server() -> None:
    """Import what every check needs, so a forked child starts with it."""
    from dimfix.isolate import warm

    warm(plan=True, meta=True)
    import dimfix.api  # noqa: F401
    import dimfix.driver  # noqa: F401


class _Warming:
    """``warm_server`` in a thread of its own, started once ``initialize`` is
    answered (an editor waits for that answer; torch takes 6-10 s to load on a
    cold disk, and a thread loading it from the start slows the answer down).
    A check awaits ``ready()`` before it forks: a fork while another thread is
    inside an import would leave the child that import's lock, held for good."""

    def __init__(self) -> None:
        import threading

        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dimfix-warm", daemon=True)

    def start(self) -> "_Warming":
        if self.thread.ident is None:
            self.thread.start()
        return self

    def _run(self) -> None:
        from dimfix.isolate import settle

        try:
            warm_server()
        finally:  # a failed warm-up leaves the imports to the first check
            self.done.set()
        # Then, while the first check may already run: cheap forks for the
        # rest of the session (settle imports nothing).
        settle()

    async def ready(self) -> None:
        self.start()  # a client that never sent 'initialized'
        if not self.done.is_set():
            await asyncio.get_running_loop().run_in_executor(None, self.done.wait)


def make_server(warming: Optional[_Warming] = None):
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer
    from pygls.uris import from_fs_path, to_fs_path

    from dimfix.lsp_check import check, plan_check
    from dimfix.lsp_convert import diagnostics, hover_rows, hover_text, workspace_edit
    from dimfix.source import decode_source, read_source

    server = LanguageServer("dimfix", __version__, protocol_cls=_answering_protocol())
    atexit.register(_kill_children)
    tasks: Dict[str, asyncio.Task] = {}
    results: Dict[str, object] = {}  # uri -> lsp_check.Checked of the last finished check
    published: Dict[str, Set[str]] = {}  # uri -> the uris its diagnostics went to

    def publish(uri: str, by_path, version: Optional[int] = None) -> None:
        """Diagnostics of the check of ``uri``'s text ``version``, for every file
        they fall in; the version lets a client drop those of an older text
        (the check of the opened text may finish after the next save)."""
        targets = {uri_of(p, uri): d for p, d in by_path.items()}
        for stale in published.get(uri, set()) - set(targets):
            targets[stale] = []
        published[uri] = {u for u, d in targets.items() if d}
        for target, diags in targets.items():
            server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
                uri=target, diagnostics=diags, version=version if target == uri else None))

    def path_of(uri: str) -> str:
        """The file a document is checked as: an ``untitled:`` buffer (a new
        editor tab) as a file of that name in the workspace, not on disk."""
        if uri.startswith("file:"):
            return to_fs_path(uri)
        name = os.path.basename(uri.partition(":")[2]) or "untitled"
        root = server.workspace.root_path or os.getcwd()
        return os.path.join(root, name if name.endswith(".py") else name + ".py")

    def uri_of(path: str, checked_uri: str) -> str:
        return checked_uri if path == path_of(checked_uri) else from_fs_path(path)

    async def run_check(uri: str) -> None:
        path = path_of(uri)
        doc = server.workspace.get_text_document(uri)
        text, version = doc.source, doc.version
        try:
            source = read_source(path)
            if source.text != text.replace("\r\n", "\n"):
                source = decode_source(path, text.encode("utf-8"))
        except Exception:
            source = decode_source(path, text.encode("utf-8"))
        from dimfix.errors import DimfixError

        try:
            job, limits = plan_check(source)
        except DimfixError as e:  # a bad pragma or [tool.dimfix]: one line, on line 1
            rng = types.Range(types.Position(0, 0), types.Position(0, 0))
            publish(uri, {path: [types.Diagnostic(rng, str(e), types.DiagnosticSeverity.Warning,
                                                  "DIM003", source="dimfix")]}, version)
            return
        if job is None:
            results.pop(uri, None)
            publish(uri, {path: []}, version)
            return
        def drafted(early) -> None:
            early_texts = {path: source.text}
            publish(uri, diagnostics(early, early_texts), version)

        if warming is not None:
            await warming.ready()
        checked = await check(source, job, limits, drafted)
        results[uri] = checked
        texts = {p: s.text for p, s in checked.fix.sources.items()}
        texts[path] = source.text
        publish(uri, diagnostics(checked, texts), version)

    async def _settled(uri: str) -> None:
        """Wait for the check in flight for ``uri``, if any (a newer save may cancel it)."""
        task = tasks.get(uri)
        if task is not None:
            await asyncio.wait([task])

    def schedule(uri: str, language: str = "") -> None:
        if not (uri.endswith(".py") or (language == "python" and not uri.startswith("file:"))):
            return
        old = tasks.pop(uri, None)
        if old is not None:
            old.cancel()  # a newer text: the running trace's child is killed
        task = asyncio.ensure_future(run_check(uri))
        tasks[uri] = task
        task.add_done_callback(lambda t: tasks.get(uri) is t and tasks.pop(uri, None))

    @server.feature(types.INITIALIZED)
    def initialized(ls, params: types.InitializedParams):
        if warming is not None:
            warming.start()  # initialize is answered: now torch loads

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls, params: types.DidOpenTextDocumentParams):
        schedule(params.text_document.uri, params.text_document.language_id)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
    def did_save(ls, params: types.DidSaveTextDocumentParams):
        schedule(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls, params: types.DidCloseTextDocumentParams):
        uri = params.text_document.uri
        task = tasks.pop(uri, None)
        if task is not None:
            task.cancel()
        results.pop(uri, None)
        publish(uri, {})

    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION,
                    types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]))
    async def code_action(ls, params: types.CodeActionParams):
        uri = params.text_document.uri
        await _settled(uri)  # diagnostics come after the draft; the fix once verified
        checked = results.get(uri)
        if checked is None or not checked.fix.changed:
            return None
        doc = server.workspace.get_text_document(uri)
        if doc.source.replace("\r\n", "\n") != checked.source.text:
            return None  # edited since the trace: the fix is for another text
        edit = workspace_edit(checked.fix, from_fs_path)
        ours = [d for d in params.context.diagnostics if d.source == "dimfix"]
        return [types.CodeAction(title=FIX_TITLE, kind=types.CodeActionKind.QuickFix,
                                 diagnostics=ours or None, edit=edit, is_preferred=True)]

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    async def hover(ls, params: types.HoverParams):
        uri = params.text_document.uri
        await _settled(uri)
        checked = results.get(uri)
        if checked is None:
            return None
        doc = server.workspace.get_text_document(uri)
        hits = hover_rows(checked.rows, to_fs_path(uri), doc.source, params.position)
        if not hits:
            return None
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown,
                                                        value=hover_text(hits, checked.fix)))

    return server


def _answering_protocol():
    """pygls's protocol, answering a request whose params it cannot read with
    an InvalidParams error (pygls logs it and answers nothing: the client
    would wait forever)."""
    from pygls.exceptions import JsonRpcException
    from pygls.protocol import LanguageServerProtocol

    class AnsweringProtocol(LanguageServerProtocol):
        def structure_message(self, data):
            try:
                return super().structure_message(data)
            except JsonRpcException as error:
                if isinstance(data, dict) and "id" in data and "method" in data:
                    self._send_response(data["id"], None, error.to_response_error())
                raise

    return AnsweringProtocol


def _kill_children() -> None:
    from dimfix.driver import WORKERS
    from dimfix.isolate import kill_all

    kill_all()
    WORKERS.close()


def _stopped(signum, frame) -> None:
    """SIGTERM or SIGHUP (the editor stops the server, the terminal closes):
    end every child and worker, and exit 128 + the signal's number."""
    _kill_children()
    os._exit(128 + signum)


def main(argv: Optional[list] = None) -> None:
    """``dimfix-lsp``: serve over stdio."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print("usage: dimfix-lsp   (a language server on stdin/stdout; see README)")
        return
    if args and args[0] == "--version":
        print(f"dimfix-lsp {__version__}")
        return
    if args and args[0] != "--stdio":
        sys.stderr.write(f"dimfix-lsp: error: unknown argument {args[0]!r} (it serves on stdio)\n")
        sys.exit(2)
    try:
        import pygls  # noqa: F401
    except ImportError:
        sys.stderr.write("dimfix-lsp: error: needs pygls: pip install 'dimfix[lsp]'\n")
        sys.exit(2)
    from dimfix.worker import become_subreaper, own_torch_cache

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    own_torch_cache()
    become_subreaper()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stopped)
    make_server(_Warming()).start_io()


if __name__ == "__main__":
    main()
