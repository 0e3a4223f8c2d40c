"""SDSEN: self-refining deep symmetry enhanced network for rain removal, in plain PyTorch.

Paper: H. Ye, X. Li, H. Liu, W. Shi, M. Liu, Q. Sun, "Self-Refining Deep Symmetry Enhanced
Network for Rain Removal", arXiv 1811.04761 (ICIP 2019); built on RESCAN. Upstream:
https://github.com/prismformore/SDSEN (``config/model.py``, class ``SDSEN``).

Structure (C = 10, LeakyReLU 0.2 everywhere): the rainy image ``O`` goes through 8 stages.
Each stage lifts its input to the P4 rotation group (``P4ConvZ2`` 3 -> C, 5x5), runs four
recurrent group-convolution layers (``P4ConvP4`` 2C -> C on the concatenation of the current
features and a ``P4ConvP4`` C -> C transform of the same layer's state from the previous
stage, with a residual addition), flattens the four rotations into 4C channels and decodes
the *whole* rain layer ``R_s`` (5x5 conv, squeeze-excitation with hidden width 5, 1x1 conv).
The next stage's input is ``O - R_s``. 130,998 parameters; about 1,212 GMAC at 480x640.

Tensor contract: ``forward(x)`` takes **BGR** ``(B, 3, H, W)`` float in [0, 1] (upstream read
with cv2), any H and W, and returns ``O - R_8`` (not clamped). ``forward_rain_layers(x)``
returns ``[R_1, ..., R_8]`` as upstream's model does (training supervises every stage with
``MSE(R_s, O - B)``).

Differences from upstream (and why):

- GrouPy's P4 convolutions are ``streamrain.archs.groupconv`` (ordinary ``conv2d`` with four
  rotated filter copies; same parameter shapes and keys, exact same results), so no GrouPy,
  no ``np.int`` fixes, and the network exports with ``torch.export``.
- At stage 1 the previous states are zeros, so each connect layer's output is just
  ``LeakyReLU(bias)``; the port computes that directly instead of convolving zeros
  (bit-identical: a convolution of zeros with zero padding is exactly its bias), saving about
  49 of upstream's 1,212 GMAC at 480x640.
- No hard-coded ``.cuda()``; works on any device and dtype.
- The SE block's hidden width is upstream's ``reduction`` argument used as a width
  (``channels // 2`` = 5), reproduced as is; ``use_se=False`` gives upstream's ``NoSEBlock``.
- No weights exist upstream; nothing to load.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from streamrain.archs.groupconv import P4ConvP4, P4ConvZ2


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class _P4Act(nn.Module):
    """A P4 convolution (``conv0``) followed by LeakyReLU 0.2, upstream's P4CZ2 / P4CP4."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv0 = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _lrelu(self.conv0(x))


class _SE(nn.Module):
    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


class SDSEN(nn.Module):
    """SDSEN (prismformore/SDSEN): BGR in, ``O - R_8`` out (unclamped); 8 recurrent stages."""

    input_order = "bgr"
    pad_multiple = 1
    clamps_output = False

    def __init__(self, *, channels: int = 10, stages: int = 8, depth: int = 7, use_se: bool = True):
        super().__init__()
        if channels < 2 or stages < 1 or depth < 4:
            raise ValueError(f"need channels >= 2, stages >= 1, depth >= 4; got {channels}, {stages}, {depth}")
        self.channels = channels
        self.stages = stages
        layers = depth - 3
        self.pre_layer = _P4Act(P4ConvZ2(3, channels, 5, padding=2))
        self.re_layer = nn.ModuleList(P4ConvP4(2 * channels, channels, 5, padding=2) for _ in range(layers))
        self.connect_layers = nn.ModuleList(_P4Act(P4ConvP4(channels, channels, 5, padding=2)) for _ in range(layers))
        self.dec = nn.Sequential(
            nn.Conv2d(4 * channels, channels, 5, padding=2),
            _SE(channels, channels // 2) if use_se else nn.Identity(),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 3, 1),
        )

    def forward_rain_layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[R_1, ..., R_8]``: each stage's estimate of the whole rain layer of ``x``."""
        rainy = x
        batch, _, height, width = x.shape
        states: list[torch.Tensor] | None = None
        rains = []
        for _ in range(self.stages):
            f = self.pre_layer(x)
            new_states = []
            for i, (re_layer, connect) in enumerate(zip(self.re_layer, self.connect_layers)):
                if states is None:
                    bias = connect.conv0.bias
                    link = _lrelu(bias).reshape(1, -1, 1, 1, 1).expand(batch, -1, 4, height, width)
                    link = link.to(f.dtype)
                else:
                    link = connect(states[i])
                f = _lrelu(f + re_layer(torch.cat((f, link), dim=1)))
                new_states.append(f)
            rain = self.dec(f.reshape(batch, 4 * self.channels, height, width))
            rains.append(rain)
            x = rainy - rain
            states = new_states
        return rains

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.forward_rain_layers(x)[-1]

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's derained estimate ``O - R_s``: what stage-wise training supervises (the same
        as upstream's ``MSE(R_s, O - B)`` per stage, since ``(O - R_s) - B = (O - B) - R_s``)."""
        return [x - rain for rain in self.forward_rain_layers(x)]
