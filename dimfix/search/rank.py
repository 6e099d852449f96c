"""Weigh one group of mismatches (one call site, one argument): every
generator's candidates, each assessed and costed, in cost order, or the
reason none may be written."""

from __future__ import annotations

from dataclasses import replace
from typing import Collection, List, Optional, Sequence, Tuple

import libcst as cst

from dimfix.exprs import code_of
from dimfix.search.assess import OVER_SHARED_PARAMETER, assess
from dimfix.records import Mismatch, Weighed
from dimfix.search.candidate import LITERAL, NAME, Candidate, Outcome, Ranked, Task
from dimfix.search.cost import REFUSE, cost, names_it
from dimfix.search.literals import DimsProduct, RefitProduct, SolvedLiteral, WholeLiteral
from dimfix.search.names import NameForLiteral, NameInExpression, NameSwap
from dimfix.search.producer import ProducerOut
from dimfix.search.solve import opaque
from dimfix.search.structure import BidirectionalSum, CatParts, PartCount
from dimfix.search.swaps import ArmSwap, IndexSwap, LenSwap, MakerExpression
from dimfix.search.tuples import tuple_outcome
from dimfix.source import display_path

OWN = (RefitProduct(), DimsProduct(), SolvedLiteral(), NameForLiteral(), NameSwap(),
       IndexSwap(), ArmSwap(), LenSwap(), MakerExpression(), NameInExpression(), CatParts(),
       BidirectionalSum(), PartCount(), WholeLiteral())
# The producer's out size is edited by the same generators, for its own argument.
GENERATORS = OWN + (ProducerOut(OWN),)
SHOWN = 5  # candidates -v lists per fix
_EPSILON = 1e-9


def weigh(group: Sequence[Mismatch], world, base, deferred: Collection) -> Outcome:
    """The candidates for ``group`` with ``base`` (earlier groups' edits) in place."""
    m = group[0]
    key = (m.layer_path, m.arg)
    notes = sorted({x.note for x in group if x.note})
    if m.site is None:
        return Outcome(refusal=(None, "cannot tell where this layer was built"))
    if notes:
        return Outcome(refusal=(None, "; ".join(notes)))
    if key in world.tuples and key not in world.problems:
        return tuple_outcome(group, world)
    if key not in world.expansions:
        return Outcome(refusal=world.problems.get(key, (None, "cannot follow this argument")))
    exp = world.expansions[key][1]
    if exp.value(base) == m.observed:
        return Outcome(skip=True)  # an edit made for another layer already fixed this one
    if all((x.layer_path, x.arg) in deferred or world.fed_right(x, base) for x in group):
        return Outcome(skip=True)  # a knock-on of an edit made for a layer before it
    task = Task(tuple(group), world.args[key], exp, world, base,
                local=key not in world.problems)
    assessed = [(c, assess(c, task)) for c in _proposals(task)]
    # A literal written where a feasible name or the trace's structure would
    # go (the same node) is a magic number; unless the layer that made the
    # tensor was given its size as a literal too: then a name is the odd one.
    named = {n for c, f in assessed if not f.infeasible and names_it(c) for n in c.replacements}
    # When the trace's structure says the name holds one part of what arrives
    # (cGAN's ``opt.latent_dim`` of the noise and label cat), the value written
    # for it is that part: changing it to the sum is the magic number.
    parted = any(not f.infeasible and c.kind == "cat parts" for c, f in assessed)
    literal_maker = world.maker_writes_literal(m)
    # The name the trace saw stand for a part (the bidirectional RNN's hidden
    # size, where both are written) swapped for another that holds the same
    # number: the structure says otherwise.
    attributed = set().union(*(c.attributed for c, f in assessed if not f.infeasible))
    # The layers the producer's out size feeds agree on a width: an edit that
    # fixes fewer of them than the producer's edit makes them follow its mistake.
    fed = max((f.fixes for c, f in assessed if c.needs and not f.infeasible), default=0)
    ranked: List[Ranked] = []
    for c, facts in assessed:
        if not facts.infeasible:
            if not c.needs and facts.fixes < fed:
                facts = replace(facts, outvoted=True)
            if literal_maker and c.over == LITERAL and not c.further:
                facts = replace(facts, named=names_it(c))
            elif not names_it(c) and (named & set(c.replacements) or parted and _a_part(c, m)):
                facts = replace(facts, named=True)
            elif c.writes == NAME and attributed & set(c.replacements):
                facts = replace(facts, named=True)
            ranked.append(Ranked(c, facts, cost(c, facts), _code(c)))
    ranked.sort(key=lambda r: r.cost)
    shown = tuple(r.weighed() for r in ranked[:SHOWN]) + tuple(
        Weighed(_code(c), float("inf"), f.infeasible, c.kind)
        for c, f in assessed if f.infeasible)[:max(0, SHOWN - len(ranked))]
    taken = [r for r in ranked if r.cost <= REFUSE]
    otherwise = _why_none(task, assessed)
    if not taken:
        return Outcome(refusal=otherwise, weighed=shown, tried=len(assessed))
    tie = _tie(taken, m.observed)
    if tie:
        return Outcome(refusal=tie, weighed=shown, tried=len(assessed))
    return Outcome(tuple(taken), weighed=shown, otherwise=otherwise, tried=len(assessed))


def _proposals(task: Task) -> List[Candidate]:
    """Every generator's candidates, each distinct edit once (two edits inside
    the layer's argument that write the same argument are one)."""
    from dimfix.origin import descendants
    from dimfix.rewrite import apply_to

    inside = set(descendants(task.expr))
    seen, found = set(), []
    for generator in GENERATORS:
        for c in generator.propose(task):
            key = frozenset((id(n), code_of(r)) for n, r in c.replacements.items())
            if inside.issuperset(c.replacements):
                key = code_of(apply_to(task.expr, c.replacements))
            if key not in seen:
                seen.add(key)
                found.append(c)
    return found


def _a_part(c: Candidate, m) -> bool:
    """Does ``c`` change a literal that holds one part of the cat that arrives
    (the noise's 62 of noise, label and code), or one that reaches the layer
    unchanged?"""
    return c.passthrough or any(isinstance(n, cst.Integer) and int(n.evaluated_value) in m.parts
                                for n in c.replacements)


def _tie(taken: Sequence[Ranked], want: int) -> Optional[Tuple[cst.CSTNode, str]]:
    """Two certain candidates of equal, lowest cost: a choice of meaning."""
    if len(taken) < 2 or taken[1].cost - taken[0].cost > _EPSILON:
        return None
    first, second = taken[0], taken[1]
    if not (first.facts.certain and second.facts.certain):
        return None  # verification may tell them apart
    tied = [r for r in taken if r.cost - first.cost <= _EPSILON]
    node = first.candidate.node
    if NAME not in (first.candidate.writes, second.candidate.writes):
        # Two literals that solve it alike (``256 * 4`` fed 2048: ``512 * 4``
        # or ``256 * 8``), nothing the trace saw to tell which one is wrong.
        if any(r.candidate.node is not node for r in tied):
            choices = " or ".join(_code(r.candidate) for r in tied)
            return node, f"{choices} each give {want}; dimfix will not guess"
        m_want = f"gives {want}"
    else:
        m_want = f"holds {_holds(first.candidate)}"
    choices = " or ".join(f"`{_new(r.candidate)}`" for r in tied)
    return node, f"`{code_of(node)}` could be {choices}: each {m_want}; dimfix will not guess"


def _holds(c: Candidate) -> str:
    return c.holds or "the size"


def _new(c: Candidate) -> str:
    from dimfix.rewrite import apply_to

    return code_of(apply_to(c.node, c.replacements))


def _code(c: Candidate) -> str:
    """``old`` -> ``new`` of the node the candidate names, as -v shows it."""
    from dimfix.rewrite import apply_to

    return f"`{code_of(c.node)}` -> `{code_of(apply_to(c.node, c.replacements))}`"


def _why_none(task: Task, assessed) -> Tuple[Optional[cst.CSTNode], str]:
    """Why no candidate may be written, the most telling reason first."""
    world, m, exp, expr = task.world, task.m, task.exp, task.expr
    key = (m.layer_path, m.arg)
    if m.channels_last and m.channels_last_from:
        return expr, (f"{m.declared} is the last axis of what {m.channels_last_from} puts out: "
                      f"its channels look last; put them first ({m.channels_last} before "
                      f"{m.layer_path}) rather than make {m.observed} the width")
    if m.channels_last:
        return expr, (f"{m.declared} is the last axis of the input as given: its channels look "
                      f"last; put them first ({m.channels_last}, or an input shaped so) rather "
                      f"than make {m.observed} the width")
    if key in world.problems:
        return world.problems[key]  # part of the value comes from outside the file
    reasons = [f.infeasible for _, f in assessed]
    if "run time" in reasons:
        return expr, opaque(exp.passthrough().bare(), m.declared)
    installed = next((n for c, f in assessed if f.infeasible == "installed"
                      for n in c.replacements if not world.may_edit(n)), None)
    if installed is not None:
        found = world.resolver.position(installed)
        why = getattr(world.editable, "why", lambda p: f"{display_path(p)}, installed code "
                      "that dimfix does not edit")  # names the real file (load.Editable)
        return installed, "the value is written in " + (why(found[0]) if found else "another file")
    origin = exp.passthrough()
    code = code_of(expr)
    helper = next((f.infeasible for _, f in assessed if f.infeasible == OVER_SHARED_PARAMETER), "")
    if helper:
        return expr, (f"`{code}` is a parameter here, and no edit where its value is written "
                      f"gives {m.observed}; {helper} is never written")
    if origin is not exp:
        return expr, (f"`{code}` comes from {origin.label or code_of(origin.node)}, which other "
                      f"uses need as it is, and no edit here gives {m.observed}")
    return expr, f"no single change to `{code}` gives {m.observed} for every layer built here"
