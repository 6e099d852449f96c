"""Import the user's file as the module it is, and find the model in it."""

from __future__ import annotations

import dis
import functools
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import sysconfig
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

from dimfix.errors import (BadSource, BadUsage, DimfixError, ModelRaised, Position,
                           TargetNotFound, one_line, option, text_of)
from dimfix.source import display_path


@dataclass(frozen=True)
class Location:
    """Where a file sits in its package: the import root and its module name."""

    path: str  # absolute
    root: str  # the folder to put on sys.path
    module: str  # dotted name, e.g. "zoo.models.resnet"
    # No import can name the file (model.v2.py): it runs as `python model.v2.py`
    # would run it, a script of its own, in no package.
    script: bool = False

    @classmethod
    def of(cls, path: str) -> "Location":
        path = os.path.abspath(path)
        folder, stem = os.path.split(path)
        stem = os.path.splitext(stem)[0]
        if not stem.isidentifier():
            return cls(path, folder, stem, script=True)
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
        return not self.script and ("." in self.module
                                    or os.path.basename(self.path) == "__init__.py")

    def is_user_file(self) -> Callable[[str], bool]:
        """Files of the user's code, whose frames sites are recorded in: under the
        import root and not installed (a link into site-packages is installed code)."""
        root = self.root.rstrip(os.sep) + os.sep
        cache: Dict[str, bool] = {}

        def check(filename: str) -> bool:
            hit = cache.get(filename)
            if hit is None:
                hit = filename.startswith(root) and not _installed(filename) \
                    and not _installed(os.path.realpath(filename))
                cache[filename] = hit
            return hit

        return check

    def may_edit(self) -> "Editable":
        """The files a fix of this target may edit: see ``Editable``."""
        return Editable(project_root(self))


def project_root(loc: Location) -> str:
    """The folder of the target's project: the nearest one above it holding
    pyproject.toml, setup.py, setup.cfg or .git, else its import root (the
    folder above its top package, or its own folder)."""
    folder = os.path.dirname(loc.path)
    while True:
        if any(os.path.exists(os.path.join(folder, m)) for m in _PROJECT_MARKERS):
            break
        parent = os.path.dirname(folder)
        if parent == folder:
            return loc.root
        folder = parent
    inside = (folder.rstrip(os.sep) + os.sep).startswith(loc.root.rstrip(os.sep) + os.sep)
    return loc.root if inside and folder != loc.root else folder


_PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")


class Editable:
    """``editable(path)``: may dimfix write a value into the file at ``path``?

    Decided on the real path (symlinks followed, as the write would follow
    them): the file must lie in the project (``project_root``), and not in
    installed code (site-packages, the standard library, dimfix itself).
    ``why(path)`` says why not, naming the real file, for the cannot-fix line."""

    def __init__(self, project: str) -> None:
        self.project = os.path.realpath(project)
        self._cache: Dict[str, str] = {}

    def __call__(self, path: str) -> bool:
        return not self.why(path)

    def why(self, path: str) -> str:
        """'' if the file may be edited; else ``<real file> (through the link <path>),
        installed code that dimfix does not edit`` or ``..., outside the project``."""
        path = os.path.abspath(path)
        if path not in self._cache:
            self._cache[path] = _refusal(path, self.project)
        return self._cache[path]


def _refusal(path: str, project: str) -> str:
    real = os.path.realpath(path)
    shown = display_path(real) + ("" if real == path else
                                  f" (through the link {display_path(path)})")
    if _installed(real) or _installed(path):
        return f"{shown}, installed code that dimfix does not edit"
    if not real.startswith(project.rstrip(os.sep) + os.sep):
        return f"{shown}, outside the project ({_shown_folder(project)}) that dimfix edits"
    return ""


def _shown_folder(folder: str) -> str:
    shown = display_path(folder)
    return folder if shown == os.curdir else shown


def _installed(path: str) -> bool:
    """Installed packages, the standard library and dimfix itself."""
    return "site-packages" in path or any(path.startswith(p) for p in installed_prefixes())


@functools.lru_cache(maxsize=1)
def installed_prefixes() -> Tuple[str, ...]:
    """Folders of the standard library, of installed packages and of dimfix."""
    prefixes = {p for key in ("stdlib", "platstdlib", "purelib", "platlib")
                if (p := sysconfig.get_paths().get(key))}
    prefixes.add(os.path.dirname(os.path.abspath(__file__)))
    return tuple(sorted(p.rstrip(os.sep) + os.sep for p in prefixes))


def import_target(loc: Location, texts: Mapping[str, str],
                  seeds: Optional[Mapping[str, Mapping[str, object]]] = None,
                  names: Sequence[str] = ()):
    """Import the file at ``loc`` the way its package imports it, once.

    ``texts`` maps absolute paths of the project's files to the text each is to
    have (the target's own text, an editor buffer, a rewritten candidate); those
    modules are executed from that text, as the file itself (same ``__file__``,
    same folder), wherever they are imported from: by the package's
    ``__init__``, by a sibling, or by this call. Other modules load as usual.
    ``seeds`` maps some of those paths to globals their module starts with
    (``--set``). ``names``: the models wanted from it; in a warm worker's
    child, a target the worker imported from the same text, whose models are
    classes or functions (built later, when sites are recorded), is not
    executed again. Runs in a child process (see isolate.py): the imports are
    not undone.
    """
    from dimfix.preload import Reattach, refresh

    if loc.root in sys.path:
        sys.path.remove(loc.root)
    sys.path.insert(0, loc.root)
    alone = _forget_shadowed(loc)
    seeded = any((seeds or {}).values())
    # A worker's child: what changed runs again.
    forgotten = refresh(texts, loc.module, () if seeded else names)
    finder = _TextFinder({os.path.abspath(p): t for p, t in texts.items()},
                         {} if alone else {loc.module: loc.path},
                         {os.path.abspath(p): dict(g) for p, g in (seeds or {}).items()})
    sys.meta_path.insert(0, finder)
    if forgotten:
        sys.meta_path.insert(0, Reattach(forgotten))
    try:
        return _load_alone(loc, finder) if alone else importlib.import_module(loc.module)
    except DimfixError:
        raise
    except SyntaxError as e:
        # In the target or any project file it imports: where, as Python says it.
        if e.filename and not e.filename.startswith("<") \
                and not _installed(os.path.abspath(e.filename)):
            raise BadSource(f"cannot parse: {one_line(e.msg)}",
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


def _forget_shadowed(loc: Location) -> bool:
    """A module of the same top-level name imported from elsewhere (a stale
    copy the API's caller imported, say) must not stand in for the user's:
    drop it. The standard library's cannot be replaced (refused), nor can
    dimfix's own modules and the packages it runs on (``dimfix.py``,
    ``torch.py``): such a loose file, and one no import can name
    (``model.v2.py``), is loaded on its own instead (True); such a package is
    refused."""
    if loc.script:
        return True
    top = loc.module.split(".")[0]
    cached = sys.modules.get(top)
    if cached is None:
        return False
    expected = os.path.join(loc.root, top)
    folders = [os.path.abspath(p) for p in getattr(cached, "__path__", [])]
    file = getattr(cached, "__file__", None)
    if expected in folders or (file and os.path.dirname(os.path.abspath(file)) == loc.root):
        return False
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        raise BadUsage(f"its module name {top!r} is the standard library's; rename the file "
                       "or folder", Position(loc.path))
    if any(_installed(os.path.abspath(p)) for p in folders + ([file] if file else [])):
        if not loc.in_package:
            return True
        raise BadUsage(f"its package name {top!r} is that of "
                       f"{display_path(folders[0] if folders else file)}, which dimfix itself "
                       "imports; rename the folder", Position(loc.path))
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]
    return False


def _load_alone(loc: Location, finder: "_TextFinder"):
    """Execute the target as a module of its own, named after its file
    (``model.v2``, ``dimfix``), replacing nothing in sys.modules."""
    spec = finder._spec(loc.module, loc.path, None)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(loc.module, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


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
        elif inspect.isfunction(v) and _defined_in(v, module) and _returns_a_value(v):
            found.append(f"{n}()")
        elif isinstance(v, nn.Module):
            found.append(n)
    return tuple(found)


def _returns_a_value(fn) -> bool:
    """Can ``fn`` be a factory: does any of its returns give something other
    than None (a script's ``main()`` and ``train()`` do not)?"""
    code = fn.__code__
    if code.co_flags & (inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR):
        return False
    previous = None
    for ins in dis.get_instructions(code):
        if ins.opname == "RETURN_CONST" and ins.argval is not None:
            return True  # Python 3.12+
        if ins.opname == "RETURN_VALUE" and not (
                previous is not None and previous.opname == "LOAD_CONST"
                and previous.argval is None):
            return True
        previous = ins
    return False


def _raised(e: BaseException, doing: str) -> ModelRaised:
    """One line naming where in user code ``e`` was raised."""
    if isinstance(e, (KeyboardInterrupt, DimfixError)):
        raise e
    where, func = user_frame(e)
    return ModelRaised(f"{func}{doing} raised {described(e)}", where)


def described(e: BaseException) -> str:
    """``KeyError: 'x'``: the exception the user's code raised, as one clean
    line (errors.one_line: no escape sequences, cut short), with a hint when
    it is a GPU the model wants, memory the limit does not give, or a
    package the file was copied out of."""
    name, text = one_line(type(e).__name__, 80), one_line(text_of(e))
    said = f"{name}: {text}" if text else name
    return said + cuda_hint(said) + memory_hint(said, e) + package_hint(said)


def package_hint(message: str) -> str:
    """What to say when a file copied out of its package imports from it."""
    if "attempted relative import" in message:
        return (" (the file is part of a package: run dimfix on it inside a copy of the "
                "whole package, beside its __init__.py)")
    return ""


def memory_hint(message: str, e: Optional[BaseException] = None) -> str:
    """What to say when an allocation failed: most likely the memory limit."""
    if isinstance(e, MemoryError) or "can't allocate memory" in message \
            or "Cannot allocate memory" in message:
        return (f" (more memory than the limit allows: {option('max-memory')}, a max-memory= "
                "setting, or the machine's)")
    return ""


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
            best = Position(os.path.abspath(name), tb.tb_lineno), f"in {one_line(code.co_name)}: "
        tb = tb.tb_next
    return best
