"""Decide, for each mismatch, which argument to rewrite and to what.

Mismatches built at one call site are planned together: a call inside a loop
builds several layers, and one edit there must suit every one of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import libcst as cst

from dimfix.exprs import (
    Replacements,
    code_of,
    evaluate,
    names_in,
    product_factors,
    refit_product,
    solve_literal,
)
from dimfix.locate import CallIndex, find_argument
from dimfix.records import Construction, Edit, Mismatch, Trace, Unfixable


@dataclass(frozen=True)
class Plan:
    edits: Tuple[Edit, ...]
    unfixable: Tuple[Unfixable, ...]
    replacements: Replacements
    index: CallIndex


def plan_edits(text: str, path: str, display: str, trace: Trace) -> Plan:
    """Edits for ``trace``'s mismatches in the file ``path`` holding ``text``."""
    index = CallIndex(text, display)
    planner = _Planner(index, path, display, trace)
    groups: Dict[tuple, List[Mismatch]] = {}
    for m in trace.mismatches:
        key = (m.site.key, m.arg) if m.site is not None else (m.layer_path, m.arg)
        groups.setdefault(key, []).append(m)
    for key, group in groups.items():
        planner.plan(group, trace.constructions.get(key, ()))
    return Plan(tuple(planner.edits), tuple(planner.unfixable), planner.replacements, index)


class _Planner:
    def __init__(self, index: CallIndex, path: str, display: str, trace: Trace) -> None:
        self.index = index
        self.path = path
        self.display = display
        self.edits: List[Edit] = []
        self.unfixable: List[Unfixable] = []
        self.replacements: Replacements = {}

    def plan(self, group: Sequence[Mismatch], built: Sequence[Construction]) -> None:
        m = group[0]
        site = m.site
        if site is None:
            return self._refuse(group, None, "cannot tell where this layer was built")
        where = site.call
        if site.via:
            return self._refuse(group, None, f"it is built inside {site.via}, not by the call here")
        if os.path.abspath(where.path) != self.path:
            return self._refuse(group, None, f"it is built in {where.path}; dimfix edits only the target file")
        notes = sorted({x.note for x in group if x.note})
        if notes:
            return self._refuse(group, None, "; ".join(notes))
        call = self.index.find(where)
        if call is None:
            return self._refuse(group, None, "cannot find the call that built it")
        arg, why = find_argument(call, m.params, m.arg)
        if arg is None:
            return self._refuse(group, call, why)
        needs = [c for c in built if c.required is not None] or [
            Construction(x.layer_path, x.declared, x.observed, site) for x in group
        ]
        wanted = sorted({c.required for c in needs})
        if len(wanted) > 1 and not names_in(arg.value):
            listing = ", ".join(str(v) for v in wanted)
            return self._refuse(
                group, arg.value,
                f"this call builds {len(needs)} layers that need different {m.arg} ({listing})",
            )
        for replacements in _candidates(arg.value, m, site.names):
            if all(self._gives(arg.value, replacements, c) for c in needs):
                self.replacements.update(replacements)
                line, col = self.index.position(arg.value)
                new_code = code_of(_apply(arg.value, replacements))
                self.edits.append(Edit(m, line, col, new_code, self._reason(group, line, col)))
                return None
        return self._refuse(group, arg.value, _why_not(arg.value, m))

    def _gives(self, expr, replacements, construction: Construction) -> bool:
        new = _apply(expr, replacements)
        return evaluate(new, construction.site.names) == construction.required

    def _reason(self, group: Sequence[Mismatch], line: int, col: int) -> str:
        m = group[0]
        more = f" (and {len(group) - 1} more built here)" if len(group) > 1 else ""
        return (
            f"{self.display}:{line}:{col}: {m.layer_path} ({m.kind}){more} "
            f"{m.arg} {m.declared} -> {m.observed}: {m.why}"
        )

    def _refuse(self, group: Sequence[Mismatch], node: Optional[cst.CSTNode], why: str) -> None:
        m = group[0]
        if node is not None:
            line, col = self.index.position(node)
        elif m.site is not None and os.path.abspath(m.site.call.path) == self.path:
            line, col = m.site.call.line, self.index.char_col(m.site.call.line, m.site.call.col) + 1
        else:
            line, col = 0, 0
        reason = (
            f"{m.layer_path} ({m.kind}) {m.arg} {m.declared} -> {m.observed} "
            f"({m.why}): {why}"
        )
        for x in group:
            self.unfixable.append(Unfixable(x, self.display, line, col, reason))


def _candidates(expr: cst.BaseExpression, m: Mismatch, names) -> List[Replacements]:
    """Rewrites of ``expr`` giving ``m.observed``, the most careful first."""
    want = m.observed
    out: List[Replacements] = []
    used = names_in(expr)
    if not used and not _has_call_or_attr(expr):
        factors = product_factors(expr)
        if factors and m.factors:
            refit = refit_product(factors, m.factors)
            if refit is not None:
                out.append(refit)
        if isinstance(expr, cst.Integer):
            out.append({expr: expr.with_changes(value=str(want))})
        else:
            out.append({expr: cst.Integer(str(want))})
        return out
    if isinstance(expr, (cst.Name, cst.Attribute)):
        return out  # the value is written elsewhere: not this call's to change
    for name in used:
        if names.get(name) == want:
            out.append({expr: cst.Name(name)})
    solved = list(solve_literal(expr, names, want))
    if len(solved) == 1:
        literal, value = solved[0]
        out.append({literal: literal.with_changes(value=str(value))})
    return out


def _why_not(expr: cst.BaseExpression, m: Mismatch) -> str:
    code = code_of(expr)
    if isinstance(expr, (cst.Name, cst.Attribute)):
        return (
            f"`{code}` is written elsewhere (a parameter, attribute or constant); "
            "following a value to where it is written is not supported yet"
        )
    return f"no single change to `{code}` gives {m.observed} for every layer built here"


def _has_call_or_attr(expr: cst.CSTNode) -> bool:
    found = []

    class Find(cst.CSTVisitor):
        def visit_Call(self, n):
            found.append(n)

        def visit_Attribute(self, n):
            found.append(n)

        def visit_Subscript(self, n):
            found.append(n)

    expr.visit(Find())
    return bool(found)


def _apply(expr: cst.BaseExpression, replacements: Replacements) -> cst.BaseExpression:
    if expr in replacements:
        return replacements[expr]
    return expr.visit(_Replace(replacements))


class _Replace(cst.CSTTransformer):
    def __init__(self, replacements: Replacements) -> None:
        super().__init__()
        self.replacements = replacements

    def on_leave(self, original, updated):
        return self.replacements.get(original, updated)
