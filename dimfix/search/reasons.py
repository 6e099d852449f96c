"""The records the user sees: an Edit for a candidate taken, Unfixables for a
group refused. Their reason lines are formatted where they are shown
(records.Edit.reason, report.py)."""

from __future__ import annotations

import os
from typing import List, Optional, Sequence

import libcst as cst

from dimfix.exprs import code_of
from dimfix.follow.syntax import reads_of
from dimfix.records import Edit, Mismatch, Unfixable
from dimfix.rewrite import apply_to
from dimfix.search.candidate import Outcome, Ranked


def edit_of(group: Sequence[Mismatch], ranked: Ranked, outcome: Outcome, world) -> Edit:
    """The Edit for ``ranked``, taken for ``group``: the new text of the whole
    edited expression, where it is and why this form."""
    candidate = ranked.candidate
    m = candidate.subject or group[0]  # a producer's out size: its own line
    because = candidate.because
    if ranked.facts.knock_ons and candidate.subject is None:
        shown = ", ".join(f"{p} {a}" for p, a in sorted(ranked.facts.knock_ons))
        because = f"{shown} follows, as traced"
    path, line, col = world.resolver.position(candidate.node)
    original = candidate.node
    new = apply_to(original, candidate.replacements)
    if not because and not candidate.label \
            and isinstance(original, (cst.Name, cst.Attribute, cst.Subscript)):
        because = _kept(original, m, outcome, world)
    return Edit(m, line, col, code_of(new), path, code_of(original), candidate.label, because,
                1 if candidate.subject else max(len(group), _fixed_here(m, candidate, world)),
                tried=max(outcome.tried, 1), cost=round(ranked.cost, 3), weighed=outcome.weighed,
                covers=tuple(k for k, _ in candidate.needs if k != (m.layer_path, m.arg)))


def _fixed_here(m: Mismatch, candidate, world) -> int:
    """The wrong layers built at ``m``'s call, from any call chain (ResNet's
    ``bn3`` in the blocks of every ``_make_layer`` call: groups of their
    own), that ``candidate`` makes right."""
    here = _call(m.site.call)
    return sum(1 for c, exp in world.expansions.values()
               if c.arg == m.arg and c.site is not None and _call(c.site.call) == here
               and c.required is not None and c.required != c.declared
               and exp.value(candidate.replacements) == c.required)


def _call(frame) -> tuple:
    return frame.path, frame.line, frame.col


def _kept(original: cst.CSTNode, m: Mismatch, outcome: Outcome, world) -> str:
    """Why the name at the call is left as it is and a literal written over it,
    as far as it is true: other code reads it; or it is read only here and its
    value is not written where dimfix can follow it, or no edit there gives
    the size (said only when no candidate there holds at all)."""
    code = code_of(original)
    if _read_elsewhere(original, world):
        return f"`{code}` kept: other uses need it as it is"
    hit = world.expansions.get((m.layer_path, m.arg))
    if hit is None or hit[1].subs.get(original) is None:
        return f"`{code}` is read only here; dimfix cannot follow it to where its value is written"
    if not any(r.candidate.further for r in outcome.ranked):
        return f"`{code}` is read only here; no edit where its value is written gives {m.observed}"
    return ""


def _read_elsewhere(node: cst.CSTNode, world) -> bool:
    """Does code other than ``node`` read the value ``node`` reads: another
    access of the same binding of a name, another load of ``self.x`` in its
    class, the same ``cfg.x`` or ``cfg["x"]`` elsewhere in its file?"""
    scopes, parents = world.resolver._metadata_of(node)
    if isinstance(node, cst.Name):
        scope = scopes.get(node)
        if scope is None:
            return False
        return any(access.node is not node for binding in scope[node.value]
                   for access in binding.references)
    if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name) \
            and node.value.value == "self":
        return any(read is not node for read in reads_of(node, scopes, parents))
    index = next((f.index for f in world.resolver.files.values()
                  if f is not None and node in f.parents), None)
    code = code_of(node)
    return index is None or any(n is not node and code_of(n) == code
                                for n in index.nodes(type(node)))


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
