"""Building the user's model: on meta without initializing weights, or on
CPU; sizes and limits for choosing where to trace."""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from dimfix.errors import DimfixError, ModelRaised
from dimfix.load import described, user_frame
from dimfix.records import Options


_INITS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_",
          "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
          "orthogonal_", "sparse_")


@contextlib.contextmanager
def no_init():
    """nn.init does nothing while a model is built on meta: the values do not
    exist, and nn.init.normal_ alone would import torch._dynamo (about 1 s)."""
    saved = {name: getattr(nn.init, name) for name in _INITS if hasattr(nn.init, name)}
    for name in saved:
        setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
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
    return model


def nbytes(model: nn.Module) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors if not is_lazy(t))


def materialize(model: nn.Module) -> None:
    # Not to_empty(): empty_like on a meta tensor loads the meta kernels.
    model._apply(lambda t: torch.zeros(t.shape, dtype=t.dtype, device="cpu"))


def has_lazy(model: nn.Module) -> bool:
    return any(is_lazy(t) for t in [*model.parameters(), *model.buffers()])


def what(e: BaseException) -> str:
    return described(e)
