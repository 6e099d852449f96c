"""From a recorded construction site to the libcst nodes that wrote the value.

Python reports call positions in UTF-8 byte columns; libcst's PositionProvider
counts characters. ``CallIndex`` converts one to the other per line.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple

import libcst as cst

from dimfix.errors import BadSource, Position
from dimfix.records import Frame
from dimfix.units import Positions, Units

# libcst's time grows faster than a file's size (bench/parse_size.py, 2 busy
# cores: 1 MiB parsed with positions ~60 s, 2 MiB ~130 s, 5 MiB ~190 s to parse
# alone): a larger file is refused, not timed out as if the model had hung.
MAX_PLAN_BYTES = 2**20


class CallIndex:
    """Every Call in a module, found by the character position where it starts,
    and every node's parent (what libcst's ParentNodeProvider gives, recorded
    in one walk of our own: that provider's walk costs as much as the parse
    and the positions together, and a libcst visitor, which rebuilds every
    node it passes, ~5x ours: 0.4 s on timm's resnet.py). Positions are
    computed per top-level statement as they are asked for (units.py)."""

    def __init__(self, text: str, path: str) -> None:
        super().__init__()
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_PLAN_BYTES:
            raise BadSource(f"{size / 2**20:.1f} MiB is too large for dimfix to plan a fix in "
                            "(its parser, libcst, takes minutes on a file over 1 MiB); "
                            "nothing written", Position(os.path.abspath(path)))
        try:
            self.module = cst.parse_module(text)
        except cst.ParserSyntaxError as e:
            raise BadSource(f"cannot parse: {e.message}",
                            Position(os.path.abspath(path), e.raw_line, e.raw_column)) from None
        self.text = text  # what ``module.code`` gives back (libcst round-trips), without a codegen
        self.lines = text.splitlines(keepends=True)
        self.parents: Dict[cst.CSTNode, cst.CSTNode] = {}
        # Each top-level statement's Calls, outermost first; all of them.
        self.unit_calls: Dict[cst.CSTNode, List[cst.Call]] = {}
        self.all_calls: List[cst.Call] = []
        # Top-level statements that bind module names from inside (``global x``
        # in a function, ``(x := ...)`` in a module-level value): scopes.py
        # never leaves them out.
        self.binding_units: set = set()
        self.units = Units(self.module, text)
        self.positions = Positions(self.units, self.parents)
        self._calls: Dict[Tuple[int, int], List[cst.Call]] = {}
        self._indexed: set = set()  # units whose Calls are in ``_calls``
        self._of_kind: Dict[type, List[cst.CSTNode]] = {}
        self._walk()

    def nodes(self, kind: type) -> List[cst.CSTNode]:
        """Every node below the module of type ``kind``, in order: what
        ``descendants(module, kind)`` gives, from the walk already made (a
        libcst visitor rebuilds every node it passes, ~5x this)."""
        found = self._of_kind.get(kind)
        if found is None:
            found = self._of_kind[kind] = [n for n in self.parents if isinstance(n, kind)]
        return found

    def _walk(self) -> None:
        """Every node below the module, parents before children (so the calls
        starting at one place come outermost first, as a libcst visitor has
        them): its parent, and the Calls of each top-level statement. A node's
        children are the nodes in its dataclass fields, as libcst visits them."""
        module = self.module
        stack: List[Tuple[cst.CSTNode, cst.CSTNode, cst.CSTNode]] = [(module, None, None)]
        parents, unit_calls, all_calls = self.parents, self.unit_calls, self.all_calls
        binding = (cst.Global, cst.NamedExpr)
        while stack:
            node, parent, unit = stack.pop()
            if parent is not None:
                parents[node] = parent
                if parent is module:
                    unit = node
            kind = type(node)
            if kind is cst.Call:
                unit_calls.setdefault(unit, []).append(node)
                all_calls.append(node)
            elif kind in binding:
                self.binding_units.add(unit)
            children = []
            for name in _fields(type(node)):
                value = getattr(node, name)
                if isinstance(value, cst.CSTNode):
                    children.append(value)
                elif isinstance(value, (tuple, list)):
                    children += [v for v in value if isinstance(v, cst.CSTNode)]
            stack += [(child, node, unit) for child in reversed(children)]

    def _calls_at(self, line: int) -> Dict[Tuple[int, int], List[cst.Call]]:
        """Calls by start, of the top-level statement spanning ``line`` (of
        every statement where that is not known)."""
        k = self.units.at_line(line)
        wanted = self.module.body if k is None else [self.module.body[k]]
        for unit in wanted:
            if unit in self._indexed:
                continue
            self._indexed.add(unit)
            for node in self.unit_calls.get(unit, ()):
                start = self.positions[node].start
                self._calls.setdefault((start.line, start.column), []).append(node)
        return self._calls

    def find(self, frame: Frame) -> Optional[cst.Call]:
        """The Call that ``frame`` was executing, or None."""
        start = (frame.line, self.char_col(frame.line, frame.col))
        end = (frame.end_line, self.char_col(frame.end_line, frame.end_col))
        candidates = self._calls_at(frame.line).get(start, [])
        for node in candidates:
            pos = self.positions[node].end
            if (pos.line, pos.column) == end:
                return node
        # A call chained on another (``f(a)(b)``) starts where its callee does.
        return candidates[-1] if len(candidates) == 1 else None

    def position(self, node: cst.CSTNode) -> Tuple[int, int]:
        """1-based line and 1-based character column where ``node`` starts."""
        start = self.positions[node].start
        return start.line, start.column + 1

    def char_col(self, line: int, byte_col: int) -> int:
        if not 1 <= line <= len(self.lines):
            return byte_col
        text = self.lines[line - 1]
        if text.isascii():
            return byte_col
        return len(text.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))


_FIELDS: Dict[type, Tuple[str, ...]] = {}


def _fields(kind: type) -> Tuple[str, ...]:
    names = _FIELDS.get(kind)
    if names is None:
        names = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(kind))
    return names


def find_argument(call: cst.Call, params: Sequence[str], name: str) -> Tuple[Optional[cst.Arg], str]:
    """The Arg passing parameter ``name`` in ``call``, or None and why not.

    ``params`` are the constructor's parameter names in order ('*' for *args).
    """
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg, ""
    if name not in params:
        return None, f"the call takes no {name} argument"
    index = params.index(name)
    if "*" in params[:index]:
        return None, f"{name} follows *args in the constructor"
    position = 0
    for arg in call.args:
        if arg.star:
            return None, f"{name} is passed through {arg.star}unpacking"
        if arg.keyword is not None:
            break
        if position == index:
            return arg, ""
        position += 1
    if any(arg.star == "**" for arg in call.args):
        return None, f"{name} is passed through ** unpacking"
    return None, f"{name} is not passed at this call (its default is used)"
