"""ReMAEN: recurrent multi-scale aggregation and enhancement network (ICME 2019), in PyTorch.

Paper: Y. Yang, H. Lu, "Single image deraining using a recurrent multi-scale aggregation and
enhancement network", ICME 2019. Upstream: https://github.com/nnUyi/ReMAEN (TensorFlow 1.x +
slim, ``codes/ReMAEN.py``).

Structure (C = 32, every convolution 3x3, stride 1, "same", with bias): a stage runs four MAEBs
(multi-scale aggregation: one pair of convolutions applied at dilations 1, 2 and 3 with shared
weights, summed, squeeze-excitation), each followed by a ConvGRU, then three ConvGRUs on the
way back with skip additions from the MAEBs, then a residual generator; ``derain = input -
residual``. Three stages share every weight; each of the seven GRUs carries its hidden state
(its output after the path's shared SE and LeakyReLU) from one stage to the next. The output is
the stage-3 derain. 495,771 parameters; about 493 GMAC at 480x640.

Tensor contract: ``forward(x)`` takes **BGR** ``(B, 3, H, W)`` float in [0, 1] (upstream read
images with cv2), any H and W, and returns the derained BGR image, not clamped.
``forward_stages(x)`` returns the list of per-stage derains.

Differences from upstream (and why):

- PyTorch instead of TensorFlow; NCHW instead of NHWC. Upstream's TF AUTO_REUSE weight sharing
  is expressed directly: one ``d1`` and one ``d2`` convolution per MAEB used at three
  dilations, one SE per path shared by its GRUs, one module reused for all stages.
- Parameter names follow the TF variable scopes (``derainNet/ReMAEN/extracting_path/MAEB1/d1``
  -> ``maeb1.d1``; ``.../convGRU1/conv_xz`` -> ``gru1.conv_xz``; ``extracting_path/SEBlock`` ->
  ``extracting_se``; ``responding_path/conv5`` -> ``conv5``; ``responding_path/convGRU5`` ->
  ``gru5``; ``responding_path/SEBlock`` -> ``responding_se``; ``RMG/Conv``, ``RMG/SEBlock``,
  ``RMG/Conv_1`` -> ``rmg_conv``, ``rmg_se``, ``rmg_conv_1``; SE ``fully_connected`` /
  ``fully_connected_1`` -> ``fc1`` / ``fc2``). ``convert_tf_variables`` does the mapping,
  including the layout change (conv ``[kh, kw, in, out]`` -> ``[out, in, kh, kw]``, FC
  ``[in, out]`` -> ``[out, in]``). The only released checkpoint (Rain100L) is incomplete in
  the public snapshot (its data shard is missing), so no weights are loaded here and the
  mapping is checked only by a round trip, not against real TF files.
- At stage 1 the GRUs have no hidden state and use only ``conv_xz`` and ``conv_xn``, as
  upstream; the other four GRU convolutions are used from stage 2 on.
- Weight initialisation is PyTorch's default, not TF's Xavier (irrelevant for loaded weights).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class _SE(nn.Module):
    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * scale[:, :, None, None]


class _MAEB(nn.Module):
    def __init__(self, in_channels: int, channels: int, dilations: tuple[int, ...] = (1, 2, 3)):
        super().__init__()
        self.dilations = dilations
        self.d1 = nn.Conv2d(in_channels, channels, 3)
        self.d2 = nn.Conv2d(channels, channels, 3)
        self.se = _SE(channels, channels // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for d in self.dilations:
            y = _lrelu(F.conv2d(x, self.d1.weight, self.d1.bias, padding=d, dilation=d))
            y = _lrelu(F.conv2d(y, self.d2.weight, self.d2.bias, padding=d, dilation=d))
            total = y if total is None else total + y
        return self.se(total)


class _ConvGRU(nn.Module):
    """Upstream's ConvGRU cell before the shared SE (which belongs to the path, not the cell)."""

    def __init__(self, channels: int):
        super().__init__()
        for name in ("conv_xz", "conv_xn", "conv_xr", "conv_hz", "conv_hr", "conv_hn"):
            setattr(self, name, nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        if h is None:
            return torch.sigmoid(self.conv_xz(x)) * torch.tanh(self.conv_xn(x))
        r = torch.sigmoid(self.conv_hr(h) + self.conv_xr(x))
        z = torch.sigmoid(self.conv_hz(h) + self.conv_xz(x))
        n = torch.tanh(self.conv_xn(x) + self.conv_hn(r * h))
        return (1 - z) * h + z * n


class ReMAEN(nn.Module):
    """ReMAEN (nnUyi/ReMAEN): BGR in, derained BGR out (unclamped); three shared-weight stages."""

    input_order = "bgr"
    pad_multiple = 1
    clamps_output = False

    def __init__(self, *, channels: int = 32, stages: int = 3):
        super().__init__()
        if channels < 4 or channels % 4:
            raise ValueError(f"channels must be a positive multiple of 4, got {channels}")
        if stages < 1:
            raise ValueError(f"stages must be >= 1, got {stages}")
        self.stages = stages
        self.maeb1 = _MAEB(3, channels)
        self.maeb2 = _MAEB(channels, channels)
        self.maeb3 = _MAEB(channels, channels)
        self.maeb4 = _MAEB(channels, channels)
        self.gru1 = _ConvGRU(channels)
        self.gru2 = _ConvGRU(channels)
        self.gru3 = _ConvGRU(channels)
        self.gru4 = _ConvGRU(channels)
        self.gru5 = _ConvGRU(channels)
        self.gru6 = _ConvGRU(channels)
        self.gru7 = _ConvGRU(channels)
        self.extracting_se = _SE(channels, channels // 4)
        self.responding_se = _SE(channels, channels // 4)
        self.conv5 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv6 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv7 = nn.Conv2d(channels, channels, 3, padding=1)
        self.rmg_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.rmg_se = _SE(channels, channels // 4)
        self.rmg_conv_1 = nn.Conv2d(channels, 3, 3, padding=1)

    @staticmethod
    def _gru(cell: _ConvGRU, se: _SE, x: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        # The output after the path's shared SE and LeakyReLU is also the state for the next stage.
        return _lrelu(se(cell(x, h)))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-stage derained images (the last one is ``forward``'s output)."""
        h: list[torch.Tensor | None] = [None] * 7
        ext, resp = self.extracting_se, self.responding_se
        derains = []
        derain = x
        for _ in range(self.stages):
            m1 = self.maeb1(derain)
            g1 = self._gru(self.gru1, ext, m1, h[0])
            m2 = self.maeb2(g1)
            g2 = self._gru(self.gru2, ext, m2, h[1])
            m3 = self.maeb3(g2)
            g3 = self._gru(self.gru3, ext, m3, h[2])
            m4 = self.maeb4(g3)
            g4 = self._gru(self.gru4, ext, m4, h[3])
            g5 = self._gru(self.gru5, resp, F.relu(self.conv5(g4)) + m3, h[4])
            g6 = self._gru(self.gru6, resp, F.relu(self.conv6(g5)) + m2, h[5])
            g7 = self._gru(self.gru7, resp, F.relu(self.conv7(g6)) + m1, h[6])
            residual = self.rmg_conv_1(_lrelu(self.rmg_se(self.rmg_conv(g7))))
            derain = derain - residual
            derains.append(derain)
            h = [g1, g2, g3, g4, g5, g6, g7]
        return derains

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)[-1]


def _tf_name_map() -> dict[str, str]:
    """TF variable name (without ``derainNet/`` and ``:0``) -> this port's parameter name."""
    names: dict[str, str] = {}

    def conv(tf_scope: str, ours: str) -> None:
        names[f"{tf_scope}/weights"] = f"{ours}.weight"
        names[f"{tf_scope}/biases"] = f"{ours}.bias"

    def se(tf_scope: str, ours: str) -> None:
        conv(f"{tf_scope}/SEBlock/fully_connected", f"{ours}.fc1")
        conv(f"{tf_scope}/SEBlock/fully_connected_1", f"{ours}.fc2")

    extracting, responding = "ReMAEN/extracting_path", "ReMAEN/responding_path"
    for k in range(1, 5):
        conv(f"{extracting}/MAEB{k}/d1", f"maeb{k}.d1")
        conv(f"{extracting}/MAEB{k}/d2", f"maeb{k}.d2")
        se(f"{extracting}/MAEB{k}", f"maeb{k}.se")
    for k in range(1, 8):
        path = extracting if k <= 4 else responding
        for gate in ("xz", "xn", "xr", "hz", "hr", "hn"):
            conv(f"{path}/convGRU{k}/conv_{gate}", f"gru{k}.conv_{gate}")
    se(extracting, "extracting_se")
    se(responding, "responding_se")
    for k in (5, 6, 7):
        conv(f"{responding}/conv{k}", f"conv{k}")
    conv("RMG/Conv", "rmg_conv")
    se("RMG", "rmg_se")
    conv("RMG/Conv_1", "rmg_conv_1")
    return names


def convert_tf_variables(variables: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Convert upstream TF checkpoint variables (name -> array) to a strict-loadable state dict.

    Names may carry the ``derainNet/`` prefix and a ``:0`` suffix; Adam slots and unknown names
    are ignored. Raises ValueError naming missing variables or shape mismatches.
    """
    by_name = _tf_name_map()
    converted: dict[str, torch.Tensor] = {}
    for name, value in variables.items():
        short = name.removesuffix(":0").removeprefix("derainNet/")
        if short not in by_name:
            continue
        array = torch.as_tensor(np.asarray(value, dtype=np.float32))
        if array.ndim == 4:
            array = array.permute(3, 2, 0, 1)
        elif array.ndim == 2:
            array = array.t()
        converted[by_name[short]] = array.contiguous()
    with torch.device("meta"):
        reference = ReMAEN().state_dict()
    missing = sorted(key for key in reference if key not in converted)
    mismatched = [
        f"{key}: got {tuple(converted[key].shape)}, expected {tuple(reference[key].shape)}"
        for key in sorted(converted)
        if converted[key].shape != reference[key].shape
    ]
    if missing or mismatched:
        inverse = {ours: tf for tf, ours in by_name.items()}
        missing_tf = [inverse[key] for key in missing]
        raise ValueError(
            f"TF variables do not fit ReMAEN: missing ({len(missing_tf)}): {missing_tf[:10]}; "
            f"shape mismatches ({len(mismatched)}): {mismatched[:10]}"
        )
    return converted
