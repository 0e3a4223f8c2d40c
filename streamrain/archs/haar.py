"""Single-level 2-D Haar wavelet transform, exact and exportable.

Matches ``pytorch_wavelets.DWTForward(J=1, wave="haar", mode="zero")`` and
``DWTInverse(wave="haar")`` (the pair AIMHNet was written with) without depending on that
package at runtime: the analysis is one depthwise stride-2 ``conv2d`` with four 2x2 filters per
channel and the synthesis one depthwise stride-2 ``conv_transpose2d`` with the same filters
(the orthonormal Haar matrix is its own inverse). Both export with ``torch.export`` under
dynamic H and W as two or three graph nodes.

Band layout, for a 2x2 block with ``a`` top-left, ``b`` top-right, ``c`` bottom-left and ``d``
bottom-right (pytorch_wavelets' ``yl`` and ``yh[0][:, :, k]``)::

    LL    = (a + b + c + d) / 2
    band0 = (a + b - c - d) / 2
    band1 = (a - b + c - d) / 2
    band2 = (a - b - c + d) / 2

Results agree with pytorch_wavelets to float rounding (it multiplies by 1/sqrt(2) twice
where this multiplies by 1/2 once, which is exact).

Tensor contract: ``haar_dwt`` takes ``(B, C, H, W)`` and returns ``ll`` ``(B, C, h, w)`` and
``high`` ``(B, C, 3, h, w)`` with ``h = ceil(H / 2)``, ``w = ceil(W / 2)``; an odd side is
zero-padded at the bottom or right first, as pytorch_wavelets' "zero" mode does. ``haar_idwt``
is the inverse and returns ``(B, C, 2h, 2w)``.

AIMHNet packs the bands into channels in two different orders, reproduced here:

- ``dwt_band_major`` (AIMHNet's "T"): ``[band0, band1, band2, LL]``, each block of C channels.
- ``idwt_interleaved``: reads 4C' channels as C' groups of 4 (``LL, band0, band1, band2``),
  i.e. channel ``j`` is group ``j // 4``, band ``j % 4``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Rows: LL, band0, band1, band2; columns: a, b, c, d (the 2x2 block in row-major order).
_HAAR_ROWS = (
    (0.5, 0.5, 0.5, 0.5),
    (0.5, 0.5, -0.5, -0.5),
    (0.5, -0.5, 0.5, -0.5),
    (0.5, -0.5, -0.5, 0.5),
)
_BAND_MAJOR_ORDER = (1, 2, 3, 0)  # AIMHNet's "T" puts LL last


def _filters(channels: int, like: torch.Tensor, order: tuple[int, ...] = (0, 1, 2, 3)) -> torch.Tensor:
    """Depthwise filter bank ``(4 * channels, 1, 2, 2)``: for each channel the bands in ``order``."""
    bank = torch.tensor([_HAAR_ROWS[k] for k in order], dtype=like.dtype, device=like.device)
    return bank.reshape(4, 1, 2, 2).repeat(channels, 1, 1, 1)


def _analysis(x: torch.Tensor, order: tuple[int, ...]) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, 4C, h, w)`` with channel ``4c + k`` = band ``order[k]`` of channel c."""
    height, width = x.shape[-2], x.shape[-1]
    pad_h, pad_w = height % 2, width % 2
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    channels = x.shape[1]
    return F.conv2d(x, _filters(channels, x, order), stride=2, groups=channels)


def haar_dwt(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One-level Haar DWT: ``(B, C, H, W)`` -> ``(ll (B, C, h, w), high (B, C, 3, h, w))``."""
    y = _analysis(x, (0, 1, 2, 3))
    y = y.reshape(y.shape[0], x.shape[1], 4, y.shape[-2], y.shape[-1])
    return y[:, :, 0], y[:, :, 1:]


def haar_idwt(ll: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Inverse of ``haar_dwt``: ``ll (B, C, h, w)``, ``high (B, C, 3, h, w)`` -> ``(B, C, 2h, 2w)``."""
    groups = torch.cat((ll.unsqueeze(2), high), dim=2)
    batch, channels = ll.shape[0], ll.shape[1]
    return idwt_interleaved(groups.reshape(batch, 4 * channels, ll.shape[-2], ll.shape[-1]))


def dwt_band_major(x: torch.Tensor) -> torch.Tensor:
    """AIMHNet's down-transform "T": ``(B, C, H, W)`` -> ``(B, 4C, h, w)`` as ``[band0, band1, band2, LL]``.

    Band-major: channels ``0..C-1`` hold band0 of every input channel, and so on.
    """
    y = _analysis(x, _BAND_MAJOR_ORDER)
    batch, channels, height, width = y.shape[0], x.shape[1], y.shape[-2], y.shape[-1]
    return y.reshape(batch, channels, 4, height, width).transpose(1, 2).reshape(batch, 4 * channels, height, width)


def idwt_interleaved(x: torch.Tensor) -> torch.Tensor:
    """AIMHNet's up-transform: ``(B, 4C', h, w)``, read as C' groups of (LL, band0, band1, band2),
    -> ``(B, C', 2h, 2w)``."""
    channels4 = x.shape[1]
    if channels4 % 4:
        raise ValueError(f"idwt_interleaved needs a multiple of 4 channels, got {channels4}")
    channels = channels4 // 4
    # The orthonormal Haar matrix is symmetric, so synthesis uses the analysis filters.
    return F.conv_transpose2d(x, _filters(channels, x), stride=2, groups=channels)
