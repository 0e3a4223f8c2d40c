"""AIMHNet: wavelet hourglass deraining network (Ruini94/AIMHNet), ported to plain PyTorch.

Upstream: https://github.com/Ruini94/AIMHNet. The architecture file was deleted from HEAD on
2022-12-20; this port follows ``net_HourGlass.py`` as it stood from commit ``aa55dd8`` to
``a2b1a13^`` (training loop: ``38a24f3:main.py``). No official weights exist.

Structure: three Haar analysis levels of the RGB input (12, 48, 192 channels at 1/2, 1/4, 1/8
scale); cascades of 3, 6 and 9 wavelet hourglasses (depth 4) at those scales; Haar synthesis
back up; ``output = clamp(x - rain, 0, 1)``. 21,304,202 parameters, of which 582,084 are never
used in the forward pass (see below). About 38.8 GMAC at 512x640.

Tensor contract: ``forward(x)`` takes RGB ``(B, 3, H, W)`` float in [0, 1] with H and W
multiples of 128 (the 1/8-scale hourglasses halve four more times) and returns the clamped
derained image of the same shape. For ``torch.export`` with dynamic sizes declare them as
``128 * Dim("h", min=2)``: a side of exactly 128 would make the innermost maps 1x1, and
torch.export specialises sizes of 1, so exported programs need sides of 256 or more.

Differences from upstream (and why):

- The Haar transform is ``streamrain.archs.haar`` (depthwise stride-2 convolutions), not
  pytorch_wavelets: same bands and the same two channel orderings (band-major for the
  down-transform, interleaved groups of four for the up-transform), equal to float rounding,
  exportable, no extra dependency. pytorch_wavelets registers its filters as buffers (152
  state-dict entries ``*DWT.h{0,1}_{col,row}``, ``*IDWT.g{0,1}_{col,row}``); the port has no
  such buffers, so an upstream state dict needs those keys dropped
  (``convert_upstream_state_dict`` does that).
- Weight norm is a small module of our own (``weight = weight_v * weight_g / ||weight_v||``,
  norm over all dims but the output one) that keeps the legacy ``torch.nn.utils.weight_norm``
  key names ``weight_g`` (out, 1, 1, 1) and ``weight_v``, so upstream keys map one-to-one.
  Keys from the newer ``torch.nn.utils.parametrizations.weight_norm``
  (``.parametrizations.weight.original0`` / ``original1``) are renamed to
  ``.weight_g`` / ``.weight_v`` by ``convert_upstream_state_dict``.
- Every hourglass keeps all of upstream's 1x1 convolutions (``conv256_64``, ``conv192_48``,
  ``conv48_12``, ``conv16_64``, ``conv12_48``, ``conv3_12``) and the unused
  ``ConvTranspose2d`` ``convtran64`` so that the parameter count (21,304,202) and the keys are
  exact; only the pair matching the hourglass width is used, chosen once at construction
  instead of by inspecting channel counts in every forward. The 582,084 dead parameters never
  receive gradients (use ``find_unused_parameters=True`` under DDP).
- The hourglass counts per scale are a keyword argument (``hourglasses=(3, 6, 9)``, upstream's
  fixed values; the fusion convolutions' input widths follow them). Smaller counts exist for
  quick tests and experiments only.
- The input size is validated up front (ValueError) instead of failing on a shape mismatch
  deep inside an hourglass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn
import torch.nn.functional as F

from streamrain.archs.haar import dwt_band_major, idwt_interleaved
from streamrain.archs.statedict import check_fits, unwrap_state_dict

# Hourglass width -> (down 1x1 conv after the DWT, up 1x1 conv after the IDWT).
_HOURGLASS_CONVS: dict[int, tuple[str, str]] = {
    64: ("conv256_64", "conv16_64"),
    48: ("conv192_48", "conv12_48"),
    12: ("conv48_12", "conv3_12"),
}
_WAVELET_BUFFER_NAMES = frozenset(
    f"{bank}{band}_{axis}" for bank in ("h", "g") for band in ("0", "1") for axis in ("col", "row")
)


class _WNConv2d(nn.Module):
    """Stride-1 "same" convolution with weight normalisation over dim 0 (legacy key names)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, bias: bool = False):
        super().__init__()
        self.padding = (kernel_size - 1) // 2
        weight = torch.empty(out_channels, in_channels, kernel_size, kernel_size)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))  # nn.Conv2d's default, as upstream wrapped
        self.weight_g = nn.Parameter(torch.linalg.vector_norm(weight, dim=(1, 2, 3), keepdim=True))
        self.weight_v = nn.Parameter(weight)
        if bias:
            bound = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
            self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)

    def weight(self) -> torch.Tensor:
        v = self.weight_v
        return v * (self.weight_g / torch.linalg.vector_norm(v, dim=(1, 2, 3), keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight(), self.bias, padding=self.padding)


def _wn_conv(in_channels: int, out_channels: int, *, bias: bool = False) -> nn.Sequential:
    # Upstream's conv_layer wraps the conv in a Sequential; index 0 keeps the keys identical.
    return nn.Sequential(_WNConv2d(in_channels, out_channels, 3, bias=bias))


class _NOResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = _wn_conv(channels, channels, bias=True)
        self.conv2 = _wn_conv(channels, channels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x)) + x


class _Bottleneck(nn.Module):
    """Dense three-conv block on 2p channels with one shared PReLU, plus the identity."""

    def __init__(self, planes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(2 * planes, planes, 3, padding=1)
        self.conv2 = nn.Conv2d(3 * planes, planes, 3, padding=1)
        self.conv3 = nn.Conv2d(4 * planes, 2 * planes, 3, padding=1)
        self.relu = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv1(self.relu(x))
        xa = torch.cat((x, a), dim=1)
        b = self.conv2(self.relu(xa))
        c = self.conv3(self.relu(torch.cat((xa, b), dim=1)))
        return c + x


class _Hourglass(nn.Module):
    def __init__(self, channels: int, depth: int = 4):
        super().__init__()
        if channels not in _HOURGLASS_CONVS:
            raise ValueError(f"hourglass width must be one of {sorted(_HOURGLASS_CONVS)}, got {channels}")
        planes = channels // 2
        self.depth = depth
        self.hg = nn.ModuleList(
            nn.ModuleList(nn.Sequential(_Bottleneck(planes)) for _ in range(4 if level == 0 else 3))
            for level in range(depth)
        )
        self.conv256_64 = nn.Conv2d(256, 64, 1)
        self.conv192_48 = nn.Conv2d(192, 48, 1)
        self.conv48_12 = nn.Conv2d(48, 12, 1)
        self.conv16_64 = nn.Conv2d(16, 64, 1)
        self.conv12_48 = nn.Conv2d(12, 48, 1)
        self.conv3_12 = nn.Conv2d(3, 12, 1)
        self.convtran64 = nn.ConvTranspose2d(64, 64, 2)  # unused upstream too; kept for the keys
        down_name, up_name = _HOURGLASS_CONVS[channels]
        self._down_name = down_name
        self._up_name = up_name

    def _level(self, n: int, x: torch.Tensor) -> torch.Tensor:
        branches = self.hg[n - 1]
        up1 = branches[0](x)
        low = getattr(self, self._down_name)(dwt_band_major(x))
        low = branches[1](low)
        low = self._level(n - 1, low) if n > 1 else branches[3](low)
        low = branches[2](low)
        up2 = getattr(self, self._up_name)(idwt_interleaved(low))
        return up1 + up2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


def _cascade(hourglasses: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    outputs = []
    for hourglass in hourglasses:
        x = hourglass(x)
        outputs.append(x)
    return torch.cat(outputs, dim=1)


class AIMHNet(nn.Module):
    """AIMHNet (Ruini94/AIMHNet): RGB in, ``clamp(x - rain, 0, 1)`` out; H, W multiples of 128."""

    input_order = "rgb"
    pad_multiple = 128
    clamps_output = True

    def __init__(self, *, hourglasses: tuple[int, int, int] = (3, 6, 9)) -> None:
        """``hourglasses``: how many hourglasses run at 1/2, 1/4 and 1/8 scale (upstream: 3, 6, 9)."""
        super().__init__()
        if len(hourglasses) != 3 or min(hourglasses) < 1:
            raise ValueError(f"hourglasses must be three counts >= 1, got {hourglasses!r}")
        n2, n4, n8 = hourglasses
        self.HGM_1 = nn.ModuleList(_Hourglass(12) for _ in range(n2))
        self.HGM_2 = nn.ModuleList(_Hourglass(48) for _ in range(n4))
        self.HGM_3 = nn.ModuleList(_Hourglass(64) for _ in range(n8))
        self.conv8x = nn.Sequential(_wn_conv(192, 64), _wn_conv(64, 64))
        self.conv4x = _NOResBlock(48)
        self.conv2x = _wn_conv(12, 12)
        self.downc8 = nn.Sequential(_wn_conv(64 * n8, 128), _wn_conv(128, 64))  # 576 -> 128 upstream
        self.conv_8_4 = nn.Sequential(_wn_conv(16 + 48 * n4, 32), _wn_conv(32, 64))  # 304 -> 32
        self.conv_4_2 = nn.Sequential(_wn_conv(16 + 12 * n2, 12), _wn_conv(12, 12))  # 52 -> 12

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        if height % self.pad_multiple != 0 or width % self.pad_multiple != 0:
            raise ValueError(
                f"AIMHNet needs H and W to be multiples of {self.pad_multiple}, got {height}x{width}; pad first"
            )
        x2 = dwt_band_major(x)  # 12 channels at 1/2
        x4 = dwt_band_major(x2)  # 48 at 1/4
        x8 = dwt_band_major(x4)  # 192 at 1/8

        f8 = self.conv8x(x8)
        cat8 = _cascade(self.HGM_3, f8)
        cat4 = _cascade(self.HGM_2, self.conv4x(x4))
        cat2 = _cascade(self.HGM_1, self.conv2x(x2))

        u8 = idwt_interleaved(self.downc8(cat8) + f8)  # 16 channels at 1/4
        u4 = idwt_interleaved(self.conv_8_4(torch.cat((u8, cat4), dim=1)))  # 16 at 1/2
        rain = idwt_interleaved(self.conv_4_2(torch.cat((u4, cat2), dim=1)))  # 3 at full size
        return torch.clamp(x - rain, 0.0, 1.0)


def convert_upstream_state_dict(obj: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Map a state dict saved by the upstream code to this port's keys (loads with strict=True).

    Accepts a plain state dict or one wrapped under ``"state_dict"``, ``"net"`` or ``"model"``;
    strips ``module.``; drops pytorch_wavelets' filter buffers; renames new-style weight-norm
    parametrization keys. Raises ValueError naming missing/unexpected keys or shape mismatches.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, value in unwrap_state_dict(obj, name="AIMHNet", wrappers=("state_dict", "net", "model")).items():
        parts = key.split(".")
        if len(parts) >= 2 and parts[-2] in ("DWT", "IDWT") and parts[-1] in _WAVELET_BUFFER_NAMES:
            continue
        key = key.replace(".parametrizations.weight.original0", ".weight_g")
        key = key.replace(".parametrizations.weight.original1", ".weight_v")
        converted[key] = value
    with torch.device("meta"):
        reference = AIMHNet().state_dict()
    check_fits(converted, reference, "AIMHNet")
    return converted
