"""Parameters and tables sized in ``__init__``: ViT's ``pos_embedding =
nn.Parameter(torch.randn(1, num_patches + 1, dim))``, a sin-cos table
``pe = torch.zeros(max_len, d_model)`` kept as a buffer. No layer family reads
them; the forward that uses one raises (``The size of tensor a (65) must match
the size of tensor b (17)``) when the configuration that sized it disagrees
with the input.

When the forward raised, the modules still running are asked, innermost first:
each tensor one of them holds that a factory call in user code made (sites.py
recorded the call) is given, in turn, each size the error names in place of
each of its dimensions, and the module's own forward is run again. If exactly
one such change lets it run, that dimension of that call is the size to fix:
it is traced back to where it is written like a layer's argument, and the
live tensor keeps its new shape so that the trace goes on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from dimfix.errors import first_line
from dimfix.probe import runs
from dimfix.sites import SiteBook, TensorOrigin, own_tensors

# Trials of one module: each is a run of its forward.
MAX_TRIALS = 32


@dataclass(frozen=True)
class Resized:
    """A tensor held by ``module`` as ``name``, resized so the forward runs."""

    module: nn.Module
    name: str
    origin: TensorOrigin
    dim: int  # the dimension of the tensor as held
    declared: int
    size: int
    message: str  # the error the forward raised with the old size

    @property
    def arg(self) -> str:
        made, dims = self.origin
        return made.arg(dims[self.dim])


def resize_table(running: Sequence[Tuple[nn.Module, tuple, dict]], book: SiteBook,
                 error: BaseException) -> Optional[Resized]:
    """The one tensor dimension whose change lets a running module's forward
    run, tried innermost module first; None if none or several would.
    ``running``: (module, args, kwargs) of each forward in progress, outermost
    first. The tensor found keeps its new shape in the live module."""
    message = first_line(error)
    sizes = sorted({int(n) for n in re.findall(r"\d+", message) if 1 < int(n) <= 2**31})
    if not sizes:
        return None
    for module, args, kwargs in reversed(running):
        found = _trials(module, args, kwargs, book, sizes, message)
        if len(found) == 1:
            hit = found[0]
            _swap(module, hit.name, hit.dim, hit.size)
            return hit
        if found:
            return None  # several would run: not a guess to make
    return None


def _trials(module, args, kwargs, book, sizes, message) -> List[Resized]:
    found: List[Resized] = []
    trials = 0
    for name, tensor in own_tensors(module):
        origin = book.tensor(module, name)
        if origin is None:
            continue
        for dim, declared in enumerate(int(d) for d in tensor.shape):
            if origin[1][dim] is None:
                continue  # a 1 added after the call (``unsqueeze``): not written there
            for size in sizes:
                if size == declared or trials >= MAX_TRIALS:
                    continue
                trials += 1
                old = _swap(module, name, dim, size)
                try:
                    if runs(module, args, kwargs):
                        found.append(Resized(module, name, origin, dim, declared, size, message))
                finally:
                    _put(module, name, old)
    return found


def _swap(module: nn.Module, name: str, dim: int, size: int) -> torch.Tensor:
    """Give ``module``'s tensor ``name`` ``size`` at ``dim``; the old tensor."""
    old = _get(module, name)
    shape = list(old.shape)
    shape[dim] = size
    make = torch.empty if old.device.type == "meta" else torch.zeros
    new = make(shape, dtype=old.dtype, device=old.device)
    if isinstance(old, nn.Parameter):
        new = nn.Parameter(new, requires_grad=old.requires_grad)
    _put(module, name, new)
    return old


def _get(module: nn.Module, name: str) -> torch.Tensor:
    for table in (module._parameters, module._buffers, vars(module)):
        if name in table:
            return table[name]
    raise KeyError(name)


def _put(module: nn.Module, name: str, tensor: torch.Tensor) -> None:
    for table in (module._parameters, module._buffers, vars(module)):
        if name in table:
            table[name] = tensor
            return

