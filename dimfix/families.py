"""Layer families: one declarative entry each, saying how to read the size that
arrives, the size the layer declares, and how to resize the live layer.

A module belongs to a family when it is an instance of the family's class and
does not override its ``forward`` (a subclass that normalizes over other
dimensions must not be judged by the base class's rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd

Resize = Callable[[nn.Module, int], str]


@dataclass(frozen=True)
class Family:
    name: str
    classes: Tuple[type, ...]
    arg: str  # the constructor parameter holding the input size
    observe: Callable[[nn.Module, torch.Tensor], Optional[int]]
    resize: Resize  # returns a note when one argument cannot express the fix
    out_arg: Optional[str] = None  # the parameter holding the output size
    out_dim: int = -1  # where that size shows in the output tensor
    resize_out: Optional[Resize] = None

    def declared(self, module: nn.Module) -> int:
        return int(getattr(module, self.arg))

    def declared_out(self, module: nn.Module) -> int:
        return int(getattr(module, self.out_arg))


def _fresh(like: torch.Tensor, shape) -> torch.Tensor:
    # torch.zeros on meta would load torch's Python meta kernels (about 1.3 s);
    # torch.empty does not, and meta tensors hold no values anyway.
    make = torch.empty if like.device.type == "meta" else torch.zeros
    return make(tuple(shape), dtype=like.dtype, device=like.device)


def _replace(module: nn.Module, name: str, shape) -> None:
    old = getattr(module, name, None)
    if old is None:
        return
    new = _fresh(old, shape)
    if isinstance(old, nn.Parameter):
        new = nn.Parameter(new, requires_grad=old.requires_grad)
    setattr(module, name, new)


# Linear ---------------------------------------------------------------------


def _linear_observe(m, x):
    return int(x.shape[-1]) if x.dim() >= 1 else None


def _linear_resize(m, size):
    _replace(m, "weight", (m.out_features, size))
    m.in_features = size
    return ""


def _linear_resize_out(m, size):
    _replace(m, "weight", (size, m.in_features))
    _replace(m, "bias", (size,))
    m.out_features = size
    return ""


# Convolutions -----------------------------------------------------------------


def _channels(m, x):
    spatial = len(m.kernel_size)
    if x.dim() == spatial + 2:
        return int(x.shape[1])
    if x.dim() == spatial + 1:  # unbatched
        return int(x.shape[0])
    return None


def _new_groups(m, size) -> Tuple[int, str]:
    groups = m.groups
    if groups == 1 or size % groups == 0:
        if groups > 1 and groups == m.in_channels and m.out_channels % size == 0:
            return size, f"groups {groups} -> {size} as well (depthwise)"
        return groups, ""
    if groups == m.in_channels and m.out_channels % size == 0:
        return size, f"groups {groups} -> {size} as well (depthwise)"
    return 1, f"{size} channels cannot be split into groups={groups}"


def _conv_resize(m, size):
    groups, note = _new_groups(m, size)
    _replace(m, "weight", (m.out_channels, size // groups, *m.kernel_size))
    m.in_channels, m.groups = size, groups
    return note


def _conv_resize_out(m, size):
    _replace(m, "weight", (size, m.in_channels // m.groups, *m.kernel_size))
    _replace(m, "bias", (size,))
    m.out_channels = size
    return "" if size % m.groups == 0 else f"{size} outputs and groups={m.groups}"


def _conv_transpose_resize(m, size):
    groups, note = _new_groups(m, size)
    _replace(m, "weight", (size, m.out_channels // groups, *m.kernel_size))
    m.in_channels, m.groups = size, groups
    return note


# Batch norm -----------------------------------------------------------------


def _batchnorm_observe(m, x):
    return int(x.shape[1]) if x.dim() >= 2 else None


def _batchnorm_resize(m, size):
    for name in ("weight", "bias", "running_mean", "running_var"):
        _replace(m, name, (size,))
    m.num_features = size
    return ""


FAMILIES: Dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "Linear",
            (nn.Linear,),
            "in_features",
            _linear_observe,
            _linear_resize,
            "out_features",
            -1,
            _linear_resize_out,
        ),
        Family(
            "Conv",
            (nn.Conv1d, nn.Conv2d, nn.Conv3d),
            "in_channels",
            _channels,
            _conv_resize,
            "out_channels",
            1,
            _conv_resize_out,
        ),
        Family(
            "ConvTranspose",
            (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d),
            "in_channels",
            _channels,
            _conv_transpose_resize,
        ),
        Family(
            "BatchNorm",
            (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d),
            "num_features",
            _batchnorm_observe,
            _batchnorm_resize,
        ),
    )
}

_BY_TYPE: Dict[type, Optional[Family]] = {}


def family_of(module: nn.Module) -> Optional[Family]:
    """The family whose rule applies to ``module``, or None."""
    kind = type(module)
    if kind in _BY_TYPE:
        return _BY_TYPE[kind]
    found = None
    for family in FAMILIES.values():
        for base in family.classes:
            if issubclass(kind, base) and kind.forward is base.forward:
                found = family
                break
        if found:
            break
    _BY_TYPE[kind] = found
    return found


# Keep the private bases referenced: subclasses of these outside the listed
# classes (e.g. LazyConv2d before it materializes) are not judged.
_ = (_BatchNorm, _ConvNd, _ConvTransposeNd)
