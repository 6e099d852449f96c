"""A transparent stand-in for ``torch._dynamo`` in dimfix's own processes.

On meta, torch runs many ops as Python refs wrapped by
``torch._compile._disable_dynamo``: the first call of each does ``import
torch._dynamo`` (~0.7 s, ~37 MB) only to wrap the ref in
``torch._dynamo.disable``, which changes nothing while no compiled code runs.
A step's child (and the worker it is forked from) would pay that import on
every meta trace.

``install()`` puts a stand-in in ``sys.modules["torch._dynamo"]`` when torch
is imported and torch._dynamo is not yet. Only that wrapper's call of
``disable`` is answered by the stand-in (it returns the ref itself); any
other use (a model calling ``torch.compile``, reading ``torch._dynamo.config``,
importing a submodule, ``torch._dynamo.disable`` in the model's own code)
loads the real torch._dynamo first, and from then on the stand-in forwards
everything to it and torch's refs wrap themselves again, as if the stand-in
had never been there.

Never for a caller's process (the API's own): a step's child or the worker
only, which exit when the step or the run ends.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
import types
from typing import List, Optional

NAME = "torch._dynamo"
_given: List[object] = []  # the refs the stand-in's disable returned as they are


class _StandIn(types.ModuleType):
    """``torch._dynamo`` until something other than torch's own wrapper uses it."""

    def __getattribute__(self, name: str):
        real = sys.modules.get(NAME)
        if real is not self and real is not None:  # loaded: it answers everything
            return getattr(real, name)
        if name in ("__name__", "__spec__", "__class__"):
            return super().__getattribute__(name)
        if name == "disable" and _from_wrapper(sys._getframe(1)):
            return _disable
        real = _load()
        if name == "__path__":  # a submodule is being imported, maybe
            _hand_over(sys._getframe(1))
        return getattr(real, name)

    def __setattr__(self, name: str, value) -> None:
        setattr(_load(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(_load(), name)


def install() -> bool:
    """Put the stand-in in place if torch is imported and torch._dynamo is
    not: True if it was put there now."""
    torch = sys.modules.get("torch")
    if os.environ.get("DIMFIX_DYNAMO_STAND_IN", "1") == "0":  # to compare, in tests
        return False
    if torch is None or NAME in sys.modules or _wrapper_code() is None:
        return False
    spec = importlib.machinery.PathFinder.find_spec(NAME, torch.__path__)
    if spec is None:
        return False
    stand_in = _StandIn(NAME)
    types.ModuleType.__setattr__(stand_in, "__spec__", spec)
    sys.modules[NAME] = stand_in
    return True


def _disable(fn=None, recursive=True, **kwargs):
    """``torch._dynamo.disable`` as torch's ref wrapper calls it, with no
    compiled code to step out of: the function itself."""
    if fn is None:
        return _disable
    _given.append(fn)
    return fn


def _load() -> types.ModuleType:
    """The real torch._dynamo, imported now if the stand-in still holds its place."""
    stand_in = sys.modules.get(NAME)
    if not isinstance(stand_in, _StandIn):
        return stand_in if stand_in is not None else importlib.import_module(NAME)
    del sys.modules[NAME]
    try:
        real = importlib.import_module(NAME)
    except BaseException:
        sys.modules[NAME] = stand_in
        raise
    # torch's refs cached the stand-in's answer: they ask the real one next time.
    for fn in _given:
        if getattr(fn, "__dynamo_disable", None) is fn:
            del fn.__dynamo_disable
    _given.clear()
    return real


def _wrapper_code() -> Optional[types.CodeType]:
    """The code of the function ``torch._compile._disable_dynamo`` wraps refs in."""
    compile_module = sys.modules.get("torch._compile")
    outer = getattr(compile_module, "_disable_dynamo", None)
    for const in getattr(getattr(outer, "__code__", None), "co_consts", ()):
        if isinstance(const, types.CodeType) and const.co_name == "inner":
            return const
    return None


def _from_wrapper(frame) -> bool:
    return frame is not None and frame.f_code is _wrapper_code()


def _hand_over(frame) -> None:
    """``import torch._dynamo.X`` reads the package's ``__path__`` (here,
    where the real package was just loaded) and then finds and executes X,
    even if loading the package executed X already: _Existing hands that
    import the module that exists instead, for this one import."""
    code = getattr(sys.modules.get("_frozen_importlib"), "_find_and_load_unlocked", None)
    if frame is None or frame.f_code is not getattr(code, "__code__", None):
        return
    name = frame.f_locals.get("name")
    module = sys.modules.get(name) if isinstance(name, str) else None
    if module is not None and name.startswith(NAME + "."):
        sys.meta_path.insert(0, _Existing(name, module))


class _Existing:
    """The first finder asked, once, for ``name``: a loader that hands the
    import system the module already executed, leaving its ``__spec__`` as
    it was."""

    def __init__(self, name: str, module: types.ModuleType) -> None:
        self.name, self.module, self.spec = name, module, module.__spec__

    def find_spec(self, name, path=None, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)  # the import system stops asking: a spec came
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec):
        return self.module

    def exec_module(self, module) -> None:
        if getattr(module, "__spec__", None) is not self.spec:  # some refuse it being set
            types.ModuleType.__setattr__(module, "__spec__", self.spec)


__all__ = ["install"]
