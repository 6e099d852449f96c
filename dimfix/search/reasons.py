"""The records the user sees: an Edit for a candidate taken, Unfixables for a
group refused. Their reason lines are formatted where they are shown
(records.Edit.reason, report.py)."""

from __future__ import annotations

import os
from typing import List, Optional, Sequence

import libcst as cst

from dimfix.exprs import code_of
from dimfix.records import Edit, Mismatch, Unfixable
from dimfix.rewrite import apply_to
from dimfix.search.candidate import Outcome, Ranked


def edit_of(group: Sequence[Mismatch], ranked: Ranked, outcome: Outcome, world) -> Edit:
    """The Edit for ``ranked``, taken for ``group``: the new text of the whole
    edited expression, where it is and why this form."""
    m = group[0]
    candidate = ranked.candidate
    because = candidate.because
    if ranked.facts.knock_ons:
        shown = ", ".join(f"{p} {a}" for p, a in sorted(ranked.facts.knock_ons))
        because = f"{shown} follows, as traced"
    path, line, col = world.resolver.position(candidate.node)
    original = candidate.node
    new = apply_to(original, candidate.replacements)
    if not because and not candidate.label \
            and isinstance(original, (cst.Name, cst.Attribute, cst.Subscript)):
        because = f"`{code_of(original)}` kept: other uses need it as it is"
    return Edit(m, line, col, code_of(new), path, code_of(original), candidate.label, because,
                len(group), tried=max(outcome.tried, 1), cost=round(ranked.cost, 3),
                weighed=outcome.weighed)


def refusals(group: Sequence[Mismatch], node: Optional[cst.CSTNode], why: str,
             world) -> List[Unfixable]:
    """An Unfixable for each mismatch of ``group``, placed at ``node`` or else at
    the first call in the target file on the way to the layer."""
    m = group[0]
    path, line, col = world.path, 0, 0
    found = world.resolver.position(node) if node is not None else None
    if found is not None:
        path, line, col = found
    elif m.site is not None:
        for frame in m.site.chain:
            if os.path.abspath(frame.path) == world.path:
                line, col = frame.line, world.index.char_col(frame.line, frame.col) + 1
                break
    return [Unfixable(x, path, line, col, why) for x in group]
