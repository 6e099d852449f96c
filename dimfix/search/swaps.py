"""Generators that swap one part of an expression for another the author
wrote nearby: a subscript's index (``depths[1]`` -> ``depths[0]``) and the
arm of a conditional the layer's value took (``oup if stride > 1 else
branch_features`` -> ``inp if ...``)."""

from __future__ import annotations

from typing import Iterator, List, Optional

import libcst as cst

from dimfix.exprs import Evaluator, code_of
from dimfix.scope import ALL
from dimfix.search.candidate import NAME, Candidate, Task
from dimfix.search.names import holding, prior_of


class IndexSwap:
    """``seq[i]`` where ``seq[j]`` holds the size at every layer built here, at
    the call or where a caller wrote it: the index the author meant. Of several
    such j, the one the layer that made the arriving tensor was sized by
    (``Conv2d(depths[0], depths[0], ...)`` before the norm) comes first."""

    kind = "index swap"

    def propose(self, task: Task) -> Iterator[Candidate]:
        m, world = task.m, task.world
        for depth, e in enumerate(task.exp.chain()):
            node = e.bare()
            index = _literal_index(node)
            if index is None or e.frame is None:
                continue
            group = [c for c in world.site_constructions(m) if c.required is not None
                     and node in world.reach.get((c.layer_path, c.arg), ())]
            fits = _indices(node, e.frame, group, index)
            named = world.maker_names(m, e.frame)
            preferred = [j for j in fits if _at(node, j) in named]
            for j in preferred or fits:
                new = _at(node, j)
                yield Candidate(self.kind, {node: cst.parse_expression(new)}, node,
                                "" if depth == 0 else (e.label or code_of(node)),
                                f"`{new}` holds {m.observed} at every layer built here",
                                tuple(b for x in task.exp.chain()[1:depth + 1] for b in x.bindings),
                                writes=NAME, over=NAME, depth=depth)


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
                            "with this arm", writes=NAME, over=NAME, name_cost=prior_of(found))


def _literal_index(node) -> Optional[int]:
    if not (isinstance(node, cst.Subscript) and len(node.slice) == 1
            and isinstance(node.slice[0].slice, cst.Index)):
        return None
    return Evaluator().integer(node.slice[0].slice.value)


def _indices(node: cst.Subscript, frame_index: int, group, index: int) -> List[int]:
    """The other indices j of ``node``'s sequence whose element is each
    construction's size, in the frame that reads it."""
    fits: Optional[List[int]] = None
    for c in group:
        frame = c.site.chain[frame_index]
        seq = Evaluator(frame.local_values, frame.global_values).value(node.value)
        if type(seq) not in (list, tuple):
            return []
        n = len(seq)
        if not -n <= index < n:
            return []
        here = [j - n if index < 0 else j for j in range(n)
                if j != index % n and seq[j] == c.required]
        fits = here if fits is None else [j for j in fits if j in here]
    return fits or []


def _at(node: cst.Subscript, j: int) -> str:
    """``node`` reading element ``j`` (counted from the end, as ``-1`` is, if
    the author counted so)."""
    element = node.slice[0]
    return code_of(node.with_changes(slice=[element.with_changes(
        slice=element.slice.with_changes(value=cst.parse_expression(str(j))))]))
