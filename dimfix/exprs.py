"""Integer arithmetic over libcst expressions: evaluate, and find minimal
rewrites of an expression that give a wanted value."""

from __future__ import annotations

import itertools
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import libcst as cst

Replacements = Dict[cst.CSTNode, cst.CSTNode]

_OPS: Dict[type, Callable[[int, int], Optional[int]]] = {
    cst.Add: lambda a, b: a + b,
    cst.Subtract: lambda a, b: a - b,
    cst.Multiply: lambda a, b: a * b,
    cst.FloorDivide: lambda a, b: a // b if b else None,
    cst.Modulo: lambda a, b: a % b if b else None,
    cst.Divide: lambda a, b: a // b if b and a % b == 0 else None,
    cst.Power: lambda a, b: a**b if 0 <= b <= 64 else None,
}


def evaluate(node: cst.BaseExpression, names: Mapping[str, int],
             override: Optional[Mapping[cst.CSTNode, int]] = None) -> Optional[int]:
    """The integer value of ``node``, or None when it is not plain arithmetic."""
    if override and node in override:
        return override[node]
    if isinstance(node, cst.Integer):
        return int(node.evaluated_value)
    if isinstance(node, cst.Name):
        value = names.get(node.value)
        return value if type(value) is int else None
    if isinstance(node, cst.UnaryOperation):
        value = evaluate(node.expression, names, override)
        if value is None:
            return None
        if isinstance(node.operator, cst.Minus):
            return -value
        return value if isinstance(node.operator, cst.Plus) else None
    if isinstance(node, cst.BinaryOperation):
        op = _OPS.get(type(node.operator))
        left = evaluate(node.left, names, override)
        right = evaluate(node.right, names, override)
        if op is None or left is None or right is None:
            return None
        return op(left, right)
    if isinstance(node, cst.Call) and _is_name(node.func, "int") and len(node.args) == 1:
        return evaluate(node.args[0].value, names, override)
    return None


def integers(node: cst.CSTNode) -> List[cst.Integer]:
    """Integer literals in ``node``, left to right."""
    found: List[cst.Integer] = []

    class Collect(cst.CSTVisitor):
        def visit_Integer(self, n: cst.Integer) -> None:
            found.append(n)

    node.visit(Collect())
    return found


def names_in(node: cst.CSTNode) -> List[str]:
    found: List[str] = []

    class Collect(cst.CSTVisitor):
        def visit_Name(self, n: cst.Name) -> None:
            if n.value not in found:
                found.append(n.value)

        def visit_Attribute(self, n: cst.Attribute) -> bool:
            return False  # ``self.x``: its parts are not names in scope

        def visit_Call(self, n: cst.Call) -> bool:
            for arg in n.args:
                arg.value.visit(self)
            return False

    node.visit(Collect())
    return found


def product_factors(node: cst.BaseExpression) -> Optional[List[cst.Integer]]:
    """The literals of ``a * b * c`` when ``node`` is only that, else None."""
    if isinstance(node, cst.Integer):
        return [node]
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Multiply):
        left = product_factors(node.left)
        right = product_factors(node.right)
        if left is not None and right is not None:
            return left + right
    return None


def refit_product(factors: List[cst.Integer], dims: Tuple[int, ...]) -> Optional[Replacements]:
    """Change the fewest factors of a literal product so they read as ``dims``.

    ``64 * 14 * 14`` with dims (64, 16, 16) changes the two 14s. Sizes of 1 in
    dims are dropped when the product has fewer factors than dims.
    """
    if len(factors) != len(dims):
        dims = tuple(d for d in dims if d != 1)
    if len(factors) != len(dims) or len(factors) < 2 or len(factors) > 6:
        return None
    old = [int(f.evaluated_value) for f in factors]
    best = None
    for order in itertools.permutations(dims):
        kept = sum(a == b for a, b in zip(old, order))
        if best is None or kept > best[0]:
            best = (kept, order)
    order = best[1]
    return {
        f: f.with_changes(value=str(v)) for f, v, o in zip(factors, order, old) if v != o
    }


def solve_literal(node: cst.BaseExpression, names: Mapping[str, int],
                  want: int) -> Iterator[Tuple[cst.Integer, int]]:
    """Each (literal, value) such that setting that literal gives ``want``."""
    for literal in integers(node):
        base = int(literal.evaluated_value)
        at = evaluate(node, names, {literal: base})
        nxt = evaluate(node, names, {literal: base + 1})
        if at is None or nxt is None or nxt == at:
            continue
        step = nxt - at
        if (want - at) % step:
            continue
        value = base + (want - at) // step
        if value > 0 and evaluate(node, names, {literal: value}) == want:
            yield literal, value


def code_of(node: cst.CSTNode) -> str:
    return cst.Module(body=[]).code_for_node(node)


def _is_name(node: cst.BaseExpression, name: str) -> bool:
    return isinstance(node, cst.Name) and node.value == name

