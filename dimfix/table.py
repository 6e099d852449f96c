"""``dimfix --shapes``: the layer table of each model, as text or JSON.

The table is not a separate run: each file's FixSession is driven as a fix is
(draft, verify), with ``observe`` on, so every draft brings the layer rows of
its trace (shapes.Table). A row is "fixed" only by an edit the session
verified — the same edits the CLI would write; a model that fails still shows
the rows its trace executed, up to the one that raised. Exit code: 0 every
layer fits, 1 a layer needs a fix (or cannot be fixed), 2 a model failed.
"""

from __future__ import annotations

import json
import textwrap
from typing import Sequence

import click

from dimfix.report import place_text, problem_line
from dimfix.session import FileFix, ModelFix
from dimfix.shapes import Row, Table

WIDTH = 100
JSON_VERSION = 1
# Widest a column gets before its text is cut in the middle.
CAPS = dict(layer=34, kind=24, declared=24, input=26, output=22, params=13)
# Narrowest a column is cut to when the row would not fit in WIDTH.
FLOORS = dict(layer=12, kind=10, declared=10, input=12, output=12, params=6)
HEADERS = dict(layer="layer", kind="kind", declared="declared", input="input", output="output",
               params="params", status="status")


def run_shapes(jobs, limits, fmt: str, color: bool, verbose: bool, workers: int = 1) -> int:
    """Trace every model of ``jobs`` with the recorder; print; the exit code."""
    from dimfix.api import session_for
    from dimfix.driver import run_many

    docs, code = [], 0
    for fix in run_many([session_for(job, observe=True) for job in jobs], workers, limits):
        docs.extend(document(fix, model) for model in fix.models)
    for doc in docs:
        code = max(code, 2 if doc["error"] else 1 if doc["pending"] else 0)
    if fmt == "json":
        click.echo(json.dumps({"version": JSON_VERSION, "models": docs, "exit_code": code},
                              indent=2))
        return code
    shown = 0
    for doc in docs:
        if doc["rows"]:
            click.echo("\n" if shown else "", nl=False)
            click.echo(render(doc, color, verbose))
            shown += 1
        if doc["error"]:
            click.echo(f"{doc['file']}::{doc['name']}: error: {doc['error']['message']}", err=True)
    return code


# -- the document (also what --format json prints) --------------------------------------


def document(fix: FileFix, model: ModelFix) -> dict:
    """One model's table: its rows, with each change marked as the session
    settled it (fixed, cannot-fix, or not fixed when the model failed)."""
    from dimfix.source import display_path

    table = model.table if isinstance(model.table, Table) else Table()
    fixed = {(e.mismatch.layer_path, e.mismatch.arg): e for e in model.edits}
    cannot = {(u.mismatch.layer_path, u.mismatch.arg): u for u in model.unfixable}
    follows = {key: e for e in model.edits for key in e.covers}
    rows, in_rows = [], set()
    for r in table.rows:
        rows.append(_row(r, fixed, cannot, follows, model.problem is not None))
        in_rows.update((r.layer, c["argument"]) for c in rows[-1]["changes"])
    others = []
    for e in model.edits:
        if (e.mismatch.layer_path, e.mismatch.arg) not in in_rows:
            m = e.mismatch
            others.append({"where": place_text(e.position, fix.sources), "status": "fixed",
                           "text": f"{m.layer_path} {m.arg} {m.declared} -> {m.observed}"})
    for u in model.unfixable:
        if (u.mismatch.layer_path, u.mismatch.arg) not in in_rows:
            others.append({"where": place_text(u.position, fix.sources),
                           "status": "cannot-fix", "text": u.reason})
    error = None
    if model.problem is not None:
        error = {"kind": model.problem.kind.value,
                 "message": problem_line(model.problem, fix.sources)}
    return {
        "file": display_path(fix.path), "name": model.name, "device": model.device or None,
        "input": [str(s) for s in model.options.inputs],
        "rows": rows,
        "others": others,
        "output": [list(s) for s in table.output],
        "params": table.params,
        "fixes": len(model.edits),
        "pending": len(model.edits) + len(model.unfixable),
        "error": error,
    }


def _row(r: Row, fixed, cannot, follows, failed: bool) -> dict:
    status, reasons = "ok", []
    for c in r.changes:
        key = (r.layer, c.arg)
        if key in cannot:
            status = "cannot-fix"
            reasons.append(cannot[key].reason)
        elif key in fixed and status == "ok":
            status = "fixed"
        elif key in follows and status == "ok":
            status = "follows"  # right as written, once the layer before is fixed
            m = follows[key].mismatch
            reasons.append(f"{m.layer_path} {m.arg} {_v(m.declared)} -> {_v(m.observed)}")
        elif key not in fixed and status != "cannot-fix":
            status = "not-fixed"  # resized to trace on; its fix did not verify
    changes = [{"argument": c.arg, "old": _plain(c.old), "new": _plain(c.new)} for c in r.changes]
    for (layer, arg), e in fixed.items():  # an out size the trace never resized
        if layer == r.layer and status == "ok" and all(c.arg != arg for c in r.changes):
            status = "fixed"
            changes.append({"argument": arg, "old": _plain(e.mismatch.declared),
                            "new": _plain(e.mismatch.observed)})
    if r.ignored and r.changes:
        status = "ignored"  # '# dimfix: ignore': neither fixed nor reported
    if r.raised:
        status = "raised"
    return {
        "layer": r.layer, "kind": r.kind, "depth": r.depth, "leaf": r.leaf,
        "declared": {a: _plain(v) for a, v in r.declared},
        "input": [list(s) for s in r.inputs], "output": [list(s) for s in r.outputs],
        "params": r.params, "status": status,
        "changes": changes,
        "reason": "; ".join(reasons) or None,
        "after_fix": r.after_fix,
        "line": r.start.line if r.start else None,
    }


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


# -- text ---------------------------------------------------------------------------------


def render(doc: dict, color: bool = False, verbose: bool = False) -> str:
    """Aligned columns that fit in 100; a long status goes on a line of its own."""
    raised = [r["layer"] for r in doc["rows"] if r["status"] == "raised"]
    cells = [HEADERS] + [_cells(r, raised[-1] if raised else "") for r in doc["rows"]]
    widths = {k: min(CAPS[k], max(len(c[k]) for c in cells)) for k in CAPS}
    while sum(widths.values()) + 2 * len(widths) + 6 > WIDTH:  # room for "status"
        k = max(widths, key=lambda k: widths[k] - FLOORS[k])
        if widths[k] <= FLOORS[k]:
            break
        widths[k] -= 1
    lines = [f"{doc['file']}::{doc['name']}  input {' '.join(doc['input'])}"
             + (f"  traced on {doc['device']}" if doc["device"] else "")]
    for i, c in enumerate(cells):
        parts = [_fit(c[k], widths[k]).rjust(widths[k]) if k == "params"
                 else _fit(c[k], widths[k]).ljust(widths[k]) for k in CAPS]
        left = "  ".join(parts)
        status = c["status"]
        if i == 0 or len(left) + 2 + len(status) <= WIDTH:
            line = left + "  " + _paint(status, color, i == 0)
        else:
            wrapped = textwrap.wrap(status, WIDTH - 6, subsequent_indent="  ")
            line = left.rstrip() + "".join("\n    " + ("= " if j == 0 else "  ") + _paint(w, color)
                                           for j, w in enumerate(wrapped))
        lines.append(line.rstrip())
    for other in doc["others"]:
        lines.append(f"{other['where']}: {other['status'].replace('-', ' ')}: {other['text']}")
    fixed = doc["fixes"]  # counted as the diff counts them: one per edited argument
    cannot = sum(1 for r in doc["rows"] if r["status"] == "cannot-fix") + sum(
        1 for o in doc["others"] if o["status"] == "cannot-fix")
    after = any(r["after_fix"] for r in doc["rows"])
    if doc["error"]:
        lines.append(_stopped(doc["rows"]))
        return "\n".join(lines)
    out = "output " + (", ".join(_dims(s) for s in doc["output"]) or "(no tensor)")
    tail = f"{out}; {doc['params']:,} params"
    if fixed or cannot:
        tail += " as fixed" + f"; {fixed} fix{'es' if fixed != 1 else ''}"
        if cannot:
            tail += f", {cannot} cannot be fixed"
    else:
        tail += "; every layer fits"
    lines.append(tail)
    if after:
        lines.append("* after a resized layer: shapes are those of the fixed model")
    return "\n".join(lines)


def _stopped(rows) -> str:
    """Where the trace stopped, as torchinfo's "Executed layers up to": the
    innermost call that raised, else (the model's own forward raised) the last
    layer that ran."""
    raised = [r for r in rows if r["status"] == "raised"]
    if raised:
        where = f" at {raised[-1]['layer']} ({raised[-1]['kind']}), where the model raised"
    elif rows:
        where = f" in the model's own forward, after {rows[-1]['layer']} ({rows[-1]['kind']})"
    else:
        where = " before the first layer ran"
    return f"stopped{where}; the error follows"


def _cells(r: dict, innermost: str = "") -> dict:
    declared = list(r["declared"].items())
    shown = []
    for k, (arg, value) in enumerate(declared):
        if arg == "groups" and value == 1:
            continue
        if arg in ("kdim", "vdim") and value == declared[0][1]:
            continue
        text = "x".join(map(str, value)) if isinstance(value, list) else str(value)
        shown.append(text if k < 2 and arg not in ("groups", "kdim", "vdim") else f"{arg}={text}")
    status = r["status"]
    changes = ", ".join(f"{c['argument']} {_v(c['old'])} -> {_v(c['new'])}" for c in r["changes"])
    if status == "fixed":
        status = f"fixed: {changes}"
    elif status == "cannot-fix":
        status = f"cannot fix: {changes}: {r['reason']}"
    elif status == "follows":
        status = f"right once {r['reason']}"
    elif status == "not-fixed":
        status = f"wrong, not fixed: {changes}"
    elif status == "ignored":
        status = f"ignored (# dimfix: ignore): {changes}"
    elif status == "raised":
        status = "raised here" if r["layer"] == innermost else f"raised inside, in {innermost}"
        status += f" (after resizing {changes})" if changes else ""
    elif r["after_fix"]:
        status = "ok*"
    return dict(layer=r["layer"], kind=r["kind"], declared=", ".join(shown),
                input=_shape_list(r["input"]), output=_shape_list(r["output"]),
                params=f"{r['params']:,}" if r["params"] or r["leaf"] else "--",
                status=status)


def _shape_list(shapes) -> str:
    texts = [_dims(s) for s in shapes]
    if len(texts) > 1 and len(set(texts)) == 1:
        return f"{texts[0]} (x{len(texts)})"
    return ", ".join(texts)


def _v(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, list) else str(value)


def _dims(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


def _fit(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep - keep // 2] + "~" + text[len(text) - keep // 2:]


def _paint(status: str, color: bool, header: bool = False) -> str:
    if not color or header:
        return status
    if status.startswith("fixed"):
        return click.style(status, fg="yellow")
    if status.startswith(("cannot", "wrong", "raised")):
        return click.style(status, fg="red")
    return click.style(status, fg="green")


__all__ = ["document", "render", "run_shapes"]
