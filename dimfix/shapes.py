"""Per-layer shapes, recorded in the child process while the model is traced.

``Recorder`` watches every module call of a trace (trace.observing): the sizes
a layer declares as built, the shapes that arrive and leave, its parameters,
and whether the tracer had to resize it. ``shape_draft`` runs draft_fix (trace,
plan, no write) under a recorder and returns the draft together with those
rows, as plain picklable records: the CLI's ``--shapes`` table and the language
server's hover and diagnostics both come from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

from dimfix.draft import Draft, draft_fix
from dimfix.records import Options

Shape = Tuple[int, ...]
# (path, line, col, end_line, end_col): the constructor call in the user's
# code; lines 1-based, columns 0-based UTF-8 byte offsets, as Python gives them.
Span = Tuple[str, int, int, int, int]


@dataclass(frozen=True)
class Change:
    arg: str
    old: object
    new: object


@dataclass(frozen=True)
class Row:
    """One module call, in execution order."""

    layer: str  # module path in the model, e.g. "features.0"
    kind: str  # class name
    depth: int  # 1 for the model's direct children
    leaf: bool  # has no submodules
    declared: Tuple[Tuple[str, object], ...]  # size arguments as built: (arg, value)
    inputs: Tuple[Shape, ...]
    outputs: Tuple[Shape, ...]
    params: int  # parameters this module holds itself (not its submodules')
    changes: Tuple[Change, ...] = ()  # what the trace resized to go on
    status: str = "ok"  # ok, fixed, cannot-fix
    reason: str = ""  # for cannot-fix
    after_fix: bool = False  # runs after a resized layer: shapes are the fixed model's
    site: Optional[Span] = None


@dataclass(frozen=True)
class ShapedDraft(Draft):
    """draft_fix's result, and the layer table of the traced model."""

    rows: Tuple[Row, ...] = ()
    output: Tuple[Shape, ...] = ()  # the model's output tensor(s)
    total_params: int = 0  # of the model as fixed
    others: Tuple[Tuple[str, str, str], ...] = ()  # (where, status, text) not in a row (views)


def shape_draft(path: str, texts: Mapping[str, str], options: Options) -> ShapedDraft:
    """Runs in a child (isolate.py): draft_fix with every module call recorded."""
    from dimfix.trace import observing

    recorder = Recorder()
    with observing(recorder):
        draft = draft_fix(path, texts, options)
    return recorder.result(draft)


class Recorder:
    """The trace's observer (trace.observing): rows of the last eval pass."""

    def __init__(self) -> None:
        self.tracer = None

    def start(self, tracer) -> None:
        # A new tracer (a retry on CPU after meta failed) starts afresh.
        self.tracer = tracer
        self.rows: List[dict] = []
        self.open: List[dict] = []
        self.first: Dict[int, Tuple[Tuple[str, object], ...]] = {}
        self.active = False
        self.output: Tuple[Shape, ...] = ()
        self.total = 0

    # -- hooks -----------------------------------------------------------------------

    def before(self, module, args) -> None:
        tracer = self.tracer
        if module is tracer.model:
            # Each eval pass replaces the rows; the train pass is not shown.
            self.active = not module.training
            if self.active:
                self.rows, self.open = [], []
            return
        if not self.active:
            return
        declared = self.first.setdefault(id(module), _declared(module))
        path = tracer._path(module)
        row = dict(layer=path, kind=type(module).__name__,
                   depth=path.count(".") + 1 if not path.startswith("<") else 1,
                   leaf=next(iter(module.children()), None) is None, declared=declared,
                   inputs=_shapes(args), module=module)
        self.rows.append(row)
        self.open.append(row)

    def after(self, module, args, output) -> None:
        if module is self.tracer.model:
            if self.active:
                self.output = _shapes(output)
                self.total = sum(p.numel() for p in module.parameters())
                self.active = False
            return
        if not self.active or not self.open:
            return
        row = self.open.pop()
        while row["module"] is not module and self.open:  # a call that raised inside
            row = self.open.pop()
        row["outputs"] = _shapes(output)

    # -- the result ----------------------------------------------------------------------

    def result(self, draft: Draft) -> ShapedDraft:
        if self.tracer is None:
            return ShapedDraft(**_fields(draft))
        unfixable = {(u.mismatch.layer_path, u.mismatch.arg): u for u in draft.unfixable}
        rows, fixed_seen, in_rows = [], False, set()
        for raw in self.rows:
            module = raw.pop("module")
            now = dict(_declared(module))
            changes = tuple(Change(a, v, now[a]) for a, v in raw["declared"]
                            if a in now and now[a] != v)
            status, reasons = "ok", []
            for c in changes:
                status = "fixed" if status == "ok" else status
                hit = unfixable.get((raw["layer"], c.arg))
                if hit is not None:
                    status = "cannot-fix"
                    reasons.append(_why(hit))
            site = self.tracer.book.get(module)
            span = None
            if site is not None:
                f = site.call
                span = (f.path, f.line, f.col, f.end_line, f.end_col)
            row = Row(raw["layer"], raw["kind"], raw["depth"], raw["leaf"], raw["declared"],
                      raw["inputs"], raw.get("outputs", ()),
                      sum(p.numel() for p in module.parameters(recurse=False)),
                      changes, status, "; ".join(reasons), fixed_seen and not changes, span)
            fixed_seen = fixed_seen or bool(changes)
            in_rows.update((row.layer, c.arg) for c in changes)
            rows.append(row)
        others = []
        for e in draft.edits:
            m = e.mismatch
            if (m.layer_path, m.arg) not in in_rows:
                others.append((f"{e.path}:{e.line}:{e.col}", "fixed",
                               f"{m.layer_path} {m.arg} {m.declared} -> {m.observed}"))
        for u in draft.unfixable:
            m = u.mismatch
            if (m.layer_path, m.arg) not in in_rows:
                others.append((f"{u.path}:{u.line}:{u.col}", "cannot-fix", _why(u)))
        return ShapedDraft(**_fields(draft), rows=tuple(rows), output=self.output,
                           total_params=int(self.total), others=tuple(others))


def _fields(draft: Draft) -> dict:
    return dict(texts=draft.texts, edits=draft.edits, unfixable=draft.unfixable,
                notes=draft.notes, device=draft.device)


def _declared(module) -> Tuple[Tuple[str, object], ...]:
    """The size arguments of a layer of a known family, in constructor order."""
    from dimfix.families import all_args, declared, family_of
    from dimfix.trace import _params

    family = family_of(module)
    if family is None:
        return ()
    order = {p: i for i, p in enumerate(_params(type(module)))}
    out = []
    for arg in sorted(all_args(family), key=lambda a: order.get(a, len(order))):
        try:
            value = declared(family, module, arg)
        except AttributeError:
            continue
        out.append((arg, tuple(value) if isinstance(value, (tuple, list)) else int(value)))
    return tuple(out)


def _shapes(value, depth: int = 0) -> Tuple[Shape, ...]:
    import torch

    if isinstance(value, torch.Tensor):
        return (tuple(int(s) for s in value.shape),)
    if depth < 2 and isinstance(value, (tuple, list)):
        return tuple(s for v in value for s in _shapes(v, depth + 1))
    if depth < 2 and isinstance(value, dict):
        return tuple(s for v in value.values() for s in _shapes(v, depth + 1))
    return ()


def _why(unfixable) -> str:
    m = unfixable.mismatch
    reason = unfixable.reason
    head = f"({m.why}): "
    return reason.split(head, 1)[1] if head in reason else reason


__all__ = ["Change", "Recorder", "Row", "ShapedDraft", "shape_draft"]
