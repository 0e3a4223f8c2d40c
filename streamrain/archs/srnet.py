"""SRNet: streamrain's own fast deraining network.

Not a port: designed here for the speed/quality front on CPUs (channels_last, bf16) and TensorRT.
The frame is folded into a 2x2 space-to-depth ("Haar-domain" up to a fixed linear map, which the
first convolution absorbs) so that every 3x3 convolution works at half or quarter resolution,
where rain streaks of one or two pixels width are still represented exactly in the channels.
The network predicts the rain layer and subtracts it: output = clamp(x - rain, 0, 1).

Cost with the default arguments: about 8.9 GMAC (17.8 GFLOP) per 1280x720 frame.

``SRNet.inference_form(dtype)`` is the same function refactored for CPU inference (``FoldedSRNet``):
measured ~1.2x faster per frame than the training form under bf16 autocast on this project's CPU.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class _ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class SRNet(nn.Module):
    input_order = "rgb"
    pad_multiple = 4
    clamps_output = True

    def __init__(self, *, half_channels: int = 24, quarter_channels: int = 48, blocks: int = 3):
        super().__init__()
        self.head = nn.Conv2d(12, half_channels, 3, padding=1)
        self.down = nn.Conv2d(4 * half_channels, quarter_channels, 1)
        self.body = nn.Sequential(*[_ResBlock(quarter_channels) for _ in range(blocks)])
        self.up = nn.Conv2d(quarter_channels, 4 * half_channels, 1)
        self.tail = nn.Conv2d(half_channels, 12, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = F.relu(self.head(F.pixel_unshuffle(x, 2)))
        quarter = F.relu(self.down(F.pixel_unshuffle(half, 2)))
        quarter = self.body(quarter)
        half = F.relu(half + F.pixel_shuffle(self.up(quarter), 2))
        rain = F.pixel_shuffle(self.tail(half), 2)
        return (x - rain).clamp(0.0, 1.0)

    def inference_form(self, dtype: torch.dtype) -> "FoldedSRNet":
        return FoldedSRNet(self, dtype)


def _fold_space_to_depth(weight: torch.Tensor) -> torch.Tensor:
    """A convolution over ``pixel_unshuffle(x, 2)`` is a stride-2 convolution over ``x`` with a kernel
    twice as large: (O, 4C, kh, kw) -> (O, C, 2kh, 2kw), tap (2dy+i, 2dx+j) from channel 4c+2i+j."""
    out_ch, in4, kh, kw = weight.shape
    w = weight.reshape(out_ch, in4 // 4, 2, 2, kh, kw).permute(0, 1, 4, 2, 5, 3)
    return w.reshape(out_ch, in4 // 4, 2 * kh, 2 * kw)


class FoldedSRNet(nn.Module):
    """SRNet for inference: the same function as ``SRNet.forward``, exactly so in fp32.

    Why it is faster on CPUs: the space-to-depth steps are folded into stride-2 convolutions (no
    pass over memory to reorder pixels), weights are cast to the compute dtype once instead of per
    call under autocast, activations run in place, and only the final residual goes back to float32
    (mixed-dtype elementwise ops take a slow path). Takes and returns float32; computes in ``dtype``.
    Its weights are a frozen copy: build it again after changing the SRNet's.
    """

    input_order = SRNet.input_order
    pad_multiple = SRNet.pad_multiple
    clamps_output = True

    def __init__(self, net: SRNet, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype

        def frozen(t: torch.Tensor) -> nn.Parameter:
            t = t.detach().to(dtype)
            return nn.Parameter(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t,
                                requires_grad=False)

        self.head_w, self.head_b = frozen(_fold_space_to_depth(net.head.weight)), frozen(net.head.bias)
        self.down_w, self.down_b = frozen(_fold_space_to_depth(net.down.weight)), frozen(net.down.bias)
        self.body = nn.ParameterList(
            frozen(t) for block in net.body
            for t in (block.conv1.weight, block.conv1.bias, block.conv2.weight, block.conv2.bias))
        self.up_w, self.up_b = frozen(net.up.weight), frozen(net.up.bias)
        self.tail_w, self.tail_b = frozen(net.tail.weight), frozen(net.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.to(self.dtype)
        half = F.conv2d(h, self.head_w, self.head_b, stride=2, padding=2).relu_()
        quarter = F.conv2d(half, self.down_w, self.down_b, stride=2).relu_()
        p = list(self.body)
        for i in range(0, len(p), 4):
            inner = F.conv2d(quarter, p[i], p[i + 1], padding=1).relu_()
            quarter = quarter + F.conv2d(inner, p[i + 2], p[i + 3], padding=1)
        half = F.pixel_shuffle(F.conv2d(quarter, self.up_w, self.up_b), 2).add_(half).relu_()
        rain = F.pixel_shuffle(F.conv2d(half, self.tail_w, self.tail_b, padding=1), 2)
        return (x - rain.float()).clamp_(0.0, 1.0)
