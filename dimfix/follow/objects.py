"""Following a field of a configuration object to where it is written: the
argument the call that built it passed (a class storing ``self.x = x``, a
dataclass), or an argparse ``default=``."""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
from typing import Optional, Tuple

import libcst as cst

from dimfix.exprs import MISSING, Evaluator, code_of
from dimfix.follow.expansion import Binding, Expansion
from dimfix.follow.syntax import (add_argument_default, assigned_value, assignments,
                                  attribute_reads, bound_argument, callee, class_attribute_uses,
                                  enclosing, enclosing_loop, is_module_scope,
                                  loop_iterable)
from dimfix.locate import find_argument

MAX_DEPTH = 12


class Objects:
    """The resolver's part that reads configuration objects (a mixin of
    follow.resolver.Resolver)."""

    def _argparse_default(self, node: cst.Attribute, site, i, depth) -> Optional[Expansion]:
        """``opt.latent_dim`` where ``opt = parser.parse_args()``: the ``default=``
        of ``parser.add_argument("--latent_dim", ...)``, where the value is written."""
        scopes, parents = self._scopes(site, i), self._parents(site, i)
        found = assignments(scopes, node.value)
        if len(found) != 1 or not is_module_scope(found[0]):
            return None
        call = assigned_value(parents, found[0].node)
        if not (isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute)
                and call.func.attr.value == "parse_args" and isinstance(call.func.value, cst.Name)):
            return None
        found = add_argument_default(self.file(site.chain[i].path).index.module,
                                      call.func.value.value, node.attr.value)
        if found is None:
            return None
        flag, default = found
        reads = [n for n in attribute_reads(self.file(site.chain[i].path).index.module,
                                             node.value.value, node.attr.value)]
        binding = Binding(code_of(node), tuple(reads))
        return self._expand(default, site, i, "default", f"default of {flag}",
                            (binding,), depth, module_level=True)

    def _object_field(self, node: cst.Attribute, site, i, depth) -> Optional[Expansion]:
        """``cnf.input_channels`` where ``cnf`` is an object a call built
        (``CNBlockConfig(1536, None, 3)`` in a list, a dataclass or NamedTuple
        config, argparse's namespace passed in) whose ``__init__`` stores
        ``self.input_channels = input_channels``, or whose field it is: the
        argument that call passed for it, else the field's class default (or
        the parser's ``default=``)."""
        frame = site.chain[i]
        obj = frame.local_values.get(node.value.value, MISSING)
        if obj is MISSING:  # ``cfg = Config(...)`` at module level
            obj = frame.global_values.get(node.value.value, MISSING)
        if obj is MISSING or type(obj) in _PLAIN or inspect.isclass(obj) \
                or inspect.ismodule(obj) or type(obj).__module__.split(".")[0] in _NOT_CONFIGS:
            return None
        built = self._built_by(node.value, obj, site, i, depth)
        if built is None:
            return None
        call, j, at_module = built
        if _is_parse_args(call):
            return self._parser_default(call, node, site, j, depth)
        param = self._field_param(type(obj), node.attr.value)
        binding = Binding(code_of(node), self._field_reads(site.chain[i].path, node.attr.value))
        if param is None:
            arg = self._keyword_kept(call, node.attr.value, obj, site.chain[j], at_module)
            if arg is None:
                return None
            return self._expand(arg, site, j, "call-site",
                                f"argument {node.attr.value} of {callee(call)}()",
                                (binding,), depth, at_module)
        func, name = param
        if func is None:  # a dataclass or NamedTuple: its fields are the parameters, in order
            found, why = find_argument(call, _record_fields(type(obj)), name)
            if found is None:
                return self._class_default(type(obj), name, why, site, i, depth, binding)
            arg = found.value
        else:
            arg = bound_argument(call, func, name, True)
        if arg is None or arg is MISSING:
            return None
        return self._expand(arg, site, j, "call-site", f"argument {name} of {callee(call)}()",
                            (binding,), depth, at_module)

    @staticmethod
    def _keyword_kept(call: cst.Call, attr: str, obj, frame, at_module: bool):
        """The keyword argument ``attr=`` of ``call``, when the object it built
        holds that argument's value as ``obj.<attr>``: a namespace whose
        constructor keeps its keywords as attributes, with no source that says
        so (``SimpleNamespace(img_size=96)``, ``argparse.Namespace(...)``, a dict
        subclass that turns keys into attributes)."""
        kw = next((a for a in call.args if a.keyword is not None and a.keyword.value == attr), None)
        held = getattr(obj, attr, MISSING)
        if kw is None or type(held) is not int:
            return None
        given = Evaluator({} if at_module else frame.local_values, frame.global_values).value(
            kw.value)
        return kw.value if type(given) is int and given == held else None

    def _class_default(self, cls: type, name: str, why: str, site, i, depth,
                       binding) -> Optional[Expansion]:
        """The default a dataclass or NamedTuple field is written with in its
        class body (``n_embd: int = 384``), when the call that built the object
        passed nothing for it."""
        if "default is used" not in why:
            return None  # passed through ``**`` or ``*args``: cannot be told
        found = _class_node(cls, self.file)
        if found is None:
            return None
        f, cls_node = found
        value = next((n.value for n in cls_node.body.body if isinstance(n, cst.SimpleStatementLine)
                      for n in n.body if isinstance(n, cst.AnnAssign) and n.value is not None
                      and isinstance(n.target, cst.Name) and n.target.value == name), None)
        if value is None:
            return None
        label = f"default of {cls.__name__}.{name}"
        if os.path.abspath(site.chain[i].path) == os.path.abspath(_path_of(cls)):
            return self._expand(value, site, i, "default", label, (binding,), depth,
                                module_level=True)
        module = sys.modules.get(cls.__module__)
        return Expansion(value, "default", label, {}, vars(module) if module else {},
                         (binding,), path=os.path.abspath(_path_of(cls)))

    def _parser_default(self, call: cst.Call, node: cst.Attribute, site, j,
                        depth) -> Optional[Expansion]:
        """``configs.seq_len`` where ``configs`` is the namespace ``parser.parse_args()``
        returned (passed in by the caller): the ``default=`` of ``--seq_len``."""
        module = self.file(site.chain[j].path).index.module
        parser = call.func.value.value
        found = add_argument_default(module, parser, node.attr.value)
        if found is None:
            return None
        flag, default = found
        binding = Binding(code_of(node), self._field_reads(site.chain[j].path, node.attr.value))
        return self._expand(default, site, j, "default", f"default of {flag}",
                            (binding,), depth, module_level=True)

    def _field_reads(self, path: str, attr: str) -> Tuple[cst.CSTNode, ...]:
        """Every ``<anything>.<attr>`` in the file at ``path``: the reads an edit of
        a config field may reach (those the trace did not follow are unseen)."""
        f = self.file(path)
        if f is None:
            return ()
        if f.attribute_reads is None:
            f.attribute_reads = {}
            for n in f.index.nodes(cst.Attribute):
                f.attribute_reads.setdefault(n.attr.value, []).append(n)
        return tuple(f.attribute_reads.get(attr, ()))

    def _built_by(self, name: cst.Name, obj, site, i, depth) -> Optional[Tuple[cst.Call, int, bool]]:
        """The call that built ``obj``, the value of ``name`` at frame i, the
        index of the frame it runs in, and whether it runs at module level:
        ``cnf = Config(...)``, ``last = configs[-1]``, or ``for cnf in configs``
        (the element that is ``obj``), ``configs`` local or a module's list."""
        scopes, parents = self._scopes(site, i), self._parents(site, i)
        found = assignments(scopes, name)
        if len(found) != 1 or depth > MAX_DEPTH:
            return None
        target = found[0].node
        if isinstance(target, cst.Param):  # ``Encoder(cfg)``: where the caller built it
            arg = self._caller_argument(target, parents, site, i)
            if arg is None and isinstance(target.default, cst.Call):
                return target.default, i, True  # ``cfg: Config = Config()``, built at import
            if isinstance(arg, cst.Call):
                return arg, i + 1, False
            if isinstance(arg, cst.Name) and site.chain[i + 1].local_values.get(arg.value) is obj:
                return self._built_by(arg, obj, site, i + 1, depth + 1)
            return None
        comprehensions = (cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp)
        if site.chain[i].function.startswith("<") and i + 1 < len(site.chain) \
                and enclosing(parents, target, comprehensions) is None:
            i += 1  # ``[Block(cnf.dim) for _ in ...]``: ``cnf`` is its function's
        value = assigned_value(parents, target)
        if isinstance(value, cst.Call):
            if self._in_frame_function(target, site, i):
                return value, i, False
            # ``cfg = Config(img_size=96)`` at import, read in a function of the module
            return (value, i, True) if is_module_scope(found[0]) else None
        if isinstance(value, cst.Subscript) and len(value.slice) == 1 \
                and isinstance(value.slice[0].slice, cst.Index):
            frame = site.chain[i]
            k = Evaluator(frame.local_values, frame.global_values).integer(
                value.slice[0].slice.value)
            return self._element_call(value.value, k, site, i, depth)
        loop = enclosing_loop(parents, target)
        found = loop_iterable(*loop, name.value) if value is None and loop is not None else None
        if found is None:
            return None
        iterable, offset, _ = found
        frame = site.chain[i]
        live = Evaluator(frame.local_values, frame.global_values).value(iterable)
        hits = [k for k, e in enumerate(live) if e is obj and k >= offset] \
            if isinstance(live, (list, tuple)) else []
        return self._element_call(iterable, hits[0], site, i, depth) if len(hits) == 1 else None

    def _field_param(self, cls: type, attr: str):
        key = (cls, attr)
        if key not in self.field_params:
            self.field_params[key] = _field_param(cls, attr, self.file)
        return self.field_params[key]

    def _element_call(self, seq_node, index, site, i, depth) -> Optional[Tuple[cst.Call, int, bool]]:
        seq = self._sequence(seq_node, site, i, depth, False)
        element = self._element(seq, index) if seq is not None else None
        if element is None or not isinstance(element.node, cst.Call):
            return None
        if seq.frame is None:  # a module's list of configs: its calls run at import
            return element.node, i, True
        return element.node, seq.frame, False


_PLAIN = (int, float, bool, str, bytes, list, tuple, dict, set, type(None))


_NOT_CONFIGS = ("torch", "numpy", "builtins")  # layers, tensors, arrays: not config objects


def _is_parse_args(call: cst.Call) -> bool:
    func = call.func
    return isinstance(func, cst.Attribute) and func.attr.value == "parse_args" \
        and isinstance(func.value, cst.Name)


def _is_record(cls: type) -> bool:
    """A dataclass or a NamedTuple: the generated ``__init__`` takes the fields."""
    return dataclasses.is_dataclass(cls) or (issubclass(cls, tuple) and hasattr(cls, "_fields"))


def _record_fields(cls: type) -> Tuple[str, ...]:
    if dataclasses.is_dataclass(cls):
        return tuple(f.name for f in dataclasses.fields(cls) if f.init)
    return tuple(cls._fields)


def _path_of(cls: type) -> str:
    try:
        return inspect.getsourcefile(cls) or ""
    except (TypeError, OSError):
        return ""


def _class_node(cls: type, read):
    """(the parsed file, the ClassDef) where ``cls`` is written, or None."""
    try:
        path, line = inspect.getsourcefile(cls), inspect.getsourcelines(cls)[1]
    except (TypeError, OSError):
        return None
    f = read(path) if path else None
    if f is None:
        return None
    named = [n for n in f.index.nodes(cst.ClassDef) if n.name.value == cls.__name__]
    if not named:
        return None
    return f, min(named, key=lambda n: abs(f.index.positions[n].start.line - line))


def _field_param(cls: type, attr: str, read) -> Optional[Tuple[Optional[cst.FunctionDef], str]]:
    """(``cls.__init__``, the parameter it stores as ``self.<attr>`` unchanged),
    or (None, ``attr``) for a dataclass or NamedTuple field; None if neither
    can be told."""
    found = _class_node(cls, read)
    if found is None:
        return None
    f, cls_node = found
    init = next((n for n in cls_node.body.body if isinstance(n, cst.FunctionDef)
                 and n.name.value == "__init__"), None)
    if init is None:
        if _is_record(cls) and attr in _record_fields(cls):
            return None, attr  # the generated __init__ stores each field as given
        return None
    stores = class_attribute_uses(cls_node).get(attr, ((), ()))[0]
    if len(stores) != 1 or not isinstance(stores[0][1], cst.Name) \
            or enclosing(f.parents, stores[0][0], cst.FunctionDef) is not init:
        return None
    name = stores[0][1].value
    params = [p.name.value for p in (*init.params.posonly_params, *init.params.params,
                                     *init.params.kwonly_params)]
    return (init, name) if name in params else None
