"""Which layer made each tensor: the tracer's memory of provenance (a mixin of
trace._Tracer).

A size that arrives wrong is blamed on the size argument that made it: a
layer's out size, a norm's own size, an embedding's width, through layers that
keep the shape (an activation, a container), a ``torch.cat`` of several makers'
outputs, a permute or transpose that moves the width, and a functional op
(``F.linear``, ``F.conv2d``) fed a layer's weight. The trace's forward hooks and
the watchers below record it; the checks read it.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from typing import Optional, Tuple

import torch
from torch import nn

from dimfix.families import family_of
from dimfix.views import tensor_methods_wrapped

SIZED_BY = {nn.Embedding: "embedding_dim", nn.EmbeddingBag: "embedding_dim"}
REORDER = ("permute", "transpose", "contiguous")


_FUNCTIONAL = ("linear", "conv1d", "conv2d", "conv3d")


def _fits(input, weight, module) -> bool:
    """Whether ``input``'s feature dimension is what ``module``'s ``weight``
    takes (linear: the last; conv: the channels, all groups together)."""
    if weight.dim() == 2:
        return input.dim() >= 1 and input.shape[-1] == weight.shape[1]
    spatial = weight.dim() - 2
    if input.dim() <= spatial:
        return True  # not a batch this check can read: the op says
    channels = input.shape[-spatial - 1]
    return channels == getattr(module, "in_channels", channels)


class Provenance:
    """The tracer's part that remembers what made each tensor."""

    def _remember_maker(self, module, family, args, output, out: Optional[str] = None) -> None:
        """Note which size argument made ``output``: a layer's out size, a norm's
        own size, or, through a layer that keeps the shape (an activation, a
        container), what made its input. The innermost layer wins."""
        hit = self.made.get(id(output))
        if hit is not None and hit[0]() is output:
            return
        self._remember_width(module, family, args, output, out)
        if out:
            maker = (self._path(module), out)
        elif family is not None:
            arg = family.out_arg or (family.checks[0].arg if family.checks else None)
            if arg is None:
                return
            maker = (self._path(module), arg)
        elif type(module) in SIZED_BY:
            maker = (self._path(module), SIZED_BY[type(module)])
        else:
            x = args[0] if args and isinstance(args[0], torch.Tensor) else None
            before = self.made.get(id(x)) if x is not None else None
            if before is None or before[0]() is not x or x.dim() != output.dim() \
                    or x.shape[:2] != output.shape[:2]:
                return  # kept: an activation, a residual block, a pool keeping channels
            maker = before[1]
        self.made[id(output)] = (weakref.ref(output), maker)
        self.makers.append((tuple(output.shape), maker))

    def _remember_width(self, module, family, args, output, out: Optional[str]) -> None:
        """Note the layer with an out size that made ``output``'s width, through
        layers that keep the shape (``bn2(conv2(x))``: conv2)."""
        arg = out or (family.out_arg if family is not None else SIZED_BY.get(type(module)))
        if arg:
            self.widths[id(output)] = (weakref.ref(output), module, arg)
            return
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        hit = self.widths.get(id(x)) if x is not None else None
        if hit is not None and hit[0]() is x and x.shape == output.shape:
            self.widths[id(output)] = (weakref.ref(output), hit[1], hit[2])

    def _last_axis_maker(self, tensor, size: int) -> str:
        """The path of the layer that made ``tensor``, through layers that keep
        its shape, with its width ``size`` on the last axis (an Embedding's, a
        Linear's output); "" when no layer did."""
        hit = self.widths.get(id(tensor)) if isinstance(tensor, torch.Tensor) else None
        if hit is None or hit[0]() is not tensor or tensor.dim() < 3:
            return ""
        layer, arg = hit[1], hit[2]
        family = family_of(layer)
        out_dim = family.out_dim if family is not None else -1
        if out_dim % tensor.dim() != tensor.dim() - 1 or getattr(layer, arg, None) != size:
            return ""
        return self._path(layer)

    def _width_maker(self, tensor, scope: str, dim: int) -> Optional[Tuple[nn.Module, str]]:
        """The layer with an out size, inside the module at ``scope``, that made
        ``tensor``'s width at ``dim``: as remembered, else the last one there
        whose output had ``tensor``'s shape (a functional op came between)."""
        inside = (lambda p: True) if scope == "<model>" else (lambda p: p.startswith(scope + "."))
        hit = self.widths.get(id(tensor))
        if hit is not None and hit[0]() is tensor:
            found = (hit[1], hit[2])
        else:
            layers = dict(self.model.named_modules())
            found = None
            for shape, (path, arg) in reversed(self.makers):
                layer = layers.get(path)
                family = family_of(layer) if layer is not None else None
                out = family.out_arg if family is not None else self.out_args.get(id(layer), ("",))[0]
                if shape == tuple(tensor.shape) and arg == out:
                    found = (layer, arg)
                    break
        if found is None or not inside(self._path(found[0])):
            return None
        family = family_of(found[0])
        out_dim = family.out_dim if family is not None else -1
        return found if out_dim % tensor.dim() == dim % tensor.dim() else None

    def _maker(self, x, size: int) -> Tuple[str, ...]:
        """What made ``x``; else (a functional op came between: ``torch.flatten``)
        the last layer that put out ``size`` features."""
        hit = self.made.get(id(x)) if isinstance(x, torch.Tensor) else None
        if hit is not None and hit[0]() is x:
            return hit[1]
        moved = self.reordered.get(id(x)) if isinstance(x, torch.Tensor) else None
        if moved is not None and moved[0]() is x and moved[2] == size:
            return moved[1]
        for shape, maker in reversed(self.makers):
            if len(shape) >= 2 and size in (shape[1], shape[-1]):
                return maker
        return ()

    def _factors(self, x) -> Tuple[int, ...]:
        """C, H, W of the tensor that was flattened into ``x``, if one was."""
        if x.dim() != 2:
            return ()
        batch, features = x.shape
        for shape in reversed(self.recent):
            if len(shape) >= 3 and shape[0] == batch and math.prod(shape[1:]) == features:
                return tuple(shape[1:])
        return ()

    # -- the classifier head ----------------------------------------------------

    def _parts(self, tensor, size) -> Tuple[Tuple[int, ...], ...]:
        """The sizes concatenated into ``tensor``'s dimension of ``size``, if it was
        made by torch.cat: ``HIDDEN * 2`` is then the structure, not a guess; the
        blocks each part is made of (2 for a bidirectional RNN's output), and
        the RNN that made each such part."""
        hit = self.cats.get(id(tensor)) if isinstance(tensor, torch.Tensor) else None
        if hit is None or hit[0]() is not tensor or sum(hit[1]) != size:
            # A bidirectional RNN's output, or a view of it, read directly: one
            # part of two directions (``hidden_dim * 2``).
            k, rnn = self._directions(tensor, -1) if isinstance(tensor, torch.Tensor) else (1, "")
            return ((size,), (k,), (rnn,)) if k > 1 and tensor.shape[-1] == size else ((), (), ())
        return hit[1], hit[2], hit[3]

    @contextlib.contextmanager
    def _watching_cat(self):
        """Remember, weakly, the part sizes along the joined dimension of each cat;
        and the shape of each tensor ``torch.flatten`` flattens (the factors of
        the Linear after it, whatever pooled it: ``F.max_pool2d`` leaves no trace)."""
        tracer = self
        own = {name: torch.__dict__[name] for name in ("cat", "concat", "flatten")
               if name in torch.__dict__}

        def flatten(fn):
            def flattened(tensor, *args, **kwargs):
                if isinstance(tensor, torch.Tensor):
                    tracer.recent.append(tuple(tensor.shape))  # what Linear factors read
                return fn(tensor, *args, **kwargs)

            return flattened

        def wrap(fn):
            def cat(tensors, *args, **kwargs):
                out = fn(tensors, *args, **kwargs)
                try:
                    dim = kwargs.get("dim", args[0] if args else 0)
                    parts = tuple(int(t.shape[dim]) for t in tensors)
                    made = [tracer._directions(t, dim) for t in tensors]
                    tracer.cats[id(out)] = (weakref.ref(out), parts, tuple(k for k, _ in made),
                                            tuple(rnn for _, rnn in made))
                except Exception:  # an unusual call: nothing to remember
                    pass
                return out

            return cat

        for name, fn in own.items():
            setattr(torch, name, wrap(fn) if name != "flatten" else flatten(fn))
        try:
            yield
        finally:
            for name, fn in own.items():
                setattr(torch, name, fn)

    @contextlib.contextmanager
    def _watching_reorder(self):
        """A permuted or transposed copy of a tensor a layer made (and that
        copy made contiguous) was made by that layer too, its width (the
        last dimension) moved: ``embedded.permute(0, 2, 1)`` into each
        ``Conv1d`` of a list reads the embedding's ``embedding_dim``."""
        tracer = self

        def wrap(method, name):
            def reordered(tensor, *args, **kwargs):
                out = method(tensor, *args, **kwargs)
                if out is not tensor and isinstance(out, torch.Tensor) and out.dim() >= 2:
                    hit = tracer.made.get(id(tensor))
                    moved = tracer.reordered.get(id(tensor))
                    if hit is not None and hit[0]() is tensor:
                        width = int(tensor.shape[-1])
                        tracer.reordered[id(out)] = (weakref.ref(out), hit[1], width)
                    elif moved is not None and moved[0]() is tensor:
                        tracer.reordered[id(out)] = (weakref.ref(out), moved[1], moved[2])
                return out

            return reordered

        with tensor_methods_wrapped(REORDER, wrap):
            yield

    @contextlib.contextmanager
    def _watching_functional(self):
        """A layer whose weight is used without calling the layer
        (``F.linear(x, self.qkv.weight)``, as Swin's attention does): checked
        as if called, and resized the same way, when the weight does not fit."""
        tracer = self
        functional = torch.nn.functional
        own = {name: functional.__dict__[name] for name in _FUNCTIONAL if name in functional.__dict__}
        owners = {}
        for module in self.model.modules():
            weight = module._parameters.get("weight")
            if weight is not None and family_of(module) is not None:
                owners[id(weight)] = module

        def wrap(fn):
            def checked(input, weight, bias=None, *args, **kwargs):
                module = owners.get(id(weight))
                if module is not None and module._parameters.get("weight") is weight \
                        and isinstance(input, torch.Tensor) and not _fits(input, weight, module):
                    old_bias = module._parameters.get("bias")
                    tracer._pre_hook(module, (input,))
                    if module._parameters.get("weight") is not weight:
                        weight = module.weight
                        bias = module._parameters.get("bias") if bias is old_bias else bias
                return fn(input, weight, bias, *args, **kwargs)

            return checked

        for name, fn in own.items():
            setattr(functional, name, wrap(fn))
        try:
            yield
        finally:
            for name, fn in own.items():
                setattr(functional, name, fn)

    def _directions(self, tensor, dim: int) -> Tuple[int, str]:
        """(2, the RNN's path) when ``tensor`` is a bidirectional RNN's output
        joined along its last dimension (forward and backward directions),
        else (1, "")."""
        if dim % tensor.dim() != tensor.dim() - 1:
            return 1, ""
        for t in (tensor, tensor._base):
            hit = self.directions.get(id(t)) if t is not None else None
            if hit is not None and hit[0]() is t:
                return hit[1], hit[2]
        return 1, ""
