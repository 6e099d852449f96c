"""The warm worker's import of the user's package, and executing its modules
again in a step's child (worker.py forks the children).

``preload`` imports the package in the worker, recording for each module its
file, its text and what it added to the registries (dicts and sets) of the
modules loaded before it. ``refresh``, in a child, forgets the modules that
must run again — those whose text changed, the target unless its models can
be taken as imported, and the modules holding objects that running those
again replaces — and takes their registrations out, so that importing the
target executes them afresh (torchvision's ``register_model`` raises on a
name it has).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from typing import Dict, List, Mapping, Sequence, Set, Tuple

# Module name -> the registrations its first execution made: (container, keys).
_ADDED: Dict[str, List[Tuple[object, list]]] = {}
# Module name -> its file, for every user module the worker imported.
_FILES: Dict[str, str] = {}
_SOURCES: Dict[str, int] = {}  # module name -> hash of the text it was executed from
_SOURCE_BYTES: Dict[str, bytes] = {}  # module name -> its file's bytes, as executed


def mtimes() -> Dict[str, int]:
    """The mtime of each file the worker imported, as it was then."""
    out = {}
    for file in _FILES.values():
        try:
            out[file] = os.stat(file).st_mtime_ns
        except OSError:
            pass
    return out


def preload(root: str, package: str) -> None:  # pragma: no cover - the worker process
    """Import ``package`` from ``root`` as on disk, recording what each of its
    modules adds to the registries of those loaded before it. Whatever the
    import does wrong, the worker goes on without it."""
    if root not in sys.path:
        sys.path.insert(0, root)
    recorder = _Recorder(root)
    sys.meta_path.insert(0, recorder)
    before = set(sys.modules)
    try:
        importlib.import_module(package)
    except BaseException:  # noqa: B036 - a broken package: each child imports it itself
        # Only the user's modules go: a library the import pulled in (torch's
        # submodules) registered kernels with torch, which refuses them twice.
        top = package.split(".")[0]
        for name in set(sys.modules) - before:
            file = os.path.abspath(getattr(sys.modules[name], "__file__", None) or os.sep)
            if name.split(".")[0] == top or file.startswith(recorder.root):
                del sys.modules[name]
        _ADDED.clear()
        _FILES.clear()
    finally:
        sys.meta_path.remove(recorder)


class _Recorder(importlib.abc.MetaPathFinder):
    """Finds the user's modules as the path finder would, and wraps their
    execution to record what they register."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip(os.sep) + os.sep
        self.containers: List[object] = []  # module-level dicts and sets of user modules
        # Each container's size and members when its module had run: what a
        # module adds to a registry its own imports loaded (net.py importing
        # _registry.py, then registering) counts from there.
        self.first: Dict[int, tuple] = {}

    def find_spec(self, name, path, target=None):
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not spec.origin or not spec.origin.startswith(self.root) \
                or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return None
        recorder, loader = self, spec.loader
        original = loader.exec_module

        def exec_module(module):
            before = {id(c): _snapshot(c) for c in recorder.containers}
            try:
                original(module)
            finally:
                added = []
                for c in recorder.containers:
                    size, members = before.get(id(c)) or recorder.first[id(c)]
                    if isinstance(c, dict) and len(c) > size:
                        added.append((c, list(c)[size:]))
                    elif members is not None and len(c) > size:
                        added.append((c, list(c - members)))
                if added:
                    _ADDED[name] = added
                _FILES[name] = os.path.abspath(spec.origin)
                try:
                    raw = loader.get_data(spec.origin)
                    _SOURCE_BYTES[name] = raw
                    _SOURCES[name] = hash(importlib.util.decode_source(raw))
                except (OSError, SyntaxError, UnicodeDecodeError):
                    pass
                for v in vars(module).values():
                    if (type(v) in (dict, set) or _is_defaultdict(v)) \
                            and id(v) not in recorder.first:
                        recorder.containers.append(v)
                        recorder.first[id(v)] = _snapshot(v)

        loader.exec_module = exec_module
        return spec


def _snapshot(container) -> tuple:
    """(size, members of a set) of a registry, to tell later what was added."""
    return len(container), set(container) if isinstance(container, set) else None


def _is_defaultdict(value) -> bool:
    from collections import defaultdict

    return isinstance(value, defaultdict)


def refresh(texts: Mapping[str, str], target: str, names: Sequence[str] = ()) -> Set[str]:
    """In a child of the worker, before importing ``target`` (a module name):
    forget every preloaded module whose file ``texts`` gives another text than
    the worker loaded, the target unless its models ``names`` can be taken
    from the worker's import (``_reusable``), and the preloaded modules that
    hold what those will define anew (``_dependents``), each with what it
    registered, so that importing the target executes them again from
    ``texts`` or from disk. Returns the names forgotten."""
    if not _FILES:
        return set()
    given = {os.path.abspath(p): t for p, t in texts.items()}
    roots = {name for name, file in _FILES.items()
             if (file in given and hash(given[file]) != _SOURCES.get(name))
             or (name == target and not _reusable(target, names))}
    forgotten = _dependents(roots)
    for name in forgotten:
        for container, keys in _ADDED.pop(name, ()):
            for key in keys:
                if isinstance(container, dict):
                    container.pop(key, None)
                else:
                    container.discard(key)
        sys.modules.pop(name, None)
        parent, _, child = name.rpartition(".")
        if parent in sys.modules and getattr(sys.modules[parent], child, None) is not None:
            try:
                delattr(sys.modules[parent], child)
            except AttributeError:
                pass
    return forgotten


class Reattach(importlib.abc.MetaPathFinder):
    """A package forgotten by ``refresh`` and executed again finds the
    submodules that stayed loaded as its attributes, as its first import left
    them: ``import pkg.sub`` sets ``pkg.sub`` only when it loads ``pkg.sub``,
    so an ``__init__`` that reads ``pkg.sub`` after importing it would fail
    (``partially initialized module``). Goes first on ``sys.meta_path``; the
    finders after it find the module."""

    def __init__(self, packages: Set[str]) -> None:
        self.packages = packages

    def find_spec(self, name, path, target=None):
        if name not in self.packages:
            return None
        for finder in sys.meta_path:
            found = getattr(finder, "find_spec", None) if finder is not self else None
            spec = found(name, path, target) if found else None
            if spec is not None and spec.loader is not None:
                break
        else:
            return None
        original = spec.loader.exec_module

        def exec_module(module):
            prefix = name + "."
            for other, loaded in list(sys.modules.items()):
                if other.startswith(prefix) and "." not in other[len(prefix):]:
                    setattr(module, other[len(prefix):], loaded)
            original(module)

        spec.loader.exec_module = exec_module
        return spec


def _reusable(target: str, names: Sequence[str]) -> bool:
    """Can the models ``names`` be taken from the worker's import of ``target``
    (its text unchanged)? Classes and functions can: dimfix builds them later
    and records their sites then. A model built at import (``model = Net()``)
    cannot: its sites are recorded while its module is executed."""
    import inspect

    module = sys.modules.get(target)
    if module is None or not names:
        return False
    for name in names:
        found = module
        for part in name.split("."):
            found = getattr(found, part, None)
        if not (inspect.isclass(found) or inspect.isfunction(found)):
            return False
    return True


# Names every module has; what they hold is the module's own, never imported.
_OWN = frozenset({"__name__", "__doc__", "__package__", "__loader__", "__spec__", "__file__",
                  "__cached__", "__builtins__", "__path__", "__all__"})


def _dependents(roots: Set[str]) -> Set[str]:
    """``roots`` and the preloaded modules that hold, at module level, an object
    executing those again replaces: a stale module, a class or function
    defined in one (its ``__module__``), or a plain value a root made itself
    (``from .config import HIDDEN``). Found by identity in what the modules
    hold, not from their import statements: a package's ``__init__`` that
    re-exports a changed model module is stale, but a module that takes
    ``__version__`` or ``create_model`` from that package is not (in timm,
    following imports made every model module stale: 2-4 s per child)."""
    stale = set(roots)
    from_roots: Set[int] = set()
    for name in roots:
        from_roots |= _own_values(name)
    grew = True
    while grew:
        grew = False
        for name in list(stale):
            for other in _candidates(name):
                if other not in stale and _holds_stale(other, stale, from_roots):
                    stale.add(other)
                    grew = True
    return stale


def _defined(value) -> bool:
    """A module, class or function: its home is known (``__name__``, ``__module__``)."""
    import types

    return isinstance(value, (types.ModuleType, type, types.FunctionType))


def _own_values(name: str) -> Set[int]:
    """The ids of the plain values module ``name`` holds that no module
    executed before it holds (``IMAGENET_DEFAULT_MEAN``, taken from
    timm.data, is not a model file's own). ``_FILES`` is in the order the
    modules finished executing: what a module imports finishes first."""
    module = sys.modules.get(name)
    if module is None:
        return set()
    own = {id(v) for key, v in vars(module).items()
           if key not in _OWN and _made_by_user_code(v)}
    for other in _FILES:
        if other == name:
            break
        if other in sys.modules:
            own -= {id(v) for v in vars(sys.modules[other]).values()}
    return own


_VALUES = (int, float, complex, str, bytes, tuple, list, dict, set, frozenset)


def _made_by_user_code(value) -> bool:
    """A value a module's own statements make (a number, a container, an
    instance of a user class), not one it took from a library (``Optional``)."""
    return type(value) in _VALUES or type(value).__module__ in _FILES


def _holds_stale(name: str, stale: Set[str], from_roots: Set[int]) -> bool:
    import types

    module = sys.modules.get(name)
    if module is None:
        return False  # not loaded here: imported afresh if anything needs it
    for key, value in list(vars(module).items()):
        if key in _OWN:
            continue
        if isinstance(value, types.ModuleType):
            if value.__name__ in stale:
                return True
        elif _defined(value):
            if getattr(value, "__module__", None) in stale:
                return True
        elif id(value) in from_roots:
            return True
    return False


_MENTIONS: Dict[str, List[str]] = {}


def _candidates(name: str) -> List[str]:
    """Preloaded modules whose source mentions ``name``'s last part at all: the
    only ones that can have imported from it."""
    if name not in _MENTIONS:
        tail = name.rpartition(".")[2].encode()
        _MENTIONS[name] = [other for other, source in _SOURCE_BYTES.items()
                           if other != name and tail in source]
    return _MENTIONS[name]


__all__ = ["mtimes", "preload", "refresh"]
