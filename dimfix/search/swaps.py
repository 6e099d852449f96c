"""Generators that swap one part of an expression for another the author
wrote nearby: a subscript's index (``depths[1]`` -> ``depths[0]``), the
arm of a conditional the layer's value took (``oup if stride > 1 else
branch_features`` -> ``inp if ...``) and the list ``len(...)`` counts
(``len(COLUMNS)`` -> ``len(FEATURE_COLS)``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator, List, Optional, Tuple

import libcst as cst

from dimfix.exprs import Evaluator, code_of, names_in
from dimfix.scope import ALL, sequences_holding
from dimfix.search import cost as weights
from dimfix.search.candidate import NAME, Candidate, Task
from dimfix.search.names import holding, operand_needs, operands, prior_of


class IndexSwap:
    """``seq[i]`` where ``seq[j]`` holds what it must at every layer built
    here: at the call (MNASNet's ``depths[1]`` -> ``depths[0]``), inside its
    arithmetic (``hidden_dims[0]*4`` -> ``hidden_dims[-1]*4``), where a caller
    wrote it, or a loop's index off by one (``hidden_dims[i]`` ->
    ``hidden_dims[i + 1]``). Of several such j, the one the layer that made
    the arriving tensor was sized by comes first, and so does its spelling
    of one element (``widths[1]`` rather than ``widths[-1]`` of a pair)."""

    kind = "index swap"

    def propose(self, task: Task) -> Iterator[Candidate]:
        m, world, chain = task.m, task.world, task.exp.chain()
        for depth, node, frame, needs in _subscripts(task):
            named = world.maker_names(m, frame)
            # One element has two spellings (``[1]`` and ``[-1]`` of a pair):
            # the one the maker was sized by is the author's.
            fits = [next((x for x in spellings if x in named), spellings[0])
                    for spellings in _indices(node, frame, needs, world)]
            preferred = [new for new in fits if new in named]
            for new in preferred or fits:
                e = chain[depth]
                yield Candidate(self.kind, {node: cst.parse_expression(new)}, node,
                                "" if depth == 0 else (e.label or code_of(node)),
                                f"`{new}` holds what it must at every layer built here",
                                tuple(b for x in chain[1:depth + 1] for b in x.bindings),
                                writes=NAME, over=NAME, depth=depth,
                                holds="what it must at every layer built here")


def _subscripts(task: Task):
    """(depth, subscript node, frame index, [(construction, what it must hold)])
    for the subscripts the value passes unchanged, and those among the
    operands of the arithmetic at the call."""
    m, world, exp = task.m, task.world, task.exp
    site = world.site_constructions(m)
    for depth, e in enumerate(exp.chain()):
        node = e.bare()
        if isinstance(node, cst.Subscript) and e.frame is not None:
            yield depth, node, e.frame, [(c, c.required) for c in site if c.required is not None
                                         and node in world.reach.get((c.layer_path, c.arg), ())]
    if not isinstance(task.expr, cst.BinaryOperation):
        return
    for node in operands(task.expr, cst.Subscript):
        needs = operand_needs(task, site, node)
        if needs:
            yield 0, node, 0, [(c, need) for c, need, _ in needs]


class MakerExpression:
    """The value the layer's size is read from, where it was written (at the
    call or where a caller passed it on), replaced by the expression the layer
    that made the arriving tensor was given its size as, in the same run of
    that function: ``conv(conv_dim, conv_dim*4, 4)`` after ``conv(conv_dim,
    conv_dim*2, 4)`` -> ``conv(conv_dim*2, conv_dim*4, 4)``. The author's own
    expression, copied; never new arithmetic."""

    kind = "maker's expression"

    def propose(self, task: Task) -> Iterator[Candidate]:
        m, world, chain = task.m, task.world, task.exp.chain()
        for depth, e in enumerate(chain):
            node = e.bare()
            if e.frame is None or (depth and e.kind == "argument") \
                    or not isinstance(node, (cst.Name, cst.Attribute, cst.Subscript,
                                             cst.BinaryOperation)):
                continue
            # A name the producer was given is a name swap's (names.holding, with
            # its leftovers and suspects); arithmetic copied whole is this one's.
            made = world.maker_expression(m, e.frame)
            if not isinstance(made, cst.BinaryOperation) or code_of(made) == code_of(node):
                continue
            _, leftovers = world.context(m.site.chain[e.frame])
            if leftovers & set(names_in(made)):
                continue
            new = made.deep_clone()
            yield Candidate(self.kind, {node: new}, node,
                            "" if depth == 0 else (e.label or code_of(node)),
                            f"the layer before is given `{code_of(made)}`",
                            tuple(b for x in chain[1:depth + 1] for b in x.bindings),
                            writes=NAME, over=NAME, depth=depth, name_cost=-weights.MAKER)


class ArmSwap:
    """The arm of ``a if test else b`` (or ``a or b``) the layer's value took is
    a name, and another name in scope holds the size at every layer that took
    that arm: ``oup if (self.stride > 1) else branch_features`` -> ``inp ...``.
    The names the expression already reads are no candidates."""

    kind = "arm swap"

    def propose(self, task: Task) -> Iterator[Candidate]:
        expr, exp, m, world = task.expr, task.exp, task.m, task.world
        arm = exp.bare()
        if arm is expr or not isinstance(arm, (cst.Name, cst.Attribute)):
            return
        group = [c for c in world.site_constructions(m)
                 if (c.layer_path, c.arg) in world.expansions
                 and world.expansions[(c.layer_path, c.arg)][1].bare() is arm]
        found = holding(world, group, m.site.call, expr, ALL, named=world.maker_names(m),
                        param=m.arg)
        for name in found.names:
            yield Candidate(self.kind, {arm: cst.parse_expression(name)}, arm,
                            because=f"`{name}` holds {m.observed} at every layer built here "
                            "with this arm", writes=NAME, over=NAME, name_cost=prior_of(found),
                            holds=f"{m.observed} at every layer built here with this arm")


def _indices(node: cst.Subscript, frame_index: int, needs, world) -> List[Tuple[str, ...]]:
    """The other index expressions of ``node`` whose element is what each
    construction needs, in the frame that reads it: another literal (counted
    from the end if the author counted so, or ``-1`` for the last where ``0``
    was written; then the count from the start follows as a second
    spelling), or the loop's index moved by one or two (``i + 1``)."""
    if len(node.slice) != 1 or not isinstance(node.slice[0].slice, cst.Index) or not needs:
        return []
    index = node.slice[0].slice.value
    literal = Evaluator().integer(index)
    fits: Optional[dict] = None  # spelling -> the other spellings of its element
    for c, need in needs:
        frame = c.site.chain[frame_index]
        ev = Evaluator(frame.local_values, frame.global_values)
        seq = ev.value(node.value)
        at = literal if literal is not None else ev.integer(index)
        if type(seq) not in (list, tuple) or at is None or not -len(seq) <= at < len(seq):
            return []
        n = len(seq)
        if literal is not None:
            here = {_literal(j, n, literal): {str(j)} - {_literal(j, n, literal)}
                    for j in range(n) if j != at % n and seq[j] == need}
        else:
            space = world.spacing(node, cst.Add)
            here = {_shifted(index, d, space): set() for d in (-2, -1, 1, 2)
                    if 0 <= at + d < n and seq[at + d] == need}
        fits = here if fits is None else {x: fits[x] & here[x] for x in fits.keys() & here.keys()}
    return sorted(tuple(_with_index(node, new) for new in (x, *sorted(fits[x])))
                  for x in fits or ())


def _with_index(node: cst.Subscript, new: str) -> str:
    return code_of(node.with_changes(slice=[node.slice[0].with_changes(
        slice=node.slice[0].slice.with_changes(value=cst.parse_expression(new)))]))


def _literal(j: int, n: int, written: int) -> str:
    if written < 0 or (written == 0 and j == n - 1 and n > 1):
        return str(j - n)
    return str(j)


def _shifted(index: cst.BaseExpression, d: int, space: str) -> str:
    op = "+" if d > 0 else "-"
    return f"{code_of(index)}{space}{op}{space}{abs(d)}"


class LenSwap:
    """``len(COLUMNS)`` where another list or tuple in scope is as long as the
    size must be at every layer built through it (``len(FEATURE_COLS)``: the
    columns but the target): at the call, or where a caller wrote it."""

    kind = "len swap"

    def propose(self, task: Task) -> Iterator[Candidate]:
        m, world, chain = task.m, task.world, task.exp.chain()
        for depth, e in enumerate(chain):
            node = e.bare()
            if e.frame is None or not _len_of_name(node):
                continue
            counted = node.args[0].value
            group = [replace(c, site=replace(c.site, chain=c.site.chain[e.frame:]))
                     for c in world.site_constructions(m)
                     if node in world.reach.get((c.layer_path, c.arg), ())]
            found = sequences_holding(group, exclude=[code_of(counted)])
            for name in found.names:  # several: a tie, refused
                yield Candidate(self.kind, {counted: cst.parse_expression(name)}, node,
                                "" if depth == 0 else (e.label or code_of(node)),
                                f"`{name}` holds {m.observed} items at every layer built here",
                                tuple(b for x in chain[1:depth + 1] for b in x.bindings),
                                writes=NAME, over=NAME, depth=depth, name_cost=prior_of(found),
                                holds=f"{m.observed} items at every layer built here")


def _len_of_name(node) -> bool:
    """``len(NAME)`` or ``len(x.y)``."""
    return isinstance(node, cst.Call) and isinstance(node.func, cst.Name) \
        and node.func.value == "len" and len(node.args) == 1 and not node.args[0].star \
        and isinstance(node.args[0].value, (cst.Name, cst.Attribute))
