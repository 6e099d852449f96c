"""Integer arithmetic the generators need: solve an expansion for one of its
literals or names, split a product into the dimensions of a flattened tensor."""

from __future__ import annotations

import itertools
import math
from typing import Iterator, List, Optional

import libcst as cst

from dimfix.exprs import Replacements, code_of
from dimfix.origin import Expansion, descendants


def solve(exp: Expansion, lit: cst.Integer, want: int, base: Replacements,
          node: Optional[cst.CSTNode] = None) -> Optional[int]:
    """A positive value for ``lit`` (or for ``node``, which holds ``lit``'s
    value) that makes ``exp`` evaluate to ``want``."""
    old = int(lit.evaluated_value)
    node = lit if node is None else node

    def at(v: int) -> Optional[int]:
        return exp.value({**base, node: lit.with_changes(value=str(v))})

    here, nxt = at(old), at(old + 1)
    # Where ``//`` leaves a range of answers (``img_size // 16 == 2`` for 32..47),
    # the one that divides exactly (32), as its author would: solved with ``/``.
    guesses = _exact_guesses(exp, lit, want, base, node)
    if here is not None and nxt is not None and nxt != here and (want - here) % (nxt - here) == 0:
        guesses.append(old + (want - here) // (nxt - here))
    if here:
        guesses.append(round(old * want / here))
    for v in guesses:
        if v > 0 and v != old and at(v) == want:
            return v
    return None


def solve_node(exp: Expansion, node: cst.CSTNode, old: Optional[int], want: int,
               base: Replacements) -> Optional[int]:
    """A positive value for the name ``node`` (now ``old``) that makes ``exp``
    evaluate to ``want``."""
    if old is None:
        return None
    if exp.value(base) == want:
        return old
    return solve(exp, cst.Integer(str(old)), want, base, node)


def _exact_guesses(exp: Expansion, lit: cst.Integer, want: int, base: Replacements,
                   node: cst.CSTNode) -> List[int]:
    """Values of ``lit`` near which ``exp``, with ``//`` read as ``/``, gives
    exactly ``want`` (a few secant steps: powers and products converge fast)."""
    old = int(lit.evaluated_value)
    swaps = dict(base)
    for division in _floor_divisions(exp):
        swaps.setdefault(division, division.with_changes(operator=cst.Divide()))

    def f(v: int) -> Optional[float]:
        value = exp.number({**swaps, node: lit.with_changes(value=str(v))})
        return value if type(value) in (int, float) else None

    x0, x1 = old, old + 1
    f0, f1 = f(x0), f(x1)
    for _ in range(16):
        if f0 is None or f1 is None or f1 == f0:
            return []
        x2 = x1 + (want - f1) * (x1 - x0) / (f1 - f0)
        if not math.isfinite(x2) or abs(x2) > 2**40:
            return []
        v = round(x2)
        if v <= 0:
            return []
        fv = f(v)
        if fv == want:
            return [v]
        if v == x1 or v == x0:
            return []
        x0, f0, x1, f1 = x1, f1, v, fv
    return []


def _floor_divisions(exp: Expansion) -> List[cst.BinaryOperation]:
    found = [n for n in descendants(exp.node)
             if isinstance(n, cst.BinaryOperation) and isinstance(n.operator, cst.FloorDivide)]
    for sub in exp.subs.values():
        found += _floor_divisions(sub)
    return found


def settled(exp: Expansion, dims) -> set:
    """The factors of a product that already read as their dimensions of the
    tensor flattened into it, in the one best alignment of factors to
    dimensions (``128 * ds_size ** 2`` with 128x2x2: the 128); nodes. Of the
    alignments that match as many groups, those whose groups pair as many
    factors as dimensions come first, ``x ** 2`` counting as two (with
    128x4x4, ``128 | ds_size ** 2`` over ``128 * 4 | 4``)."""
    terms = product_terms(exp.node)
    if not dims or len(terms) < 2 or len(terms) > 8:
        return set()
    values = [exp.value_of(t) for t in terms]
    if any(type(v) is not int or v <= 0 for v in values):
        return set()
    widths = [_width(t) for t in terms]
    best, found = (0, 0), []
    for target in {tuple(dims), tuple(d for d in dims if d != 1)}:
        for k in range(2, min(len(terms), len(target)) + 1):
            for cuts in itertools.combinations(range(1, len(terms)), k - 1):
                for dcuts in itertools.combinations(range(1, len(target)), k - 1):
                    tb, db = (0, *cuts, len(terms)), (0, *dcuts, len(target))
                    groups = [(terms[tb[g]:tb[g + 1]], math.prod(values[tb[g]:tb[g + 1]])
                               == math.prod(target[db[g]:db[g + 1]])) for g in range(k)]
                    agree = frozenset(t for group, ok in groups if ok for t in group)
                    paired = -sum(abs(sum(widths[tb[g]:tb[g + 1]]) - (db[g + 1] - db[g]))
                                  for g in range(k))
                    score = (sum(ok for _, ok in groups), paired)
                    if score[0] and score > best:
                        best, found = score, [agree]
                    elif score[0] and score == best and agree not in found:
                        found.append(agree)
    if not found:
        return set()
    common = frozenset.intersection(*found)  # alignments that differ settle nothing
    nodes = set()
    for term in common:
        nodes.update(descendants(term))
    return nodes


def settled_terms(exp: Expansion, parts) -> set:
    """The terms of a sum that already read as a part torch.cat joined into
    it (``128 + 32`` fed 128 and 64: the 128); nodes."""
    terms = addends(exp.node)
    if len(parts) < 2 or len(terms) < 2:
        return set()
    left = list(parts)
    nodes = set()
    for term in terms:
        value = exp.value_of(term)
        if value in left:
            left.remove(value)
            nodes.update(descendants(term))
    return nodes


def refit_terms(expr: cst.BinaryOperation, exp: Expansion, dims) -> Optional[Replacements]:
    """``ndf * 4 * 8 * 8`` fed a 64x4x4 tensor with ndf 16: split the product's
    terms, in order, into one group per dimension (16 * 4 | 8 | 8) and change
    the fewest literals so each group gives its dimension (16 * 4 * 4 * 4)."""
    terms = product_terms(expr)
    values = [exp.value_of(t) for t in terms]
    if any(type(v) is not int or v <= 0 for v in values):
        return None
    best = None
    for target in {tuple(dims), tuple(d for d in dims if d != 1)}:
        if not 1 < len(target) <= len(terms) <= 8:
            continue
        for cuts in itertools.combinations(range(1, len(terms)), len(target) - 1):
            bounds = (0, *cuts, len(terms))
            changes = {}
            for (a, b), dim in zip(zip(bounds, bounds[1:]), target):
                product = math.prod(values[a:b])
                if product == dim:
                    continue
                literals = [k for k in range(a, b) if isinstance(terms[k], cst.Integer)]
                if len(literals) != 1:
                    inner = _solved_inside(exp, terms[a], values[a], dim) if b - a == 1 else None
                    if inner is None:
                        break
                    changes[a] = inner
                    continue
                k = literals[0]
                rest = product // values[k]
                if dim % rest:
                    break
                changes[k] = (terms[k], dim // rest)
            else:
                if best is None or len(changes) < len(best):
                    best = changes
    if not best:
        return None
    return {lit: lit.with_changes(value=str(v)) for lit, v in best.values()}


def _solved_inside(exp: Expansion, term, value: int, dim: int):
    """(the one literal of ``term``, the value that makes ``term`` give
    ``dim``): ``(IMG_SIZE // 4)`` fed 8 of a 64 image -> (4, 8). None when the
    term holds no literal or several, or only an exponent's (``side ** 2``
    counts dimensions), or none solves it. ``exp`` is the product of the terms,
    so scaling the whole by ``dim / value`` scales this term alone."""
    literals = [n for n in descendants(term) if isinstance(n, cst.Integer)]
    exponents = {n.right for n in descendants(term)
                 if isinstance(n, cst.BinaryOperation) and isinstance(n.operator, cst.Power)}
    whole = exp.value()
    if len(literals) != 1 or literals[0] in exponents or not isinstance(term, cst.BinaryOperation) \
            or whole is None or (whole * dim) % value:
        return None
    v = solve(exp, literals[0], whole * dim // value, {})
    return (literals[0], v) if v is not None else None


def _width(term) -> int:
    """How many dimensions a factor stands for: ``side ** 2`` two, else one."""
    if isinstance(term, cst.BinaryOperation) and isinstance(term.operator, cst.Power) \
            and isinstance(term.right, cst.Integer):
        return max(1, int(term.right.evaluated_value))
    return 1


def product_terms(node) -> List[cst.BaseExpression]:
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Multiply) \
            and not node.lpar:
        return product_terms(node.left) + product_terms(node.right)
    return [node]


def addends(node) -> List[cst.BaseExpression]:
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Add) \
            and not node.lpar:
        return addends(node.left) + addends(node.right)
    return [node]


def times(expr, k: int, space: str = " ") -> cst.BinaryOperation:
    """``expr * k``, spaced by ``space``; ``expr`` cloned, since the original
    node must not appear inside its own replacement."""
    space = cst.SimpleWhitespace(space)
    return cst.BinaryOperation(left=expr.deep_clone(), right=cst.Integer(str(k)),
                               operator=cst.Multiply(whitespace_before=space,
                                                     whitespace_after=space))


def passed_names(exp: Expansion) -> Iterator[Expansion]:
    """The expansions, through ``exp``'s arithmetic and outward along bare
    names, that end at a name a frame wrote (outermost last)."""
    for sub in exp.live():
        chain = sub.chain()
        for e in chain:
            if isinstance(e.bare(), (cst.Name, cst.Attribute)) and e.kind != "argument":
                yield e
        if not isinstance(chain[-1].bare(), (cst.Name, cst.Attribute, cst.Integer)):
            yield from passed_names(chain[-1])


def frame_reads(expr: cst.CSTNode, exp: Expansion) -> set:
    """Nodes of ``expr`` whose value is, or is bound to, a subscript read from the
    frame (``hidden_dims[-1]``; ``width`` after ``width = dims[2]``), not followed
    to where it is written."""
    followed = set()
    for node in exp.subs:
        followed.update(descendants(node))
    found = set()
    for n in descendants(expr):
        if isinstance(n, cst.Subscript) and n not in followed:
            found.add(n)
        elif n in exp.subs and frame_reads(exp.subs[n].node, exp.subs[n]):
            found.add(n)
    return found


def opaque(expr: cst.BaseExpression, declared) -> str:
    """Why ``expr``'s value cannot be followed to a place in this file."""
    code = code_of(expr)
    if contains(expr, (cst.Subscript, cst.Call)):
        return (
            f"`{code}` is {declared} only at run time (read from a container or returned "
            "by a call); dimfix changes values written in the file"
        )
    return f"cannot tell how `{code}` gives {declared}"


def has_reference(expr: cst.CSTNode) -> bool:
    return contains(expr, (cst.Call, cst.Attribute, cst.Subscript))


def contains(expr: cst.CSTNode, kinds) -> bool:
    return any(isinstance(n, kinds) for n in descendants(expr))
