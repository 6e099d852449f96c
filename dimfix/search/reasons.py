"""The records the user sees: an Edit for a candidate taken, Unfixables for a
group refused, each with its reason line."""

from __future__ import annotations

import os
from typing import List, Optional, Sequence

import libcst as cst

from dimfix.exprs import code_of
from dimfix.records import Edit, Mismatch, Unfixable
from dimfix.rewrite import apply_to
from dimfix.search.candidate import Outcome, Ranked
from dimfix.source import display_path


def edit_of(group: Sequence[Mismatch], ranked: Ranked, outcome: Outcome, world) -> Edit:
    """The Edit for ``ranked``, taken for ``group``; its reason says where and why."""
    m = group[0]
    candidate = ranked.candidate
    because = candidate.because
    if ranked.facts.knock_ons:
        shown = ", ".join(f"{p} {a}" for p, a in sorted(ranked.facts.knock_ons))
        because = f"{shown} follows, as traced"
    path, line, col = world.resolver.position(candidate.node)
    shown = display_path(path)
    original = candidate.node
    new = apply_to(original, candidate.replacements)
    more = f" (and {len(group) - 1} more built here)" if len(group) > 1 else ""
    layer = f"{m.layer_path} ({m.kind}){more}"
    if candidate.label:
        reason = (f"{shown}:{line}:{col}: {candidate.label} {code_of(original)} -> "
                  f"{code_of(new)} (used by {layer} {m.arg}; {m.why}"
                  + (f"; {because})" if because else ")"))
    else:
        reason = f"{shown}:{line}:{col}: {layer} {m.arg} {m.declared} -> {m.observed}: {m.why}"
        if because:
            reason += f" ({because})"
        elif isinstance(original, (cst.Name, cst.Attribute, cst.Subscript)):
            reason += f" (`{code_of(original)}` kept: other uses need it as it is)"
    return Edit(m, line, col, code_of(new), reason, shown, code_of(original),
                tried=max(outcome.tried, 1), cost=round(ranked.cost, 3), weighed=outcome.weighed)


def refusals(group: Sequence[Mismatch], node: Optional[cst.CSTNode], why: str,
             world) -> List[Unfixable]:
    """An Unfixable for each mismatch of ``group``, placed at ``node`` or else at
    the first call in the target file on the way to the layer."""
    m = group[0]
    path, line, col = world.display, 0, 0
    found = world.resolver.position(node) if node is not None else None
    if found is not None:
        path, line, col = display_path(found[0]), found[1], found[2]
    elif m.site is not None:
        for frame in m.site.chain:
            if os.path.abspath(frame.path) == world.path:
                line, col = frame.line, world.index.char_col(frame.line, frame.col) + 1
                break
    return [Unfixable(x, path, line, col,
                      f"{x.layer_path} ({x.kind}) {x.arg} {x.declared} -> {x.observed} "
                      f"({x.why}): {why}")
            for x in group]
