"""DerainModule: the user-facing model contract around any network in ``streamrain.archs``.

Takes float32 RGB ``(B, 3, H, W)`` in [0, 1] of any size and returns the same shape: the network's
required size multiple is reached by padding (reflect where the image is large enough, replicate
otherwise) and cropped back; networks trained on BGR get their channels flipped on the way in and
out; outputs are clamped to [0, 1] where the network does not clamp itself.

``reduced_precisions`` is what is known of the weights' precision (their card's verdict): the
reduced precisions (``"bf16"``, ``"fp16"``) measured to cost no quality, or None where nothing was
measured; the runtime's ``--precision auto`` follows it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """``x`` (..., H, W) padded at the bottom and right to multiples of ``multiple``: reflected
    where the image is large enough, else replicated."""
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if not (pad_h or pad_w):
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


class DerainModule(nn.Module):
    def __init__(self, net: nn.Module, *, name: str, arch: str,
                 reduced_precisions: frozenset[str] | None = None):
        super().__init__()
        self.reduced_precisions = reduced_precisions
        self.net = net
        self.name = name
        self.arch = arch
        self.bgr = getattr(net, "input_order", "rgb") == "bgr"
        self.multiple = int(getattr(net, "pad_multiple", 1))
        self.clamps = bool(getattr(net, "clamps_output", False))

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        height, width = rgb.shape[-2:]
        x = pad_to_multiple(rgb, self.multiple)
        if self.bgr:
            x = x.flip(1)
        y = self.net(x)
        if self.bgr:
            y = y.flip(1)
        if (-height) % self.multiple or (-width) % self.multiple:
            y = y[..., :height, :width]
        return y if self.clamps else y.clamp(0.0, 1.0)
