"""``dimfix --shapes``: the layer table of each model, as text or JSON.

Each model is traced in a child (shapes.shape_draft: trace and plan, nothing
written); this module runs those children one after another and prints what
they send back. Exit code: 0 every layer fits, 1 a layer needs a fix (or
cannot be fixed), 2 a model failed.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from typing import Sequence

import click

from dimfix.errors import DimfixError
from dimfix.shapes import Row, ShapedDraft

WIDTH = 100
JSON_VERSION = 1
# Widest a column gets before its text is cut in the middle.
CAPS = dict(layer=34, kind=24, declared=24, input=26, output=22, params=13)
# Narrowest a column is cut to when the row would not fit in WIDTH.
FLOORS = dict(layer=12, kind=10, declared=10, input=12, output=12, params=6)
HEADERS = dict(layer="layer", kind="kind", declared="declared", input="input", output="output",
               params="params", status="status")


def run_shapes(jobs, limits, fmt: str, color: bool, verbose: bool) -> int:
    """Trace every model of ``jobs`` with the recorder; print; the exit code."""
    from dimfix.isolate import run_isolated, warm
    from dimfix.shapes import shape_draft
    from dimfix.source import read_source

    warm()
    docs, code = [], 0
    for job in jobs:
        for name, why in job.problems:
            docs.append(_failed(job.display, name, "BadUsage", why))
        try:
            text = (job.source or read_source(job.path)).text
        except DimfixError as e:
            docs.extend(_failed(job.display, o.name, type(e).__name__, str(e)) for o in job.models)
            continue
        for options in job.models:
            try:
                draft, _ = run_isolated(shape_draft, (job.path, {job.path: text},
                                                      replace(options, format=False)),
                                            limits.for_model(options.max_memory))
            except DimfixError as e:
                kind = getattr(e, "kind", None) or type(e).__name__
                docs.append(_failed(job.display, options.name, kind, str(e)))
                continue
            docs.append(document(job.display, options, draft))
    for doc in docs:
        code = max(code, 2 if doc["error"] else 1 if doc["pending"] else 0)
    if fmt == "json":
        click.echo(json.dumps({"version": JSON_VERSION, "models": docs, "exit_code": code},
                              indent=2))
        return code
    for k, doc in enumerate(docs):
        if doc["error"]:
            click.echo(f"{doc['file']}::{doc['name']}: error: {doc['error']['message']}", err=True)
            continue
        if k:
            click.echo("")
        click.echo(render(doc, color, verbose))
    return code


# -- the document (also what --format json prints) --------------------------------------


def document(display: str, options, draft: ShapedDraft) -> dict:
    rows = [_row(r) for r in draft.rows]
    pending = sum(1 for r in rows if r["status"] != "ok") + len(draft.others)
    return {
        "file": display, "name": options.name, "device": draft.device or None,
        "input": [str(s) for s in options.inputs],
        "rows": rows,
        "others": [{"where": w, "status": s, "text": t} for w, s, t in draft.others],
        "output": [list(s) for s in draft.output],
        "params": draft.total_params,
        "pending": pending,
        "error": None,
    }


def _row(r: Row) -> dict:
    return {
        "layer": r.layer, "kind": r.kind, "depth": r.depth, "leaf": r.leaf,
        "declared": {a: _plain(v) for a, v in r.declared},
        "input": [list(s) for s in r.inputs], "output": [list(s) for s in r.outputs],
        "params": r.params, "status": r.status,
        "changes": [{"argument": c.arg, "old": _plain(c.old), "new": _plain(c.new)}
                    for c in r.changes],
        "reason": r.reason or None,
        "after_fix": r.after_fix,
        "line": r.site[1] if r.site else None,
    }


def _failed(display: str, name: str, kind: str, message: str) -> dict:
    return {"file": display, "name": name, "device": None, "input": [], "rows": [],
            "others": [], "output": [], "params": 0, "pending": 0,
            "error": {"kind": kind, "message": message}}


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


# -- text ---------------------------------------------------------------------------------


def render(doc: dict, color: bool = False, verbose: bool = False) -> str:
    """Aligned columns that fit in 100; a long status goes on a line of its own."""
    cells = [HEADERS] + [_cells(r) for r in doc["rows"]]
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
    fixed = sum(1 for r in doc["rows"] if r["status"] == "fixed")
    cannot = sum(1 for r in doc["rows"] if r["status"] == "cannot-fix")
    after = any(r["after_fix"] for r in doc["rows"])
    out = "output " + (", ".join(_dims(s) for s in doc["output"]) or "(no tensor)")
    tail = f"{out}; {doc['params']:,} params"
    if fixed or cannot:
        tail += " as fixed" + f"; {fixed} layer{'s' if fixed != 1 else ''} to fix"
        if cannot:
            tail += f", {cannot} cannot be fixed"
    else:
        tail += "; every layer fits"
    lines.append(tail)
    if after:
        lines.append("* after a resized layer: shapes are those of the fixed model")
    return "\n".join(lines)


def _cells(r: dict) -> dict:
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
    if status.startswith("cannot"):
        return click.style(status, fg="red")
    return click.style(status, fg="green")


__all__ = ["document", "render", "run_shapes"]
