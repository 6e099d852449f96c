"""Hard-coded sizes in ``forward``: ``x.view(-1, 400)``, ``x.reshape(b, 400)``.

While a forward pass runs, ``Tensor.view``/``reshape``/``flatten`` called from a
user file are watched. A 2-D target whose size is not a product of the
tensor's trailing dimensions is recorded, with its call site, and replaced by
the per-sample size so that the pass goes on (the Linear after it is then
checked as usual). ``(B, T, D) -> (-1, D)`` is left alone: D is a trailing
product, so the reshape is on purpose.

Each reshape that merges trailing dimensions into its last one is remembered
(weakly): ``(b, w, c, h) -> (b, w, c * h)`` after a permute tells the LSTM after
it that its ``input_size`` is C x H, as a flatten tells a Linear.
"""

from __future__ import annotations

import contextlib
import math
import sys
import weakref
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch

from dimfix.records import Construction, Mismatch
from dimfix.sites import site_here

WATCHED = ("view", "reshape", "flatten")
PARAMS = ("batch", "size")


@contextlib.contextmanager
def tensor_methods_wrapped(names, wrap: Callable[[Callable, str], Callable]) -> Iterator[None]:
    """``torch.Tensor``'s methods ``names`` replaced by ``wrap(method, name)``
    while the block runs, then restored exactly: the methods live on
    ``torch._C.TensorBase``, so the wrappers are set on ``torch.Tensor`` and
    deleted afterwards, not overwritten."""
    own = {name: torch.Tensor.__dict__.get(name) for name in names}
    for name in names:
        setattr(torch.Tensor, name, wrap(getattr(torch.Tensor, name), name))
    try:
        yield
    finally:
        for name, method in own.items():
            if method is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, method)


class ViewChecker:
    """Finds wrong view sizes; remembers what was flattened, for the Linear after."""

    def __init__(self, is_user_file: Callable[[str], bool], seen: Callable[[tuple], None],
                 ignored: Callable[[object], bool] = lambda site: False):
        self.is_user_file = is_user_file
        self.seen = seen  # told the shape of every tensor user code reshapes
        self.ignored = ignored  # a site whose line says '# dimfix: ignore'
        self.found: List[Tuple[Mismatch, Construction]] = []
        self.batch: Optional[int] = None
        # id of a reshape's output -> (its weak ref, the dims merged into its last)
        self.merges: Dict[int, Tuple[weakref.ref, Tuple[int, ...]]] = {}

    @contextlib.contextmanager
    def watching(self, batch: Optional[int]) -> Iterator[None]:
        self.batch = batch
        self.merges.clear()
        with tensor_methods_wrapped(WATCHED, self._wrap):
            yield

    def _wrap(self, method, name):
        checker = self

        def watched(tensor, *shape, **kwargs):
            frame = sys._getframe(1)
            if checker.is_user_file(frame.f_code.co_filename):
                checker.seen(tuple(tensor.shape))
                if name != "flatten" and len(shape) == 2 and not kwargs and tensor.dim() >= 2 \
                        and all(type(d) is int for d in shape):
                    shape = checker._check(tensor, shape, frame, name) or shape
                out = method(tensor, *shape, **kwargs)
                checker._remember(tensor, out)
                return out
            return method(tensor, *shape, **kwargs)

        return watched

    def _remember(self, tensor, out) -> None:
        """The dims of ``tensor`` that ``out``'s last dimension merges, if its
        other dimensions are ``tensor``'s leading ones unchanged."""
        if not isinstance(out, torch.Tensor) or out.dim() < 2:
            return
        lead = out.dim() - 1
        dims = tuple(int(d) for d in tensor.shape)
        if len(dims) - lead >= 2 and dims[:lead] == tuple(out.shape[:lead]) \
                and math.prod(dims[lead:]) == out.shape[-1]:
            self.merges[id(out)] = (weakref.ref(out), dims[lead:])

    def merged(self, x) -> Tuple[int, ...]:
        """The dims a reshape merged into ``x``'s last dimension (() if none did)."""
        hit = self.merges.get(id(x))
        return hit[1] if hit is not None and hit[0]() is x else ()

    def _check(self, tensor, shape, frame, name) -> Optional[Tuple[int, int]]:
        lead, size = shape
        dims = tuple(int(d) for d in tensor.shape)
        if dims[0] != self.batch or lead not in (-1, dims[0]) or size < 1:
            return None
        if size in {math.prod(dims[j:]) for j in range(1, len(dims))}:
            return None  # a reshape on purpose
        per_sample = math.prod(dims[1:])
        site = site_here(frame, self.is_user_file)
        if site is not None and any(m.site == site for m, _ in self.found):
            return (lead, per_sample)  # seen on an earlier pass or iteration
        if self.ignored(site):
            return (lead, per_sample)  # '# dimfix: ignore': go on, record nothing
        shown = "x".join(map(str, dims))
        where = f"{name} in {frame.f_code.co_name}() line {frame.f_lineno}"  # one per call
        m = Mismatch(where, "View", f"Tensor.{name}", "size",
                     size, per_sample, f"{shown} flattens to {per_sample} per sample",
                     site, PARAMS, dims[1:])
        self.found.append((m, Construction(m.layer_path, size, per_sample, site, "size",
                                           m.kind, PARAMS) if site else None))
        return (lead, per_sample)

    @property
    def mismatches(self) -> List[Mismatch]:
        return [m for m, _ in self.found]

    @property
    def constructions(self) -> List[Construction]:
        return [c for _, c in self.found if c is not None]
