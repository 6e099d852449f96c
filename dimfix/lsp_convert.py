"""From a check's records to LSP: diagnostics at the wrong argument, the fix as
a WorkspaceEdit, hover text. Pure functions over text; no I/O.

dimfix's records count columns one way: characters, 1-based (errors.Position,
Edit, Unfixable, a layer row's start and end). LSP counts UTF-16 code units,
0-based.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

from lsprotocol import types

from dimfix.report import CANNOT_FIX, FAILED, FIXABLE, cannot_fix_line, fix_line, problem_line

SOURCE = "dimfix"


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _lines(text: str) -> List[str]:
    return text.split("\n")


def char_position(text: str, line: int, col: int) -> types.Position:
    """1-based line, 1-based character column -> LSP position."""
    lines = _lines(text)
    row = max(0, min(line - 1, len(lines) - 1))
    return types.Position(row, _utf16(lines[row][: max(0, col - 1)]))


def char_column(line_text: str, character: int) -> int:
    """LSP (UTF-16) character -> 1-based character column in ``line_text``."""
    units, chars = 0, 0
    for ch in line_text:
        if units >= character:
            break
        units += 2 if ord(ch) > 0xFFFF else 1
        chars += 1
    return chars + 1


def _span_of(text: str, line: int, col: int, code: Optional[str]) -> types.Range:
    """The range of ``code`` written at (line, col); without ``code``, of the
    expression starting there (to the next ``,`` or closing bracket)."""
    lines = _lines(text)
    row = max(0, min(line - 1, len(lines) - 1))
    start = max(0, col - 1)
    if code is None:
        code, depth, rest = "", 0, "\n".join(lines[row:])[start:]
        for ch in rest:
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                if depth == 0:
                    break
                depth -= 1
            elif depth == 0 and ch in ",\n":
                break
            code += ch
        code = code.rstrip() or lines[row][start:start + 1]
    parts = code.split("\n")
    begin = types.Position(row, _utf16(lines[row][:start]))
    if len(parts) == 1:
        end = types.Position(row, begin.character + _utf16(code))
    else:
        end = types.Position(row + len(parts) - 1, _utf16(parts[-1]))
    return types.Range(begin, end)


def _definition(text: str, name: str) -> types.Range:
    """The range of ``name`` in its ``class``/``def`` line (a model that failed)."""
    last = name.rpartition(".")[2]
    pattern = re.compile(rf"^\s*(?:async\s+)?(?:class|def)\s+({re.escape(last)})\b", re.M)
    m = pattern.search(text) or re.search(rf"^({re.escape(last)})\s*=", text, re.M)
    if not m:
        return types.Range(types.Position(0, 0), types.Position(0, 0))
    row = text.count("\n", 0, m.start(1))
    line_start = text.rfind("\n", 0, m.start(1)) + 1
    col = _utf16(text[line_start:m.start(1)])
    return types.Range(types.Position(row, col), types.Position(row, col + _utf16(last)))


def diagnostics(checked, texts: Dict[str, str]) -> Dict[str, List[types.Diagnostic]]:
    """Diagnostics by absolute path. ``texts``: the text of each file by path
    (the checked buffer, and other files the fix edits as read)."""
    target = checked.source.path
    out: Dict[str, List[types.Diagnostic]] = {target: []}
    fix = checked.fix

    def add(path, rng, code, message, severity=types.DiagnosticSeverity.Error):
        out.setdefault(path, []).append(types.Diagnostic(
            range=rng, message=message, severity=severity, code=code, source=SOURCE))

    for model in fix.models:
        for e in model.edits:
            text = texts.get(e.path, "")
            add(e.path, _span_of(text, e.line, e.col, e.old_code or None), FIXABLE, fix_line(e))
        for u in model.unfixable:
            text = texts.get(u.path, "")
            rng = _span_of(text, u.line, u.col, None) if u.line else _definition(
                texts[target], model.name)
            add(u.path, rng, CANNOT_FIX, "cannot fix: " + cannot_fix_line(u))
        problem = model.problem
        if problem is None:
            continue
        where = problem.where
        message = f"{model.name}: {problem_line(problem, fix.sources)}"
        if where is not None and where.line and where.path in texts:
            # On the line that raised (or the line a message is about).
            rng = _line_span(texts[where.path], where.line)
            add(where.path, rng, FAILED, message, types.DiagnosticSeverity.Warning)
            if where.path == target:
                continue
        add(target, _definition(texts[target], model.name), FAILED, message,
            types.DiagnosticSeverity.Warning)
    return out


def _line_span(text: str, line: int) -> types.Range:
    """The text of ``line`` (1-based), its indentation left out."""
    lines = _lines(text)
    row = max(0, min(line - 1, len(lines) - 1))
    body = lines[row]
    start = len(body) - len(body.lstrip())
    return types.Range(types.Position(row, _utf16(body[:start])),
                       types.Position(row, _utf16(body.rstrip())))


def text_edit(old: str, new: str, newline: str = "\n") -> types.TextEdit:
    """One edit replacing the lines where ``old`` and ``new`` differ."""
    a, b = old.split("\n"), new.split("\n")
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    old_mid, new_mid = a[head:len(a) - tail], b[head:len(b) - tail]
    if tail:  # whole lines, each ending with its newline
        start, end = types.Position(head, 0), types.Position(len(a) - tail, 0)
        replacement = "".join(line + newline for line in new_mid)
    else:  # up to the end of the text
        start = types.Position(head, 0)
        end = types.Position(len(a) - 1, _utf16(a[-1]))
        replacement = newline.join(new_mid)
        if not old_mid:
            start = types.Position(head - 1, _utf16(a[head - 1])) if head else start
            replacement = newline + replacement if head else replacement
    return types.TextEdit(types.Range(start, end), replacement)


def workspace_edit(fix, uri_of) -> Optional[types.WorkspaceEdit]:
    """Every file of a verified multi-file fix, one TextEdit each."""
    changes = fix.changes if fix else ()
    if not changes:
        return None
    return types.WorkspaceEdit(changes={
        uri_of(src.path): [text_edit(src.text, text, src.newline or "\n")]
        for src, text in changes})


def hover_rows(rows_by_model: Dict[str, Sequence], path: str, text: str,
               pos: types.Position) -> List[Tuple[str, object]]:
    """(model, row) for each layer whose constructor call covers ``pos``."""
    lines = _lines(text)
    if pos.line >= len(lines):
        return []
    here = (pos.line + 1, char_column(lines[pos.line], pos.character))
    hits = []
    for model, rows in rows_by_model.items():
        for row in rows:
            if row.start is None or row.start.path != path:
                continue
            if (row.start.line, row.start.col) <= here <= (row.end.line, row.end.col):
                hits.append((model, row))
    return hits


def hover_text(hits, fix=None) -> str:
    """Markdown for the rows under the cursor; a change is a fix only when
    ``fix`` (the check's FileFix) verified it."""
    models = {m.name: m for m in fix.models} if fix is not None else {}
    blocks, seen = [], set()
    for model, row in hits[:6]:
        key = (model, row.layer, row.inputs)
        if key in seen:
            continue
        seen.add(key)
        declared = ", ".join(f"{a}={_size(v)}" for a, v in row.declared) or "-"
        parts = [f"**{row.layer}** ({row.kind}) in `{model}`",
                 f"declared: {declared}",
                 f"arrives: {_shapes(row.inputs)}",
                 f"leaves: {_shapes(row.outputs)}"]
        for c in row.changes:
            parts.append(_settled(models.get(model), row.layer, c))
        blocks.append("  \n".join(parts))
    return "\n\n---\n\n".join(blocks)


def _settled(model, layer: str, change) -> str:
    """How the session settled one change the trace made to a layer."""
    text = f"{change.arg} {_size(change.old)} -> {_size(change.new)}"
    key = (layer, change.arg)
    for u in model.unfixable if model is not None else ():
        if (u.mismatch.layer_path, u.mismatch.arg) == key:
            return f"cannot fix: {text} ({u.reason})"
    if model is not None and any((e.mismatch.layer_path, e.mismatch.arg) == key
                                 for e in model.edits):
        return f"fix: {text}"
    return f"wrong, not fixed: {text}"


def _size(v) -> str:
    return "x".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)


def _shapes(shapes) -> str:
    return ", ".join("x".join(map(str, s)) for s in shapes) or "-"
