"""From a recorded construction site to the libcst nodes that wrote the value.

Python reports call positions in UTF-8 byte columns; libcst's PositionProvider
counts characters. ``CallIndex`` converts one to the other per line.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from dimfix.errors import BadSource, Position
from dimfix.records import Frame

# libcst's time grows faster than a file's size (bench/parse_size.py, 2 busy
# cores: 1 MiB parsed with positions ~60 s, 2 MiB ~130 s, 5 MiB ~190 s to parse
# alone): a larger file is refused, not timed out as if the model had hung.
MAX_PLAN_BYTES = 2**20


class CallIndex:
    """Every Call in a module, by the character position where it starts, and
    every node's parent (what libcst's ParentNodeProvider gives, recorded in
    one walk of our own: that provider's walk costs as much as the parse and
    the positions together, and a libcst visitor, which rebuilds every node it
    passes, ~5x ours: 0.4 s on timm's resnet.py)."""

    def __init__(self, text: str, path: str) -> None:
        super().__init__()
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_PLAN_BYTES:
            raise BadSource(f"{size / 2**20:.1f} MiB is too large for dimfix to plan a fix in "
                            "(its parser, libcst, takes minutes on a file over 1 MiB); "
                            "nothing written", Position(os.path.abspath(path)))
        try:
            # Nothing else holds the freshly parsed module: no copy is needed
            # (libcst's default deep copy costs as much as the parse).
            self.wrapper = MetadataWrapper(cst.parse_module(text), unsafe_skip_copy=True)
        except cst.ParserSyntaxError as e:
            raise BadSource(f"cannot parse: {e.message}",
                            Position(os.path.abspath(path), e.raw_line, e.raw_column)) from None
        self.text = text  # what ``module.code`` gives back (libcst round-trips), without a codegen
        self.lines = text.splitlines(keepends=True)
        self.calls: Dict[Tuple[int, int], List[cst.Call]] = {}
        self.parents: Dict[cst.CSTNode, cst.CSTNode] = {}
        self.positions = self.wrapper.resolve(PositionProvider)
        self._walk()

    @property
    def module(self) -> cst.Module:
        return self.wrapper.module

    def _walk(self) -> None:
        """Every node below the module, parents before children (so the calls
        starting at one place come outermost first, as a libcst visitor has
        them): its parent, and where each Call starts. A node's children are
        the nodes in its dataclass fields, as libcst visits them."""
        stack: List[Tuple[cst.CSTNode, cst.CSTNode]] = [(self.module, None)]
        parents, calls, positions = self.parents, self.calls, self.positions
        while stack:
            node, parent = stack.pop()
            if parent is not None:
                parents[node] = parent
            if type(node) is cst.Call:
                start = positions[node].start
                calls.setdefault((start.line, start.column), []).append(node)
            children = []
            for name in _fields(type(node)):
                value = getattr(node, name)
                if isinstance(value, cst.CSTNode):
                    children.append(value)
                elif isinstance(value, (tuple, list)):
                    children += [v for v in value if isinstance(v, cst.CSTNode)]
            stack += [(child, node) for child in reversed(children)]

    def find(self, frame: Frame) -> Optional[cst.Call]:
        """The Call that ``frame`` was executing, or None."""
        start = (frame.line, self.char_col(frame.line, frame.col))
        end = (frame.end_line, self.char_col(frame.end_line, frame.end_col))
        candidates = self.calls.get(start, [])
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
