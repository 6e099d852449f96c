"""What a trace costs on CPU, counted as it runs.

A CPU trace runs real kernels on one thread (~15-25 GMAC/s here); a meta
trace costs about the same per op whatever its size. For most models CPU is
the faster (dimfix's hooks cost more per op on meta than small kernels do),
but a high-resolution input (SAM's hiera at 896x896: 74 GMAC a pass, 7.6 s
for a clean check on CPU, 1.0 s on meta) turns that around. Where the first
pass of a CPU trace has passed ``CPU_TRACE_MACS`` multiply-adds, the trace
stops (``OverBudget``) and runs on meta instead: a decision made on the
model's shapes, the same on every machine, never on a clock.
"""

from __future__ import annotations

import math

from torch import Tensor, nn
from torch.nn.parameter import is_lazy

# ~1 s of one core: past it, the passes of a fix (two in a draft, three in a
# verification, one at twice the batch) cost more on CPU than on meta.
CPU_TRACE_MACS = 20 * 10**9


class OverBudget(BaseException):
    """The CPU trace passed its budget. A BaseException, so that neither the
    model's own ``except Exception`` nor the tracer's handlers take it."""


def macs(module: nn.Module, args: tuple) -> int:
    """Multiply-adds of one call of a convolution or a linear layer, from the
    shape of its input (other layers: 0); strides are counted, padding not."""
    x = args[0] if args and isinstance(args[0], Tensor) else None
    weight = getattr(module, "weight", None)
    if x is None or not isinstance(weight, Tensor) or is_lazy(weight):
        return 0
    if isinstance(module, nn.Linear):
        return weight.numel() * (x.numel() // max(1, x.shape[-1]))
    if isinstance(module, nn.modules.conv._ConvNd):
        spatial = len(module.kernel_size)
        positions = math.prod(x.shape[-spatial:]) * (x.shape[0] if x.dim() > spatial + 1 else 1)
        stride = math.prod(module.stride)
        if module.transposed:  # each input position meets the whole kernel
            return weight.numel() * positions
        return weight.numel() * positions // stride
    return 0
