"""Every traced layer argument, expanded to where its value is written: what
the generators read and the assessment checks candidates against."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import libcst as cst

from dimfix.exprs import code_of
from dimfix.locate import CallIndex, find_argument
from dimfix.origin import Expansion, Resolver, descendants
from dimfix.records import Cause, Construction, Mismatch, Trace
from dimfix.search import context
from dimfix.search.candidate import Key
from dimfix.search.solve import opaque


class World:
    """The expansions of a trace's constructions, and static facts about them."""

    def __init__(self, index: CallIndex, resolver: Resolver, path: str,
                 editable: Callable[[str], bool], trace: Trace,
                 inputs: Sequence[Tuple[int, ...]] = ()) -> None:
        self.index = index
        self.resolver = resolver
        self.path = path
        self.editable = editable
        self.stopped = bool(trace.stopped)
        # The spatial sizes of the inputs traced (a 2x3x64x64 image's 64s).
        self.spatial = frozenset(d for shape in inputs for d in shape[2:])
        self.demanded = {(m.layer_path, m.arg) for m in trace.mismatches
                         if m.cause is Cause.NUM_CLASSES}
        self.expansions: Dict[Key, Tuple[Construction, Expansion]] = {}
        self.args: Dict[Key, cst.Arg] = {}
        self.problems: Dict[Key, Tuple[Optional[cst.CSTNode], str]] = {}
        self.reach: Dict[Key, frozenset] = {}  # nodes each expansion depends on
        self.literals: Dict[Key, list] = {}
        self.tuples: Dict[Key, Construction] = {}
        self.by_site: Dict[tuple, List[Construction]] = {}  # (site key, arg) -> constructions
        self.layers: Dict[str, Construction] = {}  # layer path -> one of its constructions
        self._sizes: Dict[Key, Optional[Expansion]] = {}  # see size_of
        self.suspect: Set[tuple] = set()  # (path, qualname, name): see _mark_suspects
        self.contexts: Dict[cst.CSTNode, Tuple[set, set]] = {}
        self.stacks: Dict[cst.CSTNode, List[tuple]] = {}  # literal -> its paths from layers
        self._callers: Dict[str, Dict[str, int]] = {}  # path -> callee name -> calls
        self._spacing: Dict[tuple, str] = {}
        self._reads: Dict[cst.CSTNode, Set[str]] = {}
        resolver.expect(c.site for c in trace.constructions if c.site is not None)
        self._expand(trace.constructions)
        # Every traced argument, and the arguments each producer fed (see
        # Construction.producer): search/producer.py follows a width through them.
        self.built: Dict[Key, Construction] = {}
        self.fed_by: Dict[Key, List[Key]] = {}
        for c in trace.constructions:
            self.built.setdefault((c.layer_path, c.arg), c)
            if len(c.producer) == 2 and c.producer != (c.layer_path, c.arg):
                self.fed_by.setdefault(tuple(c.producer), []).append((c.layer_path, c.arg))
        for c in trace.makers:
            self.layers.setdefault(c.layer_path, c)
        self._mark_suspects(trace.mismatches)

    # -- expansion -----------------------------------------------------------------------

    def _expand(self, constructions: Sequence[Construction]) -> None:
        for c in constructions:
            self.by_site.setdefault((c.site.key, c.arg), []).append(c)
            self.layers.setdefault(c.layer_path, c)
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
                why = self.resolver.why or opaque(node.value, c.declared)
                self.problems[key] = (node.value, why)
                continue
            if self.resolver.why:  # the value comes from outside this file
                self.problems[key] = (node.value, self.resolver.why)
            literals = exp.literals()
            self.expansions[key] = (c, exp)
            self.literals[key] = literals
            for lit, stack in literals:
                self.stacks.setdefault(lit, []).append(stack)
            # Every node of every expression the value is read through: an
            # edit of any part of them (a term, an index) reaches this layer.
            self.reach[key] = frozenset(
                [*(lit for lit, _ in literals),
                 *(n for expr in (node.value, *expanded_nodes(exp)) for n in descendants(expr))])

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

    def _mark_suspects(self, mismatches: Sequence[Mismatch]) -> None:
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

    # -- what the generators and the assessment ask ------------------------------------------

    def size_of(self, layer_path: str, arg: str) -> Optional[Tuple[Construction, Expansion]]:
        """``arg`` of the traced layer at ``layer_path`` expanded to where it is
        written, also an argument the trace checks nowhere (a bidirectional
        RNN's ``hidden_size``, which sizes the part of a cat it puts out), to
        compare with other expansions, not to edit."""
        if (layer_path, arg) in self.expansions:
            return self.expansions[(layer_path, arg)]
        c = self.layers.get(layer_path)
        if c is None or (layer_path, arg) in self.problems:
            return None
        c = replace(c, arg=arg, required=None)
        if (layer_path, arg) not in self._sizes:
            node, why = self._argument(c)
            exp = None
            if not why:  # (resolver.why, a value from outside the file, is kept as it was)
                saved = self.resolver.why
                exp = self.resolver.expand_argument(c.site, node.value)
                self.resolver.why = saved
            self._sizes[(layer_path, arg)] = exp
        exp = self._sizes[(layer_path, arg)]
        return (c, exp) if exp is not None else None

    def same_origin(self, a: Sequence[tuple], a_chain, b: Sequence[tuple], b_chain) -> bool:
        """Do the reads ``a`` and ``b`` ((frame index, node) each, in frames of the
        site chains ``a_chain`` and ``b_chain``: see ``reads``) stand for one
        written value: the same name read in one run of one function
        (``enc_hid_dim`` passed to ``Encoder(...)`` and to ``Attention(...)``),
        or the same expression further out (a default, a constant)?"""
        if {id(n) for _, n in a} & {id(n) for _, n in b}:
            return True
        return any(
            i is not None and j is not None and isinstance(x, (cst.Name, cst.Attribute))
            and code_of(x) == code_of(y) and context.same_run(a_chain, i, b_chain, j)
            for i, x in a for j, y in b)

    def site_constructions(self, m: Mismatch) -> List[Construction]:
        return self.by_site.get((m.site.key, m.arg), [])

    def may_edit(self, node: cst.CSTNode) -> bool:
        if node in self.index.positions:
            return True
        found = self.resolver.position(node)
        return found is not None and self.editable(found[0])

    def shared(self, node) -> bool:
        """Whether ``node`` is a literal written where several calls read it (a
        default, a constant, an attribute, a list's element), not in one call."""
        return any(stack[-1].kind in SHARED for stack in self.stacks.get(node, ()))

    def bindings_to(self, node) -> Iterator:
        for stack in self.stacks.get(node, ()):
            for e in stack:
                yield from e.bindings

    def fixed_by(self, m: Mismatch, replacements) -> bool:
        """Does ``replacements`` (edits planned for other groups) give ``m`` its
        size too? (A refusal weighed before another group's edit named the
        value both layers read.)"""
        hit = self.expansions.get((m.layer_path, m.arg)) if replacements else None
        return hit is not None and hit[1].value(replacements) == m.observed

    def fed_right(self, m: Mismatch, replacements) -> bool:
        """Is ``m`` wrong only because the layer that made its input puts out
        another size than the edits planned so far make it put out, which is
        the size ``m`` declares? (``out_chs = out_chs or in_chs``: the edit of
        ``ConvNormAct(48)`` to 32 changes its conv's out channels too, so the
        next layer, built for 32, is fed 32.) Verification traces it."""
        hit = self.expansions.get(tuple(m.producer)) if m.producer and replacements else None
        if hit is None or m.cause is not Cause.INPUT:
            return False
        made = hit[1]
        return made.value() == m.observed and made.value(replacements) == m.declared

    def _producer(self, m: Mismatch) -> Optional[Tuple[Construction, Expansion]]:
        """The argument of the layer that made the arriving tensor, expanded
        (also an embedding's ``embedding_dim``, which no check reads)."""
        return self.size_of(*m.producer) if len(m.producer) == 2 else None

    def maker_names(self, m: Mismatch, depth: int = 0) -> set:
        """The name the layer that made the arriving tensor was given its size
        by, when it was built in the same run of the function as the wrong
        layer, or of the function frame ``depth`` of its chain runs
        (``Conv2d(first_planes, outplanes)`` then ``norm_layer(outplanes)``).
        The last layer of the block before, built by another run, names the
        width its own way (``oup``, where this block's ``inp`` belongs)."""
        hit = self._producer(m)
        if hit is None or hit[0].site is None:
            return set()
        chain = hit[0].site.chain
        found = set()  # and the subscripts on the way (``depths[0]``): see swaps.IndexSwap
        for e in hit[1].chain():  # outward, through a helper's parameters
            node = e.bare()
            if e.frame is None or not isinstance(node, (cst.Name, cst.Attribute, cst.Subscript)):
                continue
            if context.same_run(chain, e.frame, m.site.chain, depth):
                found.add(code_of(node))
                if not isinstance(node, cst.Subscript):
                    break
        return found

    def maker_expression(self, m: Mismatch, depth: int) -> Optional[cst.CSTNode]:
        """The expression the layer that made the arriving tensor was given its
        size as, in the run of the function frame ``depth`` of ``m``'s chain
        runs (``conv(conv_dim, conv_dim*2, 4)`` before ``conv(..., conv_dim*4)``)."""
        hit = self._producer(m)
        if hit is None or hit[0].site is None:
            return None
        chain = hit[0].site.chain
        for e in hit[1].chain():
            if e.frame is not None and context.same_run(chain, e.frame, m.site.chain, depth):
                return e.bare()
        return None

    def maker_writes_literal(self, m: Mismatch) -> bool:
        """Did the layer that made the arriving tensor get its size as a literal,
        written in the same run of the function as ``m``'s layer
        (``self.conv = conv3x3(3, 16)`` before ``self.bn = nn.BatchNorm2d(...)``)?
        The author writes this width as a literal too."""
        hit = self._producer(m)
        if hit is None or hit[0].site is None:
            return False
        chain = hit[0].site.chain
        for e in hit[1].chain():
            if e.frame is not None and context.same_run(chain, e.frame, m.site.chain, 0):
                return isinstance(e.bare(), cst.Integer)
        return False

    def spacing(self, node: cst.CSTNode, operator: type) -> str:
        """How the file holding ``node`` spaces ``operator`` (``hidden_size*2``
        or ``hidden_size * 2``): the way most of its uses do, " " on a tie."""
        found = self.resolver.position(node)
        f = self.resolver.file(found[0]) if found else None
        if f is None:
            return " "
        key = (found[0], operator)
        if key not in self._spacing:
            uses = [n for n in f.index.nodes(cst.BinaryOperation)
                    if isinstance(n.operator, operator)]
            tight = sum(1 for n in uses if not n.operator.whitespace_before.value)
            self._spacing[key] = "" if tight > len(uses) - tight else " "
        return self._spacing[key]

    def factor_last(self, node: cst.CSTNode, k: int) -> bool:
        """Does the file holding ``node`` write a name times ``k`` as ``name * k``
        (``ENC_UNITS * 2``) more often than as ``k * name``?"""
        found = self.resolver.position(node)
        f = self.resolver.file(found[0]) if found else None
        if f is None:
            return False
        last = 0
        for n in f.index.nodes(cst.BinaryOperation):
            if not isinstance(n.operator, cst.Multiply):
                continue
            for lit, other, sign in ((n.right, n.left, 1), (n.left, n.right, -1)):
                if isinstance(lit, cst.Integer) and lit.evaluated_value == k \
                        and isinstance(other, (cst.Name, cst.Attribute)):
                    last += sign
        return last > 0

    def function_reads(self, frame) -> Set[str]:
        """The names and ``x.y`` the function ``frame`` runs reads, anywhere in
        its body (the module's code, for a module-level frame)."""
        call, f = self.call_of(frame)
        if call is None:
            return set()
        scope = context.enclosing_function(call, f.parents) or f.index.module
        if scope not in self._reads:
            self._reads[scope] = {code_of(n) for n in descendants(scope)
                                  if isinstance(n, (cst.Name, cst.Attribute))}
        return self._reads[scope]

    def call_of(self, frame) -> Tuple[Optional[cst.Call], object]:
        f = self.resolver.file(frame.path)
        return (f.index.find(frame) if f is not None else None), f

    def context(self, frame) -> Tuple[set, set]:
        """(names the statement of ``frame``'s call uses outside the call, loop
        leftovers): see context.of_call."""
        call, f = self.call_of(frame)
        if call is None:
            return set(), set()
        if call not in self.contexts:
            self.contexts[call] = context.of_call(call, f.parents)
        return self.contexts[call]

    def loop_variables(self, frame) -> set:
        """The variables of the loops ``frame``'s call runs in (context.py)."""
        call, f = self.call_of(frame)
        return context.loop_variables(call, f.parents) if call is not None else set()

    def iterated(self, m: Mismatch) -> set:
        call, f = self.call_of(m.site.call)
        return context.iterated(call, f.parents) if call is not None else set()

    def at_site(self, m: Mismatch, value: int) -> List[Construction]:
        """The site's constructions, as if each needed ``value`` (one part of a cat)."""
        return [replace(c, required=value) for c in self.site_constructions(m)
                if c.required is not None][:1]

    def helper_called_elsewhere(self, m: Mismatch, frame_index: int) -> bool:
        """Is the function that frame ``frame_index`` of ``m``'s chain runs one
        other code calls too: not the model's own entry (the outermost frame),
        and defined in another file than the target or called from several
        places in the files read? A literal written over its parameter would
        break every other caller (timm's ``create_classifier``)."""
        chain = m.site.chain
        if frame_index >= len(chain) - 1:
            return False
        frame = chain[frame_index]
        if self.resolver.file(frame.path) is not None and \
                _same_file(frame.path, self.path) and self._call_count(frame) <= 1:
            return False
        return True

    def _call_count(self, frame) -> int:
        """Calls of the function ``frame`` runs (of its class, for ``__init__``),
        by name, in every file read."""
        name = frame.qualname.split(".")[0] if frame.function == "__init__" else frame.function
        total = 0
        for path, f in list(self.resolver.files.items()):
            if f is None:
                continue
            if path not in self._callers:
                counts: Dict[str, int] = {}
                # The file's index holds every Call already: no walk of the module.
                for call in f.index.all_calls:
                    func = call.func
                    callee = func.value if isinstance(func, cst.Name) else \
                        func.attr.value if isinstance(func, cst.Attribute) else None
                    counts[callee] = counts.get(callee, 0) + 1
                self._callers[path] = counts
            total += self._callers[path].get(name, 0)
        return total


SHARED = ("default", "constant", "attribute", "element")


def reads(exp: Expansion) -> List[tuple]:
    """(frame index, node) of ``exp`` and each expansion its bare name stands
    for, outward (frame None: a default or a constant, read by no frame)."""
    return [(e.frame, e.bare()) for e in exp.chain()]


def expanded_nodes(exp: Expansion) -> Iterator[cst.CSTNode]:
    """Every expression an expansion was followed through (a caller's argument,
    a local's value): the nodes an edit further out replaces."""
    for sub in exp.live():
        yield sub.node
        yield from expanded_nodes(sub)


def _same_file(a: str, b: str) -> bool:
    import os

    return os.path.abspath(a) == os.path.abspath(b)
