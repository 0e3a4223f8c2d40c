"""Single-level 2-D Haar wavelet transform, exact and exportable.

Matches ``pytorch_wavelets.DWTForward(J=1, wave="haar", mode="zero")`` and
``DWTInverse(wave="haar")`` (the pair AIMHNet was written with) without depending on that
package at runtime: it is a 2x2 space-to-depth (``pixel_unshuffle``) followed by a butterfly of
additions, so it exports with ``torch.export`` under dynamic H and W and runs anywhere.

Band layout, for a 2x2 block with ``a`` top-left, ``b`` top-right, ``c`` bottom-left and ``d``
bottom-right (pytorch_wavelets' ``yl`` and ``yh[0][:, :, k]``)::

    LL    = (a + b + c + d) / 2
    band0 = (a + b - c - d) / 2
    band1 = (a - b + c - d) / 2
    band2 = (a - b - c + d) / 2

The inverse is the exact orthonormal inverse. Results agree with pytorch_wavelets to float
rounding (it multiplies by 1/sqrt(2) twice where this divides by 2 once).

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


def haar_dwt(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One-level Haar DWT: ``(B, C, H, W)`` -> ``(ll (B, C, h, w), high (B, C, 3, h, w))``."""
    batch, channels, height, width = x.shape
    pad_h, pad_w = height % 2, width % 2
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    # pixel_unshuffle puts the 2x2 block of channel c at channels 4c + (2*row + col).
    blocks = F.pixel_unshuffle(x, 2)
    blocks = blocks.reshape(batch, channels, 4, blocks.shape[-2], blocks.shape[-1])
    a, b, c, d = blocks.unbind(2)
    top_sum, top_diff = a + b, a - b
    bottom_sum, bottom_diff = c + d, c - d
    ll = (top_sum + bottom_sum) * 0.5
    high = torch.stack(
        ((top_sum - bottom_sum) * 0.5, (top_diff + bottom_diff) * 0.5, (top_diff - bottom_diff) * 0.5),
        dim=2,
    )
    return ll, high


def haar_idwt(ll: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Inverse of ``haar_dwt``: ``ll (B, C, h, w)``, ``high (B, C, 3, h, w)`` -> ``(B, C, 2h, 2w)``."""
    band0, band1, band2 = high.unbind(2)
    low_sum, low_diff = ll + band0, ll - band0
    odd_sum, odd_diff = band1 + band2, band1 - band2
    a = (low_sum + odd_sum) * 0.5
    b = (low_sum - odd_sum) * 0.5
    c = (low_diff + odd_diff) * 0.5
    d = (low_diff - odd_diff) * 0.5
    blocks = torch.stack((a, b, c, d), dim=2)
    batch, channels = ll.shape[0], ll.shape[1]
    blocks = blocks.reshape(batch, channels * 4, ll.shape[-2], ll.shape[-1])
    return F.pixel_shuffle(blocks, 2)


def dwt_band_major(x: torch.Tensor) -> torch.Tensor:
    """AIMHNet's down-transform "T": ``(B, C, H, W)`` -> ``(B, 4C, h, w)`` as ``[band0, band1, band2, LL]``."""
    ll, high = haar_dwt(x)
    band0, band1, band2 = high.unbind(2)
    return torch.cat((band0, band1, band2, ll), dim=1)


def idwt_interleaved(x: torch.Tensor) -> torch.Tensor:
    """AIMHNet's up-transform: ``(B, 4C', h, w)`` read as C' groups of (LL, band0, band1, band2) -> ``(B, C', 2h, 2w)``."""
    batch, channels4, height, width = x.shape
    torch._check(channels4 % 4 == 0, lambda: f"channel count {channels4} is not a multiple of 4")
    groups = x.reshape(batch, channels4 // 4, 4, height, width)
    return haar_idwt(groups[:, :, 0], groups[:, :, 1:])
