"""Integer arithmetic over libcst expressions: evaluate, and find minimal
rewrites of an expression that give a wanted value."""

from __future__ import annotations

import inspect
import itertools
import math
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import libcst as cst

Replacements = Dict[cst.CSTNode, cst.CSTNode]

_OPS: Dict[type, Callable[[object, object], object]] = {
    cst.Add: lambda a, b: a + b,
    cst.Subtract: lambda a, b: a - b,
    cst.Multiply: lambda a, b: a * b,
    cst.FloorDivide: lambda a, b: a // b,
    cst.Modulo: lambda a, b: a % b,
    cst.Divide: lambda a, b: a / b,
    cst.Power: lambda a, b: a**b if abs(b) <= 64 else None,
}


MISSING = object()


class Evaluator:
    """Evaluates integer arithmetic in an expression.

    ``local_values`` and ``global_values`` give names their values; attributes
    are read with ``inspect.getattr_static`` so no user code runs. ``hook`` may
    answer for a Name, Attribute or Subscript node first (returning MISSING to
    decline), and ``override`` swaps nodes for others before evaluating.
    Integer literals used are appended to ``used``.
    """

    def __init__(self, local_values: Mapping[str, object] = (), global_values: Mapping[str, object] = (),
                 hook: Optional[Callable[[cst.CSTNode], object]] = None,
                 override: Optional[Mapping[cst.CSTNode, cst.CSTNode]] = None,
                 none: Optional[Callable[[cst.CSTNode], bool]] = None) -> None:
        self.local_values = dict(local_values)
        # Whether a name the hook answers for stands for a written ``None`` (a
        # default of None), which the hook's None cannot tell from "unknown".
        self.none = none
        self.global_values = global_values or {}
        self.hook = hook
        self.override = override or {}
        self.used: List[cst.Integer] = []

    def integer(self, node: cst.BaseExpression) -> Optional[int]:
        value = self.value(node)
        return value if type(value) is int else None

    def value(self, node: cst.CSTNode) -> object:
        node = self.override.get(node, node)
        if self.hook is not None and isinstance(node, (cst.Name, cst.Attribute, cst.Subscript)):
            hooked = self.hook(node)
            if hooked is not MISSING:
                return hooked
        if isinstance(node, cst.Integer):
            self.used.append(node)
            return int(node.evaluated_value)
        if isinstance(node, cst.Float):
            return float(node.evaluated_value)
        if isinstance(node, cst.Name):
            return self._name(node.value)
        if isinstance(node, cst.Attribute):
            if isinstance(node.value, cst.Name) and node.value.value == "self":
                key = f"self.{node.attr.value}"
                if key in self.local_values:  # as it was when the layer was built
                    return self.local_values[key]
            base = self.value(node.value)
            if base is None:
                return None
            try:
                return inspect.getattr_static(base, node.attr.value)
            except AttributeError:
                return None
        if isinstance(node, cst.UnaryOperation):
            value = self.value(node.expression)
            if not _is_number(value):
                return None
            if isinstance(node.operator, cst.Minus):
                return -value
            return value if isinstance(node.operator, cst.Plus) else None
        if isinstance(node, cst.BinaryOperation):
            op = _OPS.get(type(node.operator))
            left, right = self.value(node.left), self.value(node.right)
            if op is None or not _is_number(left) or not _is_number(right):
                return None
            try:
                return op(left, right)
            except (ArithmeticError, ValueError):
                return None
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Name):
            return self._call(node)
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
            return self._product(node)
        if isinstance(node, (cst.Tuple, cst.List)):  # ``(channels, img_size, img_size)``
            if any(isinstance(e, cst.StarredElement) for e in node.elements):
                return None
            return tuple(self.value(e.value) for e in node.elements)
        if isinstance(node, cst.Subscript):
            return self._subscript(node)
        if isinstance(node, cst.SimpleString):
            return node.evaluated_value
        if isinstance(node, (cst.IfExp, cst.BooleanOperation)):
            taken = self.taken(node)
            return None if taken is None else self.value(taken)
        if isinstance(node, cst.Comparison):
            return self._compare(node)
        if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Not):
            value = self.value(node.expression)
            return None if value is None and not _is_none(node.expression) else not value
        return None

    def _subscript(self, node: cst.Subscript) -> object:
        """``channels[2]``, ``cfg["width"]``: an element of a plain list, tuple
        or dict the frame holds (exact types only: no user ``__getitem__`` runs)."""
        if len(node.slice) != 1 or not isinstance(node.slice[0].slice, cst.Index):
            return None
        base = self.value(node.value)
        used = len(self.used)
        key = self.value(node.slice[0].slice.value)
        del self.used[used:]  # the index is no place for a fix
        if type(base) in (list, tuple) and type(key) is int and -len(base) <= key < len(base):
            return base[key]
        if type(base) is dict and type(key) in (str, int):
            return base.get(key)
        return None

    def taken(self, node: cst.CSTNode) -> Optional[cst.CSTNode]:
        """The operand whose value ``a if test else b`` or ``a or b`` takes, if
        the test can be told; ``node`` itself for any other expression."""
        node = self.override.get(node, node)
        if isinstance(node, cst.IfExp):
            used = len(self.used)
            test = self._truth(node.test)
            del self.used[used:]  # ``stride > 1``: a test, no place for a size
            return None if test is None else node.body if test else node.orelse
        if isinstance(node, cst.BooleanOperation):
            left = self._truth(node.left)
            if left is None:
                return None
            if isinstance(node.operator, cst.Or):
                return node.left if left else node.right
            return node.right if left else node.left
        return node

    def _truth(self, node: cst.CSTNode) -> Optional[bool]:
        value = self.value(node)
        if value is None and not _is_none(node) and not (self.none is not None and self.none(node)):
            return None  # unknown, not None
        if isinstance(value, (bool, int, float, str, tuple, list, dict)) or value is None:
            return bool(value)
        return None

    def _compare(self, node: cst.Comparison) -> object:
        left = self.value(node.left)
        for target in node.comparisons:
            right = self.value(target.comparator)
            op = _COMPARE.get(type(target.operator))
            if op is None or not (_is_plain(left) and _is_plain(right)):
                return None
            if not op(left, right):
                return False
            left = right
        return True

    def _name(self, name: str) -> object:
        if name in self.local_values:
            return self.local_values[name]
        if name in self.global_values:
            return self.global_values[name]
        return {"True": True, "False": False, "None": None}.get(name)

    def _call(self, node: cst.Call) -> object:
        func = node.func.value
        if func not in _CALLS or any(a.keyword or a.star for a in node.args):
            return None
        if func == "len":  # ``len(filter_sizes) * n_filters``: a sequence's length
            seq = self.value(node.args[0].value) if len(node.args) == 1 else None
            return len(seq) if isinstance(seq, (list, tuple)) else None
        values = [self.value(a.value) for a in node.args]
        if not values or not all(_is_number(v) for v in values):
            return None
        try:
            return _CALLS[func](*values)
        except (TypeError, ValueError, ArithmeticError):
            return None


    def _product(self, node: cst.Call) -> object:
        """``np.prod(img_shape)``, ``math.prod(shape)``: the product of a
        sequence of integers (numpy's or math's own ``prod``, nothing else)."""
        if node.func.attr.value != "prod" or len(node.args) != 1 or node.args[0].keyword \
                or node.args[0].star:
            return None
        used = len(self.used)
        owner = self.value(node.func.value)
        del self.used[used:]
        if getattr(owner, "__name__", None) not in ("numpy", "math"):
            return None
        seq = self.value(node.args[0].value)
        if not isinstance(seq, (list, tuple)) or not all(type(v) is int for v in seq):
            return None
        return math.prod(seq)


_COMPARE: Dict[type, Callable[[object, object], bool]] = {
    cst.Equal: lambda a, b: a == b,
    cst.NotEqual: lambda a, b: a != b,
    cst.LessThan: lambda a, b: a < b,
    cst.LessThanEqual: lambda a, b: a <= b,
    cst.GreaterThan: lambda a, b: a > b,
    cst.GreaterThanEqual: lambda a, b: a >= b,
    cst.Is: lambda a, b: a is b,
    cst.IsNot: lambda a, b: a is not b,
}


def _is_plain(value: object) -> bool:
    """Values a comparison may be evaluated on without running user code."""
    return value is None or type(value) in (int, float, bool, str)


def _is_none(node: cst.CSTNode) -> bool:
    return isinstance(node, cst.Name) and node.value == "None"


def _is_number(value: object) -> bool:
    return type(value) in (int, float)


_CALLS = {"int": int, "round": round, "max": max, "min": min, "abs": abs, "len": len}


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


def code_of(node: cst.CSTNode) -> str:
    return cst.Module(body=[]).code_for_node(node)
