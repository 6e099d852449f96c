"""Apply the planned node replacements to the module in one pass."""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

import libcst as cst

from dimfix.exprs import Replacements


class ReplaceNodes(cst.CSTTransformer):
    """Swap nodes by identity; everything else, whitespace and comments included,
    is kept as parsed, so the printed module differs only where replaced."""

    def __init__(self, replacements: Replacements) -> None:
        super().__init__()
        self.replacements = replacements

    def on_leave(self, original_node, updated_node):
        return self.replacements.get(original_node, updated_node)


def apply_edits(module: cst.Module, replacements: Replacements) -> str:
    """The source of ``module`` with ``replacements`` applied."""
    if not replacements:
        return module.code
    return module.visit(ReplaceNodes(replacements)).code


def splice_edits(index, replacements: Replacements) -> str:
    """``apply_edits`` on ``index``'s module (locate.CallIndex), written into its
    text where each replaced node stands: a transform of a large file prints
    every node again (timm's resnet.py: ~0.25 s per alternative). Only for
    expressions on one line each, old and new, that print alone as they stand
    in the text (an expression over several lines prints with its block's
    indentation): otherwise the module is transformed and printed."""
    spans = _spans(index, replacements) if replacements else None
    if spans is None:
        return apply_edits(index.module, replacements)
    text = index.text
    out, at = [], 0
    for start, end, code in sorted(spans):
        if start < at:  # one replaced node inside another: the transform decides
            return apply_edits(index.module, replacements)
        out += [text[at:start], code]
        at = end
    return "".join(out) + text[at:]


def _spans(index, replacements: Replacements) -> Optional[List[Tuple[int, int, str]]]:
    """(start, end, new code) in ``index.text`` of each replacement, or None
    where one cannot be written in place."""
    module, text = index.module, index.text
    starts = None
    spans = []
    for old, new in replacements.items():
        if not isinstance(old, cst.BaseExpression) or not isinstance(new, cst.BaseExpression) \
                or old not in index.positions:
            return None
        old_code, new_code = module.code_for_node(old), module.code_for_node(new)
        if any(c in code for code in (old_code, new_code) for c in "\r\n"):
            return None
        if starts is None:
            starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]
        where = index.positions[old]
        if where.start.line != where.end.line or where.start.line > len(starts):
            return None
        start = starts[where.start.line - 1] + where.start.column
        end = start + where.end.column - where.start.column
        if text[start:end] != old_code:
            return None
        spans.append((start, end, new_code))
    return spans


def apply_to(node: cst.CSTNode, replacements: Replacements) -> cst.CSTNode:
    """``node`` with the ``replacements`` that fall inside it (itself included)."""
    if node in replacements:
        return replacements[node]
    return node.visit(ReplaceNodes(replacements))
