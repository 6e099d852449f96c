"""An elementwise op that raised after a layer put out the wrong width: a
residual add ``out += identity`` behind ``conv2 = nn.Conv2d(planes, planes // 2)``
raises ``The size of tensor a (32) must match the size of tensor b (64)``, and no
layer ever received a size it did not declare.

While the forward runs, the arithmetic dunders of ``torch.Tensor`` (``+``,
``-``, ``*`` and their in-place forms) and ``torch.add``/``torch.mul`` are
watched: when one raises, its two operands are kept. The tracer then blames
the operand a layer of the raising module made (the other being, typically,
that module's input) and asks that layer for the other operand's size. A
``view``/``reshape`` that raises (``q.view(b, n, heads, dim_head)`` after a
``to_q`` built with the wrong width) asks the layer that made the tensor for
the size the view needs (``demanded``).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Tuple

import torch

DUNDERS = ("__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__isub__",
           "__mul__", "__rmul__", "__imul__")
FUNCTIONS = ("add", "mul", "sub")
VIEWS = ("view", "reshape")


class Operands:
    """The operands of the last elementwise op that raised, while watching."""

    def __init__(self) -> None:
        # The last op that raised: ("+", a, b) for arithmetic, ("view", tensor,
        # shape) for a view or reshape.
        self.last: Optional[Tuple[str, torch.Tensor, object]] = None

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        self.last = None
        own = {name: torch.Tensor.__dict__.get(name) for name in DUNDERS + VIEWS}
        funcs = {name: torch.__dict__[name] for name in FUNCTIONS if name in torch.__dict__}
        for name in DUNDERS:
            setattr(torch.Tensor, name, self._wrap(getattr(torch.Tensor, name), name))
        for name in VIEWS:
            setattr(torch.Tensor, name, self._wrap_view(getattr(torch.Tensor, name), name))
        for name, fn in funcs.items():
            setattr(torch, name, self._wrap(fn, name))
        try:
            yield
        finally:
            for name, method in own.items():  # restored exactly, as views.py does
                if method is None:
                    delattr(torch.Tensor, name)
                else:
                    setattr(torch.Tensor, name, method)
            for name, fn in funcs.items():
                setattr(torch, name, fn)

    def _wrap(self, method, name: str):
        watcher = self
        symbol = _SYMBOLS[name.strip("_").lstrip("ri")[:3]]

        def op(a, b, *args, **kwargs):
            try:
                return method(a, b, *args, **kwargs)
            except RuntimeError:
                if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
                    watcher.last = (symbol, a, b)
                raise

        return op


    def _wrap_view(self, method, name: str):
        watcher = self

        def view(tensor, *shape, **kwargs):
            try:
                return method(tensor, *shape, **kwargs)
            except RuntimeError:
                dims = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
                if all(type(d) is int for d in dims) and not kwargs:
                    watcher.last = (name, tensor, tuple(dims))
                raise

        return view


_SYMBOLS = {"add": "+", "sub": "-", "mul": "*"}


def demanded(shape: Tuple[int, ...], target: Tuple[int, ...]) -> Optional[Tuple[int, int]]:
    """The dimension of ``shape`` a view to ``target`` needs changed, and to
    what, when that is one dimension: ``(2, 16, 384) -> (2, 16, 8, 64)`` needs
    dim 2 to be 512; ``(2, 20, 5, 5) -> (2, 16, 5, 5)`` dim 1 to be 16. The
    dimensions before and after it must agree; a -1 leaves it open."""
    if -1 in target:
        return None
    head = 0
    while head < min(len(shape), len(target)) and shape[head] == target[head]:
        head += 1
    tail = 0
    while tail < min(len(shape), len(target)) - head and shape[-1 - tail] == target[-1 - tail]:
        tail += 1
    rest = shape[head:len(shape) - tail]
    wanted = target[head:len(target) - tail]
    if len(rest) != 1 or not wanted:
        return None
    size = 1
    for d in wanted:
        size *= d
    return (head, size) if size != rest[0] else None


def differing(a: torch.Tensor, b: torch.Tensor) -> Optional[Tuple[int, int, int]]:
    """The dimension (counted from the right, negative) where ``a`` and ``b``
    do not broadcast, with each one's size there; None when they do."""
    for dim in range(-1, -min(a.dim(), b.dim()) - 1, -1):
        x, y = int(a.shape[dim]), int(b.shape[dim])
        if x != y and x != 1 and y != 1:
            return dim, x, y
    return None
