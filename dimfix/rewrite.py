"""Apply the planned node replacements to the module in one pass."""

from __future__ import annotations

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


def apply_to(node: cst.CSTNode, replacements: Replacements) -> cst.CSTNode:
    """``node`` with the ``replacements`` that fall inside it (itself included)."""
    if node in replacements:
        return replacements[node]
    return node.visit(ReplaceNodes(replacements))
