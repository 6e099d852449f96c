"""From a check's records to LSP: diagnostics at the wrong argument, the fix as
a WorkspaceEdit, hover text. Pure functions over text; no I/O.

dimfix's records count columns two ways: Edit/Unfixable in characters
(1-based, libcst), a layer's construction site in UTF-8 bytes (0-based,
Python's code positions). LSP counts UTF-16 code units (0-based).
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from lsprotocol import types

from dimfix.report import CANNOT_FIX, FAILED, FIXABLE

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


def byte_column(line_text: str, character: int) -> int:
    """LSP (UTF-16) character -> UTF-8 byte offset in ``line_text``."""
    units, chars = 0, 0
    for ch in line_text:
        if units >= character:
            break
        units += 2 if ord(ch) > 0xFFFF else 1
        chars += 1
    return len(line_text[:chars].encode("utf-8"))


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
    out: Dict[str, List[types.Diagnostic]] = {checked.source.path: []}
    target = checked.source.path
    fix = checked.fix

    def add(path, rng, code, message, severity=types.DiagnosticSeverity.Error):
        out.setdefault(path, []).append(types.Diagnostic(
            range=rng, message=message, severity=severity, code=code, source=SOURCE))

    def where(display: str) -> str:
        return os.path.abspath(display) if display else target

    for result in fix.results if fix else ():
        for e in result.edits:
            path = where(e.path)
            text = texts.get(path, "")
            add(path, _span_of(text, e.line, e.col, e.old_code or None), FIXABLE,
                _message(e.reason, e.path, e.line, e.col))
        for u in result.unfixable:
            path = where(u.path)
            text = texts.get(path, "")
            rng = _span_of(text, u.line, u.col, None) if u.line else _definition(
                texts[target], result.name)
            add(path, rng, CANNOT_FIX, "cannot fix: " + u.reason)
    text = texts[target]
    for options, error in fix.errors if fix else ():
        add(target, _definition(text, options.name), FAILED, f"{options.name}: {error}",
            types.DiagnosticSeverity.Warning)
    for name, why in checked.problems:
        add(target, _definition(text, name), FAILED, f"{name}: {why}",
            types.DiagnosticSeverity.Warning)
    return out


def _message(reason: str, path: str, line: int, col: int) -> str:
    prefix = f"{path}:{line}:{col}: "
    return reason[len(prefix):] if reason.startswith(prefix) else reason


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
    line, col = pos.line + 1, byte_column(lines[pos.line], pos.character)
    hits = []
    for model, rows in rows_by_model.items():
        for row in rows:
            if row.site is None or row.site[0] != path:
                continue
            _, l0, c0, l1, c1 = row.site
            if (l0, c0) <= (line, col) <= (l1, c1):
                hits.append((model, row))
    return hits


def hover_text(hits) -> str:
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
        if row.changes:
            change = ", ".join(f"{c.arg} {_size(c.old)} -> {_size(c.new)}" for c in row.changes)
            parts.append(("cannot fix: " if row.status == "cannot-fix" else "fix: ") + change
                         + (f" ({row.reason})" if row.reason else ""))
        blocks.append("  \n".join(parts))
    return "\n\n---\n\n".join(blocks)


def _size(v) -> str:
    return "x".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)


def _shapes(shapes) -> str:
    return ", ".join("x".join(map(str, s)) for s in shapes) or "-"
