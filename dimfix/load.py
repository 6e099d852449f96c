"""Import the user's file as the module it is, and find the model in it."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import sysconfig
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from dimfix.errors import BadSource, BadUsage, DimfixError, ModelRaised, TargetNotFound
from dimfix.source import display_path


@dataclass(frozen=True)
class Location:
    """Where a file sits in its package: the import root and its module name."""

    path: str  # absolute
    root: str  # the folder to put on sys.path
    module: str  # dotted name, e.g. "zoo.models.resnet"

    @classmethod
    def of(cls, path: str) -> "Location":
        path = os.path.abspath(path)
        folder, stem = os.path.split(path)
        stem = os.path.splitext(stem)[0]
        parts = [] if stem == "__init__" else [stem]
        while os.path.isfile(os.path.join(folder, "__init__.py")):
            parts.insert(0, os.path.basename(folder))
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
        if not parts:
            parts = [stem]
        return cls(path, folder, ".".join(parts))

    def is_user_file(self) -> Callable[[str], bool]:
        """Files of the user's project: under the import root, not installed."""
        root = self.root.rstrip(os.sep) + os.sep
        installed = {
            p.rstrip(os.sep) + os.sep
            for key in ("stdlib", "platstdlib", "purelib", "platlib")
            if (p := sysconfig.get_paths().get(key))
        }
        here = os.path.dirname(os.path.abspath(__file__)) + os.sep
        cache: Dict[str, bool] = {}

        def check(filename: str) -> bool:
            hit = cache.get(filename)
            if hit is None:
                hit = (
                    filename.startswith(root)
                    and not filename.startswith(here)
                    and not any(filename.startswith(p) for p in installed)
                    and "site-packages" not in filename
                )
                cache[filename] = hit
            return hit

        return check


def exec_source(loc: Location, text: str, filename: Optional[str] = None):
    """Execute ``text`` as module ``loc.module`` (relative imports work).

    ``filename`` is what frames and tracebacks will show; by default the file's
    own path. The module is left in ``sys.modules`` under its name.
    """
    filename = filename or loc.path
    if loc.root in sys.path:
        sys.path.remove(loc.root)
    sys.path.insert(0, loc.root)
    parent = loc.module.rpartition(".")[0]
    if parent:
        _forget_stale_package(loc, parent)
        try:
            importlib.import_module(parent)
        except BaseException as e:  # noqa: B036 - user code may raise anything
            raise _raised(e, f"importing package {parent}") from e
    try:
        code = compile(text, filename, "exec", dont_inherit=True)
    except SyntaxError as e:
        raise BadSource(
            f"{display_path(loc.path)}:{e.lineno}:{e.offset or 0}: cannot parse: {e.msg}"
        ) from None
    spec = importlib.util.spec_from_loader(loc.module, loader=None, origin=filename)
    module = importlib.util.module_from_spec(spec)
    module.__file__ = filename
    sys.modules[loc.module] = module
    try:
        exec(code, module.__dict__)
    except BaseException as e:  # noqa: B036
        raise _raised(e, f"importing {os.path.basename(loc.path)}") from e
    return module


def _forget_stale_package(loc: Location, parent: str) -> None:
    """Drop a same-named package imported earlier from another folder, so that
    relative imports resolve next to *this* file (matters in long-lived workers)."""
    top = parent.split(".")[0]
    cached = sys.modules.get(top)
    if cached is None:
        return
    expected = os.path.join(loc.root, top)
    paths = [os.path.abspath(p) for p in getattr(cached, "__path__", [])]
    if expected in paths:
        return
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]


def find_model(module, name: str, path: str):
    """The class, factory or instance called ``name`` in ``module``."""
    import torch.nn as nn

    obj = module
    for part in name.split("."):
        if not hasattr(obj, part):
            found = _models_in(module)
            hint = f" (models in it: {', '.join(found)})" if found else ""
            raise TargetNotFound(f"{path}: no model named {name!r}{hint}")
        obj = getattr(obj, part)
    if isinstance(obj, type):
        if not issubclass(obj, nn.Module):
            raise TargetNotFound(
                f"{path}::{name} is a class but not an nn.Module subclass"
            )
        return obj
    if isinstance(obj, nn.Module) or inspect.isfunction(obj) or inspect.ismethod(obj):
        return obj
    raise TargetNotFound(
        f"{path}::{name} is not a model: it is of type {type(obj).__name__}, "
        "not an nn.Module subclass or a function that returns one"
    )


def check_init(target, init: Dict[str, object], spec: str) -> None:
    """Fail early, and clearly, when --init does not fit the target's signature."""
    import torch.nn as nn

    if isinstance(target, nn.Module):
        if init:
            raise BadUsage(f"{spec} is a model instance; --init cannot apply to it")
        return
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return
    params = sig.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for key in init:
        p = params.get(key)
        if (p is None and not takes_any) or (p is not None and p.kind is p.POSITIONAL_ONLY):
            known = ", ".join(
                n for n, q in params.items() if q.kind in (q.POSITIONAL_OR_KEYWORD, q.KEYWORD_ONLY)
            )
            raise BadUsage(
                f"--init {key}: {spec} takes no keyword {key!r}"
                + (f" (it takes: {known})" if known else "")
            )
    try:
        sig.bind(**init)
    except TypeError as e:
        missing = [
            n
            for n, p in params.items()
            if p.default is p.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and n not in init
        ]
        if missing:
            args = " ".join(f"--init {n}=VALUE" for n in missing)
            raise BadUsage(f"{spec} needs arguments: pass {args}") from None
        raise BadUsage(f"{spec}: {e}") from None


def _models_in(module) -> Tuple[str, ...]:
    import torch.nn as nn

    return tuple(
        n
        for n, v in vars(module).items()
        if isinstance(v, type)
        and issubclass(v, nn.Module)
        and getattr(v, "__module__", None) == module.__name__
    )


def _raised(e: BaseException, doing: str) -> ModelRaised:
    """One line naming where in user code ``e`` was raised."""
    if isinstance(e, (KeyboardInterrupt, DimfixError)):
        raise e
    where = user_frame_of(e)
    what = f"{type(e).__name__}: {e}".strip().rstrip(":")
    what = what.splitlines()[0] if what else type(e).__name__
    return ModelRaised(f"{where}{doing} raised {what}")


def user_frame_of(e: BaseException) -> str:
    """``path:line: in func: `` for the innermost traceback frame outside installed code."""
    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    tb = e.__traceback__
    best = ""
    while tb is not None:
        code = tb.tb_frame.f_code
        name = code.co_filename
        if not (name.startswith("<") or name.startswith(here) or "site-packages" in name):
            best = f"{display_path(name)}:{tb.tb_lineno}: in {code.co_name}: "
        tb = tb.tb_next
    return best
