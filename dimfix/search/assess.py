"""The symbolic check of one candidate against every traced construction the
expressions it touches reach: what it fixes, what it breaks, what must follow."""

from __future__ import annotations

from dimfix.search.candidate import NAME, Candidate, Facts, Key, Task
from dataclasses import replace

import libcst as cst

from dimfix.origin import descendants
from dimfix.search.solve import frame_reads


def assess(c: Candidate, task: Task) -> Facts:
    """Facts about ``c``, with the edits of earlier groups (``task.base``) in place.

    A construction the edit reaches must get its required size, unless the
    edit is away from the layer's own call and changes what a layer puts out
    (a default that sizes a decoder too): then wrong layers it leaves are
    knock-ons and right ones it changes may follow what now arrives; the
    trace of the edited text judges both. An edit that breaks more than twice
    the layers it fixes is no fix at all.

    An edit of the out size of the layer that made the arriving tensor
    (``c.needs``: search/producer.py) is checked for the task of that out
    argument (``c.within``): every construction it reaches must take the
    width ``needs`` gives it (or stay as it is), and so must every layer the
    producer feeds, whether the edit reaches its argument or the new width
    reaches it as the arriving tensor."""
    group = task
    task = c.within or task
    world = task.world
    why = _forbidden(c, task)
    if why:
        return Facts(infeasible=why)
    base = task.base
    trial = {**base, **c.replacements}
    touched = set(c.replacements)
    needs = dict(c.needs)
    affected = [(key, con, exp) for key, (con, exp) in world.expansions.items()
                if touched & world.reach[key]]
    reached = [(key, con, exp) for key, con, exp in affected
               if needs.get(key, con.required) is not None]
    further = c.further
    follows = {key for key, con, exp in reached
               if further and not needs and _out(con, key, world)}
    reshapes = any(exp.value(trial) != exp.value(base) for key, con, exp in reached
                   if key in follows)
    fixes, breaks, knock_ons = 0, 0, set()
    for key, con, exp in reached:
        if key in follows:
            continue
        value, required = exp.value(trial), needs.get(key, con.required)
        if value == required:
            fixes += required != con.declared
        elif reshapes and key not in task.own and con.declared != con.required:
            knock_ons.add(key)
        elif further and con.required == con.declared and not needs:
            breaks += 1  # a right layer whose input may follow the edit too
        else:
            return Facts(infeasible=f"{key[0]} {key[1]} would be {value}, not {required}")
    if needs:
        fed = _fed(needs, base, trial, world)
        if isinstance(fed, str):
            return Facts(infeasible=fed)
        fixes, knock_ons, reshapes = len(fed), fed - group.own, True
    if breaks > 2 * fixes:
        return Facts(infeasible=f"it changes {breaks} right layers to fix {fixes}")
    shared = any(world.shared(n) for n in touched)
    bindings = [*c.bindings, *(b for node in touched for b in world.bindings_to(node))]
    unseen = any(not all(world.resolver.is_accounted(r) for r in b.references)
                 for b in bindings)
    facts = Facts(fixes, breaks, frozenset(knock_ons), reshapes, unseen,
                  len(reached) < len(affected), shared, layout=bool(group.m.channels_last))
    if world.stopped:
        return _after_error(c, facts)
    return facts


def _fed(needs, base, trial, world):
    """The layers a producer's new out width fixes (``needs`` less the out
    argument itself; what each declares with the earlier groups' edits,
    ``base``, and with this one, ``trial``), or why it cannot be the fix: a
    layer built right for the old width, or one built for a third, would be
    wrong after it."""
    fixed = set()
    for key, want in needs.items():
        con = world.built[key]
        if con.producer == () or con.required is None:
            continue  # the out argument itself, or a layer that never ran
        hit = world.expansions.get(key)
        was, now = (hit[1].value(base), hit[1].value(trial)) if hit else (con.declared,) * 2
        if now == want:
            fixed |= {key} if was != con.required else set()
        else:
            return f"{key[0]} {key[1]} would be fed {want}, not {now}"
    return frozenset(fixed)


def _out(con, key: Key, world) -> bool:
    """An out size (not one --num-classes demands): what it becomes, the
    layers after it follow."""
    return con.arg.startswith("out_") and key not in world.demanded


# Why a candidate may never be written, whatever it fixes: read by rank's refusal.
OVER_SHARED_PARAMETER = "a literal over a parameter of a function other code calls too"


def _forbidden(c: Candidate, task: Task) -> str:
    """Why ``c`` may not be written at all, whatever it fixes."""
    world = task.world
    if any(not world.may_edit(n) for n in c.replacements):
        return "installed"  # packages and the standard library are never edited
    # ``hidden_dims[-1]`` read from the frame, not followed to where it is
    # written: a value read at run time, which no edit replaces but a name
    # that holds the size.
    if c.writes != NAME:
        reads = frame_reads(task.expr, task.exp)
        if reads and any(reads & set(descendants(n)) for n in c.replacements):
            return "run time"
    if c.writes != NAME and c.over == NAME and not c.further and _parameter(task) \
            and world.helper_called_elsewhere(task.m, 0):
        return OVER_SHARED_PARAMETER
    return ""


def _parameter(task: Task) -> bool:
    expr = task.expr
    return isinstance(expr, cst.Name) and expr.value in task.m.site.call.params


def _after_error(c: Candidate, facts: Facts) -> Facts:
    """A trace stopped by an error is traced again, not verified: no symptom
    is patched at the call (what is wrong after the error may follow from the
    cause, fixed first), and a value other reads share, which layers after
    the error (never run) or reads the trace cannot see may need as it is, is
    changed only when nothing else fixes the layer (``blind``: the next trace,
    and the verification after the last, judge it)."""
    if c.patch:
        return _with(facts, "after the error, no new expression is written at the call")
    blind = (facts.unknown and (c.passthrough or facts.shared) and c.further) \
        or (facts.unseen and facts.shared) or (not facts.certain and c.passthrough and c.further)
    return replace(facts, blind=blind)


def _with(facts: Facts, why: str) -> Facts:
    return replace(facts, infeasible=why)
