"""Building the user's model: on meta without initializing weights, or on
CPU; sizes and limits for choosing where to trace."""

from __future__ import annotations

import contextlib
import mmap
from typing import Dict

import torch
from torch import nn
from torch.nn.parameter import is_lazy
from torch.overrides import TorchFunctionMode

from dimfix.errors import DimfixError, ModelRaised
from dimfix.load import described, user_frame
from dimfix.records import Options


_INITS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_",
          "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
          "orthogonal_", "sparse_")


# In-place ops that only write values into a tensor of the same shape, given
# numbers: how libraries initialize weights themselves (timm's trunc_normal_:
# uniform_, erfinv_, mul_, add_, clamp_; transformers' normal_, zero_, fill_).
_VALUE_OPS = frozenset({
    "uniform_", "normal_", "erfinv_", "clamp_", "clamp_min_", "clamp_max_", "clip_", "mul_",
    "add_", "sub_", "div_", "fill_", "zero_", "exponential_", "log_normal_", "cauchy_",
    "geometric_", "bernoulli_", "random_", "abs_", "neg_", "sqrt_", "exp_", "log_", "tanh_",
    "sigmoid_", "fmod_", "remainder_", "pow_", "floor_", "ceil_", "round_", "sign_"})


class _NoValues(TorchFunctionMode):
    """Those ops on a floating-point meta tensor, given numbers, do nothing: it
    has no values, and on meta each runs one of torch's Python reference
    kernels (~0.1 ms), most of building a timm ViT. What raised before still
    raises: torch's own checks of the arguments run first on one element on
    CPU, and if they refuse (``normal_(std=-1)``) the meta kernel runs as
    before and decides; an in-place op on a weight that requires grad outside
    ``no_grad`` (a leaf: it raises), on a tensor given as an argument, or on
    one that is not contiguous runs as before."""

    def __init__(self) -> None:
        super().__init__()
        self.probes: Dict[torch.dtype, torch.Tensor] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        t = args[0] if args else None
        if getattr(func, "__name__", None) in _VALUE_OPS and isinstance(t, torch.Tensor) \
                and t.is_meta and t.is_floating_point() and t.is_contiguous() \
                and not (t.requires_grad and torch.is_grad_enabled()) \
                and all(a is None or type(a) in _NUMBERS for a in (*args[1:], *kwargs.values())):
            probe = self.probes.get(t.dtype)
            if probe is None:
                probe = self.probes[t.dtype] = t.new_empty((1,), device="cpu")
            try:
                func(probe, *args[1:], **kwargs)
            except Exception:  # noqa: BLE001 - torch refused: the meta kernel has its say
                pass
            else:
                return t
        return func(*args, **kwargs)


_NUMBERS = (bool, int, float, torch.Generator)


@contextlib.contextmanager
def no_init():
    """Weights get no values while a model is built on meta: they do not
    exist, and nn.init.normal_ alone would import torch._dynamo (about 1 s)."""
    saved = {name: getattr(nn.init, name) for name in _INITS if hasattr(nn.init, name)}
    for name in saved:
        setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        with _NoValues():
            yield
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)


@contextlib.contextmanager
def threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build(target, options: Options, device: str) -> nn.Module:
    name = getattr(target, "__name__", "model")
    try:
        with torch.device(device):
            model = target(**options.init)
    except DimfixError:
        raise  # a timeout, say: not the model's own error
    except Exception as e:
        where, func = user_frame(e)
        raise ModelRaised(f"{func}building {name} raised {what(e)}", where) from e
    if not isinstance(model, nn.Module):
        raise ModelRaised(
            f"{name}() returned an object of type {type(model).__name__}, not an nn.Module"
        )
    unwrap(model)
    return model


def unwrap(model: nn.Module) -> None:
    """Take ``weight_norm``, ``spectral_norm`` and ``parametrize`` off every layer
    they wrap, leaving a plain weight of the shape they computed: they change
    no size, and a layer resized under them would be overwritten from the old
    ``weight_v``/``weight_orig`` by their hook before it runs. The layer is
    then its family's own class (``Conv2d``, not ``ParametrizedConv2d``), traced
    and resized as if written without the wrapper, in one pass."""
    from torch.nn.utils import parametrize
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    for module in list(model.modules()):
        for key, hook in list(module._forward_pre_hooks.items()):
            if isinstance(hook, (WeightNorm, SpectralNorm)):
                weight = getattr(module, hook.name)
                del module._forward_pre_hooks[key]
                for suffix in ("_g", "_v", "_orig", "_u"):
                    if hasattr(module, hook.name + suffix):
                        delattr(module, hook.name + suffix)
                delattr(module, hook.name)
                module.register_parameter(hook.name, _plain(weight))
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                try:
                    weight = getattr(module, name)
                    parametrize.remove_parametrizations(module, name, leave_parametrized=True)
                except Exception:  # a parametrization that cannot be taken off: traced as is
                    continue
                setattr(module, name, _plain(weight))


def _plain(weight: torch.Tensor) -> nn.Parameter:
    make = torch.empty if weight.device.type == "meta" else torch.zeros
    return nn.Parameter(make(weight.shape, dtype=weight.dtype, device=weight.device))


def nbytes(model: nn.Module) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors if not is_lazy(t))


def materialize(model: nn.Module) -> None:
    """Zeroed CPU weights for a model built on meta: its parameters, buffers,
    and tensors held as plain attributes (a sin-cos table computed in
    ``__init__`` and kept as ``self.pos_embedding = posemb_sincos_2d(...)``,
    which ``Module.to`` would not move either: on meta it has no values to
    copy out when forward moves it to the input's device)."""
    # Not to_empty(): empty_like on a meta tensor loads the meta kernels.
    zero = _ZeroPages([p for p in model.parameters() if p.is_meta])
    model._apply(zero.take)
    for module in model.modules():
        for name, value in list(vars(module).items()):
            if isinstance(value, torch.Tensor) and value.is_meta:
                setattr(module, name, torch.zeros(value.shape, dtype=value.dtype))


class _ZeroPages:
    """Zeroed CPU tensors for ``params`` that cost nothing until written:
    views of one private anonymous mapping, whose pages read as the kernel's
    zero page. torch.zeros writes every byte, faulting in each page (11k
    faults, 44 MB, for a ResNet-18 in every trace's child). Buffers are not
    taken: train mode writes BatchNorm's running statistics."""

    ALIGN = 64  # bytes, as torch's CPU allocator aligns

    def __init__(self, params) -> None:
        self.offsets: Dict[int, int] = {}
        size = 0
        for p in params:
            if p.numel() and p.dtype in _VIEWABLE and id(p) not in self.offsets:
                self.offsets[id(p)] = size
                size += -(-p.numel() * p.element_size() // self.ALIGN) * self.ALIGN
        self.memory = None
        if size:
            self.memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            with contextlib.suppress(AttributeError, OSError):  # huge pages: fewer faults
                self.memory.madvise(mmap.MADV_HUGEPAGE)

    def take(self, t: torch.Tensor) -> torch.Tensor:
        """A zeroed CPU tensor of ``t``'s shape and dtype."""
        offset = self.offsets.pop(id(t), None) if t.is_meta else None
        if offset is None:
            return torch.zeros(t.shape, dtype=t.dtype, device="cpu")
        flat = torch.frombuffer(self.memory, dtype=t.dtype, count=t.numel(), offset=offset)
        return flat.view(t.shape)


# dtypes torch.frombuffer reads; any other is zeroed by torch.zeros
_VIEWABLE = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8,
                       torch.uint8, torch.int16, torch.int32, torch.int64, torch.bool,
                       torch.complex64, torch.complex128})


def has_lazy(model: nn.Module) -> bool:
    return any(is_lazy(t) for t in [*model.parameters(), *model.buffers()])


def what(e: BaseException) -> str:
    return described(e)
