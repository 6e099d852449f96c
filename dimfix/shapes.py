"""Per-layer shapes, recorded in the child process while the model is traced.

``Recorder`` watches every module call of a trace (trace.observing): the sizes
a layer declares as built, the shapes that arrive and leave, its parameters,
and what the tracer had to resize. The draft step (draft.draft_step with
``observe``) returns those rows as plain picklable records with its draft: the
CLI's ``--shapes`` table and the language server's hover both come from them,
and both call a row fixed only when the session verified that fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from dimfix.errors import Position

Shape = Tuple[int, ...]


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
    after_fix: bool = False  # runs after a resized layer: shapes are the fixed model's
    # The constructor call in the user's code, its first and last character
    # (1-based lines and character columns, as every Position).
    start: Optional[Position] = None
    end: Optional[Position] = None
    raised: bool = False  # the forward raised inside this call: the trace stopped here
    ignored: bool = False  # its call says '# dimfix: ignore': sized on purpose


@dataclass(frozen=True)
class Table:
    """What the recorder saw of one model: its rows, output and parameters."""

    rows: Tuple[Row, ...] = ()
    output: Tuple[Shape, ...] = ()  # the model's output tensor(s)
    params: int = 0  # of the model as the trace left it


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

    def table(self, texts) -> Table:
        """The last eval pass, as a Table (``texts``: new texts to read columns from)."""
        if self.tracer is None:
            return Table()
        rows, fixed_seen = [], False
        columns = _Columns(texts)
        for raw in self.rows:
            module = raw["module"]
            now = dict(_declared(module))
            changes = tuple(Change(a, v, now[a]) for a, v in raw["declared"]
                            if a in now and now[a] != v)
            site = self.tracer.book.get(module)
            start = end = None
            if site is not None:
                f = site.call
                start = Position(f.path, f.line, columns.char(f.path, f.line, f.col) + 1)
                end = Position(f.path, f.end_line, columns.char(f.path, f.end_line, f.end_col) + 1)
            rows.append(Row(raw["layer"], raw["kind"], raw["depth"], raw["leaf"], raw["declared"],
                            raw["inputs"], raw.get("outputs", ()),
                            sum(p.numel() for p in module.parameters(recurse=False)),
                            changes, fixed_seen and not changes, start, end,
                            "outputs" not in raw, self.tracer._ignored(module)))
            fixed_seen = fixed_seen or (bool(changes) and not rows[-1].ignored)
        return Table(tuple(rows), self.output, int(self.total))


class _Columns:
    """UTF-8 byte offsets (Python's code positions) -> 0-based character offsets."""

    def __init__(self, texts) -> None:
        self.texts = dict(texts)
        self.lines: Dict[str, List[str]] = {}

    def char(self, path: str, line: int, byte_col: int) -> int:
        if path not in self.lines:
            text = self.texts.get(path)
            if text is None:
                try:
                    with open(path, "rb") as f:
                        text = f.read().decode("utf-8", errors="replace")
                except OSError:
                    text = ""
            self.lines[path] = text.split("\n")
        lines = self.lines[path]
        if not 0 < line <= len(lines):
            return byte_col
        return len(lines[line - 1].encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))


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


__all__ = ["Change", "Recorder", "Row"]
