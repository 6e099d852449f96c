"""A shape written as a tuple or list of literals (``nn.LayerNorm((64, 8, 8))``):
its elements change, one by one, to the shape that arrives."""

from __future__ import annotations

from typing import Sequence

import libcst as cst

from dimfix.exprs import code_of
from dimfix.records import Mismatch
from dimfix.search.candidate import Candidate, Facts, Outcome, Ranked


def tuple_outcome(group: Sequence[Mismatch], world) -> Outcome:
    m = group[0]
    arg = world.args[(m.layer_path, m.arg)]
    expr = arg.value
    if not isinstance(expr, (cst.Tuple, cst.List)) or len(expr.elements) != len(m.observed) \
            or not isinstance(m.declared, tuple):
        return Outcome(refusal=(expr, f"`{code_of(expr)}` is not a tuple of {len(m.observed)} numbers"))
    same_site = [c for k, c in world.tuples.items() if world.args.get(k) is arg and c.required]
    if any(c.required != m.observed for c in same_site):
        return Outcome(refusal=(expr, "this call builds layers that need different shapes"))
    replacements = {}
    for element, old, new in zip(expr.elements, m.declared, m.observed):
        if old == new:
            continue
        if not isinstance(element.value, cst.Integer):
            return Outcome(refusal=(element.value, f"`{code_of(element.value)}` is not a number"))
        replacements[element.value] = element.value.with_changes(value=str(new))
    candidate = Candidate("tuple", replacements, expr)
    return Outcome((Ranked(candidate, Facts(fixes=len(group)), 0.0,
                           f"`{code_of(expr)}` -> shape {m.observed}"),))
