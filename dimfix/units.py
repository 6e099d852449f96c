"""A parsed module's top-level statements ("units"), and their positions on demand.

libcst's PositionProvider generates the code of the whole module to count
lines and columns (0.4 s on timm's 2300-line resnet.py), though a fix needs
the positions of the few classes and functions the trace ran through. A
top-level statement's positions are those of its own code generated from
column 0 of the line where it starts; Python's ``ast`` (C, ~20 ms) tells
which line that is. Each unit's generated code is compared with the text at
that line before its positions are used: any disagreement (a parser
difference, an odd line break) falls back to positions of the whole module,
computed as libcst does.
"""

from __future__ import annotations

import ast
import bisect
import re
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider
from libcst.metadata.position_provider import PositionProvidingCodegenState

NEWLINES = re.compile(r"\r\n|\r|\n")  # what libcst and Python's tokenizer count as line breaks


class Units:
    """The top-level statements of ``module`` (parsed from ``text``): the line
    span of each (from ``ast``; None where ast disagrees with libcst), and
    their positions, computed per statement when first asked for."""

    def __init__(self, module: cst.Module, text: str) -> None:
        self.module = module
        self.text = text
        self.index: Dict[cst.CSTNode, int] = {u: k for k, u in enumerate(module.body)}
        # (first line with decorators, the statement's own line, last line)
        self.spans: Optional[List[Tuple[int, int, int]]] = _spans(module, text)
        self._firsts = [span[0] for span in self.spans or ()]
        self._starts: Optional[List[int]] = None  # character offset of each line
        self._done: Dict[int, Dict[cst.CSTNode, CodeRange]] = {}
        self._whole: Optional[Mapping[cst.CSTNode, CodeRange]] = None

    def at_line(self, line: int) -> Optional[int]:
        """The unit whose statement spans 1-based ``line``, or None."""
        if self.spans is None:
            return None
        k = bisect.bisect_right(self._firsts, line) - 1
        return k if k >= 0 and self.spans[k][0] <= line <= self.spans[k][2] else None

    def lines(self, k: int) -> str:
        """The text of unit ``k``'s statement (its lines; the whole text
        where the spans are unknown): what a name read in it must appear in."""
        if self.spans is None:
            return self.text
        starts = self.starts()
        first, _, last = self.spans[k]
        end = starts[last] if last < len(starts) else len(self.text)
        return self.text[starts[first - 1]:end]

    def starts(self) -> List[int]:
        if self._starts is None:
            self._starts = [0] + [m.end() for m in NEWLINES.finditer(self.text)]
        return self._starts

    def positions(self, k: Optional[int]) -> Mapping[cst.CSTNode, CodeRange]:
        """Positions of every node of unit ``k`` (k None: of the whole module)."""
        if self._whole is not None:
            return self._whole
        if k is not None and self.spans is not None:
            if k not in self._done:
                found = self._unit_positions(k)
                if found is not None:
                    self._done[k] = found
            if k in self._done:
                return self._done[k]
        self._whole = MetadataWrapper(self.module, unsafe_skip_copy=True).resolve(PositionProvider)
        return self._whole

    def _unit_positions(self, k: int) -> Optional[Dict[cst.CSTNode, CodeRange]]:
        """Positions in unit ``k``, or None where its code is not the text at its line."""
        unit = self.module.body[k]
        provider = PositionProvider()
        state = PositionProvidingCodegenState(
            default_indent=self.module.default_indent,
            default_newline=self.module.default_newline, provider=provider)
        unit._codegen(state)
        computed = provider._computed
        # libcst's start of a def or class is its ``def`` line, as ast's lineno
        shift = self.spans[k][1] - computed[unit].start.line
        code = "".join(state.tokens)
        starts = self.starts()
        if shift < 0 or shift >= len(starts):
            return None
        at = starts[shift]
        if self.text[at:at + len(code)] != code and not (
                # the last statement of a file without a final newline
                code.endswith(state.default_newline) and at + len(code) - len(
                    state.default_newline) == len(self.text)
                and self.text[at:] == code[:-len(state.default_newline)]):
            return None
        if not shift:
            return dict(computed)
        return {node: CodeRange((r.start.line + shift, r.start.column),
                                (r.end.line + shift, r.end.column))
                for node, r in computed.items()}


class Positions(Mapping):
    """``node -> CodeRange`` as libcst's PositionProvider gives it, each
    top-level statement's computed when one of its nodes is first looked up.
    ``node in positions`` needs no positions: it asks the parent map."""

    def __init__(self, units: Units, parents: Mapping[cst.CSTNode, cst.CSTNode]) -> None:
        self.units = units
        self.parents = parents

    def __getitem__(self, node: cst.CSTNode) -> CodeRange:
        if node not in self:  # another file's node: no positions to compute
            raise KeyError(node)
        return self.units.positions(self.unit_of(node))[node]

    def __contains__(self, node: object) -> bool:
        return node in self.parents or node is self.units.module

    def __iter__(self) -> Iterator[cst.CSTNode]:
        return iter(self.units.positions(None))

    def __len__(self) -> int:
        return len(self.parents) + 1

    def unit_of(self, node: cst.CSTNode) -> Optional[int]:
        """The index of the top-level statement holding ``node``, or None."""
        parents, module = self.parents, self.units.module
        while node is not None:
            parent = parents.get(node)
            if parent is module:
                return self.units.index.get(node)
            node = parent
        return None


def _spans(module: cst.Module, text: str) -> Optional[List[Tuple[int, int, int]]]:
    """(first line, own line, last line) of each top-level statement of
    ``module``, from ``ast`` (the first with decorators, the statement's own
    without; leading comments in neither), or None where ast
    cannot parse the text or its statements do not pair with libcst's."""
    try:
        body = ast.parse(text).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    spans, i = [], 0
    for unit in module.body:
        # one line of small statements (``a = 1; b = 2``) is several to ast
        n = len(unit.body) if isinstance(unit, cst.SimpleStatementLine) else 1
        group: Sequence[ast.stmt] = body[i:i + n]
        if len(group) != n:
            return None
        i += n
        first = min([group[0].lineno, *(d.lineno for d in getattr(group[0], "decorator_list", ()))])
        spans.append((first, group[0].lineno, max(s.end_lineno or s.lineno for s in group)))
    return spans if i == len(body) else None
