"""Generators that write a literal: a product refitted to the dimensions of
the tensor flattened into it, one literal solved (at the call, or where the
value is written further out: a default, a constant, a caller's argument, a
config entry), and the whole argument written as the size."""

from __future__ import annotations

import math
from typing import Iterator

import libcst as cst

from dimfix.exprs import code_of, names_in, product_factors, refit_product
from dimfix.records import Cause
from dimfix.search.candidate import ARITHMETIC, LITERAL, NAME, Candidate, Task
from dimfix.search.names import odd_route
from dimfix.search.solve import has_reference, refit_terms, settled, settled_terms, solve

BARE = (cst.Name, cst.Attribute, cst.Subscript)
VIEW = "View"  # the family of a view's size (views.py)


def _literal_only(expr) -> bool:
    return not names_in(expr) and not has_reference(expr)


class RefitProduct:
    """``64 * 14 * 14`` fed 64x16x16 flattened becomes ``64 * 16 * 16``: the
    fewest factors changed so the product reads as the tensor's dimensions
    (``ndf * 4 * 8 * 8`` fed 64x4x4 with ndf 16: ``ndf * 4 * 4 * 4``)."""

    kind = "refit product"

    def propose(self, task: Task) -> Iterator[Candidate]:
        expr = task.expr
        chain = task.exp.chain()  # the argument, and what a bare name there stands for
        origin = chain[-1]
        for dims in task.dims[:1]:
            if _literal_only(expr):
                factors = product_factors(expr)
                refit = refit_product(factors, dims) if factors else None
            elif isinstance(expr, cst.BinaryOperation):
                refit = refit_terms(expr, task.exp, dims)
            elif isinstance(origin.node, cst.BinaryOperation) and not _literal_only(origin.node):
                # ``flat = 128 * (IMG_SIZE // 4) * (IMG_SIZE // 4)``; ``Linear(flat, ...)``
                refit = refit_terms(origin.node, origin, dims)
                if refit:
                    yield Candidate(self.kind, refit, origin.node, origin.label or code_of(expr),
                                    bindings=tuple(b for x in chain[1:] for b in x.bindings),
                                    depth=len(chain) - 1, agrees=self._reduces(refit, task))
                continue
            else:
                refit = None
            if not refit:
                continue
            ones = any(int(r.evaluated_value) == 1 for r in refit.values()
                       if isinstance(r, cst.Integer))
            yield Candidate(self.kind, refit, expr, identity=ones, agrees=self._reduces(refit, task))
            if ones and _literal_only(expr):
                # ``512 * 7 * 7`` fed 512x1x1: the factors of 1 mean nothing, drop them.
                kept = [f for f in product_factors(expr) if f not in refit
                        or int(refit[f].evaluated_value) != 1]
                if kept:
                    product = " * ".join(code_of(refit.get(f, f)) for f in kept)
                    yield Candidate(self.kind, {expr: cst.parse_expression(product)}, expr,
                                    over=ARITHMETIC, drops=True)


    @staticmethod
    def _reduces(refit, task: Task) -> bool:
        """Does the refit change a divisor that reads as what the network does
        to the input (``img_size // 8`` with a 128 input arriving as 16x16)?
        Then the size divided is what is wrong, as for one literal solved."""
        return any(_reduces(lit, task.world, task.m) for lit in refit
                   if isinstance(lit, cst.Integer))


class DimsProduct:
    """A literal product with another number of factors than the tensor
    flattened into it has dimensions (``28 * 28`` fed 3x32x32) becomes the
    product of those dimensions, ``3 * 32 * 32``: at the call, or where the
    value is written (``INPUT_DIM = 28 * 28``), never over names. A view's
    size is one literal too (``x.view(-1, 784)``): what a view flattens is
    all it can mean, so its dimensions are what the author writes."""

    kind = "dims product"

    def propose(self, task: Task) -> Iterator[Candidate]:
        flattened = task.m.factors  # the tensor flattened into the size (not an RNN's)
        dims = [d for d in flattened if d != 1]
        chain = task.exp.chain()
        least = 1 if task.m.family == VIEW else 2
        for depth, e in enumerate(chain):
            node = e.bare()
            factors = product_factors(node)
            if not factors or len(factors) < least or len(factors) == len(dims) or len(dims) < 2:
                continue
            if not _literal_only(node):
                continue
            if isinstance(node, cst.BinaryOperation):
                star = " * " if node.operator.whitespace_before.value else "*"
            else:
                star = task.world.spacing(node, cst.Multiply) + "*" \
                    + task.world.spacing(node, cst.Multiply)
            new = cst.parse_expression(star.join(map(str, dims)))
            yield Candidate(self.kind, {node: new}, node,
                            "" if depth == 0 else (e.label or code_of(node)), "",
                            tuple(b for x in chain[1:depth + 1] for b in x.bindings),
                            writes=ARITHMETIC, over=ARITHMETIC, depth=depth)


class SolvedLiteral:
    """One literal the size depends on, solved for the size: at the call
    (``channels // 8`` -> ``// 16``) or where the value is written further out
    (``def __init__(self, hidden=128)``, ``NUM_CLASSES = 10``,
    ``parser.add_argument(..., default=28)`` under ``img_size // 2 ** 4``)."""

    kind = "literal"

    def propose(self, task: Task) -> Iterator[Candidate]:
        m, exp, world = task.m, task.exp, task.world
        expr = task.expr
        literal_only = _literal_only(expr)
        origin = exp.passthrough()
        # Factors that read as their dimensions of the flattened tensor: in the
        # argument, or in the product a bare name there stands for
        # (``flat = 32 * (n_mels // 4) * ...``; ``Linear(flat, ...)``).
        agreeing = set().union(*(settled(e, dims) for dims in task.dims
                                 for e in {id(exp): exp, id(origin): origin}.values()))
        # The terms of the sum the value is written as (here or where a caller
        # passed it) that already read as a part of the cat that arrives.
        parts = settled_terms(origin, m.parts)
        for lit, stack in world.literals[(m.layer_path, m.arg)]:
            value = solve(exp, lit, m.observed, task.base)
            if value is None:
                continue
            old = int(lit.evaluated_value)
            depth = len(stack) - 1
            key = lit if depth == 0 else _sub_key(exp, stack[1])
            inner = _key_in(origin, stack, lit) if origin is not exp else None
            # The reason line names the value written at the label, whole:
            # ``self.feat_size img_size // 4 -> img_size // 8``, not ``4 -> 8``.
            named = (expr if literal_only else lit) if depth == 0 else stack[-1].bare()
            passthrough = depth == 0 and isinstance(expr, cst.Integer) \
                or (origin is not exp and origin.node is lit)
            yield Candidate(
                self.kind, {lit: lit.with_changes(value=str(value))}, named,
                "" if depth == 0 else stack[-1].label,
                writes=LITERAL, over=LITERAL, depth=depth, through_odd=odd_route(_route(stack), m),
                passthrough=passthrough, renamed=passthrough and _renamed(stack, world, m),
                agrees=key in agreeing or inner in agreeing or lit in parts
                or _reduces(lit, world, m)
                or _through(stack, parts),
                identity=value == 1 and _scales(lit, world),
                exponent=_exponent(lit, world),
                counts=m.family == "Tensor" and depth == 0 and not literal_only,
                change=abs(math.log(value / old)) if old > 0 else math.inf)


class WholeLiteral:
    """The argument itself written as the size: ``64 + 16`` -> ``48`` when no
    literal of it can give it, or a name at the call whose value other uses
    need as it is (``HIDDEN`` -> ``64``). Never over arithmetic on names:
    that form is the author's, and other candidates keep it."""

    kind = "whole literal"

    def propose(self, task: Task) -> Iterator[Candidate]:
        expr = task.expr
        if isinstance(expr, cst.Integer):
            return
        if _literal_only(expr):
            yield Candidate(self.kind, {expr: cst.Integer(str(task.want))}, expr,
                            over=ARITHMETIC)
        elif isinstance(expr, BARE) and task.local:
            yield Candidate(self.kind, {expr: cst.Integer(str(task.want))}, expr, over=NAME, patch=True)


def _passed(stack) -> Iterator[cst.CSTNode]:
    """The nodes the literal's value passes on its way to the layer, outward:
    each expansion's node that stands for the next one in ``stack``."""
    return (node for _, node in _passed_in(stack))


def _passed_in(stack) -> Iterator[tuple]:
    """(expansion, node) for each node of ``_passed``: where it is read."""
    return ((outer, node) for outer, inner in zip(stack, stack[1:])
            for node, sub in outer.subs.items() if sub is inner)


def _route(stack):
    """The names the literal's value passes on its way to the layer, outward."""
    return [code_of(node) for node in _passed(stack)
            if isinstance(node, (cst.Name, cst.Attribute))]


def _renamed(stack, world, m) -> bool:
    """Does the literal's value reach an input size unchanged through a name
    other than the one the layer that made the arriving tensor was sized by,
    where that layer was built in the same run, and is it a size that tensor
    has on another axis (``nn.Conv1d(seq_len, ...)`` fed 4x128x64 by
    ``nn.Embedding(vocab_size, emb_dim)``: 64 is the sequence's length)? Then
    the literal is right for its name, and the name is the mistake. (A value
    the tensor has nowhere is the value written wrong: timm's ``head_chs=100``
    in a variant's dict, beside ``num_features=96``.)"""
    if m.cause is not Cause.INPUT or m.declared not in m.axes:
        return False
    other = False
    for outer, node in _passed_in(stack):
        if outer.frame is None or not isinstance(node, (cst.Name, cst.Attribute)):
            continue
        named = world.maker_names(m, outer.frame)
        if code_of(node) in named:
            return False  # the producer's own name: the value written for it is wrong
        other = other or bool(named)
    return other


def _scales(lit: cst.Integer, world) -> bool:
    """Is ``lit`` a factor, divisor or exponent (so that 1 leaves its operation
    meaningless: ``hidden_size * 1``)?"""
    _, parents = world.resolver._metadata_of(lit)
    parent = parents.get(lit)
    return isinstance(parent, cst.BinaryOperation) and isinstance(
        parent.operator, (cst.Multiply, cst.FloorDivide, cst.Divide, cst.Power)) and (
        parent.right is lit or isinstance(parent.operator, cst.Multiply))


def _reduces(lit: cst.Integer, world, m) -> bool:
    """Is ``lit`` the divisor of ``size // 8`` where it reads as what the trace
    saw the network do: an input of side 64 arrives as sides of 8 in the
    tensor flattened into the size? Then the size divided is what is wrong
    (``cfg["image_size"]`` still 48), and another divisor (6) fits by chance."""
    _, parents = world.resolver._metadata_of(lit)
    parent = parents.get(lit)
    if not (isinstance(parent, cst.BinaryOperation) and parent.right is lit
            and isinstance(parent.operator, (cst.FloorDivide, cst.Divide))):
        return False
    d = int(lit.evaluated_value)
    return d > 1 and any(s == a * d for s in world.spatial for a in m.factors[1:])


def _exponent(lit: cst.Integer, world) -> bool:
    """Is ``lit`` in the exponent of a ``**`` over a computed size? In
    ``(image_size // patch_size) ** 2`` the 2 counts dimensions (a side squared
    to an area); in ``img_size // 2 ** 4`` the 4 counts halvings, a depth an
    author may miscount like any other number."""
    _, parents = world.resolver._metadata_of(lit)
    node, parent = lit, parents.get(lit)
    while isinstance(parent, cst.CSTNode) and not isinstance(parent, cst.BaseStatement):
        if isinstance(parent, cst.BinaryOperation) and isinstance(parent.operator, cst.Power) \
                and parent.right is node:
            return not isinstance(parent.left, cst.Integer)
        node, parent = parent, parents.get(parent)
    return False


def _through(stack, nodes) -> bool:
    """Does the literal's value reach the layer through one of ``nodes``
    (``opt.latent_dim`` of ``opt.latent_dim + opt.n_classes + opt.code_dim``,
    whose default is the literal)?"""
    return any(node in nodes for node in _passed(stack))


def _key_in(origin, stack, lit):
    """The node of ``origin`` (an expansion in ``stack``) that holds ``lit``:
    ``lit`` itself, or the sub-expression it is reached through."""
    k = next((k for k, e in enumerate(stack) if e is origin), None)
    if k is None:
        return None
    return lit if k == len(stack) - 1 else _sub_key(origin, stack[k + 1])


def _sub_key(exp, sub):
    return next((n for n, e in exp.subs.items() if e is sub), None)
