"""SPANet: spatial attentive deraining network (CVPR 2019), in plain PyTorch.

Paper: T. Wang, X. Yang, K. Xu, S. Chen, Q. Zhang, R. W. H. Lau, "Spatial Attentive Single-Image
Deraining with a High Quality Real Rain Dataset", CVPR 2019. Upstream:
https://github.com/stevewongv/SPANet (``SPANet.py``, ``irnn.py``). The released weights
(``model/latest``, trained on the real-rain SPA-Data) were added in commit ``f0d982d`` together
with a pure-PyTorch IRNN loop; later commits replaced that loop with a cupy CUDA kernel.

Structure: a 3x3 head (3 -> 32), 17 bottleneck residual blocks
``y = ReLU(block(y) * A + y)``, and a 3x3 tail (32 -> 3) that outputs the derained image
directly (no global residual). ``A`` is 1 for blocks 1-3 and 16-17; blocks 4-15 use four
masks computed after blocks 3, 6, 9 and 12 by one spatial attentive module (SAM, shared
weights). A SAM runs two four-direction IRNNs (per-channel ReLU recurrences sweeping right,
left, down and up) with 3x3 convolutions between them and a sigmoid 1x1 output. 283,716
parameters; about 170 GMAC of convolutions at 480x640.

Tensor contract: ``forward(x)`` takes **BGR** ``(B, 3, H, W)`` float in [0, 1] (upstream read
with cv2), any H and W, and returns the derained BGR image, not clamped.
``forward_with_mask(x)`` returns ``(mask, image)`` as upstream's model does (the first SAM
mask, ``(B, 1, H, W)``, is supervised in training).

Differences from upstream (and why):

- **IRNN first element.** Each sweep is ``s_0 = x_0``, ``s_i = ReLU(w * s_{i-1} + b + x_i)``
  with per-channel ``w``, ``b``. The first (edge) element is *not* ReLU'd, matching the
  pre-CUDA loop at ``f0d982d`` that the released weights were trained with; the later CUDA
  kernel does apply ReLU to it. The two differ only at the image edge where the input is
  negative. ``relu_first=True`` gives the CUDA kernel's behaviour.
- **IRNN implementation.** No cupy/CUDA: in eager mode a Python loop over the sweep axis,
  vectorised along the other axis, with left and right stacked (one flipped) in one loop over
  W and up and down in one loop over H. While exporting or compiling (``torch.export``,
  ``torch.compile``), a loop of data-dependent length cannot be traced, so the recurrence is
  evaluated as an associative scan instead: every step ``s -> ReLU(w * s + c)`` is a clamped
  affine map ``s -> clamp(alpha * s + beta, lo, hi)``, such maps are closed under
  composition (for any sign of ``w``), and a Hillis-Steele prefix scan over them takes
  ``ceil(log2(scan_max_len))`` fixed steps of element-wise ops and ``roll`` (no masking
  needed, see ``_sweep_scan``). Exact in real arithmetic; agrees with the loop to float
  rounding for ``|w| <= 1`` (the released weights: -0.47 to 0.998); for ``|w| > 1`` on long lines
  it loses precision, use ``irnn_impl="loop"`` there. Lines longer than ``scan_max_len``
  (default 4096) are rejected. ``irnn_impl`` selects
  ``"loop"``, ``"scan"`` or ``"auto"`` (scan only while exporting/compiling, or on the meta
  device). When exporting with dynamic H and W, declare ``Dim(..., max=scan_max_len)`` or
  less: the exported program checks the bound at run time.
- **Direction attention is skipped.** Upstream computes an attention map (``attention_layer``)
  and multiplies the IRNN outputs by it with a non-in-place ``.mul`` whose result is thrown
  away, so it has no effect on the output (and receives no gradient). Its parameters are kept
  so the authors' checkpoint loads strictly (and the parameter count matches), but it is not
  computed (saving about 8.6 of upstream's 170 GMAC at 480x640).
- IRNN weights are initialised to 0.2 as in upstream's later ``SPANet.py`` (``f0d982d`` used
  nn.Conv2d's default); irrelevant for loaded weights.
- ``forward`` returns only the image (the streamrain contract); upstream returns
  ``(mask, image)``, available from ``forward_with_mask``.
- ``convert_official_state_dict`` reads the authors' ``{'net', 'clock', 'opt'}`` file.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn
import torch.nn.functional as F

from streamrain.archs.statedict import check_fits, unwrap_state_dict

IrnnImpl = Literal["auto", "loop", "scan"]
_IRNN_IMPLS = ("auto", "loop", "scan")


def _sweep_loop(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, relu_first: bool) -> torch.Tensor:
    """Recurrence along dim 0 of ``x`` (N, ...); ``weight``/``bias`` broadcast against ``x[0]``."""
    state = F.relu(x[0]) if relu_first else x[0]
    outputs = [state]
    for i in range(1, x.shape[0]):
        state = F.relu(weight * state + bias + x[i])
        outputs.append(state)
    return torch.stack(outputs, dim=0)


def _compose(later: tuple[torch.Tensor, ...], earlier: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """``later o earlier`` for maps ``s -> clamp(alpha * s + beta, lo, hi)`` with ``lo <= hi``.

    ``alpha * clamp(u, lo1, hi1) + beta2`` is ``alpha * u + beta2`` clamped to the interval
    spanned by the images of ``lo1`` and ``hi1`` (either order, as alpha may be negative), and
    clamping twice is clamping once to the intersected interval.
    """
    a2, b2, lo2, hi2 = later
    a1, b1, lo1, hi1 = earlier
    p = torch.addcmul(b2, a2, lo1)
    q = torch.addcmul(b2, a2, hi1)
    lo = torch.clamp(torch.minimum(p, q), lo2, hi2)
    hi = torch.clamp(torch.maximum(p, q), lo2, hi2)
    return a2 * a1, torch.addcmul(b2, a2, b1), lo, hi


def _sweep_scan(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, relu_first: bool,
                max_len: int) -> torch.Tensor:
    """Same result as ``_sweep_loop`` along the *last* dim of ``x`` by a log-depth prefix scan.

    Hillis-Steele: after the step with shift ``d``, position ``i`` holds the composition of
    the maps at ``max(0, i - 2d + 1) .. i``. Position 0 is a constant map, so a position whose
    window already reaches 0 holds a constant map, and a constant map composed with any
    finite map is itself: the values rolled in from the far end of the line at ``i < d`` are
    harmless and no masking is needed. The ReLU's missing upper clamp is a finite stand-in
    ``big = sqrt(finfo.max)`` (1.8e19 in float32) so that ``0 * big`` stays 0 when the slope
    products underflow; this is exact while the recurrence's values stay below ``big``.
    Precision matches the loop for ``|w| <= 1`` (the released weights have ``|w| < 1``); for
    ``|w| > 1`` on long lines the ``w ** n`` terms cancel badly, so prefer the loop there.
    """
    n = x.shape[-1]
    torch._check(n <= max_len, lambda: f"IRNN line length {n} exceeds scan_max_len={max_len}")
    big = math.sqrt(torch.finfo(x.dtype).max)
    first = torch.arange(n, device=x.device) == 0
    start = F.relu(x) if relu_first else x
    zeros = torch.zeros_like(x)
    # Position 0 is the constant map s -> start_0; position i > 0 is s -> ReLU(w * s + b + x_i).
    maps = tuple(t.reshape(-1, n) for t in (  # 2-D lines keep export's symbolic shape work small
        torch.where(first, zeros, weight.expand_as(x)),
        torch.where(first, start, x + bias),
        torch.where(first, start, zeros),
        torch.where(first, start, torch.full_like(x, big)),
    ))
    for step in range(max(1, math.ceil(math.log2(max_len)))):
        shifted = tuple(torch.roll(t, 1 << step, dims=-1) for t in maps)
        maps = _compose(maps, shifted)
    # Every prefix starts with a constant map, so lo == hi == the recurrence value.
    return maps[2].reshape(x.shape)


class _IRNN(nn.Module):
    """Four directional ReLU recurrences; returns ``(up, right, down, left)`` like upstream."""

    def __init__(self, channels: int, *, relu_first: bool, impl: IrnnImpl, scan_max_len: int):
        super().__init__()
        self.relu_first = relu_first
        self.impl = impl
        self.scan_max_len = scan_max_len
        for name in ("left_weight", "right_weight", "up_weight", "down_weight"):
            conv = nn.Conv2d(channels, channels, 1, groups=channels)
            nn.init.constant_(conv.weight, 0.2)
            setattr(self, name, conv)

    def _use_scan(self, x: torch.Tensor) -> bool:
        if self.impl == "auto":
            # A traced graph cannot hold a loop of data-dependent length; on the meta device
            # (cost counting) only shapes matter and the scan is the shorter graph.
            return torch.compiler.is_exporting() or torch.compiler.is_compiling() or x.device.type == "meta"
        return self.impl == "scan"

    def _params(self, first: nn.Conv2d, second: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
        weight = torch.stack((first.weight.reshape(-1), second.weight.reshape(-1)))  # (2, C)
        bias = torch.stack((first.bias, second.bias))
        return weight, bias

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        # Horizontal: "right" sweeps columns 0 -> W-1, "left" W-1 -> 0 (run forward on the flip).
        h_in = torch.stack((x, x.flip(-1)))  # (2, B, C, H, W)
        h_w, h_b = self._params(self.right_weight, self.left_weight)
        # Vertical: "down" sweeps rows 0 -> H-1, "up" H-1 -> 0.
        v_in = torch.stack((x, x.flip(-2)))
        v_w, v_b = self._params(self.down_weight, self.up_weight)
        if self._use_scan(x):
            # Sweep axis last; parameters broadcast as (2, 1, C, 1, 1).
            h_out = _sweep_scan(h_in, h_w[:, None, :, None, None], h_b[:, None, :, None, None],
                                self.relu_first, self.scan_max_len)
            v_out = _sweep_scan(v_in.transpose(-1, -2), v_w[:, None, :, None, None], v_b[:, None, :, None, None],
                                self.relu_first, self.scan_max_len).transpose(-1, -2)
        else:
            # Sweep axis first and contiguous; each step is one (2, B, C, other-axis) slice.
            h_out = _sweep_loop(h_in.permute(4, 0, 1, 2, 3).contiguous(), h_w[:, None, :, None],
                                h_b[:, None, :, None], self.relu_first).permute(1, 2, 3, 4, 0)
            v_out = _sweep_loop(v_in.permute(3, 0, 1, 2, 4).contiguous(), v_w[:, None, :, None],
                                v_b[:, None, :, None], self.relu_first).permute(1, 2, 3, 0, 4)
        right, left = h_out[0], h_out[1].flip(-1)
        down, up = v_out[0], v_out[1].flip(-2)
        return up, right, down, left


class _Attention(nn.Module):
    """Upstream's direction-attention branch; kept for its parameters, never run (see module doc)."""

    def __init__(self, channels: int):
        super().__init__()
        hidden = channels // 2
        self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.conv3 = nn.Conv2d(hidden, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv3(F.relu(self.conv2(F.relu(self.conv1(x))))))


class _SAM(nn.Module):
    def __init__(self, channels: int, *, relu_first: bool, impl: IrnnImpl, scan_max_len: int):
        super().__init__()
        irnn_args = dict(relu_first=relu_first, impl=impl, scan_max_len=scan_max_len)
        self.irnn1 = _IRNN(channels, **irnn_args)
        self.irnn2 = _IRNN(channels, **irnn_args)
        self.conv_in = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(4 * channels, channels, 3, padding=1, bias=False)
        self.conv3 = nn.Conv2d(4 * channels, channels, 3, padding=1, bias=False)
        self.attention_layer = _Attention(channels)
        self.conv_out = nn.Conv2d(channels, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        h = self.conv2(torch.cat(self.irnn1(h), dim=1))
        h = F.relu(self.conv3(torch.cat(self.irnn2(h), dim=1)))
        return torch.sigmoid(self.conv_out(h))


class _ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.group1 = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(channels, channels, 1, bias=False),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(channels, channels, 3, padding=2, dilation=2, bias=False),
            relu2=nn.ReLU(),
            conv3=nn.Conv2d(channels, channels, 1, bias=False),
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.group1(x)  # the residual is added (and scaled by the mask) by the caller


class SPANet(nn.Module):
    """SPANet (stevewongv/SPANet): BGR in, derained BGR out (unclamped); loads the authors' weights."""

    input_order = "bgr"
    pad_multiple = 1
    clamps_output = False

    def __init__(self, *, relu_first: bool = False, irnn_impl: IrnnImpl = "auto", scan_max_len: int = 4096):
        super().__init__()
        if irnn_impl not in _IRNN_IMPLS:
            raise ValueError(f"irnn_impl must be one of {_IRNN_IMPLS}, got {irnn_impl!r}")
        if scan_max_len < 2:
            raise ValueError(f"scan_max_len must be >= 2, got {scan_max_len}")
        channels = 32
        self.conv_in = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.ReLU())
        self.SAM1 = _SAM(channels, relu_first=relu_first, impl=irnn_impl, scan_max_len=scan_max_len)
        for k in range(1, 18):
            setattr(self, f"res_block{k}", _ResBlock(channels))
        self.conv_out = nn.Sequential(nn.Conv2d(channels, 3, 3, padding=1, bias=False))

    def forward_with_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mask, image)``: the first SAM mask ``(B, 1, H, W)`` and the derained image."""
        y = self.conv_in(x)
        first_mask = None
        mask = None
        for k in range(1, 18):
            if k in (4, 7, 10, 13):
                mask = self.SAM1(y)
                if first_mask is None:
                    first_mask = mask
            elif k == 16:
                mask = None
            block = getattr(self, f"res_block{k}")(y)
            y = F.relu((block if mask is None else block * mask) + y)
        return first_mask, self.conv_out(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_mask(x)[1]


def convert_official_state_dict(obj: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Turn what ``torch.load`` returns for the authors' ``model/latest`` into a strict state dict.

    The released file is ``{'net': state_dict, 'clock': int, 'opt': optimizer state}``; a bare
    state dict is accepted too, and ``module.`` prefixes are stripped. Raises ValueError naming
    missing or unexpected keys and shape mismatches when it does not fit ``SPANet()``.
    """
    converted = unwrap_state_dict(obj, name="SPANet", wrappers=("net",))
    with torch.device("meta"):
        reference = SPANet().state_dict()
    check_fits(converted, reference, "SPANet")
    return converted
