"""Following a parameter to what its caller passed: positional and keyword
arguments, ``**kwargs`` passed on, and dicts built to be unpacked."""

from __future__ import annotations

from typing import Optional

import libcst as cst

from dimfix.exprs import MISSING, Evaluator
from dimfix.follow.expansion import Expansion
from dimfix.follow.syntax import (assigned_value, assignments, bound_argument, callee,
                                  enclosing, is_call_to, is_method)

_DEFAULT = object()  # a parameter no caller gave: its default applies
_OUTWARD = object()  # a name that came in through the frame's own **kwargs


class Calls:
    """The resolver's part that crosses calls (a mixin of follow.resolver.Resolver)."""

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
        func = enclosing(parents, param, cst.FunctionDef)
        if func is None or func.name.value != site.chain[i].function or i + 1 >= len(site.chain):
            return None
        caller_file = self.file(site.chain[i + 1].path)
        call = caller_file.index.find(site.chain[i + 1]) if caller_file else None
        if call is None:
            return None
        arg = bound_argument(call, func, param.name.value, is_method(parents, func))
        return None if arg is MISSING else arg

    def _parameter(self, param: cst.Param, site, i, depth, binding) -> Optional[Expansion]:
        parents = self._parents(site, i)
        func = enclosing(parents, param, cst.FunctionDef)
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
            arg = bound_argument(call, func, name, is_method(parents, func))
            if arg is MISSING:
                passed = self._through_kwargs(name, site, i + 1, depth, binding)
                if passed is not _DEFAULT:
                    return passed
                arg = None
            if arg is not None:
                label = f"argument {name} of {callee(call)}()"
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
                label = f"argument {name} of {callee(call)}()"
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
            found = assignments(self._scopes(site, j), node)
            if len(found) != 1 or isinstance(found[0].node, cst.Param):
                return None
            value = assigned_value(self._parents(site, j), found[0].node)
            if value is None or not self._in_frame_function(found[0].node, site, j):
                return None
            self.traversed.add(node)
            found = self._dict_entry(value, name, site, j, depth, binding, hops + 1)
            return None if found is _DEFAULT else found  # set later (``args["x"] = ...``)
        if is_call_to(node, "dict"):
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
        func = enclosing(f.parents, call, cst.FunctionDef) if call is not None else None
        if func is None or func.name.value != site.chain[j].function:
            return None
        star = func.params.star_kwarg
        return star.name.value if isinstance(star, cst.Param) else None
