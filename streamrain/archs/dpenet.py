"""DPENet: dual-stage progressive enhancement network for single-image deraining, in PyTorch.

Paper: "From heavy rain removal to detail restoration: A faster and better network", Pattern
Recognition 148 (2024) 110205, arXiv 2205.03553 (earlier title "Dual-Stage Progressive
Enhancement Network for Single Image Deraining"). Upstream: https://github.com/chdwyb/DPENet
(identical mirror with all five checkpoints: https://github.com/wybchd/DPENet), ``NetModel.py``.

Structure (all 3x3 convolutions "same", stride 1): stage 1 (R²Net) is a 1x1 head, ten dilated
dense residual blocks (DDRB, dilations 1/2/5, no bias) and a 1x1 tail whose output is added to
the input (``x_mid = x + r1``); stage 2 (DRNet) is a 1x1 head on ``ReLU(x_mid)``, three
ERPABs (three dilated convolutions, 1x1 fusion, pixel attention) and a 1x1 tail added again
(``out = x_mid + r2``). 647,328 parameters; about 199 GMAC at 480x640.

Tensor contract: ``forward(x)`` takes RGB ``(B, 3, H, W)`` float in [0, 1], any H and W, and
returns ``out`` (not clamped). ``forward_stages(x)`` returns ``(x_mid, out)`` as upstream's
model does (both are supervised in training).

Differences from upstream (and why):

- **No ReLU after ``outconv1`` and ``outconv2``.** Upstream's ``NetModel.py`` puts one there,
  but the released checkpoints were evidently trained without it: with the ReLU they leave the
  image almost unchanged; without it the Rain100H checkpoint reproduces the authors' own
  published result image to within 8-bit rounding. The state-dict keys are unchanged
  (``outconv1.0.weight``).
- The model returns only ``out`` from ``forward`` (the streamrain contract); upstream's pair
  is available from ``forward_stages``.
- Upstream also defines ``LightDPENet`` (five DDRBs), which cannot be built (its constructor
  calls the wrong ``super``); ``DPENet(num_ddrb=5)`` is the nearest equivalent. No weights
  exist for it.
- ``convert_official_state_dict`` accepts the authors' ``.pth`` files (plain state dicts,
  ``module.`` prefixes stripped) and checks them against this module.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
import torch.nn.functional as F

from streamrain.archs.statedict import check_fits, unwrap_state_dict


def _conv3x3(channels: int, dilation: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False)


class _DDRB(nn.Module):
    """Dilated dense residual block: three two-conv units at dilations 1, 2 and 5."""

    def __init__(self, channels: int):
        super().__init__()
        self.dconv1 = nn.Sequential(_conv3x3(channels, 1), nn.ReLU(), _conv3x3(channels, 1))
        self.dconv2 = nn.Sequential(_conv3x3(channels, 2), nn.ReLU(), _conv3x3(channels, 2))
        self.dconv5 = nn.Sequential(_conv3x3(channels, 5), nn.ReLU(), _conv3x3(channels, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.dconv1(x)
        x2 = self.dconv2(F.relu(x + x1))
        x3 = self.dconv5(F.relu(x + x1 + x2))
        return F.relu(x + x1 + x2 + x3)


class _ERPAB(nn.Module):
    """Enhanced residual pixel-wise attention block."""

    def __init__(self, channels: int):
        super().__init__()
        hidden = max(channels // 32, 1)  # upstream: channels // 32 (= 1 for the published width)
        self.inconv1 = _conv3x3(channels, 1)
        self.inconv2 = _conv3x3(channels, 2)
        self.inconv3 = _conv3x3(channels, 5)
        self.outconv = nn.Sequential(nn.Conv2d(3 * channels, channels, 1), nn.ReLU())
        self.pa = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 3, padding=1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.outconv(torch.cat((self.inconv1(x), self.inconv2(x), self.inconv3(x)), dim=1))
        return F.relu(t * self.pa(t) + x)


class DPENet(nn.Module):
    """DPENet (chdwyb/DPENet): RGB in, derained RGB out (unclamped); loads the authors' weights."""

    input_order = "rgb"
    pad_multiple = 1
    clamps_output = False

    def __init__(self, *, channels: int = 32, num_ddrb: int = 10, num_erpab: int = 3):
        super().__init__()
        if channels < 1 or num_ddrb < 1 or num_erpab < 1:
            raise ValueError(
                f"channels, num_ddrb and num_erpab must be >= 1, got {channels}, {num_ddrb}, {num_erpab}"
            )
        self.num_ddrb = num_ddrb
        self.num_erpab = num_erpab
        self.inconv1 = nn.Sequential(nn.Conv2d(3, channels, 1, bias=False), nn.ReLU())
        self.inconv2 = nn.Sequential(nn.Conv2d(3, channels, 1, bias=False), nn.ReLU())
        # No ReLU here, unlike upstream's NetModel.py: the released weights were trained without it.
        self.outconv1 = nn.Sequential(nn.Conv2d(channels, 3, 1, bias=False))
        self.outconv2 = nn.Sequential(nn.Conv2d(channels, 3, 1, bias=False))
        for k in range(1, num_ddrb + 1):
            setattr(self, f"ddrb{k}", _DDRB(channels))
        for k in range(1, num_erpab + 1):
            setattr(self, f"erpab{k}", _ERPAB(channels))

    def forward_stages(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_mid, out)``: the stage-1 (R²Net) and final (DRNet) images, both unclamped."""
        f = self.inconv1(x)
        for k in range(1, self.num_ddrb + 1):
            f = getattr(self, f"ddrb{k}")(f)
        x_mid = x + self.outconv1(f)
        g = self.inconv2(F.relu(x_mid))
        for k in range(1, self.num_erpab + 1):
            g = getattr(self, f"erpab{k}")(g)
        out = x_mid + self.outconv2(g)
        return x_mid, out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)[1]


def convert_official_state_dict(obj: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Turn what ``torch.load`` returns for an authors' DPENet ``.pth`` into a strict state dict.

    The released files are plain state dicts; a ``{"net": ...}`` / ``{"state_dict": ...}``
    wrapper and ``module.`` prefixes (DataParallel) are accepted too. Raises ValueError naming
    missing or unexpected keys and shape mismatches when the file does not fit ``DPENet()``.
    """
    converted = unwrap_state_dict(obj, name="DPENet")
    with torch.device("meta"):
        reference = DPENet().state_dict()
    check_fits(converted, reference, "DPENet")
    return converted
