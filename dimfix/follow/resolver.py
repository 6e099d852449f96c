"""Follow a layer's size argument to where its value is written.

An argument such as ``hidden`` is *expanded*: each name in it is replaced by
the expression it was bound to, across the frames recorded while the model was
built — a parameter by the argument its caller passed (or its default), a local
or module name by its one assignment, ``self.x`` by its assignment in the
class, ``dims[i]`` or a loop variable over a list literal by that element. The
result is a tree of Expansions whose integer literals are the places a fix
could be written, each with the bindings it flows through, so that a change at
an origin is made only when every use of it is accounted for.
"""

from __future__ import annotations

import inspect
import os
from typing import Dict, Iterator, List, Mapping, Optional, Set, Tuple

import libcst as cst
from libcst.metadata.scope_provider import Assignment

from dimfix.exprs import MISSING, Evaluator
from dimfix.follow.calls import Calls
from dimfix.follow.expansion import Binding, Expansion
from dimfix.follow.imports import Imports
from dimfix.follow.objects import MAX_DEPTH, Objects
from dimfix.follow.scopes import Scopes
from dimfix.follow.sequences import Sequences
from dimfix.follow.syntax import (assigned_value, assignments, binds_after, dominating,
                                  enclosing, enclosing_loop, is_call_to, is_module_scope,
                                  reads_of, self_attribute_uses, within)
from dimfix.locate import CallIndex
from dimfix.records import Site


class _File:
    """One parsed file with the metadata the resolver needs."""

    def __init__(self, index: CallIndex) -> None:
        self.index = index
        self.scopes = Scopes(index)
        self.parents = index.parents
        self.attribute_reads: Optional[Dict[str, List[cst.CSTNode]]] = None  # attr -> reads


class Resolver(Calls, Objects, Imports, Sequences):
    """Expands size arguments of layers, across the user's files.

    Values are followed through helpers in other files of the project
    (``from .layers import conv_bn``), where they may also be edited.
    """

    def __init__(self, index: CallIndex, path: str, init: Mapping[str, object],
                 texts: Mapping[str, str] = ()) -> None:
        self.index = index
        self.path = path
        self.init = init
        self.texts = dict(texts)  # files whose text is not (yet) what is on disk
        self.files: Dict[str, Optional[_File]] = {path: _File(index)}
        self.traversed: Set[cst.CSTNode] = set()
        self.field_params: Dict[tuple, object] = {}  # (class, attr) -> _field_param
        self.why: str = ""
        self.expected: Dict[str, Set[int]] = {}  # path -> lines of frames (see expect)

    def expect(self, sites) -> None:
        """The lines the frames of ``sites`` ran, by file: the statements
        holding them get their scopes in one pass, not one more each time the
        expansion reaches one (follow/scopes.py)."""
        for site in sites:
            for frame in site.chain:
                self.expected.setdefault(os.path.abspath(frame.path), set()).add(frame.line)
        for path, f in self.files.items():
            if f is not None:
                f.scopes.expect(self.expected.get(path, ()))

    def file(self, path: str) -> Optional[_File]:
        """The parsed file at ``path`` (as it is on disk), or None."""
        path = os.path.abspath(path)
        if path not in self.files:
            try:
                from dimfix.source import read_source

                text = self.texts[path] if path in self.texts else read_source(path).text
                self.files[path] = _File(CallIndex(text, path))
                self.files[path].scopes.expect(self.expected.get(path, ()))
            except Exception:  # an unreadable helper file: its values stay opaque
                self.files[path] = None
        return self.files[path]

    def position(self, node: cst.CSTNode) -> Optional[Tuple[str, int, int]]:
        """(path, line, column) of ``node`` in whichever file holds it."""
        for path, f in self.files.items():
            if f is not None and node in f.index.positions:
                line, col = f.index.position(node)
                return path, line, col
        return None

    # libcst metadata of the file a node belongs to
    def _scopes(self, site, i):
        f = self.file(site.chain[i].path)
        return f.scopes if f else {}

    def _parents(self, site, i):
        f = self.file(site.chain[i].path)
        return f.parents if f else {}

    # -- entry point ---------------------------------------------------------------

    def expand_argument(self, site: Site, arg_node: cst.BaseExpression) -> Expansion:
        return self._expand(arg_node, site, 0, "argument", "", (), 0)

    # -- expansion -------------------------------------------------------------------

    def _expand(self, node, site, i, kind, label, bindings, depth, module_level=False) -> Expansion:
        frame = site.chain[i]
        local_values = {} if module_level else frame.local_values
        exp = Expansion(node, kind, label, local_values, frame.global_values, bindings,
                        path=os.path.abspath(frame.path), frame=None if module_level else i)
        if self.file(frame.path) is None:
            return exp
        if depth < MAX_DEPTH:
            plain = Evaluator(local_values, frame.global_values)
            for sub_node in self._resolvable(node):
                sub = self._resolve(sub_node, site, i, depth + 1, module_level)
                # ``out_chs`` in ``out_chs = out_chs or in_chs`` is the parameter,
                # not what the frame holds once the line has run.
                if sub is not None and (not _disagrees(sub.number(), plain.value(sub_node))
                                        or self._rebinding(sub_node, site, i)):
                    exp.subs[sub_node] = sub
                    self.traversed.add(sub_node)
        return exp

    def _rebinding(self, node, site, i) -> bool:
        """Is ``node``, a name, read in the value of an assignment to itself?"""
        if not isinstance(node, cst.Name):
            return False
        parents = self._parents(site, i)
        return any(binds_after(parents, a, node) for a in assignments(self._scopes(site, i), node))

    def _resolvable(self, node) -> Iterator[cst.CSTNode]:
        """Names, ``self.x`` and subscripts in arithmetic, outermost first."""
        if isinstance(node, (cst.Name, cst.Subscript)):
            yield node
        elif isinstance(node, cst.Attribute):
            if isinstance(node.value, cst.Name):  # self.x, or opt.x of an argparse parser
                yield node
        elif isinstance(node, cst.BinaryOperation):
            yield from self._resolvable(node.left)
            yield from self._resolvable(node.right)
        elif isinstance(node, cst.UnaryOperation):
            yield from self._resolvable(node.expression)
        elif isinstance(node, cst.IfExp):  # ``in_chs if i == 0 else out_chs``
            yield from self._resolvable(node.body)
            yield from self._resolvable(node.orelse)
        elif isinstance(node, cst.BooleanOperation):  # ``out_chs or in_chs``
            yield from self._resolvable(node.left)
            yield from self._resolvable(node.right)
        elif isinstance(node, cst.Call):
            for arg in node.args:
                yield from self._resolvable(arg.value)
        elif isinstance(node, (cst.Tuple, cst.List)):  # ``np.prod((channels, img_size))``
            for element in node.elements:
                yield from self._resolvable(element.value)

    def _resolve(self, node, site, i, depth, module_level) -> Optional[Expansion]:
        if isinstance(node, cst.Name):
            return self._name(node, site, i, depth, module_level)
        if isinstance(node, cst.Attribute):
            if node.value.value == "self":
                return self._attribute(node, site, i, depth)
            return (self._argparse_default(node, site, i, depth)
                    or self._object_field(node, site, i, depth))
        return self._subscript(node, site, i, depth, module_level)

    def _name(self, node: cst.Name, site, i, depth, module_level) -> Optional[Expansion]:
        scopes, parents = self._scopes(site, i), self._parents(site, i)
        found = assignments(scopes, node)
        if not found:  # ``from config import cfg``: where config.py writes it
            return self._imported(node, site, i)
        # ``out_chs = out_chs or in_chs``: the read on the right is the binding
        # before this one (on a loop's later passes, this one again).
        found = [a for a in found if not binds_after(parents, a, node)
                 or enclosing(parents, node, (cst.For, cst.While)) is not None]
        if not found:
            return None
        # ``[DecoderLayer(d_model) for _ in ...]``: ``d_model`` is a parameter of
        # the function the comprehension runs in, passed by that function's
        # caller. (A local it reads stays a leaf: in a trace stopped by an
        # error, a loop's local followed to a default offers the default as a
        # blind fix for a knock-on; origin_inner_name_product.)
        if self._in_comprehension(node, site, i) and all(
                isinstance(a.node, cst.Param) for a in found):
            i += 1
        if len(found) > 1:
            found = dominating(found, node, parents) or found
        if len(found) > 1:
            # ``in_channels = v`` in a loop after ``def f(in_channels=3)``: the
            # binding in force is the one whose value is the name's value now.
            frame = site.chain[i]
            current = (frame.global_values if module_level else
                       {**frame.global_values, **frame.local_values}).get(node.value)
            # A binding later in the loop body ran on the pass before: what it
            # held then is not in the frame (``prev_dim = cross_layer_size``).
            carried = self._carried(found, node, site, i)
            found = [a for a in found if a in carried or self._gives(a, parents, site, i, current)]
            if len(found) > 1:
                found = self._in_force(found, node, site, i)
            if len(found) != 1:
                return None
        assignment = found[0]
        binding = Binding(node.value, tuple(a.node for a in assignment.references))
        target = assignment.node
        if isinstance(target, cst.Param):
            return self._parameter(target, site, i, depth, binding)
        value = assigned_value(parents, target)
        if value is not None:
            at_module = module_level or is_module_scope(assignment)
            kind = "constant" if at_module else "local"
            if not at_module and not self._in_frame_function(target, site, i):
                return None
            return self._expand(value, site, i, kind, node.value, (binding,), depth, at_module)
        loop = enclosing_loop(parents, target)
        if loop is not None:
            return self._loop_element(node, loop, site, i, depth, binding)
        return None

    def _carried(self, found: List[Assignment], read: cst.Name, site, i) -> List[Assignment]:
        """The bindings in ``read``'s loop, after it: they bind for the next pass."""
        parents = self._parents(site, i)
        loop = enclosing(parents, read, (cst.For, cst.While))
        if loop is None:
            return []
        positions = self.file(site.chain[i].path).index.positions
        at = lambda n: (positions[n].start.line, positions[n].start.column)  # noqa: E731
        return [a for a in found if not isinstance(a.node, cst.Param)
                and within(parents, a.node, loop) and at(a.node) > at(read)]

    def _in_force(self, found: List[Assignment], read: cst.Name, site, i) -> List[Assignment]:
        """Of bindings that all hold the value, the ones that can reach ``read``
        on this pass of its loop: on the first pass (the frame's first run of
        the call), those before the loop; on later passes, those in the loop.
        A binding in the loop body above the read is in force on every pass."""
        parents = self._parents(site, i)
        positions = self.file(site.chain[i].path).index.positions
        loop = enclosing(parents, read, (cst.For, cst.While))
        if loop is None or enclosing(parents, read, cst.FunctionDef) is not \
                enclosing(parents, loop, cst.FunctionDef):
            return found

        def at(node):
            return (positions[node].start.line, positions[node].start.column)

        inside = [a for a in found if within(parents, a.node, loop)]
        above = [a for a in inside if at(a.node) < at(read) and not binds_after(parents, a, read)]
        if above:
            return above
        if site.chain[i].visit == 0:
            return [a for a in found if a not in inside]
        return inside

    def _gives(self, assignment, parents, site, i, current) -> bool:
        """Could ``assignment`` be the binding that holds ``current`` at frame i?"""
        if type(current) is not int:
            return False
        target = assignment.node
        frame = site.chain[i]
        if isinstance(target, cst.Param):
            passed = self._passed(target, parents, site, i)
            if target.default is None or passed not in (MISSING, None):  # None: cannot tell
                return passed == current
            value = Evaluator({}, frame.global_values).value(target.default)
            return value == current
        value_node = assigned_value(parents, target)
        if value_node is None:
            return False
        return Evaluator(frame.local_values, frame.global_values).value(value_node) == current

    def _attribute(self, node: cst.Attribute, site, i, depth) -> Optional[Expansion]:
        parents = self._parents(site, i)
        cls = enclosing(parents, node, cst.ClassDef)
        if cls is None:
            return None
        attr = node.attr.value
        stores, loads = self_attribute_uses(cls, attr)
        current = _self_value(site.chain[i], attr)
        candidates = []
        for store_target, value in stores:
            func = enclosing(parents, store_target, cst.FunctionDef)
            for j in range(i, len(site.chain)):
                frame = site.chain[j]
                if func is not None and frame.function == func.name.value \
                        and frame.path == site.chain[i].path:
                    candidates.append((value, j))
                    break
        if len(candidates) > 1:
            # ``self.in_planes`` set in __init__ and again in _make_layer: the
            # store in force is the one whose value is the attribute's value now.
            candidates = [(v, j) for v, j in candidates
                          if type(current) is int and Evaluator(
                              site.chain[j].local_values, site.chain[j].global_values
                          ).value(v) == current]
        if len(candidates) != 1 or (len(stores) > 1 and type(current) is not int):
            return None
        value, j = candidates[0]
        binding = Binding(f"self.{attr}", tuple(loads))
        return self._expand(value, site, j, "attribute", f"self.{attr}", (binding,), depth)

    # -- helpers ----------------------------------------------------------------------

    def _in_comprehension(self, node, site, i) -> bool:
        """Is ``node`` read by frame i running a comprehension (Python 3.11
        gives each its own frame) inside the function frame i + 1 runs, whose
        names it reads?"""
        frame = site.chain[i]
        return frame.function in _COMPREHENSION_FRAMES and i + 1 < len(site.chain) \
            and site.chain[i + 1].path == frame.path and self._in_frame_function(node, site, i + 1)

    def _in_frame_function(self, node, site, i) -> bool:
        func = enclosing(self._parents(site, i), node, cst.FunctionDef)
        if func is None:  # a module's statement, run by the module's own frame
            return site.chain[i].function == "<module>"
        return func.name.value == site.chain[i].function

    def _metadata_of(self, node):
        for f in self.files.values():
            if f is not None and node in f.parents:
                return f.scopes, f.parents
        return {}, {}

    def is_accounted(self, reference: cst.CSTNode, seen: Optional[Set[int]] = None) -> bool:
        """A read whose value can only reach traced layer arguments."""
        if reference in self.traversed:
            return True
        scopes, parents = self._metadata_of(reference)
        parent = parents.get(reference)
        if isinstance(parent, cst.Arg):
            call = parents.get(parent)
            if is_call_to(call, "len"):
                return True  # len(dims) does not depend on the elements' values
        # ``self.h = hidden`` or ``h = hidden``: follow the new binding's reads.
        seen = seen if seen is not None else set()
        if id(reference) in seen:
            return True
        seen.add(id(reference))
        if isinstance(parent, cst.Assign) and parent.value is reference and len(parent.targets) == 1:
            target = parent.targets[0].target
            reads = reads_of(target, scopes, parents)
            return all(self.is_accounted(r, seen) for r in reads)
        return False


_COMPREHENSION_FRAMES = ("<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>")


def _disagrees(followed: object, held: object) -> bool:
    """A followed value that is not what the frame held: the expansion went
    wrong somewhere (a value it cannot evaluate), so the name stays a leaf."""
    if type(held) not in (int, float, bool):
        return False
    return type(followed) not in (int, float, bool) or followed != held


def _self_value(frame, attr: str) -> object:
    if f"self.{attr}" in frame.local_values:
        return frame.local_values[f"self.{attr}"]
    obj = frame.local_values.get("self")
    if obj is None:
        return None
    try:
        return inspect.getattr_static(obj, attr)
    except AttributeError:
        return None
