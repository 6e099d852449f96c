"""Layers that subclass a known family but override ``forward`` (timm's
``LayerNorm2d``, ``GroupNorm1``, ``BatchNormAct2d``, a user's
``ChannelsFirstLayerNorm``), and layers with weights of their own (a GCN
layer, a noisy linear layer): no family rule can say which dimension they
read, so they are asked. The layer runs its own forward on the arriving tensor; if
that fails, it is rebuilt with its size set to each dimension of the tensor in
turn, and the one size with which its own forward runs is the size it needs.
Two working sizes, or none, are reported, never guessed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.nn.modules import module as module_hooks

from dimfix.families import Family

InitFrames = List[Tuple[object, Dict[str, object]]]


@dataclass(frozen=True)
class Probe:
    arg: str  # the parameter of the layer's own constructor that holds the size
    declared: int
    runs: bool  # its forward runs with the size it declares
    working: Tuple[int, ...] = ()  # else, the sizes it runs with
    fresh: Optional[nn.Module] = None  # the layer rebuilt with the first of them


def probe(module: nn.Module, family: Family, args: tuple, inits: InitFrames,
          build: Callable[[nn.Module, Dict[str, object]], nn.Module]) -> Optional[Probe]:
    """Ask ``module`` which size of ``family``'s first argument it needs."""
    declared = family.checks[0].declared(module)
    if type(declared) is not int or not inits or not args or not isinstance(args[0], torch.Tensor):
        return None
    # The user's call names the size by the subclass's own parameter
    # (LayerNorm2d(num_channels)), not the base's (normalized_shape).
    outer = inits[-1][1]
    names = [k for k, v in outer.items() if type(v) is int and v == declared]
    if len(names) != 1:
        return None
    arg = names[0]
    if runs(module, args):
        return Probe(arg, declared, True)
    x = args[0]
    sizes = sorted({int(d) for d in x.shape[1:]} - {declared})
    working, fresh = [], None
    for size in sizes:
        try:
            candidate = build(module, {arg: size})
        except Exception:  # this size cannot even be built (groups do not divide)
            continue
        if runs(candidate, args):
            working.append(size)
            fresh = fresh or candidate
    return Probe(arg, declared, False, tuple(working), fresh)


@dataclass(frozen=True)
class WeightProbe:
    """What a layer with weights of its own (families.WEIGHTED) needs."""

    sizes: Tuple[Tuple[str, int], ...]  # its constructor's size arguments, as declared
    runs: bool  # its forward runs as declared
    working: Tuple[Tuple[str, int], ...] = ()  # else, (argument, size) with which it runs
    fresh: Optional[nn.Module] = None  # the layer rebuilt with the first of them


def probe_weights(module: nn.Module, args: tuple, inits: InitFrames,
                  build: Callable[[nn.Module, Dict[str, object]], nn.Module]) -> Optional[WeightProbe]:
    """Ask a layer with weights of its own which sizes it needs: its size
    arguments are those of the user's call whose values size one of its weight
    matrices (``in_features``, ``out_features`` for ``torch.empty(out_features,
    in_features)``); if its forward does not run, each is set in turn to each
    dimension of the tensors it was given, and the changes with which it runs
    are the answer (the forward reads the weight as it reads it: ``F.linear``,
    ``torch.mm(input, self.weight)``, ``x @ self.W``)."""
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if not inits or not tensors:
        return None
    dims = {int(d) for p in module.parameters(recurse=False) if p.dim() >= 2 for d in p.shape}
    sizes = tuple((k, v) for k, v in inits[-1][1].items() if type(v) is int and v in dims and v > 1)
    if not sizes:
        return None
    if runs(module, args):
        return WeightProbe(sizes, True)
    seen = sorted({int(d) for t in tensors for d in (t.shape[1:] if t.dim() > 1 else t.shape)})
    working, fresh = [], None
    for arg, declared in sizes:
        for size in seen:
            if size == declared:
                continue
            try:
                candidate = build(module, {arg: size})
            except Exception:  # this size cannot even be built
                continue
            if runs(candidate, args):
                working.append((arg, size))
                fresh = fresh or candidate
    return WeightProbe(sizes, False, tuple(working), fresh)


def runs(module: nn.Module, args: tuple, kwargs: Optional[dict] = None) -> bool:
    """Does ``module``'s own forward run on ``args``, unseen by the tracer?"""
    try:
        with _hooks_off(), torch.no_grad():
            module(*args, **(kwargs or {}))
        return True
    except Exception:
        return False


@contextlib.contextmanager
def _hooks_off():
    """The tracer's global hooks must not see the trial calls."""
    saved = (dict(module_hooks._global_forward_pre_hooks),
             dict(module_hooks._global_forward_hooks))
    module_hooks._global_forward_pre_hooks.clear()
    module_hooks._global_forward_hooks.clear()
    try:
        yield
    finally:
        module_hooks._global_forward_pre_hooks.update(saved[0])
        module_hooks._global_forward_hooks.update(saved[1])
