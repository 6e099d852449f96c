"""Record where every layer is built, while the model is built.

``nn.Module.__init__`` is wrapped for the duration of a ``recording_sites``
block. For each new module it walks the Python stack outward: frames that
belong to the module's own ``__init__`` chain are skipped, then every frame in
a user file is kept, with the exact span of the call it is executing (Python
3.11 code positions), innermost first.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import os
import sys
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from dimfix.records import Frame, Site
from dimfix.source import display_path

MAX_CHAIN = 16
_SHORT_LIST = 256  # longer lists are not copied for every layer built
_COMPREHENSIONS = ("<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>")


InitFrames = List[Tuple[object, Dict[str, object]]]  # (code, named arguments)


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
    try:
        yield book
    finally:
        visits.clear()
        nn.Module.__init__ = original
        if had_deepcopy is None:
            del nn.Module.__deepcopy__
        else:
            nn.Module.__deepcopy__ = had_deepcopy


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
    positions = frame.f_code.co_positions()
    pos = next(itertools.islice(positions, index, None), None)
    if pos is None or None in pos:
        return None
    line, end_line, col, end_col = pos
    return line, col, end_line, end_col


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
