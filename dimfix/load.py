"""Import the user's file as the module it is, and find the model in it."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import sysconfig
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional, Tuple

from dimfix.errors import (BadSource, BadUsage, DimfixError, ModelRaised, Position,
                           TargetNotFound, option)


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

    @property
    def in_package(self) -> bool:
        """A module of a package (a folder with ``__init__.py``), not a loose script."""
        return "." in self.module or os.path.basename(self.path) == "__init__.py"

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


def import_target(loc: Location, texts: Mapping[str, str],
                  seeds: Optional[Mapping[str, Mapping[str, object]]] = None):
    """Import the file at ``loc`` the way its package imports it, once.

    ``texts`` maps absolute paths of the project's files to the text each is to
    have (the target's own text, an editor buffer, a rewritten candidate); those
    modules are executed from that text, as the file itself (same ``__file__``,
    same folder), wherever they are imported from: by the package's
    ``__init__``, by a sibling, or by this call. Other modules load as usual.
    ``seeds`` maps some of those paths to globals their module starts with
    (``--set``). Runs in a child process (see isolate.py): the imports are not undone.
    """
    if loc.root in sys.path:
        sys.path.remove(loc.root)
    sys.path.insert(0, loc.root)
    _forget_shadowed(loc)
    finder = _TextFinder({os.path.abspath(p): t for p, t in texts.items()}, {loc.module: loc.path},
                         {os.path.abspath(p): dict(g) for p, g in (seeds or {}).items()})
    sys.meta_path.insert(0, finder)
    try:
        return importlib.import_module(loc.module)
    except DimfixError:
        raise
    except SyntaxError as e:
        if e.filename and os.path.abspath(e.filename) in finder.texts:
            raise BadSource(f"cannot parse: {e.msg}",
                            Position(os.path.abspath(e.filename), e.lineno or 0,
                                     e.offset or 0)) from None
        raise _raised(e, f"importing {os.path.basename(loc.path)}") from e
    except BaseException as e:  # noqa: B036 - user code may raise anything
        raise _raised(e, f"importing {os.path.basename(loc.path)}") from e


class _TextFinder(importlib.abc.MetaPathFinder):
    """Serves the given texts for the files at their paths."""

    def __init__(self, texts: Dict[str, str], names: Dict[str, str],
                 seeds: Optional[Dict[str, Dict[str, object]]] = None) -> None:
        self.texts = texts
        self.names = names  # the target by module name: its file may be notes.txt
        self.seeds = seeds or {}

    def find_spec(self, name, path, target=None):
        if self.names.get(name) in self.texts:
            return self._spec(name, self.names[name], None)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None:
            # A buffer whose file is not on disk yet (an editor's new file).
            tail = name.rpartition(".")[2]
            for folder in path if path is not None else sys.path:
                origin = os.path.abspath(os.path.join(folder or os.curdir, tail + ".py"))
                if origin in self.texts:
                    return self._spec(name, origin, None)
            return None
        if not spec.origin or os.path.abspath(spec.origin) not in self.texts:
            return None
        return self._spec(name, os.path.abspath(spec.origin), spec.submodule_search_locations)

    def _spec(self, name, origin, search):
        if search is None and os.path.basename(origin) == "__init__.py":
            search = [os.path.dirname(origin)]
        loader = _TextLoader(name, origin, self.texts[origin], self.seeds.get(origin, {}))
        return importlib.util.spec_from_file_location(
            name, origin, loader=loader, submodule_search_locations=search)


class _TextLoader(importlib.machinery.SourceFileLoader):
    def __init__(self, name: str, path: str, text: str, seed: Mapping[str, object]) -> None:
        super().__init__(name, path)
        self.text = text
        self.seed = seed

    def exec_module(self, module):
        module.__dict__.update(self.seed)  # --set values, before the first statement
        super().exec_module(module)

    def get_code(self, fullname):
        # Never a cached .pyc: its timestamp says nothing of this text.
        return compile(self.text, self.path, "exec", dont_inherit=True)

    def get_source(self, fullname):
        return self.text


def _forget_shadowed(loc: Location) -> None:
    """A module of the same top-level name imported from elsewhere (by dimfix's
    own imports, say) must not stand in for the user's: drop it, unless it is
    the standard library's, which the user's file cannot replace."""
    top = loc.module.split(".")[0]
    cached = sys.modules.get(top)
    if cached is None:
        return
    expected = os.path.join(loc.root, top)
    folders = [os.path.abspath(p) for p in getattr(cached, "__path__", [])]
    file = getattr(cached, "__file__", None)
    if expected in folders or (file and os.path.dirname(os.path.abspath(file)) == loc.root):
        return
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        raise BadUsage(f"its module name {top!r} is the standard library's; rename the file "
                       "or folder", Position(loc.path))
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]


def find_model(module, name: str, path: str):
    """The class, factory or instance called ``name`` defined in ``module``
    (the file at ``path``, absolute).

    Only what the file itself defines can be a target (``Outer.Inner`` for a
    nested class): never an attribute path into another module, which could
    name any callable (``os.makedirs``) that the module can reach.
    """
    import torch.nn as nn

    where, base = Position(path), os.path.basename(path)
    obj = module
    parts = name.split(".")
    for i, part in enumerate(parts):
        try:
            obj = inspect.getattr_static(obj, part)
        except AttributeError:
            raise not_defined(name, path, _models_in(module)) from None
        if i < len(parts) - 1 and not _defined_in(obj, module):
            raise TargetNotFound(
                f"{name}: {'.'.join(parts[:i + 1])} is not a class defined in {base}; name a "
                "class, function or model instance defined there", where)
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, type) or inspect.isfunction(obj):
        if not _defined_in(obj, module):
            origin = getattr(obj, "__module__", None) or "elsewhere"
            raise TargetNotFound(
                f"{name} is not defined in {base} (it comes from {origin}); name a class, "
                "function or model instance defined there", where)
    if isinstance(obj, type):
        if not issubclass(obj, nn.Module):
            raise TargetNotFound(f"{name} is a class but not an nn.Module subclass", where)
        return obj
    if isinstance(obj, nn.Module) or inspect.isfunction(obj):
        return obj
    raise TargetNotFound(
        f"{name} is not a model: it is of type {type(obj).__name__}, not an nn.Module "
        "subclass or a function that returns one", where)


def not_defined(name: str, path: str, models: Tuple[str, ...]) -> TargetNotFound:
    """``name`` is not defined in the file at ``path``, which defines ``models``."""
    hint = f" (models in it: {', '.join(models)})" if models else ""
    error = TargetNotFound(f"no model named {name!r}{hint}", Position(path), models=models)
    error.name = name
    return error


def _defined_in(obj, module) -> bool:
    return (isinstance(obj, type) or inspect.isfunction(obj)) and \
        getattr(obj, "__module__", None) == module.__name__


def check_init(target, init: Dict[str, object], name: str, path: str) -> None:
    """Fail early, and clearly, when --init does not fit the target's signature."""
    import torch.nn as nn

    where = Position(path)
    if isinstance(target, nn.Module):
        if init:
            raise BadUsage(f"{name} is a model instance; {option('init')} cannot apply to it",
                           where)
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
                f"{option('init', key)}: {name} takes no keyword {key!r}"
                + (f" (it takes: {known})" if known else ""), where
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
            factories = _factories_of(target)
            if factories:
                # ResNet(block, num_blocks): a class is no literal for --init; the
                # file's ResNet18() says what the author passes.
                from dimfix.source import display_path

                shown = ", ".join(f"{f}()" for f in factories)
                raise BadUsage(
                    f"{name} needs arguments ({', '.join(missing)}); this file builds it in "
                    f"{shown}: name that as the target, {display_path(path)}::"
                    f"{factories[0]}", where) from None
            args = " ".join(option("init", f"{n}=VALUE") for n in missing)
            raise BadUsage(f"{name} needs arguments: pass {args}", where) from None
        raise BadUsage(f"{name}: {e}", where) from None


def _factories_of(target) -> Tuple[str, ...]:
    """Functions of ``target``'s own module that call it by name (``ResNet18``
    returning ``ResNet(BasicBlock, [2, 2, 2, 2])``), in the order defined."""
    module = sys.modules.get(getattr(target, "__module__", ""), None)
    name = getattr(target, "__name__", "")
    if module is None or not isinstance(target, type):
        return ()
    return tuple(n for n, v in vars(module).items()
                 if inspect.isfunction(v) and _defined_in(v, module) and not n.startswith("_")
                 and name in v.__code__.co_names)


def _models_in(module) -> Tuple[str, ...]:
    """Classes, factories and module-level model instances the file defines."""
    import torch.nn as nn

    found = []
    for n, v in vars(module).items():
        if n.startswith("_"):
            continue
        if isinstance(v, type) and issubclass(v, nn.Module) and _defined_in(v, module):
            found.append(n)
        elif inspect.isfunction(v) and _defined_in(v, module):
            found.append(f"{n}()")
        elif isinstance(v, nn.Module):
            found.append(n)
    return tuple(found)


def _raised(e: BaseException, doing: str) -> ModelRaised:
    """One line naming where in user code ``e`` was raised."""
    if isinstance(e, (KeyboardInterrupt, DimfixError)):
        raise e
    where, func = user_frame(e)
    what = f"{type(e).__name__}: {e}".strip().rstrip(":")
    what = what.splitlines()[0] if what else type(e).__name__
    return ModelRaised(f"{func}{doing} raised {what}{cuda_hint(what)}", where)


_CUDA_ERRORS = ("not compiled with CUDA", "No CUDA GPUs", "no NVIDIA driver", "CUDA driver",
                "Attempting to deserialize object on a CUDA device", "cuda:0")


def cuda_hint(message: str) -> str:
    """What to say when the model insists on a GPU, which dimfix hides from it."""
    if any(s in message for s in _CUDA_ERRORS):
        return (" (the model requires CUDA; dimfix traces on the CPU or meta device and hides "
                "GPUs from the model: choose the device with torch.cuda.is_available())")
    return ""


def user_frame(e: BaseException) -> Tuple[Optional[Position], str]:
    """The innermost traceback frame outside installed code: its position and
    ``in func: `` (or None and "")."""
    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    tb = e.__traceback__
    best: Tuple[Optional[Position], str] = (None, "")
    while tb is not None:
        code = tb.tb_frame.f_code
        name = code.co_filename
        if not (name.startswith("<") or name.startswith(here) or "site-packages" in name):
            best = Position(os.path.abspath(name), tb.tb_lineno), f"in {code.co_name}: "
        tb = tb.tb_next
    return best
