"""What the camera adds after the rain: sensor noise and lossy compression of the rainy picture.

Tensor contract: float32 ``(B, 3, H, W)`` RGB in [0, 1]; per-sample strengths are ``(B,)`` tensors.
Only the rainy input is degraded, never the clean target, so a model learns to leave compression
blocks and noise alone rather than to mistake them for rain.

The compression is JPEG done in torch (full-range BT.601 Y'CbCr, 4:2:0 chroma, 8x8 DCT, the
quantisation tables of ITU-T T.81 Annex K scaled by a quality as libjpeg does): batched, seeded and
without an image library, and close to what both JPEG photos and intra-coded H.264 frames show
(block edges, ringing, lost chroma detail).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_LUMA_TABLE = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
], dtype=torch.float32)
_CHROMA_TABLE = torch.full((8, 8), 99.0)
_CHROMA_TABLE[:4, :4] = torch.tensor([
    [17, 18, 24, 47],
    [18, 21, 26, 66],
    [24, 26, 56, 99],
    [47, 66, 99, 99],
], dtype=torch.float32)


def _dct_matrix() -> torch.Tensor:
    """The orthonormal 8-point DCT-II as a matrix: coefficients = D @ block @ D.T."""
    k = torch.arange(8, dtype=torch.float64)[:, None]
    n = torch.arange(8, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * n + 1) * k / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.float()


_DCT = _dct_matrix()


def quality_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(luma, chroma) quantisation tables, each (B, 8, 8), for JPEG qualities 1..100 (libjpeg's scaling)."""
    q = quality.clamp(1, 100)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q)[:, None, None]
    luma = ((_LUMA_TABLE * scale + 50) / 100).floor().clamp(1, 255)
    chroma = ((_CHROMA_TABLE * scale + 50) / 100).floor().clamp(1, 255)
    return luma, chroma


def _quantise_plane(plane: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """A (B, H, W) plane (0-255, H and W multiples of 8) through DCT, quantisation and back."""
    b, h, w = plane.shape
    blocks = (plane - 128).reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)
    coeffs = _DCT @ blocks @ _DCT.T
    t = tables[:, None, None]
    coeffs = torch.round(coeffs / t) * t
    blocks = _DCT.T @ coeffs @ _DCT
    return blocks.permute(0, 1, 3, 2, 4).reshape(b, h, w) + 128


def jpeg_compress(rgb: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """``rgb`` (B, 3, H, W) in [0, 1] after a JPEG round trip at per-sample ``quality`` (B,)."""
    b, _, h, w = rgb.shape
    pad_h, pad_w = -h % 16, -w % 16  # whole 16x16 macroblocks, as the chroma is halved
    x = F.pad(rgb, (0, pad_w, 0, pad_h), mode="replicate") * 255
    r, g, bl = x[:, 0], x[:, 1], x[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * bl
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * bl
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * bl
    luma_t, chroma_t = quality_tables(quality)
    y = _quantise_plane(y, luma_t)
    chroma = F.avg_pool2d(torch.stack([cb, cr], 1), 2)
    chroma = torch.stack([_quantise_plane(chroma[:, i], chroma_t) for i in range(2)], 1)
    cb, cr = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False).unbind(1)
    out = torch.stack([
        y + 1.402 * (cr - 128),
        y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
        y + 1.772 * (cb - 128),
    ], 1)
    return (out[:, :, :h, :w].round() / 255).clamp(0, 1)


def sensor_noise(rgb: torch.Tensor, sigma: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Signal-dependent Gaussian noise (shot noise grows with brightness, read noise does not): a
    per-sample ``sigma`` (B,) at mid-grey, in [0, 1] units."""
    std = sigma[:, None, None, None] * (0.5 + rgb).sqrt()  # sqrt(0.5 + 0.5) = 1 at mid-grey
    return (rgb + std * torch.randn(rgb.shape, generator=gen)).clamp(0, 1)
