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

import dataclasses
import functools
import inspect
import os
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Mapping, Optional, Set, Tuple

import libcst as cst
from libcst.metadata import ParentNodeProvider, ScopeProvider
from libcst.metadata.scope_provider import Assignment

from dimfix.exprs import MISSING, Evaluator, code_of
from dimfix.locate import CallIndex, find_argument
from dimfix.records import Site

MAX_DEPTH = 12
_DEFAULT = object()  # a parameter no caller gave: its default applies
_OUTWARD = object()  # a name that came in through the frame's own **kwargs


@dataclass(frozen=True)
class Binding:
    """A name (or ``self.attr``) a value flows through, and every place it is read."""

    label: str
    references: Tuple[cst.CSTNode, ...]


@dataclass(eq=False)
class Expansion:
    """An expression, where it is evaluated, and what its names were bound to."""

    node: cst.BaseExpression
    kind: str  # argument, call-site, default, constant, local, attribute, element
    label: str  # how the reason line names it: "default of hidden", "NUM_CLASSES"
    local_values: Mapping[str, object]
    global_values: Mapping[str, object]
    bindings: Tuple[Binding, ...] = ()  # bindings crossed to reach this expression
    subs: Dict[cst.CSTNode, "Expansion"] = field(default_factory=dict)
    path: str = ""  # the file the expression is written in
    frame: Optional[int] = None  # index in the site's chain of the frame it is read in

    def value(self, override: Optional[Mapping[cst.CSTNode, cst.CSTNode]] = None,
              used: Optional[List[Tuple[cst.Integer, Tuple["Expansion", ...]]]] = None,
              stack: Tuple["Expansion", ...] = ()) -> Optional[int]:
        """Evaluate, with ``override`` swapping nodes; record literals in ``used``."""
        result = self.number(override, used, stack)
        return result if type(result) is int else None

    def number(self, override=None, used=None, stack=()) -> object:
        """The value, also when it is not an int (``bottleneck_multiplier=1.0``)."""
        plain = not override and used is None
        if plain and "_number" in self.__dict__:
            return self.__dict__["_number"]  # an expansion is not changed once built
        stack = stack + (self,)

        def hook(node):
            sub = self.subs.get(node)
            if sub is None:
                return MISSING
            return sub.number(override, used, stack)

        ev = Evaluator(self.local_values, self.global_values, hook, override, self._none)
        result = ev.value(self.node)
        if used is not None:
            used.extend((literal, stack) for literal in ev.used)
        if plain:
            self.__dict__["_number"] = result
        return result

    def _none(self, node: cst.CSTNode) -> bool:
        """Does ``node``, a name in this expression, stand for a written ``None``
        (``out_chs=None``, a parameter no caller gave)?"""
        sub = self.subs.get(node)
        if sub is None:
            return False
        bare = sub.node
        return (isinstance(bare, cst.Name) and bare.value == "None") or sub._none(bare)

    def value_of(self, node: cst.CSTNode) -> object:
        """The value of ``node``, a part of this expression, in its context."""
        return self._evaluator().value(node)

    def _evaluator(self, read: Optional[List["Expansion"]] = None) -> Evaluator:
        """An Evaluator in this expression's context whose names answer from the
        sub-expansions (each one consulted is appended to ``read``)."""

        def hook(n):
            sub = self.subs.get(n)
            if sub is None:
                return MISSING
            if read is not None:
                read.append(sub)
            return sub.number()

        return Evaluator(self.local_values, self.global_values, hook, none=self._none)

    def literals(self) -> List[Tuple[cst.Integer, Tuple["Expansion", ...]]]:
        """Every integer literal the value depends on, with the path to it."""
        used: List[Tuple[cst.Integer, Tuple[Expansion, ...]]] = []
        self.value(used=used)
        return used

    def passthrough(self) -> "Expansion":
        """Follow bare names to the expression they stand for."""
        return self.chain()[-1]

    def live(self) -> List["Expansion"]:
        """The sub-expansions the value reads (not the branch ``a if t else b``
        did not take)."""
        if "_live" not in self.__dict__:
            read: List[Expansion] = []
            self._evaluator(read).value(self.node)
            self.__dict__["_live"] = read
        return list(self.__dict__["_live"])

    def chain(self) -> List["Expansion"]:
        """This expansion and each one its bare name stands for, outward."""
        found = [self]
        while True:
            sub = found[-1].subs.get(found[-1].bare())
            if sub is None:
                return found
            found.append(sub)

    def bare(self) -> cst.CSTNode:
        """The part of the expression its value is: the branch ``a if test else b``
        took, the operand of ``a or b``; the expression itself otherwise."""
        node = self.node
        while isinstance(node, (cst.IfExp, cst.BooleanOperation)):
            taken = self._evaluator().taken(node)
            if taken is None:
                return node
            node = taken
        return node


class _File:
    """One parsed file with the metadata the resolver needs."""

    def __init__(self, index: CallIndex) -> None:
        self.index = index
        self.scopes = index.wrapper.resolve(ScopeProvider)
        self.parents = index.wrapper.resolve(ParentNodeProvider)
        self.attribute_reads: Optional[Dict[str, List[cst.CSTNode]]] = None  # attr -> reads


class Resolver:
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

    def file(self, path: str) -> Optional[_File]:
        """The parsed file at ``path`` (as it is on disk), or None."""
        path = os.path.abspath(path)
        if path not in self.files:
            try:
                from dimfix.source import read_source

                text = self.texts[path] if path in self.texts else read_source(path).text
                self.files[path] = _File(CallIndex(text, path))
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
        return any(_binds_after(parents, a, node) for a in _assignments(self._scopes(site, i), node))

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

    def _resolve(self, node, site, i, depth, module_level) -> Optional[Expansion]:
        if isinstance(node, cst.Name):
            return self._name(node, site, i, depth, module_level)
        if isinstance(node, cst.Attribute):
            if node.value.value == "self":
                return self._attribute(node, site, i, depth)
            return (self._argparse_default(node, site, i, depth)
                    or self._object_field(node, site, i, depth))
        return self._subscript(node, site, i, depth, module_level)

    def _argparse_default(self, node: cst.Attribute, site, i, depth) -> Optional[Expansion]:
        """``opt.latent_dim`` where ``opt = parser.parse_args()``: the ``default=``
        of ``parser.add_argument("--latent_dim", ...)``, where the value is written."""
        scopes, parents = self._scopes(site, i), self._parents(site, i)
        found = _assignments(scopes, node.value)
        if len(found) != 1 or not _is_module_scope(found[0]):
            return None
        call = _assigned_value(parents, found[0].node)
        if not (isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute)
                and call.func.attr.value == "parse_args" and isinstance(call.func.value, cst.Name)):
            return None
        default = _add_argument_default(self.file(site.chain[i].path).index.module,
                                        call.func.value.value, node.attr.value)
        if default is None:
            return None
        reads = [n for n in _attribute_reads(self.file(site.chain[i].path).index.module,
                                             node.value.value, node.attr.value)]
        binding = Binding(code_of(node), tuple(reads))
        return self._expand(default, site, i, "default", f"default of --{node.attr.value}",
                            (binding,), depth, module_level=True)

    def _name(self, node: cst.Name, site, i, depth, module_level) -> Optional[Expansion]:
        scopes, parents = self._scopes(site, i), self._parents(site, i)
        found = _assignments(scopes, node)
        # ``out_chs = out_chs or in_chs``: the read on the right is the binding
        # before this one (on a loop's later passes, this one again).
        found = [a for a in found if not _binds_after(parents, a, node)
                 or _enclosing(parents, node, (cst.For, cst.While)) is not None]
        if not found:
            return None
        if len(found) > 1:
            found = _dominating(found, node, parents) or found
        if len(found) > 1:
            # ``in_channels = v`` in a loop after ``def f(in_channels=3)``: the
            # binding in force is the one whose value is the name's value now.
            frame = site.chain[i]
            current = (frame.global_values if module_level else
                       {**frame.global_values, **frame.local_values}).get(node.value)
            found = [a for a in found if self._gives(a, parents, site, i, current)]
            if len(found) > 1:
                found = self._in_force(found, node, site, i)
            if len(found) != 1:
                return None
        assignment = found[0]
        binding = Binding(node.value, tuple(a.node for a in assignment.references))
        target = assignment.node
        if isinstance(target, cst.Param):
            return self._parameter(target, site, i, depth, binding)
        value = _assigned_value(parents, target)
        if value is not None:
            at_module = module_level or _is_module_scope(assignment)
            kind = "constant" if at_module else "local"
            if not at_module and not self._in_frame_function(target, site, i):
                return None
            return self._expand(value, site, i, kind, node.value, (binding,), depth, at_module)
        loop = _enclosing_loop(parents, target)
        if loop is not None:
            return self._loop_element(node, loop, site, i, depth, binding)
        return None

    def _in_force(self, found: List[Assignment], read: cst.Name, site, i) -> List[Assignment]:
        """Of bindings that all hold the value, the ones that can reach ``read``
        on this pass of its loop: on the first pass (the frame's first run of
        the call), those before the loop; on later passes, those in the loop.
        A binding in the loop body above the read is in force on every pass."""
        parents = self._parents(site, i)
        positions = self.file(site.chain[i].path).index.positions
        loop = _enclosing(parents, read, (cst.For, cst.While))
        if loop is None or _enclosing(parents, read, cst.FunctionDef) is not \
                _enclosing(parents, loop, cst.FunctionDef):
            return found

        def at(node):
            return (positions[node].start.line, positions[node].start.column)

        inside = [a for a in found if _within(parents, a.node, loop)]
        above = [a for a in inside if at(a.node) < at(read) and not _binds_after(parents, a, read)]
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
        value_node = _assigned_value(parents, target)
        if value_node is None:
            return False
        return Evaluator(frame.local_values, frame.global_values).value(value_node) == current

    def _passed(self, param: cst.Param, parents, site, i) -> object:
        """The value frame i's caller passed for ``param``, if it can be told."""
        arg = self._caller_argument(param, parents, site, i)
        if arg is None:
            return MISSING
        caller = site.chain[i + 1]
        return Evaluator(caller.local_values, caller.global_values).value(arg)

    def _caller_argument(self, param: cst.Param, parents, site, i) -> Optional[cst.BaseExpression]:
        """The expression frame i's caller wrote for ``param``; None if it
        passed none or it cannot be told (``*args``, ``**kwargs``)."""
        func = _enclosing(parents, param, cst.FunctionDef)
        if func is None or func.name.value != site.chain[i].function or i + 1 >= len(site.chain):
            return None
        caller_file = self.file(site.chain[i + 1].path)
        call = caller_file.index.find(site.chain[i + 1]) if caller_file else None
        if call is None:
            return None
        arg = _bound_argument(call, func, param.name.value, _is_method(parents, func))
        return None if arg is MISSING else arg

    def _parameter(self, param: cst.Param, site, i, depth, binding) -> Optional[Expansion]:
        parents = self._parents(site, i)
        func = _enclosing(parents, param, cst.FunctionDef)
        frame = site.chain[i]
        if func is None or func.name.value != frame.function:
            return None
        name = param.name.value
        if i + 1 < len(site.chain):
            caller = site.chain[i + 1]
            caller_file = self.file(caller.path)
            call = caller_file.index.find(caller) if caller_file else None
            if call is None:
                return None
            arg = _bound_argument(call, func, name, _is_method(parents, func))
            if arg is MISSING:
                passed = self._through_kwargs(name, site, i + 1, depth, binding)
                if passed is not _DEFAULT:
                    return passed
                arg = None
            if arg is not None:
                label = f"argument {name} of {_callee(call)}()"
                return self._expand(arg, site, i + 1, "call-site", label, (binding,), depth)
        elif name in self.init:
            self.why = f"{name} is given with --init {name}={self.init[name]!r}"
            return None
        if param.default is None:
            return None
        return self._expand(param.default, site, i, "default", f"default of {name}",
                            (binding,), depth, module_level=True)

    def _through_kwargs(self, name: str, site, j: int, depth, binding):
        """``name`` passed on through ``**kwargs`` (torchvision's ``densenet121(**kwargs)``
        -> ``_densenet(..., **kwargs)`` -> ``DenseNet(..., **kwargs)``): the dict each
        frame unpacked, as it was, says whether ``name`` was in it. A frame's own
        ``**kwargs`` came from the next caller out; a dict it built itself
        (``model_args = dict(num_features=...)``, ``**dict(model_args, **kwargs)``)
        holds the expression written for it. Returns the expansion of that
        expression, _DEFAULT when no caller gave it (the parameter's default
        applies), or None when it cannot be told."""
        while j < len(site.chain):
            frame = site.chain[j]
            f = self.file(frame.path)
            call = f.index.find(frame) if f is not None else None
            if call is None:
                return None
            written = next((a for a in call.args if a.keyword is not None
                            and a.keyword.value == name), None)
            if written is not None:
                label = f"argument {name} of {_callee(call)}()"
                return self._expand(written.value, site, j, "call-site", label, (binding,), depth)
            stars = [a for a in call.args if a.star == "**"]
            if len(stars) != 1 or any(a.star == "*" for a in call.args):
                return None
            found = self._dict_entry(stars[0].value, name, site, j, depth, binding, 0)
            if found is not _OUTWARD:
                return found
            j += 1  # it came into this frame's own **kwargs from the next caller out
        return None

    def _dict_entry(self, node, name: str, site, j: int, depth, binding, hops: int):
        """The expression a dict unpacked in frame j holds for key ``name``: an
        expansion, _DEFAULT if the dict does not hold it, _OUTWARD if it came in
        through the frame's own ``**kwargs``, or None if it cannot be told."""
        frame = site.chain[j]
        if hops > 4:
            return None
        if isinstance(node, cst.Name):
            passed = Evaluator(frame.local_values, frame.global_values).value(node)
            if type(passed) is not dict:
                return None
            if name not in passed:
                return _DEFAULT
            if node.value == self._varkw(site, j):
                return _OUTWARD
            found = _assignments(self._scopes(site, j), node)
            if len(found) != 1 or isinstance(found[0].node, cst.Param):
                return None
            value = _assigned_value(self._parents(site, j), found[0].node)
            if value is None or not self._in_frame_function(found[0].node, site, j):
                return None
            self.traversed.add(node)
            found = self._dict_entry(value, name, site, j, depth, binding, hops + 1)
            return None if found is _DEFAULT else found  # set later (``args["x"] = ...``)
        if _is_call_to(node, "dict"):
            entries = [(a.keyword.value if a.keyword else None, a.star, a.value) for a in node.args]
        elif isinstance(node, cst.Dict):
            entries = [(e.key.evaluated_value if isinstance(e, cst.DictElement)
                        and isinstance(e.key, cst.SimpleString) else None,
                        "**" if isinstance(e, cst.StarredDictElement) else "", e.value)
                       for e in node.elements]
        else:
            return None
        for key, star, value in reversed(entries):  # later entries win
            if key == name:
                label = f"{name} in the dict built here"
                return self._expand(value, site, j, "call-site", label, (binding,), depth)
            if key is None and (star == "**" or isinstance(node, cst.Call)):
                inner = self._dict_entry(value, name, site, j, depth, binding, hops + 1)
                if inner is not _DEFAULT:
                    return inner
        return _DEFAULT

    def _varkw(self, site, j: int) -> Optional[str]:
        """The name of frame j's ``**kwargs`` parameter, if its function has one."""
        f = self.file(site.chain[j].path)
        call = f.index.find(site.chain[j]) if f is not None else None
        func = _enclosing(f.parents, call, cst.FunctionDef) if call is not None else None
        if func is None or func.name.value != site.chain[j].function:
            return None
        star = func.params.star_kwarg
        return star.name.value if isinstance(star, cst.Param) else None

    def _attribute(self, node: cst.Attribute, site, i, depth) -> Optional[Expansion]:
        parents = self._parents(site, i)
        cls = _enclosing(parents, node, cst.ClassDef)
        if cls is None:
            return None
        attr = node.attr.value
        stores, loads = _self_attribute_uses(cls, attr)
        current = _self_value(site.chain[i], attr)
        candidates = []
        for store_target, value in stores:
            func = _enclosing(parents, store_target, cst.FunctionDef)
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

    def _object_field(self, node: cst.Attribute, site, i, depth) -> Optional[Expansion]:
        """``cnf.input_channels`` where ``cnf`` is an object a call built
        (``CNBlockConfig(1536, None, 3)`` in a list, a dataclass config) whose
        ``__init__`` stores ``self.input_channels = input_channels``, or whose
        dataclass field it is: the argument that call passed for it."""
        frame = site.chain[i]
        obj = frame.local_values.get(node.value.value, MISSING)
        if obj is MISSING or isinstance(obj, _PLAIN) or inspect.isclass(obj) \
                or inspect.ismodule(obj) or type(obj).__module__.split(".")[0] in _NOT_CONFIGS:
            return None
        built = self._built_by(node.value, obj, site, i, depth)
        param = self._field_param(type(obj), node.attr.value) if built else None
        if param is None:
            return None
        (call, j), (func, name) = built, param
        if func is None:  # a dataclass: its fields are the parameters, in order
            fields = [f.name for f in dataclasses.fields(type(obj)) if f.init]
            found, _ = find_argument(call, tuple(fields), name)
            arg = found.value if found is not None else None
        else:
            arg = _bound_argument(call, func, name, True)
        if arg is None or arg is MISSING:
            return None
        binding = Binding(code_of(node), self._field_reads(site.chain[i].path, node.attr.value))
        return self._expand(arg, site, j, "call-site", f"argument {name} of {_callee(call)}()",
                            (binding,), depth)

    def _field_reads(self, path: str, attr: str) -> Tuple[cst.CSTNode, ...]:
        """Every ``<anything>.<attr>`` in the file at ``path``: the reads an edit of
        a config field may reach (those the trace did not follow are unseen)."""
        f = self.file(path)
        if f is None:
            return ()
        if f.attribute_reads is None:
            f.attribute_reads = {}
            for n in descendants(f.index.module, cst.Attribute):
                f.attribute_reads.setdefault(n.attr.value, []).append(n)
        return tuple(f.attribute_reads.get(attr, ()))

    def _built_by(self, name: cst.Name, obj, site, i, depth) -> Optional[Tuple[cst.Call, int]]:
        """The call that built ``obj``, the value of ``name`` at frame i, and the
        index of the frame it runs in: ``cnf = Config(...)``, ``last =
        configs[-1]``, or ``for cnf in configs`` (the element that is ``obj``)."""
        scopes, parents = self._scopes(site, i), self._parents(site, i)
        found = _assignments(scopes, name)
        if len(found) != 1 or depth > MAX_DEPTH:
            return None
        target = found[0].node
        if isinstance(target, cst.Param):  # ``Encoder(cfg)``: where the caller built it
            arg = self._caller_argument(target, parents, site, i)
            if isinstance(arg, cst.Call):
                return arg, i + 1
            if isinstance(arg, cst.Name) and site.chain[i + 1].local_values.get(arg.value) is obj:
                return self._built_by(arg, obj, site, i + 1, depth + 1)
            return None
        comprehensions = (cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp)
        if site.chain[i].function.startswith("<") and i + 1 < len(site.chain) \
                and _enclosing(parents, target, comprehensions) is None:
            i += 1  # ``[Block(cnf.dim) for _ in ...]``: ``cnf`` is its function's
        value = _assigned_value(parents, target)
        if isinstance(value, cst.Call):
            return (value, i) if self._in_frame_function(target, site, i) else None
        if isinstance(value, cst.Subscript) and len(value.slice) == 1 \
                and isinstance(value.slice[0].slice, cst.Index):
            frame = site.chain[i]
            k = Evaluator(frame.local_values, frame.global_values).integer(
                value.slice[0].slice.value)
            return self._element_call(value.value, k, site, i, depth)
        loop = _enclosing_loop(parents, target)
        found = _loop_iterable(*loop, name.value) if value is None and loop is not None else None
        if found is None:
            return None
        iterable, offset, _ = found
        live = site.chain[i].local_values.get(getattr(iterable, "value", None))
        hits = [k for k, e in enumerate(live) if e is obj and k >= offset] \
            if isinstance(live, (list, tuple)) else []
        return self._element_call(iterable, hits[0], site, i, depth) if len(hits) == 1 else None

    def _field_param(self, cls: type, attr: str):
        key = (cls, attr)
        if key not in self.field_params:
            self.field_params[key] = _field_param(cls, attr, self.file)
        return self.field_params[key]

    def _element_call(self, seq_node, index, site, i, depth) -> Optional[Tuple[cst.Call, int]]:
        seq = self._sequence(seq_node, site, i, depth, False)
        element = self._element(seq, index) if seq is not None else None
        if element is None or seq.frame is None or not isinstance(element.node, cst.Call):
            return None
        return element.node, seq.frame

    def _subscript(self, node: cst.Subscript, site, i, depth, module_level) -> Optional[Expansion]:
        if len(node.slice) != 1 or not isinstance(node.slice[0].slice, cst.Index):
            return None
        seq = self._sequence(node.value, site, i, depth, module_level)
        if seq is None:
            return None
        frame = site.chain[i]
        values = {} if module_level else frame.local_values
        index = Evaluator(values, frame.global_values).integer(node.slice[0].slice.value)
        return self._element(seq, index)

    def _loop_element(self, node: cst.Name, loop, site, i, depth, binding) -> Optional[Expansion]:
        """``for a, b in zip(dims, dims[1:])``: the element this iteration read."""
        target, iterable = loop
        frame = site.chain[i]
        current = frame.local_values.get(node.value, MISSING)
        if type(current) is not int:
            return None
        sources = self._loop_sources(target, iterable, node.value, site, i, depth)
        if sources is None:
            return None
        seq, offset, index_name = sources
        if index_name is not None:  # enumerate(): the index is known
            k = frame.local_values.get(index_name)
            return self._element(seq, k + offset if type(k) is int else None)
        elements = _element_values(seq)
        hits = [k for k, v in enumerate(elements) if v == current]
        if len(hits) != 1:
            self.why = f"{node.value} is {current}, found {len(hits)} times in the list"
            return None
        return self._element(seq, hits[0])

    def _loop_sources(self, target, iterable, name, site, i, depth):
        """The sequence (and offset) the loop variable ``name`` reads, if simple."""
        found = _loop_iterable(target, iterable, name)
        if found is None:
            return None
        iterable, offset, index_name = found
        self.traversed.add(iterable)
        seq = self._sequence(iterable, site, i, depth, False)
        return (seq, offset, index_name) if seq is not None else None

    def _sequence(self, node, site, i, depth, module_level) -> Optional[Expansion]:
        if isinstance(node, (cst.List, cst.Tuple)):
            return self._expand(node, site, i, "literal", "", (), depth, module_level)
        if not isinstance(node, cst.Name):
            return None
        found = self._name(node, site, i, depth, module_level)
        if found is None:
            return None
        self.traversed.add(node)
        found = found.passthrough()
        return found if isinstance(found.node, (cst.List, cst.Tuple)) else None

    def _element(self, seq: Expansion, index: Optional[int]) -> Optional[Expansion]:
        elements = seq.node.elements
        if type(index) is not int or not -len(elements) <= index < len(elements):
            return None
        element = elements[index]
        if isinstance(element, cst.StarredElement):
            return None
        label = f"{seq.label}[{index % len(elements)}]" if seq.label else "list element"
        return Expansion(element.value, "element", label, seq.local_values,
                         seq.global_values, seq.bindings, path=seq.path)

    # -- helpers ----------------------------------------------------------------------

    def _in_frame_function(self, node, site, i) -> bool:
        func = _enclosing(self._parents(site, i), node, cst.FunctionDef)
        return func is not None and func.name.value == site.chain[i].function

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
            if _is_call_to(call, "len"):
                return True  # len(dims) does not depend on the elements' values
        # ``self.h = hidden`` or ``h = hidden``: follow the new binding's reads.
        seen = seen if seen is not None else set()
        if id(reference) in seen:
            return True
        seen.add(id(reference))
        if isinstance(parent, cst.Assign) and parent.value is reference and len(parent.targets) == 1:
            target = parent.targets[0].target
            reads = _reads_of(target, scopes, parents)
            return all(self.is_accounted(r, seen) for r in reads)
        return False


def _loop_iterable(target, iterable, name):
    """(the sequence the loop variable ``name`` reads, the index its first pass
    reads, the name of ``enumerate``'s counter or None), if the loop is simple:
    ``for x in xs``, ``for i, x in enumerate(xs)``, ``for a, x in zip(as, xs)``,
    ``for x in xs[1:]``."""
    index_name = None
    if _is_call_to(iterable, "enumerate") and isinstance(target, cst.Tuple):
        parts = [e.value for e in target.elements]
        if len(parts) != 2 or not isinstance(parts[0], cst.Name):
            return None
        index_name, target, iterable = parts[0].value, parts[1], iterable.args[0].value
    if _is_call_to(iterable, "zip") and isinstance(target, cst.Tuple):
        parts = [e.value for e in target.elements]
        args = [a.value for a in iterable.args]
        if len(parts) != len(args):
            return None
        for part, arg in zip(parts, args):
            if isinstance(part, cst.Name) and part.value == name:
                target, iterable = part, arg
                break
        else:
            return None
    if not (isinstance(target, cst.Name) and target.value == name):
        return None
    offset = 0
    if isinstance(iterable, cst.Subscript):
        offset = _slice_start(iterable)
        if offset is None:
            return None
        iterable = iterable.value
    return iterable, offset, index_name


def _reads_of(target, scopes, parents) -> List[cst.CSTNode]:
    if isinstance(target, cst.Name):
        found = _assignments(scopes, target) if scopes.get(target) else []
        if len(found) != 1:
            return [target]  # unknown: counts as unaccounted
        return [a.node for a in found[0].references]
    if isinstance(target, cst.Attribute) and isinstance(target.value, cst.Name) \
            and target.value.value == "self":
        cls = _enclosing(parents, target, cst.ClassDef)
        if cls is not None:
            return _self_attribute_uses(cls, target.attr.value)[1]
    return [target]


def _enclosing(parents, node, kind):
    node = parents.get(node)
    while node is not None and not isinstance(node, kind):
        node = parents.get(node)
    return node


def _disagrees(followed: object, held: object) -> bool:
    """A followed value that is not what the frame held: the expansion went
    wrong somewhere (a value it cannot evaluate), so the name stays a leaf."""
    if type(held) not in (int, float, bool):
        return False
    return type(followed) not in (int, float, bool) or followed != held


def _within(parents, node, ancestor) -> bool:
    while node is not None:
        if node is ancestor:
            return True
        node = parents.get(node)
    return False


def _is_method(parents, func: cst.FunctionDef) -> bool:
    parent = parents.get(parents.get(func))
    return isinstance(parent, cst.ClassDef) and not any(
        isinstance(d.decorator, cst.Name) and d.decorator.value == "staticmethod"
        for d in func.decorators
    )


def _assignments(scopes, node: cst.Name) -> List[Assignment]:
    """The bindings of ``node`` that dimfix can follow (none if any is an
    import, a builtin or another kind it cannot read)."""
    scope = scopes.get(node)
    if scope is None:
        return []
    found = list(scope[node.value])
    if not found or any(type(a) is not Assignment for a in found):
        return []
    return found


_PLAIN = (int, float, bool, str, bytes, list, tuple, dict, set, type(None))
_NOT_CONFIGS = ("torch", "numpy", "builtins")  # layers, tensors, arrays: not config objects


def _field_param(cls: type, attr: str, read) -> Optional[Tuple[Optional[cst.FunctionDef], str]]:
    """(``cls.__init__``, the parameter it stores as ``self.<attr>`` unchanged),
    or (None, ``attr``) for a dataclass field; None if neither can be told."""
    try:
        path, line = inspect.getsourcefile(cls), inspect.getsourcelines(cls)[1]
    except (TypeError, OSError):
        return None
    f = read(path) if path else None
    if f is None:
        return None
    named = [n for n in descendants(f.index.module, cst.ClassDef) if n.name.value == cls.__name__]
    if not named:
        return None
    cls_node = min(named, key=lambda n: abs(f.index.positions[n].start.line - line))
    init = next((n for n in cls_node.body.body if isinstance(n, cst.FunctionDef)
                 and n.name.value == "__init__"), None)
    if init is None:
        if dataclasses.is_dataclass(cls) and any(
                f_.name == attr and f_.init for f_ in dataclasses.fields(cls)):
            return None, attr  # the generated __init__ stores each field as given
        return None
    stores = _class_attribute_uses(cls_node).get(attr, ((), ()))[0]
    if len(stores) != 1 or not isinstance(stores[0][1], cst.Name) \
            or _enclosing(f.parents, stores[0][0], cst.FunctionDef) is not init:
        return None
    name = stores[0][1].value
    params = [p.name.value for p in (*init.params.posonly_params, *init.params.params,
                                     *init.params.kwonly_params)]
    return (init, name) if name in params else None


def descendants(root: cst.CSTNode, kind=cst.CSTNode) -> List[cst.CSTNode]:
    """Every node under ``root`` (itself included) of type ``kind``, in order."""
    found: List[cst.CSTNode] = []

    class Visit(cst.CSTVisitor):
        def on_visit(self, node) -> bool:
            if isinstance(node, kind):
                found.append(node)
            return True

    root.visit(Visit())
    return found


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


# -- syntax helpers ----------------------------------------------------------------------


def _assigned_value(parents, target) -> Optional[cst.BaseExpression]:
    """``value`` of ``target = value`` (one target) or ``target: T = value``."""
    parent = parents.get(target)
    if isinstance(parent, cst.AssignTarget):
        assign = parents.get(parent)
        if isinstance(assign, cst.Assign) and len(assign.targets) == 1:
            return assign.value
    if isinstance(parent, cst.AnnAssign) and parent.target is target:
        return parent.value
    return None


def _dominating(found: List[Assignment], read: cst.Name, parents) -> List[Assignment]:
    """``out_chs = out_chs or in_chs`` written straight in the function body,
    before the statement that reads ``out_chs``, and after every other binding
    of it: it runs before the read on every path and hides the parameter."""
    func = _enclosing(parents, read, cst.FunctionDef)
    if func is None or not isinstance(func.body, cst.IndentedBlock) \
            or _enclosing(parents, read, cst.Lambda) is not None:
        return []
    index = {statement: k for k, statement in enumerate(func.body.body)}

    def statement_of(node) -> Optional[int]:
        while node is not None and node not in index:
            node = parents.get(node)
        return index.get(node) if node is not None else None

    def direct(a: Assignment) -> bool:  # the whole statement, not nested in a block
        return _assigned_value(parents, a.node) is not None \
            and _enclosing(parents, a.node, cst.SimpleStatementLine) in index

    read_at = statement_of(read)
    placed = [(statement_of(a.node), a) for a in found if not isinstance(a.node, cst.Param)]
    if read_at is None or any(k is None for k, _ in placed):
        return []
    last = max(placed, key=lambda p: p[0], default=None)
    if last is None or last[0] >= read_at or not direct(last[1]) \
            or sum(k == last[0] for k, _ in placed) > 1:
        return []
    return [last[1]]


def _binds_after(parents, assignment: Assignment, read: cst.Name) -> bool:
    """Is ``read`` inside the value ``assignment`` binds, so read before it binds?"""
    value = _assigned_value(parents, assignment.node)
    return value is not None and _within(parents, read, value)


def _is_module_scope(assignment: Assignment) -> bool:
    from libcst.metadata import GlobalScope

    return isinstance(assignment.scope, GlobalScope)


def _enclosing_loop(parents, target) -> Optional[Tuple[cst.BaseExpression, cst.BaseExpression]]:
    node, child = parents.get(target), target
    while node is not None:
        if isinstance(node, (cst.For, cst.CompFor)) and node.target is child:
            return node.target, node.iter
        if not isinstance(node, (cst.Tuple, cst.List, cst.Element, cst.StarredElement)):
            return None
        node, child = parents.get(node), node
    return None


def _bound_argument(call: cst.Call, func: cst.FunctionDef, name: str, is_method: bool):
    """The expression ``call`` passes for parameter ``name`` of ``func``; None if
    the default applies; MISSING if it cannot be told (``*args``, ``**kwargs``)."""
    params = func.params
    positional = [p.name.value for p in (*params.posonly_params, *params.params)]
    if is_method and positional:
        positional = positional[1:]
    order = tuple(positional) + (("*",) if isinstance(params.star_arg, cst.Param) else ())
    order += tuple(p.name.value for p in params.kwonly_params)
    arg, why = find_argument(call, order, name)
    if arg is not None:
        return arg.value
    if "unpacking" in why or "*args" in why:
        return MISSING
    return None


def _self_attribute_uses(cls: cst.ClassDef, attr: str):
    """(stores as [(target, value)], loads) of ``self.<attr>`` in ``cls``."""
    stores, loads = _class_attribute_uses(cls).get(attr, ((), ()))
    if any(value is None for _, value in stores):
        return [], list(loads)
    return list(stores), list(loads)


@functools.lru_cache(maxsize=256)
def _class_attribute_uses(cls: cst.ClassDef) -> Dict[str, tuple]:
    """For every ``self.<attr>`` in ``cls``: (stores as (target, value or None),
    loads). One walk of the class (NASNet's cells are read thousands of times)."""
    stores: Dict[str, list] = {}
    loads: Dict[str, list] = {}
    targets: Set[int] = set()

    def store(target, value) -> None:
        attr = _self_attr_name(target)
        if attr is not None:
            targets.add(id(target))
            stores.setdefault(attr, []).append((target, value))

    class Visit(cst.CSTVisitor):
        def visit_Assign(self, node: cst.Assign) -> None:
            for t in node.targets:
                store(t.target, node.value if len(node.targets) == 1 else None)

        def visit_AugAssign(self, node: cst.AugAssign) -> None:
            store(node.target, None)

        def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
            store(node.target, node.value)

        def visit_Attribute(self, node: cst.Attribute) -> None:
            attr = _self_attr_name(node)
            if attr is not None and id(node) not in targets:
                loads.setdefault(attr, []).append(node)

    cls.visit(Visit())
    return {attr: (tuple(stores.get(attr, ())),
                   tuple(n for n in loads.get(attr, ()) if id(n) not in targets))
            for attr in set(stores) | set(loads)}


def _self_attr_name(node) -> Optional[str]:
    if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name) \
            and node.value.value == "self":
        return node.attr.value
    return None


def _is_call_to(node, name: str) -> bool:
    return isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value == name


def _callee(call: cst.Call) -> str:
    func = call.func
    if isinstance(func, cst.Name):
        return func.value
    if isinstance(func, cst.Attribute):
        return func.attr.value
    return "call"


def _slice_start(node: cst.Subscript) -> Optional[int]:
    if len(node.slice) != 1 or not isinstance(node.slice[0].slice, cst.Slice):
        return None
    s = node.slice[0].slice
    if s.step is not None:
        return None
    if s.lower is None:
        return 0
    return Evaluator().integer(s.lower)


def _element_values(seq: Expansion) -> List[object]:
    ev = Evaluator(seq.local_values, seq.global_values)
    return [ev.value(e.value) if not isinstance(e, cst.StarredElement) else None
            for e in seq.node.elements]


def _add_argument_default(module: cst.Module, parser: str, dest: str) -> Optional[cst.BaseExpression]:
    """The ``default=`` of the one ``parser.add_argument`` (or one of its groups')
    whose destination is ``dest``."""
    found: List[cst.BaseExpression] = []

    class Visit(cst.CSTVisitor):
        def visit_Call(self, call: cst.Call) -> None:
            func = call.func
            if not (isinstance(func, cst.Attribute) and func.attr.value == "add_argument"):
                return
            flags = [a.value.evaluated_value for a in call.args
                     if a.keyword is None and isinstance(a.value, cst.SimpleString)]
            named = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
            explicit = named.get("dest")
            target = explicit.evaluated_value if isinstance(explicit, cst.SimpleString) else \
                next((f.lstrip("-").replace("-", "_") for f in flags if f.startswith("--")),
                     flags[0].replace("-", "_") if flags else None)
            if target == dest and "default" in named:
                found.append(named["default"])

    module.visit(Visit())
    return found[0] if len(found) == 1 else None


def _attribute_reads(module: cst.Module, owner: str, attr: str) -> List[cst.CSTNode]:
    reads: List[cst.CSTNode] = []

    class Visit(cst.CSTVisitor):
        def visit_Attribute(self, node: cst.Attribute) -> None:
            if isinstance(node.value, cst.Name) and node.value.value == owner \
                    and node.attr.value == attr:
                reads.append(node)

    module.visit(Visit())
    return reads

