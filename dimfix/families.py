"""Layer families: one declarative entry each.

A family lists its *checks* — a constructor argument, how to read the size
that arrives for it, and how to read the size the layer declares — and how to
resize a live layer so the trace can go on. Most families resize by *rebuild*:
the layer's own ``__init__`` is called again, on a fresh object, with the
arguments recorded when the model was built and the wrong ones changed; the
fresh object's state then replaces the old one's. Linear, convolutions and
batch norm are resized directly, which needs no recorded arguments.

A module belongs to a family when it is an instance of one of the family's
classes and does not override its ``forward`` (a subclass that normalizes over
other dimensions must not be judged by the base class's rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter

Size = Union[int, Tuple[int, ...]]
Changes = Dict[str, Size]
# A resize returns the arguments it changed (the checks' and any that had to
# follow, such as a depthwise conv's groups) and a note when the fix cannot be
# written as those arguments alone ("" otherwise).
Resize = Callable[[nn.Module, Changes, "Rebuild"], Tuple[Changes, str]]
Rebuild = Callable[[nn.Module, Changes], None]


@dataclass(frozen=True)
class Check:
    arg: str  # the constructor parameter
    observe: Callable[[nn.Module, tuple], Optional[Size]]  # from the forward's args
    declared: Callable[[nn.Module], Size]
    input: int = 0  # which forward argument it reads


@dataclass(frozen=True)
class Family:
    name: str
    classes: Tuple[type, ...]
    checks: Tuple[Check, ...]
    resize: Resize
    out_arg: Optional[str] = None  # the parameter holding the output size
    out_dim: int = -1  # where that size shows in the output tensor
    resize_out: Optional[Callable[[nn.Module, int], str]] = None
    # The output has the width of the input its check reads (a norm): the
    # layer that made that input made the width after it too.
    keeps: bool = False

    def declared_out(self, module: nn.Module) -> int:
        return int(getattr(module, self.out_arg))


# -- reading sizes ---------------------------------------------------------------------


def _attr(name: str) -> Callable[[nn.Module], Size]:
    return lambda m: getattr(m, name)


def _last(i: int = 0) -> Callable[[nn.Module, tuple], Optional[int]]:
    """The last dimension of forward argument ``i``."""

    def observe(m, args):
        x = args[i] if len(args) > i else None
        return int(x.shape[-1]) if isinstance(x, torch.Tensor) and x.dim() >= 1 else None

    return observe


def _channels(spatial: Callable[[nn.Module], int]) -> Callable[[nn.Module, tuple], Optional[int]]:
    """The channel dimension of a (N, C, *spatial) or unbatched (C, *spatial) input."""

    def observe(m, args):
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor):
            return None
        n = spatial(m)
        if x.dim() == n + 2:
            return int(x.shape[1])
        if x.dim() == n + 1:
            return int(x.shape[0])
        return None

    return observe


def _dim1(m, args):
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        return None
    return int(x.shape[1]) if x.dim() >= 2 else int(x.shape[0])


def _trailing(m, args):
    """LayerNorm: the trailing dimensions, as many as it normalizes over."""
    x = args[0] if args else None
    n = len(m.normalized_shape)
    if not isinstance(x, torch.Tensor) or x.dim() < n:
        return None
    shape = tuple(int(s) for s in x.shape[x.dim() - n:])
    return shape[0] if n == 1 else shape


def _layer_norm_declared(m):
    shape = tuple(m.normalized_shape)
    return shape[0] if len(shape) == 1 else shape


# -- resizing ------------------------------------------------------------------------------


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


def _linear_resize(m, changes, rebuild):
    size = changes["in_features"]
    _replace(m, "weight", (m.out_features, size))
    m.in_features = size
    return changes, ""


def _linear_resize_out(m, size):
    _replace(m, "weight", (size, m.in_features))
    _replace(m, "bias", (size,))
    m.out_features = size
    return ""


def _conv_resize(m, changes, rebuild):
    """New in_channels; a depthwise conv's groups (and out_channels) follow it."""
    size = changes["in_channels"]
    groups, out, note = m.groups, m.out_channels, ""
    changed: Changes = {"in_channels": size}
    if groups > 1 and groups == m.in_channels:  # depthwise: one group per channel
        # ``Conv2d(c, c, 3, groups=c)``: out follows; a separate out size that
        # the new groups still divide (PiT's pooling, 96 -> 192) stays.
        multiplier = m.out_channels // m.groups
        groups = size
        out = m.out_channels if multiplier > 1 and m.out_channels % size == 0 else size * multiplier
        changed["groups"] = groups
        if out != m.out_channels:
            changed["out_channels"] = out
    elif size % groups:
        note = f"{size} channels cannot be split into groups={groups}"
        groups = 1
    transposed = getattr(m, "transposed", False)
    shape = (size, out // groups) if transposed else (out, size // groups)
    _replace(m, "weight", (*shape, *m.kernel_size))
    _replace(m, "bias", (out,))
    m.in_channels, m.out_channels, m.groups = size, out, groups
    return changed, note


def _conv_resize_out(m, size):
    _replace(m, "weight", (size, m.in_channels // m.groups, *m.kernel_size))
    _replace(m, "bias", (size,))
    m.out_channels = size
    return "" if size % m.groups == 0 else f"{size} outputs and groups={m.groups}"


def _batchnorm_resize(m, changes, rebuild):
    size = changes["num_features"]
    for name in ("weight", "bias", "running_mean", "running_var"):
        _replace(m, name, (size,))
    m.num_features = size
    return changes, ""


def _rebuild(m, changes, rebuild):
    rebuild(m, changes)
    return changes, ""


def _divisible_by(parts_of: Callable[[nn.Module], int], parts_arg: str, arg: str) -> Resize:
    """Rebuild, unless the new size breaks ``size % heads == 0`` (or groups)."""

    def resize(m, changes, rebuild):
        parts, size = parts_of(m), changes[arg]
        if size % parts:
            # Go on with a single head/group, and say why one edit cannot fix it.
            rebuild(m, {**changes, parts_arg: 1})
            return changes, f"{parts_arg}={parts} does not divide the new {arg} {size}"
        rebuild(m, changes)
        return changes, ""

    return resize


def _attention_resize(m, changes, rebuild):
    """Self-attention declares kdim/vdim as embed_dim unless given: change them
    only where they were given apart."""
    changes = dict(changes)
    embed = changes.get("embed_dim", m.embed_dim)
    for arg in ("kdim", "vdim"):
        if arg in changes and getattr(m, arg) == m.embed_dim and changes[arg] == embed:
            del changes[arg]
    if not changes:
        return changes, ""
    if "embed_dim" in changes:
        return _divisible_by(lambda mod: mod.num_heads, "num_heads", "embed_dim")(m, changes, rebuild)
    return _rebuild(m, changes, rebuild)


def _transformer_heads(m) -> int:
    if isinstance(m, nn.Transformer):
        return m.nhead
    return m.self_attn.num_heads


def _d_model(m) -> int:
    if isinstance(m, nn.Transformer):
        return m.d_model
    return m.self_attn.embed_dim


# -- the families ----------------------------------------------------------------------------


def _spatial(m) -> int:
    return len(m.kernel_size)


def _instance_spatial(m) -> int:
    return m._get_no_batch_dim() - 1  # (C, *spatial) without the batch


_RNN = (nn.LSTM, nn.GRU, nn.RNN)
_RMS_NORM = (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()  # torch >= 2.4
_CELLS = (nn.LSTMCell, nn.GRUCell, nn.RNNCell)

FAMILIES: Dict[str, Family] = {
    f.name: f
    for f in (
        Family("Linear", (nn.Linear,), (Check("in_features", _last(), _attr("in_features")),),
               _linear_resize, "out_features", -1, _linear_resize_out),
        Family("Conv", (nn.Conv1d, nn.Conv2d, nn.Conv3d),
               (Check("in_channels", _channels(_spatial), _attr("in_channels")),),
               _conv_resize, "out_channels", 1, _conv_resize_out),
        Family("ConvTranspose", (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d),
               (Check("in_channels", _channels(_spatial), _attr("in_channels")),), _conv_resize),
        Family("BatchNorm", (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d),
               (Check("num_features", _dim1, _attr("num_features")),), _batchnorm_resize,
               keeps=True),
        Family("InstanceNorm", (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d),
               (Check("num_features", _channels(_instance_spatial), _attr("num_features")),),
               _rebuild, keeps=True),
        Family("GroupNorm", (nn.GroupNorm,), (Check("num_channels", _dim1, _attr("num_channels")),),
               _divisible_by(lambda m: m.num_groups, "num_groups", "num_channels"),
               keeps=True),
        Family("LayerNorm", (nn.LayerNorm,) + _RMS_NORM,
               (Check("normalized_shape", _trailing, _layer_norm_declared),), _rebuild,
               keeps=True),
        Family("PReLU", (nn.PReLU,), (Check("num_parameters", _dim1, _attr("num_parameters")),),
               lambda m, c, r: _rebuild(m, c, r) if m.num_parameters != 1 else ({}, ""),
               keeps=True),
        Family("Bilinear", (nn.Bilinear,),
               (Check("in1_features", _last(0), _attr("in1_features")),
                Check("in2_features", _last(1), _attr("in2_features"), 1)), _rebuild),
        Family("RNN", _RNN, (Check("input_size", _last(), _attr("input_size")),), _rebuild),
        Family("RNNCell", _CELLS, (Check("input_size", _last(), _attr("input_size")),), _rebuild),
        Family("MultiheadAttention", (nn.MultiheadAttention,),
               (Check("embed_dim", _last(0), _attr("embed_dim")),
                Check("kdim", _last(1), _attr("kdim"), 1),
                Check("vdim", _last(2), _attr("vdim"), 2)), _attention_resize),
        Family("Transformer",
               (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.Transformer),
               (Check("d_model", _last(0), _d_model),),
               _divisible_by(_transformer_heads, "nhead", "d_model")),
    )
}

_BY_TYPE: Dict[type, Optional[Family]] = {}


# The class names of the layers whose family keeps the width it is fed.
_KEEPS = frozenset(c.__name__ for f in FAMILIES.values() if f.keeps for c in f.classes)


def keeps_width(kind: str) -> bool:
    """Does the layer class named ``kind`` (a Construction's) put out the width
    it is fed, by its family (``BatchNorm2d``: yes; ``ConvTranspose2d``: no)?"""
    return kind in _KEEPS


def family_of(module: nn.Module) -> Optional[Family]:
    """The family whose rule applies to ``module``, or None."""
    kind = type(module)
    if kind in _BY_TYPE:
        return _BY_TYPE[kind]
    found = None
    if issubclass(kind, LazyModuleMixin):
        _BY_TYPE[kind] = None  # sizes are inferred from the input: nothing to check
        return None
    for family in FAMILIES.values():
        for base in family.classes:
            if issubclass(kind, base) and kind.forward is base.forward:
                found = family
                break
        if found:
            break
    _BY_TYPE[kind] = found
    return found


def overridden_family(module: nn.Module) -> Optional[Family]:
    """The family ``module`` subclasses while overriding its ``forward``, or
    PER_FEATURE for a layer that only looks like a norm; else None."""
    kind = type(module)
    if kind in _OVERRIDDEN:
        found = _OVERRIDDEN[kind]
    else:
        found = None
        if family_of(module) is None and not issubclass(kind, LazyModuleMixin):
            found = next((f for f in FAMILIES.values()
                          if any(issubclass(kind, base) for base in f.classes)), None)
        _OVERRIDDEN[kind] = found
    if found is None and not issubclass(kind, LazyModuleMixin):
        if _per_feature_size(module):
            return PER_FEATURE
        if _own_weights(module):
            return WEIGHTED
    return found


def _own_weights(module: nn.Module) -> bool:
    """A layer of the user's (or another library's) own that holds a weight
    matrix and no parameters in submodules: a GCN layer's ``self.weight =
    nn.Parameter(torch.FloatTensor(in_features, out_features))`` used by
    ``torch.mm``, a noisy linear layer's ``weight_mu`` used by ``F.linear``.
    torch's own layers (``nn.Embedding``) are families or read no size."""
    if type(module).__module__.split(".")[0] == "torch":
        return False
    own = list(module.parameters(recurse=False))
    if any(isinstance(p, UninitializedParameter) for p in own) or not any(p.dim() >= 2 for p in own):
        return False
    return all(next(c.parameters(), None) is None for c in module.children())


def _per_feature_size(module: nn.Module) -> Optional[int]:
    """The length of a leaf layer's parameters when they are all one vector of
    the same length: timm's ``RmsNorm``, a LLaMA ``RMSNorm(dim)`` holding
    ``self.weight = nn.Parameter(torch.ones(dim))``, a ``LayerScale``. Such a
    layer subclasses no torch norm, so only its own forward can say which
    dimension it reads; it is probed like a subclass that overrides forward."""
    if next(module.children(), None) is not None:
        return None
    params = list(module.parameters(recurse=False))
    if any(isinstance(p, UninitializedParameter) for p in params):
        return None
    sizes = {tuple(p.shape) for p in params}
    if len(sizes) != 1:
        return None
    (shape,) = sizes
    return int(shape[0]) if len(shape) == 1 else None


# Not a key of FAMILIES: no layer belongs to it by class, and it is only probed.
PER_FEATURE = Family("PerFeature", (), (Check("size", lambda m, args: None, _per_feature_size),),
                     lambda m, changes, rebuild: ({}, ""))


# Not a key of FAMILIES either: layers with weights of their own, probed by
# the constructor arguments that size those weights (probe.probe_weights).
WEIGHTED = Family("Weights", (), (Check("size", lambda m, args: None, lambda m: None),),
                  lambda m, changes, rebuild: ({}, ""))


_OVERRIDDEN: Dict[type, Optional[Family]] = {}


def declared(family: Family, module: nn.Module, arg: str) -> Size:
    """What ``module`` declares for constructor argument ``arg`` right now."""
    for check in family.checks:
        if check.arg == arg:
            return check.declared(module)
    return getattr(module, arg)


def all_args(family: Family) -> Tuple[str, ...]:
    """Every constructor argument the family may change."""
    extra = ("groups", "out_channels") if family.name in ("Conv", "ConvTranspose") else ()
    out = (family.out_arg,) if family.out_arg and family.out_arg not in extra else ()
    return tuple(c.arg for c in family.checks) + extra + out
