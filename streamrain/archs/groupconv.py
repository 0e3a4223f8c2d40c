"""P4 (90-degree rotation) group convolutions with GrouPy's exact semantics, in plain PyTorch.

SDSEN was written against GrouPy's PyTorch port (adambielski/GrouPy,
``groupy/gconv/pytorch_gconv/splitgconv2d.py``). Here each layer stores GrouPy's parameter
shapes and expands them into an ordinary ``F.conv2d`` weight holding four rotated copies of
every filter, so no custom op is needed and the layers export with ``torch.export``.

Tensor contract: a P4 feature map is ``(B, C, 4, H, W)``; axis 2 is the rotation ``r``
(0..3, counter-clockwise quarter turns in ``torch.rot90``'s convention over dims (-2, -1)).

- ``P4ConvZ2(in, out, k)``: ``weight (out, in, 1, k, k)``, ``bias (out,)``; input
  ``(B, in, H, W)``, output ``(B, out, 4, H', W')``. The filter for rotation ``r`` is
  ``rot90(weight, k=r)``.
- ``P4ConvP4(in, out, k)``: ``weight (out, in, 4, k, k)``, ``bias (out,)``; input
  ``(B, in, 4, H, W)`` (flattened to channel ``c * 4 + s``), output ``(B, out, 4, H', W')``.
  The filter for output rotation ``r`` and input slot ``s`` is
  ``rot90(weight[:, :, (s - r) % 4], k=r)``.

In both, the expanded weight is ``(out * 4, in * n_in, k, k)`` with output channel
``o * 4 + r``, and the bias is shared by the four rotations of one output channel. GrouPy's
index tables are plain attributes, not state: the state-dict keys are only ``weight`` and
``bias``. Equivariance: rotating the input by a quarter turn rotates every output map by a
quarter turn and shifts the rotation axis by one (``roll(..., 1, dim=2)``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F


def _init_like_conv(weight: torch.Tensor, bias: torch.Tensor | None, fan_in: int) -> None:
    # U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias: the distribution nn.Conv2d's
    # default init amounts to, with GrouPy's fan-in (in * n_in * k * k).
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(weight, -bound, bound)
    if bias is not None:
        nn.init.uniform_(bias, -bound, bound)


class _P4ConvBase(nn.Module):
    input_stabilizer_size: int = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        if kernel_size < 1 or in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"in_channels, out_channels and kernel_size must be >= 1, got "
                f"{in_channels}, {out_channels}, {kernel_size}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        n_in = self.input_stabilizer_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, n_in, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        _init_like_conv(self.weight, self.bias, in_channels * n_in * kernel_size * kernel_size)

    def expanded_weight(self) -> torch.Tensor:
        """The equivalent ``F.conv2d`` weight, ``(out * 4, in * n_in, k, k)``."""
        raise NotImplementedError

    def expanded_bias(self) -> torch.Tensor | None:
        return None if self.bias is None else self.bias.repeat_interleave(4)

    def _conv(self, x_bchw: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x_bchw, self.expanded_weight(), self.expanded_bias(), self.stride, self.padding)
        return y.reshape(y.shape[0], self.out_channels, 4, y.shape[-2], y.shape[-1])

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")


class P4ConvZ2(_P4ConvBase):
    """Lifting convolution from the plane to P4: ``(B, in, H, W)`` -> ``(B, out, 4, H', W')``."""

    input_stabilizer_size = 1

    def expanded_weight(self) -> torch.Tensor:
        base = self.weight[:, :, 0]
        rotated = [torch.rot90(base, r, dims=(-2, -1)) for r in range(4)]
        k = self.kernel_size
        return torch.stack(rotated, dim=1).reshape(self.out_channels * 4, self.in_channels, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x)


class P4ConvP4(_P4ConvBase):
    """Group convolution on P4: ``(B, in, 4, H, W)`` -> ``(B, out, 4, H', W')``."""

    input_stabilizer_size = 4

    def expanded_weight(self) -> torch.Tensor:
        # roll by r along the slot axis gives rolled[..., s] = weight[..., (s - r) % 4].
        rotated = [torch.rot90(torch.roll(self.weight, r, dims=2), r, dims=(-2, -1)) for r in range(4)]
        k = self.kernel_size
        return torch.stack(rotated, dim=1).reshape(self.out_channels * 4, self.in_channels * 4, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, slots, height, width = x.shape
        torch._check(slots == 4, lambda: f"expected a P4 feature map (B, C, 4, H, W), got {tuple(x.shape)}")
        return self._conv(x.reshape(batch, channels * 4, height, width))
