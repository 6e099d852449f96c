"""Decide, for each mismatch, which expression to rewrite and to what.

Every size argument of every traced layer built in the file is expanded to its
origins first (see origin.py). A candidate edit — a literal at the call, a
literal where the value is written (a default, a constant, a caller's
argument, a list element), or a new expression at the call — is accepted only
if every traced layer argument it reaches still gets the value it needs, and
every other read of the names it flows through is accounted for.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, replace
from typing import (Callable, Collection, Dict, Iterator, List, Mapping, Optional, Sequence,
                    Tuple)

import libcst as cst

from dimfix.exprs import Replacements, code_of, names_in, product_factors, refit_product
from dimfix.locate import CallIndex, find_argument
from dimfix.origin import Expansion, Resolver, descendants
from dimfix.records import Cause, Construction, Edit, Frame, Mismatch, Trace, Unfixable
from dimfix.scope import ALL, FOR_LITERALS, names_holding, sequences_of_length
from dimfix.source import display_path

Key = Tuple[str, str]  # (layer path, argument)


@dataclass(frozen=True)
class Plan:
    edits: Tuple[Edit, ...]
    unfixable: Tuple[Unfixable, ...]
    replacements: Replacements
    index: CallIndex
    resolver: Resolver
    bold: bool = False  # an origin edit relies on verification, not on accounted reads
    bold_written: bool = False  # ... and one of them changed a value where it is written

    def new_texts(self) -> Dict[str, str]:
        """The new text of every file the replacements touch, by absolute path."""
        from dimfix.rewrite import apply_edits

        out = {}
        for path, f in self.resolver.files.items():
            if f is None:
                continue
            mine = {n: r for n, r in self.replacements.items() if n in f.index.positions}
            if mine:
                out[path] = apply_edits(f.index.module, mine)
        return out


class _Tie(Exception):
    """Two names in scope hold the size equally well: a choice of meaning."""

    def __init__(self, names: Tuple[str, ...]) -> None:
        super().__init__(names)
        self.names = names


@dataclass(frozen=True)
class _Candidate:
    replacements: Replacements
    node: cst.CSTNode  # the node whose position the reason line names
    label: str  # "" for an edit of the argument itself, else the origin's name
    because: str = ""  # why this form, for the reason line
    bindings: tuple = ()  # bindings the new value flows through, besides the literals'
    phase: int = 2  # _WRITTEN, _NAME or _OTHER: see _Planner.plan


_WRITTEN, _NAME, _OTHER = range(3)
_STRICT, _LENIENT = 1, 2
_SHARED = ("default", "constant", "attribute", "element")


def plan_edits(text: str, path: str, display: str, trace: Trace,
               init: Mapping[str, object] = (), texts: Mapping[str, str] = (),
               editable: Callable[[str], bool] = lambda p: False, bold: bool = False,
               names_only: bool = False) -> Plan:
    """Edits for ``trace``'s mismatches in the file ``path`` holding ``text``.

    Values written in other files may be edited where ``editable(path)`` says
    so (project files, never installed packages); ``texts`` holds the current
    text of files that differ from disk. With ``bold``, a value is changed
    where it is written even when reads the trace cannot see (a label list, a
    view in an untraced branch) would follow: the caller verifies that plan by
    tracing it and keeps a cautious one (``bold=False``) to fall back on. With
    ``names_only`` too, only a name swap may be bold (a text traced again
    rather than verified next: no value changed where it is written)."""
    index = CallIndex(text, path)
    resolver = Resolver(index, path, dict(init), texts)
    planner = _Planner(index, resolver, path, display, editable, bold, names_only)
    planner.expand(trace.constructions)
    planner.mark_suspects(trace.mismatches)
    planner.demanded = {(m.layer_path, m.arg) for m in trace.mismatches
                        if m.cause is Cause.NUM_CLASSES}
    groups: Dict[tuple, List[Mismatch]] = {}
    for m in trace.mismatches:
        key = (m.site.key, m.arg) if m.site is not None else (m.layer_path, m.arg)
        groups.setdefault(key, []).append(m)
    for group in groups.values():
        planner.plan(group)
    planner.drop_fixed_by_others()
    edits = sorted(planner.edits, key=lambda e: (e.path != path, e.path, e.line, e.col))
    return Plan(tuple(edits), tuple(planner.unfixable), planner.replacements, index,
                resolver, planner.bold_used, planner.bold_written)


class _Planner:
    def __init__(self, index: CallIndex, resolver: Resolver, path: str, display: str,
                 editable: Callable[[str], bool], bold: bool, names_only: bool = False) -> None:
        self.index = index
        self.resolver = resolver
        self.path = path
        self.display = display
        self.editable = editable
        self.bold = bold
        self.bold_used = False
        self.names_only = names_only  # bold for name swaps only
        self.bold_written = False  # a bold edit changed a value where it is written
        self.demanded: set = set()  # (layer, argument) set by --num-classes
        # Mismatches an accepted bold edit is expected to fix as a knock-on (a
        # DoubleConv after the concatenation whose ConvTranspose2d it resized):
        # no edit of their own; verification traces them.
        self.deferred: set = set()
        self.edits: List[Edit] = []
        self.unfixable: List[Unfixable] = []
        self.replacements: Replacements = {}
        self.expansions: Dict[Key, Tuple[Construction, Expansion]] = {}
        self.args: Dict[Key, cst.Arg] = {}
        self.problems: Dict[Key, Tuple[Optional[cst.CSTNode], str]] = {}
        self.reach: Dict[Key, frozenset] = {}  # nodes each expansion depends on
        self.literals: Dict[Key, list] = {}
        self.tuples: Dict[Key, Construction] = {}
        self.by_site: Dict[tuple, List[Construction]] = {}  # (site key, arg) -> constructions
        self.contexts: Dict[cst.CSTNode, Tuple[set, set]] = {}  # call -> _context
        self.suspect: set = set()  # (path, qualname, name): see mark_suspects

    # -- expansion of every traced argument --------------------------------------

    def expand(self, constructions: Sequence[Construction]) -> None:
        for c in constructions:
            self.by_site.setdefault((c.site.key, c.arg), []).append(c)
            key = (c.layer_path, c.arg)
            node, why = self._argument(c)
            if why:
                self.problems[key] = (node, why)
                continue
            self.args[key] = node
            if isinstance(c.declared, tuple):  # LayerNorm((C, H, W)): element-wise
                self.tuples[key] = c
                continue
            self.resolver.why = ""
            exp = self.resolver.expand_argument(c.site, node.value)
            if exp.value() != c.declared:
                why = self.resolver.why or _opaque(node.value, c.declared)
                self.problems[key] = (node.value, why)
                continue
            if self.resolver.why:  # the value comes from outside this file
                self.problems[key] = (node.value, self.resolver.why)
            literals = exp.literals()
            self.expansions[key] = (c, exp)
            self.literals[key] = literals
            self.reach[key] = frozenset([node.value, *(lit for lit, _ in literals),
                                         *_expanded_nodes(exp)])

    def mark_suspects(self, mismatches: Sequence[Mismatch]) -> None:
        """The name a wrong layer's size is written as, in the frame it is
        written in: it holds the wrong value, so that it holds what another
        layer there needs is no sign it belongs there (``SIZE_2``, now 2 where
        5 is right, is not the name for a conv that needs 2). Only the first:
        further out, a layer that is wrong because the one before it is (a
        stage after a wrong ``PatchMerging``) passes through names that hold
        what they should."""
        for m in mismatches:
            hit = self.expansions.get((m.layer_path, m.arg))
            if hit is None or hit[0].site is None:
                continue
            for e in hit[1].chain():
                node = e.bare()
                if e.frame is not None and isinstance(node, (cst.Name, cst.Attribute)):
                    frame = hit[0].site.chain[e.frame]
                    self.suspect.add((frame.path, frame.qualname, code_of(node)))
                    break

    def _argument(self, c: Construction) -> Tuple[Optional[cst.CSTNode], str]:
        site = c.site
        if site.via:
            return None, (f"it is built inside {site.via}, installed code that dimfix does "
                          "not edit, not by the call here")
        f = self.resolver.file(site.call.path)
        call = f.index.find(site.call) if f is not None else None
        if call is None:
            return None, "cannot find the call that built it"
        arg, why = find_argument(call, c.params, c.arg)
        return (arg, "") if arg is not None else (call, why)

    # -- planning one group of mismatches (one call site, one argument) ---------------

    def plan(self, group: Sequence[Mismatch]) -> None:
        m = group[0]
        key = (m.layer_path, m.arg)
        notes = sorted({x.note for x in group if x.note})
        if m.site is None:
            return self._refuse(group, None, "cannot tell where this layer was built")
        if notes:
            return self._refuse(group, None, "; ".join(notes))
        if key in self.tuples and key not in self.problems:
            return self._plan_tuple(group, self.args[key])
        if key not in self.expansions:
            node, why = self.problems.get(key, (None, "cannot follow this argument"))
            return self._refuse(group, node, why)
        construction, exp = self.expansions[key]
        if exp.value(self.replacements) == m.observed:
            return None  # an edit made for another layer already fixed this one
        if all((x.layer_path, x.arg) in self.deferred or self._fed_right(x) for x in group):
            return None  # a knock-on of an edit made for a layer before it
        arg = self.args[key]
        outside = self.problems.get(key)  # part of the value comes from outside the file
        elsewhere = None
        # ``hidden_dims[-1]`` read from the frame, not followed to where it is
        # written: a value read at run time, which no edit replaces but a name
        # that holds the size (its literals around it may change too:
        # ``hidden_dims[-1]*2`` -> ``*4``).
        run_time = _frame_reads(arg.value, exp)
        run_time_held = False
        # An edit where the value is written that only verification can judge
        # (reads the trace cannot see follow it) waits behind the names in
        # scope: a name swapped for another is fixed by the right name, not by
        # changing what the wrong one holds everywhere.
        held = None
        try:
            for tried, candidate in enumerate(self._candidates(arg.value, exp, m,
                                                               local=outside is None), 1):
                if held is not None and candidate.phase == _OTHER:
                    break
                where = next((n for n in candidate.replacements if not self._may_edit(n)), None)
                if where is not None:
                    elsewhere = elsewhere or where
                    continue  # installed packages and the standard library are never edited
                if run_time and candidate.phase != _NAME \
                        and any(run_time & set(_descendants(n)) for n in candidate.replacements):
                    run_time_held = True
                    continue
                verdict, knock_ons = self._safe(candidate, {(x.layer_path, x.arg) for x in group})
                if verdict == _LENIENT and candidate.phase == _WRITTEN:
                    if not self.names_only:
                        held = held or (tried, candidate, knock_ons)
                elif verdict == _LENIENT and held is not None:
                    continue  # a name verification must judge does not beat the cause
                elif verdict:
                    return self._take(group, candidate, tried, verdict, knock_ons)
        except _Tie as tie:
            if held is None:
                names = " or ".join(f"`{n}`" for n in tie.names)
                return self._refuse(group, arg.value,
                                    f"`{code_of(arg.value)}` could be {names}: each holds "
                                    f"{m.observed} at every layer built here; dimfix will not guess")
        if held is not None:
            return self._take(group, held[1], held[0], _LENIENT, held[2])
        if outside is not None:
            return self._refuse(group, *outside)
        if run_time_held:
            return self._refuse(group, arg.value, _opaque(exp.passthrough().bare(), m.declared))
        if elsewhere is not None:
            found = self.resolver.position(elsewhere)
            why = getattr(self.editable, "why", lambda p: f"{display_path(p)}, installed code "
                          "that dimfix does not edit")  # names the real file (load.Editable)
            return self._refuse(group, elsewhere, "the value is written in "
                                + (why(found[0]) if found else "another file"))
        return self._refuse(group, arg.value, self._why_not(arg.value, exp, m))

    def _take(self, group, candidate: _Candidate, tried: int, verdict: int,
              knock_ons: Collection[Key] = ()) -> None:
        self.bold_used = self.bold_used or verdict == _LENIENT
        self.bold_written = self.bold_written or (verdict == _LENIENT and candidate.phase == _WRITTEN)
        if knock_ons:
            self.deferred |= set(knock_ons)
            shown = ", ".join(f"{p} {a}" for p, a in sorted(knock_ons))
            candidate = replace(candidate, because=f"{shown} follows, as traced")
        self.replacements.update(candidate.replacements)
        self.edits.append(replace(self._edit(group, candidate), tried=tried))

    def _plan_tuple(self, group: Sequence[Mismatch], arg: cst.Arg) -> None:
        """A shape written as a tuple or list of literals: change the elements."""
        m = group[0]
        expr = arg.value
        if not isinstance(expr, (cst.Tuple, cst.List)) or len(expr.elements) != len(m.observed) \
                or not isinstance(m.declared, tuple):
            return self._refuse(group, expr, f"`{code_of(expr)}` is not a tuple of {len(m.observed)} numbers")
        same_site = [c for k, c in self.tuples.items() if self.args.get(k) is arg and c.required]
        if any(c.required != m.observed for c in same_site):
            return self._refuse(group, expr, "this call builds layers that need different shapes")
        replacements: Replacements = {}
        for element, old, new in zip(expr.elements, m.declared, m.observed):
            if old == new:
                continue
            if not isinstance(element.value, cst.Integer):
                return self._refuse(group, element.value, f"`{code_of(element.value)}` is not a number")
            replacements[element.value] = element.value.with_changes(value=str(new))
        self.replacements.update(replacements)
        self.edits.append(self._edit(group, _Candidate(replacements, expr, "")))
        return None

    def _candidates(self, expr, exp: Expansion, m: Mismatch, local: bool) -> Iterator[_Candidate]:
        want = m.observed
        if not names_in(expr) and not _has_reference(expr):
            factors = product_factors(expr)
            if factors and m.factors:
                refit = refit_product(factors, m.factors)
                if refit:
                    yield _Candidate(refit, expr, "")
            if isinstance(expr, cst.Integer):
                # ``nn.Linear(768, n)`` where ``config.hidden_size`` holds the size.
                yield from self._scope_names(expr, m, FOR_LITERALS)
                yield _Candidate({expr: expr.with_changes(value=str(want))}, expr, "")
                return
            # ``64 + 16`` fed 48: change the literal that can give it (32 + 16);
            # of several, the one that changes least.
            for lit, value, _ in self._solutions(exp, m, nearest_only=True):
                yield _Candidate({lit: lit.with_changes(value=str(value))}, expr, "")
            yield _Candidate({expr: cst.Integer(str(want))}, expr, "")
            return
        if m.factors and isinstance(expr, cst.BinaryOperation):
            refit = _refit_terms(expr, exp, m.factors)
            if refit:
                yield _Candidate(refit, expr, "")
        # A name in the expression already holds the size: ``input_size + 10``.
        if not isinstance(expr, (cst.Name, cst.Attribute)):
            for name in names_in(expr):
                if exp.local_values.get(name, exp.global_values.get(name)) == want:
                    yield _Candidate({expr: cst.Name(name)}, expr, "")
        origin = exp.passthrough()
        if origin is not exp and isinstance(origin.node, cst.Integer):
            # The value is written elsewhere, unchanged on its way: fix it there,
            # with a name the caller has for it (``Head(in_features=dim)``).
            yield from self._outer_names(exp, m, literal=True)
            lit = origin.node
            yield _Candidate({lit: lit.with_changes(value=str(want))}, lit, origin.label,
                             phase=_WRITTEN)
        if isinstance(expr, (cst.Name, cst.Attribute, cst.Subscript)):
            # ``out_chs`` written where ``in_chs`` belongs: the name that holds it.
            yield from self._scope_names(expr, m)
            # ... or written by a caller that passes it on to here.
            yield from self._outer_names(exp, m)
        # Arithmetic: solve for one literal, nearest to the layer first and,
        # among those as near, the one that changes least; a literal written
        # where other calls read it (a default, a constant) after a name in
        # the arithmetic that a name in scope should replace (``4 * dim``).
        names_tried = False
        for lit, value, stack in self._solutions(exp, m):
            label = "" if len(stack) == 1 else stack[-1].label
            if not names_tried and stack[-1].kind in _SHARED:
                names_tried = True
                yield from self._inner_names(exp, m)
            if len(stack) == 1:
                yield from self._part_count(exp, lit, value, m)
            yield _Candidate({lit: lit.with_changes(value=str(value))}, lit, label)
        if not names_tried:
            yield from self._inner_names(exp, m)
        # The origin is shared: write a new expression at this call instead
        # (not in a text traced again: what is wrong after the error may follow
        # from the cause, fixed first).
        if local and not self.names_only:
            yield from self._local(expr, exp, m)

    def _solutions(self, exp: Expansion, m: Mismatch, nearest_only: bool = False):
        # Keep the form: in ``128 * ds_size ** 2`` fed 128x2x2 the 128 already
        # reads as the channels; the spatial factor, and where it comes from, is
        # what differs. Literals of factors that agree come last.
        settled = _settled(exp, m.factors)
        # A tensor sized in __init__ (``torch.randn(1, num_patches + 1, dim)``)
        # is sized from the configuration: the literal in its own call counts
        # extra tokens (the class token's ``+ 1``), the value that disagrees
        # with the input is where the configuration is written.
        derived = m.family == "Tensor"
        found = []
        for lit, stack in self.literals[(m.layer_path, m.arg)]:
            if derived and _exponent(lit, stack[-1].node):
                continue  # ``(image_size // patch_size) ** 2``: the 2 counts dimensions
            value = _solve(exp, lit, m.observed, self.replacements)
            if value is not None:
                old = int(lit.evaluated_value)
                change = abs(math.log(value / old)) if old > 0 else math.inf
                agrees = (lit if len(stack) == 1 else _sub_key(exp, stack[1])) in settled
                found.append((agrees, derived and len(stack) == 1, len(stack), change, lit,
                              value, stack))
        found.sort(key=lambda f: f[:4])
        if nearest_only and found:
            found = found[:1]
        return [(lit, value, stack) for *_, lit, value, stack in found]

    def _local(self, expr, exp: Expansion, m: Mismatch) -> Iterator[_Candidate]:
        """A new expression at this call. Arithmetic on a name only where the
        trace saw the structure: torch.cat joined ``len(parts)`` tensors of the
        name's size (``HIDDEN * 2``), or the name's size and others that names
        in scope hold (``embedding_dim + hidden_dim``); never ``num_classes * 4``."""
        want = m.observed
        if isinstance(expr, cst.BinaryOperation):
            yield from self._sum_of_parts(expr, exp, m)
        if not isinstance(expr, (cst.Name, cst.Attribute, cst.Subscript)):
            return
        current = exp.value()
        parts = list(m.parts)
        if len(parts) > 1 and current in parts:
            if all(p == current for p in parts):
                yield _Candidate({expr: _times(expr, cst.Multiply(), len(parts))}, expr, "",
                                 f"torch.cat joins {len(parts)} tensors of {current}")
            else:
                parts.remove(current)
                others = [names_holding(self._at_site(m, p), exclude=names_in(expr)) for p in parts]
                if all(f.names and not f.ambiguous for f in others):
                    total = " + ".join([code_of(expr)] + [f.names[0] for f in others])
                    joined = " + ".join(map(str, m.parts))
                    yield _Candidate({expr: cst.parse_expression(total)}, expr, "",
                                     f"torch.cat joins {joined}")
        yield _Candidate({expr: cst.Integer(str(want))}, expr, "")

    def _sum_of_parts(self, expr: cst.BinaryOperation, exp: Expansion,
                      m: Mismatch) -> Iterator[_Candidate]:
        """``hidden_size+embedding_length`` fed torch.cat of a bidirectional RNN's
        output and the embedding: each term stands for one part, and the one that
        differs is the RNN's, two directions of it: ``2*hidden_size+embedding_length``."""
        parts, blocks = m.parts, m.blocks
        terms = _addends(expr)
        if len(parts) < 2 or len(blocks) != len(parts) or len(terms) != len(parts):
            return
        values = [exp.value_of(t) for t in terms]
        if any(type(v) is not int for v in values):
            return
        unmatched, odd = list(range(len(parts))), []
        for i, v in enumerate(values):
            j = next((j for j in unmatched if parts[j] == v), None)
            if j is None:
                odd.append(i)
            else:
                unmatched.remove(j)
        if len(odd) != 1 or len(unmatched) != 1:
            return
        term, value, j = terms[odd[0]], values[odd[0]], unmatched[0]
        k = blocks[j]
        if k < 2 or parts[j] != k * value or not isinstance(
                term, (cst.Name, cst.Attribute, cst.Subscript)):
            return
        space = expr.operator.whitespace_before
        scaled = cst.BinaryOperation(
            left=cst.Integer(str(k)), right=term.deep_clone(),
            operator=cst.Multiply(whitespace_before=space, whitespace_after=space))
        yield _Candidate({expr: expr.deep_replace(term, scaled)}, expr, "",
                         f"torch.cat joins {' + '.join(map(str, parts))}; {parts[j]} is a "
                         f"bidirectional RNN's output, {k} directions of `{code_of(term)}`")

    def _part_count(self, exp: Expansion, lit: cst.Integer, value: int,
                    m: Mismatch) -> Iterator[_Candidate]:
        """``4 * n_filters`` fed a torch.cat of 3 tensors of n_filters: the 4 counts
        the parts, and a list in scope as long as the count (``filter_sizes``,
        one conv per element) says so: ``len(filter_sizes) * n_filters``."""
        parts = m.parts
        if m.site is None or value < 2 or len(parts) != value or len(set(parts)) != 1:
            return
        if exp.value({**self.replacements, lit: lit.with_changes(value="1")}) != parts[0]:
            return  # the literal does not count tensors of one part's size
        # Only a list the code that built the layer iterates (``for fs in
        # filter_sizes``): a kernel size or a mean of the same length is no count.
        found = sequences_of_length(self.by_site.get((m.site.key, m.arg), ()), value,
                                    among=self._iterated(m))
        if found.names and not found.ambiguous:
            name = found.names[0]
            yield _Candidate({lit: cst.parse_expression(f"len({name})")}, lit, "",
                             f"torch.cat joins len({name}) tensors of {parts[0]}")

    def _iterated(self, m: Mismatch) -> set:
        """Names the function holding the layer's call loops over (``for x in
        NAME``, ``zip(NAME, ...)``, ``enumerate(NAME)``, comprehensions too)."""
        f = self.resolver.file(m.site.call.path)
        call = f.index.find(m.site.call) if f is not None else None
        func = call
        while func is not None and not isinstance(func, cst.FunctionDef):
            func = f.parents.get(func)
        if func is None:
            return set()
        found = set()
        for node in _descendants(func):
            if isinstance(node, (cst.For, cst.CompFor)):
                sources = [node.iter]
                if isinstance(node.iter, cst.Call) and isinstance(node.iter.func, cst.Name) \
                        and node.iter.func.value in ("zip", "enumerate", "reversed", "sorted"):
                    sources = [a.value for a in node.iter.args]
                found.update(code_of(x) for x in sources if isinstance(x, (cst.Name, cst.Attribute)))
        return found

    def _scope_names(self, expr, m: Mismatch, ranks: frozenset = ALL) -> Iterator[_Candidate]:
        """The one name in scope that holds the size at every layer built here."""
        if m.site is None:
            return
        name = self._holding(self.by_site.get((m.site.key, m.arg), ()), m.site.call, expr,
                             ranks, tie=True, named=self._maker_names(m), param=m.arg)
        if name:
            yield _Candidate({expr: cst.parse_expression(name)}, expr, "",
                             f"`{name}` holds {m.observed} at every layer built here", phase=_NAME)

    def _outer_names(self, exp: Expansion, m: Mismatch,
                     literal: bool = False) -> Iterator[_Candidate]:
        """A name swap further out: the value reaches the layer unchanged through
        parameters from a name a caller wrote (``Block(in_chs=out_chs)`` where
        ``prev_chs`` belongs). In that caller's scope, the one name that holds the
        size at every layer built through that call. With ``literal``, the
        literal a caller passed (``Head(in_features=96)``) for such a name, as
        a literal at the layer's own call is (FOR_LITERALS)."""
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
                     for c in self.by_site.get((m.site.key, m.arg), ())
                     if node in self.reach.get((c.layer_path, c.arg), ())]
            inner = chain[depth - 1].bare()
            param = code_of(inner) if isinstance(inner, cst.Name) else ""
            frame = m.site.chain[outer.frame]
            name = self._holding(group, frame, node, FOR_LITERALS if literal else ALL, tie=False,
                                 param=param, named=self._maker_names(m, outer.frame))
            if name:
                bindings = tuple(b for e in chain[1:depth + 1] for b in e.bindings)
                yield _Candidate({node: cst.parse_expression(name)}, node,
                                 outer.label or code_of(node), f"`{name}` holds {m.observed} there",
                                 bindings, phase=_NAME)

    def _fed_right(self, m: Mismatch) -> bool:
        """Is ``m`` wrong only because the layer that made its input puts out
        another size than the edits planned so far make it put out, which is
        the size ``m`` declares? (``out_chs = out_chs or in_chs``: the edit of
        ``ConvNormAct(48)`` to 32 changes its conv's out channels too, so the
        next layer, built for 32, is fed 32.) Verification traces it."""
        hit = self.expansions.get(tuple(m.producer)) if m.producer and self.replacements else None
        if hit is None or m.cause is not Cause.INPUT:
            return False
        made = hit[1]
        return made.value() == m.observed and made.value(self.replacements) == m.declared

    def _maker_names(self, m: Mismatch, depth: int = 0) -> set:
        """The name the layer that made the arriving tensor was given its size
        by, when it was built in the same run of the function as the wrong
        layer, or of the function frame ``depth`` of its chain runs
        (``Conv2d(first_planes, outplanes)`` then ``norm_layer(outplanes)``).
        The last layer of the block before, built by another run, names the
        width its own way (``oup``, where this block's ``inp`` belongs)."""
        hit = self.expansions.get(tuple(m.producer)) if m.producer else None
        if hit is None or hit[0].site is None:
            return set()
        chain = hit[0].site.chain
        for e in hit[1].chain():  # outward, through a helper's parameters
            node = e.bare()
            if e.frame is None or not isinstance(node, (cst.Name, cst.Attribute)):
                continue
            if _same_run(chain, e.frame, m.site.chain, depth):
                return {code_of(node)}
        return set()

    def _inner_names(self, exp: Expansion, m: Mismatch) -> Iterator[_Candidate]:
        """A name inside arithmetic, here or where a caller wrote it, swapped for
        the name in scope that holds what it must be: ``4 * dim`` fed 384,
        where ``dim`` is a caller's ``num_classes`` and its ``dim`` holds 96."""
        if not isinstance(exp.bare(), cst.BinaryOperation):
            return
        seen = set()
        for sub in _passed_names(exp):
            node = sub.bare()
            if node in seen or sub.frame is None:
                continue
            seen.add(node)
            group = []
            for c in self.by_site.get((m.site.key, m.arg), ()):
                key = (c.layer_path, c.arg)
                if c.required is None or node not in self.reach.get(key, ()):
                    continue
                c_exp = self.expansions[key][1]
                need = _solve_node(c_exp, node, sub.value(self.replacements), c.required,
                                   self.replacements)
                if need is None:
                    group = []
                    break
                group.append(replace(c, required=need, site=replace(
                    c.site, chain=c.site.chain[sub.frame:])))
            if not group:
                continue
            name = self._holding(group, m.site.chain[sub.frame], node, ALL, tie=False)
            if name:
                need = next((c.required for c in group if c.layer_path == m.layer_path),
                            group[0].required)
                yield _Candidate({node: cst.parse_expression(name)}, node,
                                 sub.label or code_of(node), f"`{name}` holds {need} there",
                                 tuple(sub.bindings), phase=_NAME)

    def _holding(self, constructions, frame, expr, ranks, tie: bool,
                 named: Collection[str] = (), param: str = "") -> Optional[str]:
        """The name for ``expr`` at the call ``frame`` runs: of the names that hold
        each construction's size, the one ``named`` the width where it was made,
        or one the same statement already uses elsewhere
        (``norm_layer(lastconv_output_channels)`` beside the wrong ``nn.Linear``
        in one ``nn.Sequential``) before any other, and never a loop's leftover
        (see _context). Of two that tie, the one named ``param``, as the callee's
        parameter is, or the one that starts with its first word (``in_chs``
        for ``in_channels``); else _Tie is raised if ``tie``, or None returned."""
        used, leftovers = self._context(frame)
        suspect = {n for p, q, n in self.suspect if (p, q) == (frame.path, frame.qualname)}
        exclude = [*names_in(expr), code_of(expr), *leftovers, *suspect]
        found = names_holding(constructions, exclude=exclude, ranks=ranks, prefer=named,
                              param=param)
        if not found.names or len(set(found.names) & set(named)) != 1:
            found = names_holding(constructions, exclude=exclude, ranks=ranks, prefer=used,
                                  param=param)
        if found.ambiguous and param in found.names:
            return param  # ``ConvNorm(in_chs, ...)``: passed on under its own name
        if found.ambiguous and param:
            # ``conv_norm_act(in_chs, ...)`` for ``in_channels`` when ``out_chs``
            # holds the same: the one name that starts with the parameter's word.
            head = _first_word(param)
            alike = [n for n in found.names if _first_word(n) == head]
            if len(alike) == 1:
                return alike[0]
        if found.ambiguous:
            if tie:
                raise _Tie(found.names)
            return None
        return found.names[0] if found.names else None

    def _context(self, frame) -> Tuple[set, set]:
        """(names the statement of ``frame``'s call uses outside the call, loop
        leftovers: variables of loops in its function that the call is not in,
        and names only such a loop binds, unless bound again before the call)."""
        f = self.resolver.file(frame.path)
        call = f.index.find(frame) if f is not None else None
        if call is None:
            return set(), set()
        if call not in self.contexts:
            self.contexts[call] = self._context_of(call, f)
        return self.contexts[call]

    def _context_of(self, call, f) -> Tuple[set, set]:
        statement, loops, node = None, set(), call
        while node is not None:
            if statement is None and isinstance(node, (cst.SimpleStatementLine,
                                                       cst.BaseCompoundStatement)):
                statement = node
            if isinstance(node, cst.For):
                loops.add(node)
            if isinstance(node, cst.FunctionDef):
                break
            node = f.parents.get(node)
        own = set(_descendants(call))  # not its own arguments: in == out is no sign
        used = {code_of(n) for n in _descendants(statement or call)
                if n not in own and isinstance(n, (cst.Name, cst.Attribute))}

        def targets(loop):
            return {n.value for n in _descendants(loop.target) if isinstance(n, cst.Name)}

        leftovers = set()
        if node is not None:
            order = _descendants(node.body)
            at = {n: i for i, n in enumerate(order)}
            here = at.get(call, len(order))
            params = {p.name.value for p in _descendants(node.params) if isinstance(p, cst.Param)}
            for loop in order:
                if isinstance(loop, cst.For) and loop not in loops:
                    # A loop's variables, and names only its body binds (a
                    # per-pass ``output_channel``, where ``input_channel``
                    # carries the width on), unless bound again before the call.
                    end = at[loop] + len(_descendants(loop))
                    before = _bound(order[:at[loop]]) | params
                    leftovers |= (targets(loop) | (_bound(order[at[loop]:end]) - before)) \
                        - _bound(order[end:here])
        return used, leftovers - {name for loop in loops for name in targets(loop)}

    def _at_site(self, m: Mismatch, value: int) -> List[Construction]:
        """The site's constructions, as if each needed ``value`` (one part of a cat)."""
        return [replace(c, required=value) for c in self.by_site.get((m.site.key, m.arg), ())
                if c.required is not None][:1]

    def _may_edit(self, node: cst.CSTNode) -> bool:
        if node in self.index.positions:
            return True
        found = self.resolver.position(node)
        return found is not None and self.editable(found[0])

    def _safe(self, candidate: _Candidate, own: Collection[Key] = ()) -> Tuple[int, set]:
        """(verdict, knock-ons): _STRICT if every read of what the candidate
        changes is a traced layer argument that gets its size; _LENIENT if a
        bold plan may try it (reads the trace cannot see, or outputs that
        change: verification decides); else 0. The knock-ons are the layers
        left to verification."""
        trial = {**self.replacements, **candidate.replacements}
        touched = set(candidate.replacements)
        # A bold edit where the value is written may change what a layer puts
        # out (a VAE's decoder following image_size): the layers that read that
        # output are checked by tracing the edit, not here.
        follows = self.bold and bool(candidate.label)
        affected = [(key, c, exp) for key, (c, exp) in self.expansions.items()
                    if touched & self.reach[key]]
        reached = [(key, c, exp) for key, c, exp in affected if c.required is not None]
        shared = self.names_only and any(self._shared(n) for n in touched)
        if self.names_only and (candidate.phase == _WRITTEN or shared) \
                and len(reached) < len(affected):
            # A trace that stopped did not run what comes after: a shared
            # value read there (the head's num_classes) is not known to be free.
            return 0, set()
        # When it does, a layer after it that is wrong now may be wrong only
        # because of the first (``Up(256, ...)`` given 512: the DoubleConv after
        # the cat with the skip gets 384): what it needs is the trace's to say.
        resizes = follows and any(
            c.arg.startswith("out_") and key not in self.demanded
            and exp.value(trial) != exp.value(self.replacements) for key, c, exp in reached)
        knock_ons: set = set()
        verdict = _STRICT
        fixed, knocked = 0, 0
        for key, c, exp in reached:
            if follows and c.arg.startswith("out_") and key not in self.demanded:
                verdict = _LENIENT
                continue
            if exp.value(trial) != c.required:
                if resizes and key not in own and c.declared != c.required:
                    knock_ons.add(key)
                    verdict = _LENIENT
                    continue
                if follows and candidate.phase != _WRITTEN and c.required == c.declared:
                    # A layer that fit what arrived: what arrives follows the
                    # right name too (a block built with the wrong width gave
                    # its norm that width), a few at most. Verification decides.
                    knocked += 1
                    verdict = _LENIENT
                    continue
                return 0, set()
            fixed += c.required != c.declared
        if knocked > 2 * fixed:
            return 0, set()
        bindings = [*candidate.bindings, *(b for node in touched for b in self._bindings_to(node))]
        unseen = any(not all(self.resolver.is_accounted(r) for r in binding.references)
                     for binding in bindings)
        if unseen:
            # the cause, not the symptom: verification decides; but a text
            # traced again (names_only) changes no value other reads share
            bold = self.bold and candidate.label and not shared
            return (_LENIENT if bold else 0), knock_ons
        return verdict, knock_ons

    def _shared(self, node) -> bool:
        """Whether ``node`` is a literal written where several calls read it (a
        default, a constant, an attribute, a list's element), not in one call."""
        return any(stack[-1].kind in _SHARED for literals in self.literals.values()
                   for lit, stack in literals if lit is node)

    def _bindings_to(self, node):
        for literals in self.literals.values():
            for lit, stack in literals:
                if lit is node:
                    for e in stack:
                        yield from e.bindings

    # -- results -------------------------------------------------------------------------

    def _edit(self, group: Sequence[Mismatch], candidate: _Candidate) -> Edit:
        m = group[0]
        path, line, col = self.resolver.position(candidate.node)
        original = candidate.node
        new = candidate.replacements.get(original, original)
        because = candidate.because
        if not because and not candidate.label \
                and isinstance(original, (cst.Name, cst.Attribute, cst.Subscript)):
            because = f"`{code_of(original)}` kept: other uses need it as it is"
        return Edit(m, line, col, code_of(new), path, code_of(original), candidate.label, because,
                    len(group))

    def drop_fixed_by_others(self) -> None:
        """A group refused before another group's edit was planned (a tie of two
        names in a ResNet's first stage, where the next stage's edit names the
        one) is no longer wrong when that edit gives it its size too."""
        def fixed(m: Mismatch) -> bool:
            hit = self.expansions.get((m.layer_path, m.arg))
            return hit is not None and hit[1].value(self.replacements) == m.observed
        if self.replacements:
            self.unfixable = [u for u in self.unfixable if not fixed(u.mismatch)]

    def _refuse(self, group: Sequence[Mismatch], node: Optional[cst.CSTNode], why: str) -> None:
        m = group[0]
        path, line, col = self.path, 0, 0
        found = self.resolver.position(node) if node is not None else None
        if found is not None:
            path, line, col = found
        elif m.site is not None:
            # Point at the first call in the target file on the way to the layer.
            for frame in m.site.chain:
                if os.path.abspath(frame.path) == self.path:
                    line, col = frame.line, self.index.char_col(frame.line, frame.col) + 1
                    break
        for x in group:
            self.unfixable.append(Unfixable(x, path, line, col, why))

    def _why_not(self, expr, exp: Expansion, m: Mismatch) -> str:
        code = code_of(expr)
        origin = exp.passthrough()
        if origin is not exp:
            return (
                f"`{code}` comes from {origin.label or code_of(origin.node)}, which other "
                f"uses need as it is, and no edit here gives {m.observed}"
            )
        return f"no single change to `{code}` gives {m.observed} for every layer built here"


def _same_run(a: Sequence[Frame], i: int, b: Sequence[Frame], j: int) -> bool:
    """Are frame i of chain ``a`` and frame j of chain ``b`` one run of one
    function: the same ``self``, or else the same calls outward, pass for pass?"""
    x, y = a[i], b[j]
    if (x.path, x.qualname) != (y.path, y.qualname):
        return False
    x_self, y_self = x.local_values.get("self"), y.local_values.get("self")
    if x_self is not None or y_self is not None:
        return x_self is y_self
    outer_x, outer_y = a[i + 1:], b[j + 1:]
    return len(outer_x) == len(outer_y) and all(
        p == q and p.visit == q.visit for p, q in zip(outer_x, outer_y))


def _first_word(name: str) -> str:
    """``in`` of ``in_channels`` and of ``self.in_chs``."""
    return name.rsplit(".", 1)[-1].lstrip("_").split("_", 1)[0]


def _exponent(lit: cst.Integer, node: cst.CSTNode) -> bool:
    """Whether ``lit`` is (in) the exponent of a ``**`` in ``node``."""
    return any(isinstance(n, cst.BinaryOperation) and isinstance(n.operator, cst.Power)
               and lit in _descendants(n.right) for n in _descendants(node))


def _solve(exp: Expansion, lit: cst.Integer, want: int, base: Replacements,
           node: Optional[cst.CSTNode] = None) -> Optional[int]:
    """A positive value for ``lit`` (or for ``node``, which holds ``lit``'s
    value) that makes ``exp`` evaluate to ``want``."""
    old = int(lit.evaluated_value)
    node = lit if node is None else node

    def at(v: int) -> Optional[int]:
        return exp.value({**base, node: lit.with_changes(value=str(v))})

    here, nxt = at(old), at(old + 1)
    # Where ``//`` leaves a range of answers (``img_size // 16 == 2`` for 32..47),
    # the one that divides exactly (32), as its author would: solved with ``/``.
    guesses = _exact_guesses(exp, lit, want, base, node)
    if here is not None and nxt is not None and nxt != here and (want - here) % (nxt - here) == 0:
        guesses.append(old + (want - here) // (nxt - here))
    if here:
        guesses.append(round(old * want / here))
    for v in guesses:
        if v > 0 and v != old and at(v) == want:
            return v
    return None


def _solve_node(exp: Expansion, node: cst.CSTNode, old: Optional[int], want: int,
                base: Replacements) -> Optional[int]:
    """A positive value for the name ``node`` (now ``old``) that makes ``exp``
    evaluate to ``want``."""
    if old is None:
        return None
    if exp.value(base) == want:
        return old
    return _solve(exp, cst.Integer(str(old)), want, base, node)


def _passed_names(exp: Expansion) -> Iterator[Expansion]:
    """The expansions, through ``exp``'s arithmetic and outward along bare
    names, that end at a name a frame wrote (outermost last)."""
    for sub in exp.live():
        chain = sub.chain()
        for e in chain:
            if isinstance(e.bare(), (cst.Name, cst.Attribute)) and e.kind != "argument":
                yield e
        if not isinstance(chain[-1].bare(), (cst.Name, cst.Attribute, cst.Integer)):
            yield from _passed_names(chain[-1])


def _exact_guesses(exp: Expansion, lit: cst.Integer, want: int, base: Replacements,
                   node: Optional[cst.CSTNode] = None) -> List[int]:
    """Values of ``lit`` near which ``exp``, with ``//`` read as ``/``, gives
    exactly ``want`` (a few secant steps: powers and products converge fast)."""
    old = int(lit.evaluated_value)
    target = lit if node is None else node
    swaps = dict(base)
    for division in _floor_divisions(exp):
        swaps.setdefault(division, division.with_changes(operator=cst.Divide()))

    def f(v: int) -> Optional[float]:
        return _real_value(exp, {**swaps, target: lit.with_changes(value=str(v))})

    x0, x1 = old, old + 1
    f0, f1 = f(x0), f(x1)
    for _ in range(16):
        if f0 is None or f1 is None or f1 == f0:
            return []
        x2 = x1 + (want - f1) * (x1 - x0) / (f1 - f0)
        if not math.isfinite(x2) or abs(x2) > 2**40:
            return []
        v = round(x2)
        if v <= 0:
            return []
        fv = f(v)
        if fv == want:
            return [v]
        if v == x1 or v == x0:
            return []
        x0, f0, x1, f1 = x1, f1, v, fv
    return []


def _real_value(exp: Expansion, override: Replacements) -> Optional[float]:
    """``exp``'s value as a number (not only an integer), with ``override``."""
    value = exp.number(override)
    return value if type(value) in (int, float) else None


def _floor_divisions(exp: Expansion) -> List[cst.BinaryOperation]:
    found = [n for n in _descendants(exp.node)
             if isinstance(n, cst.BinaryOperation) and isinstance(n.operator, cst.FloorDivide)]
    for sub in exp.subs.values():
        found += _floor_divisions(sub)
    return found


def _settled(exp: Expansion, dims) -> set:
    """The factors of a product that already read as their dimensions of the
    tensor flattened into it, in the one best alignment of factors to
    dimensions (``128 * ds_size ** 2`` with 128x2x2: the 128); nodes."""
    terms = _terms(exp.node)
    if not dims or len(terms) < 2 or len(terms) > 8:
        return set()
    values = [exp.value_of(t) for t in terms]
    if any(type(v) is not int or v <= 0 for v in values):
        return set()
    best, found = 0, []
    for target in {tuple(dims), tuple(d for d in dims if d != 1)}:
        for k in range(2, min(len(terms), len(target)) + 1):
            for cuts in itertools.combinations(range(1, len(terms)), k - 1):
                for dcuts in itertools.combinations(range(1, len(target)), k - 1):
                    tb, db = (0, *cuts, len(terms)), (0, *dcuts, len(target))
                    groups = [(terms[tb[g]:tb[g + 1]], math.prod(values[tb[g]:tb[g + 1]])
                               == math.prod(target[db[g]:db[g + 1]])) for g in range(k)]
                    agree = frozenset(t for group, ok in groups if ok for t in group)
                    matched = sum(ok for _, ok in groups)
                    if matched > best:
                        best, found = matched, [agree]
                    elif matched and matched == best and agree not in found:
                        found.append(agree)
    if not found:
        return set()
    common = frozenset.intersection(*found)  # alignments that differ settle nothing
    nodes = set()
    for term in common:
        nodes.update(_descendants(term))
    return nodes


def _sub_key(exp: Expansion, sub: Expansion) -> Optional[cst.CSTNode]:
    return next((n for n, e in exp.subs.items() if e is sub), None)


def _refit_terms(expr: cst.BinaryOperation, exp: Expansion, dims) -> Optional[Replacements]:
    """``ndf * 4 * 8 * 8`` fed a 64x4x4 tensor with ndf 16: split the product's
    terms, in order, into one group per dimension (16 * 4 | 8 | 8) and change
    the fewest literals so each group gives its dimension (16 * 4 * 4 * 4)."""
    terms = _terms(expr)
    values = [exp.value_of(t) for t in terms]
    if any(type(v) is not int or v <= 0 for v in values):
        return None
    best = None
    for target in {tuple(dims), tuple(d for d in dims if d != 1)}:
        if not 1 < len(target) <= len(terms) <= 8:
            continue
        for cuts in itertools.combinations(range(1, len(terms)), len(target) - 1):
            bounds = (0, *cuts, len(terms))
            changes = {}
            for (a, b), dim in zip(zip(bounds, bounds[1:]), target):
                product = math.prod(values[a:b])
                if product == dim:
                    continue
                literals = [k for k in range(a, b) if isinstance(terms[k], cst.Integer)]
                if len(literals) != 1:
                    break
                k = literals[0]
                rest = product // values[k]
                if dim % rest:
                    break
                changes[k] = dim // rest
            else:
                if best is None or len(changes) < len(best):
                    best = changes
    if not best:
        return None
    return {terms[k]: terms[k].with_changes(value=str(v)) for k, v in best.items()}


def _terms(node) -> List[cst.BaseExpression]:
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Multiply) \
            and not node.lpar:
        return _terms(node.left) + _terms(node.right)
    return [node]


def _addends(node) -> List[cst.BaseExpression]:
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Add) \
            and not node.lpar:
        return _addends(node.left) + _addends(node.right)
    return [node]


def _times(expr, op, k: int) -> cst.BinaryOperation:
    # A clone: the original node must not appear inside its own replacement.
    return cst.BinaryOperation(
        left=expr.deep_clone(), operator=op, right=cst.Integer(str(k))
    ).with_changes(
        operator=type(op)(
            whitespace_before=cst.SimpleWhitespace(" "), whitespace_after=cst.SimpleWhitespace(" ")
        )
    )


def _opaque(expr: cst.BaseExpression, declared) -> str:
    """Why ``expr``'s value cannot be followed to a place in this file."""
    code = code_of(expr)
    if _contains(expr, (cst.Subscript, cst.Call)):
        return (
            f"`{code}` is {declared} only at run time (read from a container or returned "
            "by a call); dimfix changes values written in the file"
        )
    return f"cannot tell how `{code}` gives {declared}"


def _frame_reads(expr: cst.CSTNode, exp: Expansion) -> set:
    """Nodes of ``expr`` whose value is, or is bound to, a subscript read from the
    frame (``hidden_dims[-1]``; ``width`` after ``width = dims[2]``), not followed
    to where it is written."""
    followed = set()
    for node in exp.subs:
        followed.update(_descendants(node))
    found = set()
    for n in _descendants(expr):
        if isinstance(n, cst.Subscript) and n not in followed:
            found.add(n)
        elif n in exp.subs and _frame_reads(exp.subs[n].node, exp.subs[n]):
            found.add(n)
    return found


def _expanded_nodes(exp: Expansion) -> Iterator[cst.CSTNode]:
    """Every expression an expansion was followed through (a caller's argument,
    a local's value): the nodes an edit further out replaces."""
    for sub in exp.live():
        yield sub.node
        yield from _expanded_nodes(sub)


def _has_reference(expr: cst.CSTNode) -> bool:
    return _contains(expr, (cst.Call, cst.Attribute, cst.Subscript))


def _contains(expr: cst.CSTNode, kinds) -> bool:
    found = []

    class Find(cst.CSTVisitor):
        def on_visit(self, node) -> bool:
            if isinstance(node, kinds):
                found.append(node)
            return not found

    expr.visit(Find())
    return bool(found)


def _bound(nodes) -> set:
    """Names the assignments among ``nodes`` bind (``x = ...``, ``a, b = ...``,
    ``x: int = ...``, ``x += ...``)."""
    def names(target):
        if isinstance(target, cst.Name):
            yield target.value
        elif isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:
                yield from names(element.value)

    found = set()
    for n in nodes:
        if isinstance(n, cst.Assign):
            for t in n.targets:
                found.update(names(t.target))
        elif isinstance(n, (cst.AnnAssign, cst.AugAssign)):
            found.update(names(n.target))
    return found


def _descendants(node: cst.CSTNode) -> List[cst.CSTNode]:
    return descendants(node)
