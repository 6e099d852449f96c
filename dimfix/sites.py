"""Record where every layer is built, while the model is built.

``nn.Module.__init__`` is wrapped for the duration of a ``recording_sites``
block. For each new module it walks the Python stack outward: frames that
belong to the module's own ``__init__`` chain are skipped, then every frame in
a user file is kept, with the exact span of the call it is executing (Python
3.11 code positions), innermost first.

Tensor factories called from user code (``torch.randn(1, num_patches + 1,
dim)``, ``torch.zeros(max_len, d_model)``) are recorded the same way: a
parameter or buffer a module holds is then traced back to the call that sized
it, whose arguments are followed like a layer's (see ``TensorSite``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import re
import sys
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from dimfix.records import Frame, Site
from dimfix.source import display_path

MAX_CHAIN = 16
_SHORT_LIST = 256  # longer lists are not copied for every layer built
_COMPREHENSIONS = ("<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>")


InitFrames = List[Tuple[object, Dict[str, object]]]  # (code, named arguments)

# Factories whose positional arguments are the sizes (or whose first argument
# is the shape as a tuple): the calls that size a parameter or a table.
FACTORIES = ("empty", "zeros", "ones", "randn", "rand", "full")


@dataclass(frozen=True)
class TensorSite:
    """Where a tensor was made: ``torch.randn(1, num_patches + 1, dim)``.

    ``params`` name the call's size arguments the way a Construction names a
    layer's: ``("dim 0", "dim 1", "dim 2")`` for sizes passed one by one, so
    ``dim 1`` is the second positional argument; ``("size",)`` for a shape
    passed as one tuple. ``sizes`` is the shape as called."""

    site: Site
    function: str  # "torch.randn"
    sizes: Tuple[int, ...]
    params: Tuple[str, ...]

    def arg(self, dim: int) -> str:
        """The parameter holding dimension ``dim`` of the shape as called."""
        return self.params[dim] if len(self.params) > 1 else self.params[0]


# (TensorSite, dim map): the site, and for each dimension of the tensor the
# module holds, the dimension of the shape as called (None: a 1 added since).
TensorOrigin = Tuple[TensorSite, Tuple[Optional[int], ...]]


class SiteBook:
    """Sites by module identity; keeps the modules alive so ids stay unique.

    Also keeps each module's constructor arguments (per ``__init__`` in its
    class chain, innermost first), so that a layer can be rebuilt with one
    argument changed; and maps deep copies to the module they were copied
    from, whose call is where their sizes are written.
    """

    def __init__(self) -> None:
        self._sites: Dict[int, Site] = {}
        self._inits: Dict[int, InitFrames] = {}
        self._copies: Dict[int, object] = {}
        self._alive: List[object] = []
        # Tensors made by a factory in user code, by their storage: a Parameter
        # or a view (``pe.unsqueeze(0)``) shares it. And by the module whose
        # __init__ made them, for a tensor made from them (``randn(...) * 0.02``).
        self._made: Dict[int, TensorSite] = {}
        self._made_in: Dict[int, List[Tuple[TensorSite, Tuple[int, ...]]]] = {}
        self._tensors: Dict[Tuple[int, str], TensorOrigin] = {}

    def add(self, module: object, site: Optional[Site], inits: InitFrames) -> None:
        if site is not None:
            self._sites[id(module)] = site
        self._inits[id(module)] = inits
        self._alive.append(module)

    def add_copy(self, copy: object, original: object) -> None:
        self._copies[id(copy)] = original
        self._alive.append(copy)

    def _original(self, module: object) -> object:
        while id(module) in self._copies:
            module = self._copies[id(module)]
        return module

    def get(self, module: object) -> Optional[Site]:
        return self._sites.get(id(self._original(module)))

    def inits(self, module: object) -> InitFrames:
        return self._inits.get(id(self._original(module)), [])

    def known(self, module: object) -> bool:
        return id(self._original(module)) in self._inits

    def add_tensor(self, tensor, made: TensorSite, owner: object) -> None:
        try:
            self._made[tensor.untyped_storage()._cdata] = made
        except Exception:  # a tensor without storage (a subclass): by shape only
            pass
        self._made_in.setdefault(id(owner), []).append((made, tuple(tensor.shape)))
        self._alive += (tensor, owner)

    def bind_tensors(self, model) -> None:
        """Find, for every parameter, buffer and tensor attribute of every module
        of ``model``, the factory call that made it. Called once the model is
        built, before its weights are replaced (materialize), which breaks
        the shared storage."""
        if not self._made_in:
            return
        for module in model.modules():
            for name, tensor in own_tensors(module):
                hit = self._origin_of(module, tensor)
                if hit is not None:
                    self._tensors[(id(self._original(module)), name)] = hit

    def tensor(self, module: object, name: str) -> Optional[TensorOrigin]:
        """Where ``module``'s own tensor ``name`` was made, if in user code."""
        return self._tensors.get((id(self._original(module)), name))

    def _origin_of(self, module, tensor) -> Optional[TensorOrigin]:
        shape = tuple(int(d) for d in tensor.shape)
        try:
            made = self._made.get(tensor.untyped_storage()._cdata)
        except Exception:
            made = None
        if made is None:
            # Made from a factory's tensor (``torch.randn(...) * 0.02``): the one
            # call in this module's __init__ with that shape, if only one.
            same = [m for m, s in self._made_in.get(id(module), ()) if _dims_map(s, shape)]
            made = same[0] if len(same) == 1 else None
        dims = _dims_map(made.sizes, shape) if made is not None else None
        return (made, dims) if dims is not None else None


@contextlib.contextmanager
def recording_sites(is_user_file: Callable[[str], bool]) -> Iterator[SiteBook]:
    """Within the block, every ``nn.Module`` constructed gets a Site in the book."""
    import torch.nn as nn

    book = SiteBook()
    original = nn.Module.__init__
    visits = _Visits()

    def init_and_record(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if not book.known(self):
            inits: InitFrames = []
            site = _site_of(self, sys._getframe(1), is_user_file, inits, visits)
            book.add(self, site, inits)

    def deepcopy_and_record(self, memo):
        # What copy.deepcopy does for an object without __deepcopy__.
        copied = copy._reconstruct(self, memo, *self.__reduce_ex__(4))
        book.add_copy(copied, self)
        return copied

    had_deepcopy = nn.Module.__dict__.get("__deepcopy__")  # re-entrant: put back exactly
    nn.Module.__init__ = init_and_record
    nn.Module.__deepcopy__ = deepcopy_and_record
    _RECORDING.append((book, is_user_file))
    factories = _wrap_factories()
    try:
        yield book
    finally:
        _unwrap_factories(factories)
        _RECORDING.pop()
        visits.clear()
        nn.Module.__init__ = original
        if had_deepcopy is None:
            del nn.Module.__deepcopy__
        else:
            nn.Module.__deepcopy__ = had_deepcopy


# The books being written, innermost last. A factory wrapper a user module
# bound at import (``from torch import zeros``) outlives the block: it records
# only while one is open.
_RECORDING: List[Tuple[SiteBook, Callable[[str], bool]]] = []


def _wrap_factories() -> Dict[str, object]:
    import torch

    _freeze_device_constructors()
    own = {name: torch.__dict__[name] for name in FACTORIES if name in torch.__dict__}
    for name, fn in own.items():
        setattr(torch, name, _recorded(name, fn))
    return own


def _freeze_device_constructors() -> None:
    """``with torch.device("meta")`` places the factories it finds in a set
    that torch builds on first use and caches for the life of the process:
    built while our wrappers stand in ``torch``'s namespace, it holds them,
    not the factories, and every layer after is built on CPU (a model too big
    for CPU then fails its meta trace: "Tensor on device cpu is not on the
    expected device meta"). Built here first, it holds the factories."""
    try:
        from torch.utils._device import _device_constructors
    except ImportError:  # a torch without it has no such cache
        return
    _device_constructors()


def _unwrap_factories(own: Dict[str, object]) -> None:
    import torch

    for name, fn in own.items():
        setattr(torch, name, fn)


_WRAPPERS: Dict[str, object] = {}  # one per factory, alive for good (see _recorded)


def _recorded(name: str, fn):
    """``fn`` (a torch factory), recording calls from user code while a book
    is open. Made once per factory: TorchScript resolves the wrapper to the
    aten op by its id (a script compiled at import, while recording, must
    still compile), so it must never die and leave its id to another."""
    wrapper = _WRAPPERS.get(name)
    if wrapper is not None:
        return wrapper
    if hasattr(fn, "__wrapped_factory__"):
        return fn

    def factory(*args, **kwargs):
        out = fn(*args, **kwargs)
        if _RECORDING:
            book, is_user_file = _RECORDING[-1]
            frame = sys._getframe(1)
            if is_user_file(frame.f_code.co_filename):
                made = _tensor_site(name, args, kwargs, frame, is_user_file)
                if made is not None:
                    book.add_tensor(out, made, _building(frame))
        return out

    factory.__wrapped_factory__ = fn
    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = fn.__doc__
    try:
        from torch.jit import _builtins

        op = _builtins._find_builtin(fn)
        if op is not None:
            _builtins._register_builtin(factory, op)
    except Exception:  # an older torch without the table: scripts calling it fail
        pass
    _WRAPPERS[name] = factory
    return factory


def _tensor_site(name, args, kwargs, frame, is_user_file) -> Optional[TensorSite]:
    """The factory call ``frame`` is executing, with the shape as it passes it."""
    first = args[0] if args else kwargs.get("size")
    if isinstance(first, (tuple, list)):  # torch.zeros((n, d)), torch.full((n, d), 0.0)
        sizes, params = tuple(first), ("size",)
    elif name != "full" and args and all(type(a) is int for a in args):
        sizes, params = tuple(args), tuple(f"dim {i}" for i in range(len(args)))
    else:
        return None
    if not all(type(d) is int for d in sizes):
        return None
    site = _site_of(None, frame, is_user_file, [])
    return TensorSite(site, f"torch.{name}", sizes, params) if site is not None else None


def _building(frame) -> object:
    """The module whose ``__init__`` is running around ``frame`` (None if none)."""
    from torch import nn

    while frame is not None:
        code = frame.f_code
        if code.co_name == "__init__" and code.co_argcount:
            owner = frame.f_locals.get(code.co_varnames[0])
            if isinstance(owner, nn.Module):
                return owner
        frame = frame.f_back
    return None


def own_tensors(module) -> List[Tuple[str, object]]:
    """``module``'s own parameters, buffers and tensors held as plain attributes."""
    import torch

    out = [(n, t) for n, t in module._parameters.items() if t is not None]
    out += [(n, t) for n, t in module._buffers.items() if t is not None]
    out += [(n, t) for n, t in vars(module).items() if isinstance(t, torch.Tensor)]
    return out


def _dims_map(sizes: Tuple[int, ...], shape: Tuple[int, ...]) -> Optional[Tuple[Optional[int], ...]]:
    """For each dimension of ``shape``, the one of ``sizes`` it is, when
    ``shape`` is ``sizes`` with 1s added or taken away (``unsqueeze(0)``);
    else None."""
    kept = [i for i, d in enumerate(sizes) if d != 1]
    dims: List[Optional[int]] = []
    for d in shape:
        if d == 1:
            dims.append(next((i for i, s in enumerate(sizes) if s == 1 and i not in dims), None)
                        if len(shape) == len(sizes) else None)
            continue
        if not kept or sizes[kept[0]] != d:
            return None
        dims.append(kept.pop(0))
    return tuple(dims) if not kept else None


class _Visits:
    """Counts the executions of each call in each live frame: the n-th distinct
    callee frame seen under (frame, call span) is visit n. Frames are held
    while recording so that their ids stay unique."""

    def __init__(self) -> None:
        self._callees: Dict[Tuple[int, tuple], List[int]] = {}
        self._alive: List[object] = []

    def of(self, frame, span, callee) -> int:
        seen = self._callees.setdefault((id(frame), span), [])
        if id(callee) not in seen:
            seen.append(id(callee))
            self._alive += (frame, callee)
        return seen.index(id(callee))

    def clear(self) -> None:
        self._callees.clear()
        self._alive.clear()


def _site_of(module, frame, is_user_file, inits: InitFrames,
             visits: Optional[_Visits] = None) -> Optional[Site]:
    # Skip the module's own __init__ and the super().__init__ calls in it,
    # keeping the arguments each was called with.
    callee = sys._getframe(1)  # any frame below the first user one tells executions apart
    while frame is not None and _is_init_of(frame, module):
        inits.append((frame.f_code, _arguments(frame)))
        callee, frame = frame, frame.f_back
    if frame is None:
        return None
    via = None
    if not is_user_file(frame.f_code.co_filename):
        via = _describe(frame)
    chain: List[Frame] = []
    while frame is not None and len(chain) < MAX_CHAIN:
        if is_user_file(frame.f_code.co_filename):
            span = _call_span(frame)
            if span is None:
                break
            code = frame.f_code
            params = _params_in_scope(frame)
            visit = visits.of(frame, span, callee) if visits is not None and callee else 0
            chain.append(
                Frame(code.co_filename, *span, code.co_name, _values(frame), frame.f_globals,
                      params, visit, code.co_qualname)
            )
        elif chain:
            break  # user code was called from outside (the loader): chain ends
        callee, frame = frame, frame.f_back
    if not chain:
        return None
    return Site(tuple(chain), via)


IGNORE = re.compile(r"#\s*dimfix:\s*ignore\b")


def ignored(site: Optional[Site], texts: Dict[str, List[str]]) -> bool:
    """Whether a line of any call on the way to the layer carries ``# dimfix:
    ignore`` (as ``# noqa`` or ``# fmt: skip`` do): the author sized it on
    purpose (a lazy placeholder, a layer resized at run time). ``texts``
    caches each file's lines for one trace."""
    if site is None:
        return False
    for frame in site.chain:
        lines = _source_lines(frame, texts)
        if any(IGNORE.search(lines[i - 1]) for i in range(frame.line, frame.end_line + 1)
               if 0 < i <= len(lines)):
            return True
    return False


def _source_lines(frame: Frame, cache: Dict[str, List[str]]) -> List[str]:
    """The text the frame's module was executed from (the loader's: a buffer or
    a rewritten text, not necessarily the file on disk), by lines."""
    if frame.path not in cache:
        g = frame.global_values
        loader, text = g.get("__loader__"), None
        try:
            text = loader.get_source(g.get("__name__")) if loader is not None else None
        except Exception:  # a loader without the source: read the file
            text = None
        if text is None:
            try:
                with open(frame.path, encoding="utf-8", errors="replace") as f:
                    text = f.read()
            except OSError:
                text = ""
        cache[frame.path] = text.split("\n")
    return cache[frame.path]


def site_here(frame, is_user_file: Callable[[str], bool]) -> Optional[Site]:
    """The Site of the call ``frame`` is executing (e.g. ``x.view(-1, 400)``)."""
    return _site_of(None, frame, is_user_file, [])


def _is_init_of(frame, module) -> bool:
    code = frame.f_code
    if module is None or code.co_argcount == 0:
        return False
    return frame.f_locals.get(code.co_varnames[0]) is module


def _values(frame) -> Dict[str, object]:
    """The frame's locals, plus ``self.<attr>`` for integer attributes as they
    are now: ``self.in_planes`` changes as ``_make_layer`` goes on. A function's
    short lists are copied: ``hidden_dims.reverse()`` later in ``__init__`` must
    not change what ``hidden_dims[-1]`` was when the layer was built."""
    values = dict(frame.f_locals)
    if _in_comprehension(frame):
        # A comprehension sees its function's names, not only those it reads:
        # ``[block(patch_size) for _ in ...]`` where ``embed_dim`` belongs.
        values = {**_values(frame.f_back), **values}
    if frame.f_locals is not frame.f_globals:
        values.update((k, list(v)) for k, v in values.items()
                      if type(v) is list and len(v) <= _SHORT_LIST)
    owner = values.get("self")
    attrs = getattr(owner, "__dict__", None)
    if isinstance(attrs, dict):
        values.update((f"self.{k}", v) for k, v in attrs.items() if type(v) is int)
    return values


def _params_in_scope(frame) -> Tuple[str, ...]:
    """The frame's parameters; a comprehension's are its function's."""
    code = frame.f_code
    if _in_comprehension(frame):
        return _params_in_scope(frame.f_back)
    return code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]


def _in_comprehension(frame) -> bool:
    outer = frame.f_back
    return frame.f_code.co_name in _COMPREHENSIONS and outer is not None \
        and frame.f_code in outer.f_code.co_consts


def _arguments(frame) -> Dict[str, object]:
    code = frame.f_code
    count = code.co_argcount + code.co_kwonlyargcount
    names = code.co_varnames[1:count]  # without self
    values = frame.f_locals
    return {n: values[n] for n in names if n in values}


def _call_span(frame):
    """(line, col, end_line, end_col) of the instruction the frame is executing."""
    index = frame.f_lasti // 2
    positions = _positions(frame.f_code)
    pos = positions[index] if index < len(positions) else None
    if pos is None or None in pos:
        return None
    line, end_line, col, end_col = pos
    return line, col, end_line, end_col


@functools.lru_cache(maxsize=4096)
def _positions(code) -> tuple:
    """``code.co_positions()``, read once per code object: a block's
    ``__init__`` builds many layers, often many times, and reading the nth
    position walks the n before it (~7 % of a timm model's check)."""
    return tuple(code.co_positions())


def _describe(frame) -> str:
    code = frame.f_code
    module = frame.f_globals.get("__name__", "?")
    return f"{module}.{code.co_qualname}{_linked(code.co_filename)}"


@functools.lru_cache(maxsize=None)
def _linked(filename: str) -> str:
    """`` in <real file>`` for a file reached through a symlink
    (``proj/helpers -> site-packages/pkg``), else ''."""
    real = os.path.realpath(filename)
    return f" in {display_path(real)}" if real != os.path.abspath(filename) else ""
