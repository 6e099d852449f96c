"""The model classes a file defines, read from its syntax: the parent process
never imports user code, yet ``--input`` without ``::NAME`` must pick one."""

from __future__ import annotations

import ast
from typing import List


def model_classes(text: str) -> List[str]:
    """Top-level classes deriving from ``nn.X``/``torch.nn.X``/``Module`` or
    from such a class of the same file, in source order. Raises SyntaxError
    for text that does not parse (a file with a syntax error defines nothing
    dimfix can name, and the user must hear why)."""
    tree = ast.parse(text)
    found: List[str] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(_is_module(b, found) for b in node.bases):
            found.append(node.name)
    return found


def _is_module(base: ast.expr, local: List[str]) -> bool:
    if isinstance(base, ast.Name):
        return base.id == "Module" or base.id in local
    if isinstance(base, ast.Attribute) and isinstance(base.value, (ast.Name, ast.Attribute)):
        owner = ast.unparse(base.value)
        return owner in ("nn", "torch.nn") and base.attr[:1].isupper()
    return False
