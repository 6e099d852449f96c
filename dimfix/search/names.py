"""Generators that write a name: for a literal (``768`` -> ``config.hidden_size``),
for another name (``out_chs`` -> ``in_chs``, at the call, where a caller wrote
it, or inside arithmetic), or for arithmetic a name already gives
(``input_size + 10`` -> ``input_size``). scope.py says which names hold a
size; its prior (rank, meaning, nearby use) becomes the candidate's name_cost."""

from __future__ import annotations

from dataclasses import replace
from typing import Collection, Iterator

import libcst as cst

from dimfix.exprs import code_of, names_in
from dimfix.records import Cause
from dimfix.scope import ALL, FOR_LITERALS, Found, names_giving, names_holding, never_a_width
from dimfix.search.candidate import ARITHMETIC, LITERAL, NAME, Candidate, Task
from dimfix.search.context import first_word
from dimfix.search.solve import passed_names, solve_node

BARE = (cst.Name, cst.Attribute, cst.Subscript)


class NameForLiteral:
    """A literal at the layer's call, or one a caller passed unchanged to it
    (``Head(in_features=96)``), becomes the name in scope that holds the size:
    a parameter, ``self.x``, a config field or a CONSTANT (FOR_LITERALS)."""

    kind = "name for literal"

    def propose(self, task: Task) -> Iterator[Candidate]:
        if isinstance(task.expr, cst.Integer):
            yield from _at_call(task, task.expr, FOR_LITERALS, self.kind, LITERAL)
        origin = task.exp.passthrough()
        if origin is not task.exp and isinstance(origin.node, cst.Integer):
            yield from _outer(task, literal=True, kind=self.kind)


class NameSwap:
    """A name written where another belongs: at the call (``out_chs`` for
    ``in_chs``), further out where a caller passed it on (``Block(in_chs=out_chs)``),
    or inside arithmetic, at the call or where a caller wrote it (``4 * dim``
    where ``dim`` is the wrong name; ``Layer(in_ch + in_ch * growth)`` in a
    loop, where ``i`` belongs)."""

    kind = "name swap"

    def propose(self, task: Task) -> Iterator[Candidate]:
        if isinstance(task.expr, BARE):
            yield from _at_call(task, task.expr, ALL, self.kind, NAME)
            yield from _outer(task, literal=False, kind=self.kind)
        yield from _terms(task, self.kind)
        yield from _inner(task, self.kind)
        yield from _caller_terms(task, self.kind)


class NameInExpression:
    """A name in the arithmetic already holds the size: ``input_size + 10``
    fed ``input_size`` becomes ``input_size``."""

    kind = "name in expression"

    def propose(self, task: Task) -> Iterator[Candidate]:
        expr, exp = task.expr, task.exp
        # Not a conditional: ``a if test else b`` is the author's logic (ArmSwap).
        if isinstance(expr, (cst.Name, cst.Attribute, cst.IfExp, cst.BooleanOperation)) \
                or not names_in(expr):
            return
        for name in names_in(expr):
            if exp.local_values.get(name, exp.global_values.get(name)) == task.want:
                yield Candidate(self.kind, {expr: cst.Name(name)}, expr, writes=NAME,
                                over=ARITHMETIC)


def _at_call(task: Task, expr, ranks, kind: str, over: str) -> Iterator[Candidate]:
    """The names in scope at the layer's call that hold the size at every
    layer built there; several of equal prior are each proposed (a tie)."""
    m, world = task.m, task.world
    found = holding(world, world.site_constructions(m), m.site.call, expr, ranks,
                    named=world.maker_names(m), param=m.arg)
    for name in found.names:
        yield Candidate(kind, {expr: cst.parse_expression(name)}, expr,
                        because=f"`{name}` holds {m.observed} at every layer built here",
                        holds=f"{m.observed} at every layer built here",
                        writes=NAME, over=over, name_cost=prior_of(found))


def _outer(task: Task, literal: bool, kind: str) -> Iterator[Candidate]:
    """A name swap further out: the value reaches the layer unchanged through
    parameters from a name a caller wrote (``Block(in_chs=out_chs)`` where
    ``prev_chs`` belongs). In that caller's scope, the one name that holds the
    size at every layer built through that call. With ``literal``, the
    literal a caller passed (``Head(in_features=96)``) for such a name."""
    exp, m, world = task.exp, task.m, task.world
    chain = exp.chain()
    for depth, outer in enumerate(chain[1:], 1):
        node = outer.bare()
        if literal:
            if depth != len(chain) - 1 or not isinstance(node, cst.Integer) \
                    or outer.kind != "call-site":
                continue
        elif not isinstance(node, (cst.Name, cst.Attribute)):
            continue
        if outer.frame is None:
            continue
        # Only the layers whose value flows through this node follow it.
        group = [replace(c, site=replace(c.site, chain=c.site.chain[outer.frame:]))
                 for c in world.site_constructions(m)
                 if node in world.reach.get((c.layer_path, c.arg), ())]
        inner = chain[depth - 1].bare()
        param = code_of(inner) if isinstance(inner, cst.Name) else ""
        route = [code_of(e.bare()) for e in chain[:depth] if isinstance(e.bare(), BARE)]
        frame = m.site.chain[outer.frame]
        found = holding(world, group, frame, node, FOR_LITERALS if literal else ALL,
                        param=param, named=world.maker_names(m, outer.frame))
        if len(found.names) == 1:
            name = found.names[0]
            bindings = tuple(b for e in chain[1:depth + 1] for b in e.bindings)
            yield Candidate(kind, {node: cst.parse_expression(name)}, node,
                            outer.label or code_of(node), f"`{name}` holds {m.observed} there",
                            bindings, writes=NAME, over=LITERAL if literal else NAME,
                            holds=f"{m.observed} there",
                            depth=depth, name_cost=prior_of(found),
                            through_odd=odd_route(route, m))


def _terms(task: Task, kind: str) -> Iterator[Candidate]:
    """A name among the terms of the arithmetic at the call swapped for the
    name in scope that holds what it must be, at every layer built here:
    ``num_input_features * growth_rate`` -> ``bn_size * growth_rate``. The
    names the expression already reads are no candidates."""
    expr, m, world = task.expr, task.m, task.world
    if not isinstance(expr, cst.BinaryOperation):
        return
    site = world.site_constructions(m)
    for node in operands(expr):
        needs = operand_needs(task, site, node)
        if not needs or any(need == old for _, need, old in needs):
            continue
        group = [replace(c, required=need) for c, need, _ in needs]
        found = holding(world, group, m.site.call, expr, ALL)
        if len(found.names) == 1:
            name = found.names[0]
            yield Candidate(kind, {node: cst.parse_expression(name)}, node,
                            because=f"`{name}` holds {group[0].required} at every layer built here",
                            holds=f"{group[0].required} at every layer built here",
                            writes=NAME, over=NAME, name_cost=prior_of(found))


def _caller_terms(task: Task, kind: str) -> Iterator[Candidate]:
    """A name among the terms of arithmetic a caller wrote, which reaches the
    layer unchanged through parameters (a dense block's loop building
    ``Layer(in_ch + i * growth)``), swapped for the name in that caller's
    scope with which the arithmetic gives what every layer built through it
    must have. Each construction is evaluated with its own values: a loop's
    variable differs from one layer to the next, so no one value is sought,
    and the variables of the loops the call runs in are candidates too."""
    exp, m, world = task.exp, task.m, task.world
    chain = exp.chain()
    outer, arith = chain[-1], chain[-1].bare()
    if len(chain) < 2 or outer.frame is None or not isinstance(arith, cst.BinaryOperation):
        return
    frame = m.site.chain[outer.frame]
    _, leftovers = world.context(frame)
    suspect = {n for p, q, n in world.suspect if (p, q) == (frame.path, frame.qualname)}
    exclude = [*names_in(arith), *leftovers, *suspect]
    for node in operands(arith):
        keys = [(c, (c.layer_path, c.arg)) for c in world.site_constructions(m)
                if c.required is not None and node in world.reach.get((c.layer_path, c.arg), ())]
        if not keys or any(key not in world.expansions for _, key in keys):
            continue

        def gives(name: str, node=node, keys=keys) -> bool:
            trial = {**task.base, node: cst.parse_expression(name)}
            return all(world.expansions[key][1].value(trial) == c.required for c, key in keys)

        found = names_giving(frame, gives, exclude, world.loop_variables(frame))
        if len(found.names) == 1:
            name = found.names[0]
            yield Candidate(kind, {node: cst.parse_expression(name)}, node,
                            outer.label or code_of(node),
                            f"with `{name}` it gives what every layer built there needs",
                            tuple(b for e in chain[1:] for b in e.bindings), writes=NAME,
                            over=NAME, depth=len(chain) - 1, name_cost=prior_of(found),
                            holds="what every layer built there needs")


def operand_needs(task: Task, site, node) -> list:
    """(construction, what ``node`` must hold there, what it holds) at every
    layer built at this call whose size reads it; empty where one of them
    cannot be solved for ``node``."""
    needs = []
    for c in site:
        key = (c.layer_path, c.arg)
        if c.required is None or key not in task.world.expansions:
            continue
        c_exp = task.world.expansions[key][1]
        old = c_exp.value_of(node)
        need = solve_node(c_exp, node, old if type(old) is int else None, c.required, task.base)
        if need is None:
            return []
        needs.append((c, need, old))
    return needs


def operands(node, kinds=(cst.Name, cst.Attribute)) -> Iterator[cst.CSTNode]:
    """The operands of ``node``'s arithmetic that are ``kinds`` (names and
    ``self.x``, or subscripts)."""
    if isinstance(node, cst.BinaryOperation):
        yield from operands(node.left, kinds)
        yield from operands(node.right, kinds)
    elif isinstance(node, kinds):
        yield node


def _inner(task: Task, kind: str) -> Iterator[Candidate]:
    """A name inside arithmetic, here or where a caller wrote it, swapped for
    the name in scope that holds what it must be: ``4 * dim`` fed 384,
    where ``dim`` is a caller's ``num_classes`` and its ``dim`` holds 96."""
    exp, m, world = task.exp, task.m, task.world
    if not isinstance(exp.bare(), cst.BinaryOperation):
        return
    seen = set()
    for sub in passed_names(exp):
        node = sub.bare()
        if node in seen or sub.frame is None:
            continue
        seen.add(node)
        group = []
        for c in world.site_constructions(m):
            key = (c.layer_path, c.arg)
            if c.required is None or node not in world.reach.get(key, ()):
                continue
            c_exp = world.expansions[key][1]
            need = solve_node(c_exp, node, sub.value(task.base), c.required, task.base)
            if need is None:
                group = []
                break
            group.append(replace(c, required=need, site=replace(
                c.site, chain=c.site.chain[sub.frame:])))
        if not group:
            continue
        found = holding(world, group, m.site.chain[sub.frame], node, ALL)
        if len(found.names) == 1:
            name = found.names[0]
            need = next((c.required for c in group if c.layer_path == m.layer_path),
                        group[0].required)
            yield Candidate(kind, {node: cst.parse_expression(name)}, node,
                            sub.label or code_of(node), f"`{name}` holds {need} there",
                            tuple(sub.bindings), writes=NAME, over=NAME,
                            depth=len(sub.chain()), name_cost=prior_of(found), holds=f"{need} there")


def holding(world, constructions, frame, expr, ranks, named: Collection[str] = (),
            param: str = "") -> Found:
    """The names for ``expr`` at the call ``frame`` runs: of the names that
    hold each construction's size, the one ``named`` the width where it was
    made, or one the same statement already uses elsewhere
    (``norm_layer(lastconv_output_channels)`` beside the wrong ``nn.Linear``
    in one ``nn.Sequential``) before any other, and never a loop's leftover
    (see context.of_call) nor the name the wrong size is written as. Of two
    of equal prior, the one named ``param``, as the callee's parameter is, or
    the one that starts with its first word (``in_chs`` for ``in_channels``);
    several names are a tie."""
    used, leftovers = world.context(frame)
    suspect = {n for p, q, n in world.suspect if (p, q) == (frame.path, frame.qualname)}
    exclude = [*names_in(expr), code_of(expr), *leftovers, *suspect]
    found = names_holding(constructions, exclude=exclude, ranks=ranks, prefer=named,
                          param=param)
    if not found.names or len(set(found.names) & set(named)) != 1:
        found = names_holding(constructions, exclude=exclude, ranks=ranks, prefer=used,
                              param=param)
    if found.ambiguous and param in found.names:
        return replace(found, names=(param,))  # ``ConvNorm(in_chs, ...)``: its own name
    if found.ambiguous and param:
        # ``conv_norm_act(in_chs, ...)`` for ``in_channels`` when ``out_chs``
        # holds the same: the one name that starts with the parameter's word.
        head = first_word(param)
        alike = [n for n in found.names if first_word(n) == head]
        if len(alike) == 1:
            return replace(found, names=tuple(alike))
    return found


def odd_route(names, m) -> bool:
    """Does the value reach an input size through a name (``names``, from the
    layer outward) that says it never holds a width (``ngpu``, ``stride``)?
    Then that name is the mistake, not what is written further out for it."""
    return m.cause is Cause.INPUT and any(never_a_width(n) for n in names)


def prior_of(found: Found) -> float:
    """scope.py's prior of a found name, as a cost: its rank (a parameter
    before ``self.x`` ... before a local object's field), and whether its name
    says it counts something other than a width."""
    from dimfix.search.cost import name_prior

    return name_prior(found.rank, found.odd)
