"""Image-quality metrics in torch, matching the deraining protocol (design notes, `streamrain eval`).

Inputs are uint8-valued images as float tensors ``(3, H, W)`` in [0, 255], RGB.
Y is ITU-R BT.601 luma as MATLAB's rgb2ycbcr computes it for uint8 images (16-235, rounded).
SSIM follows scikit-image's ``structural_similarity(data_range=255, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)``: an 11x11 Gaussian window, averaged over the pixels at least 5 px from
the border (the only ones scikit-image keeps), per channel then averaged.
"""

from __future__ import annotations

import math

import torch

_Y_WEIGHTS = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64) / 255.0


def rgb_to_y(rgb_255: torch.Tensor) -> torch.Tensor:
    """(3, H, W) in [0, 255] -> (1, H, W) luma in [16, 235], rounded like MATLAB's uint8 output."""
    y = 16.0 + torch.einsum("c,chw->hw", _Y_WEIGHTS, rgb_255.double())
    return y.round().unsqueeze(0)


def psnr(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 255.0) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def _gaussian_taps(sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    """The 1-D factor of scikit-image's 11x11 Gaussian window (the window is its outer product)."""
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 255.0) -> float:
    """Mean SSIM of two (C, H, W) images, scikit-image's Gaussian variant."""
    taps = _gaussian_taps().tolist()
    x, y = a.double(), b.double()

    def blur_along(t: torch.Tensor, dim: int) -> torch.Tensor:
        # 'valid' filtering as a weighted sum of shifted views: exactly scikit-image's cropped
        # region, and far faster than float64 conv2d (which has no vectorised CPU kernel).
        n = t.shape[dim] - len(taps) + 1
        out = t.narrow(dim, 0, n) * taps[0]
        for k in range(1, len(taps)):
            out.add_(t.narrow(dim, k, n), alpha=taps[k])
        return out

    def blur(t: torch.Tensor) -> torch.Tensor:
        return blur_along(blur_along(t, -2), -1)  # the 11x11 window is separable

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.mean(dim=(1, 2)).mean().item()
