"""Training losses used by the recipes. Images are float ``(B, 3, H, W)`` in [0, 1]; clips (temporal
models) ``(B, T, 3, H, W)``: image terms score every frame, clip terms (``CLIP_LOSSES``) the clip."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def charbonnier(pred: torch.Tensor, target: torch.Tensor, *, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def _gauss(sigma: float, radius: int, device) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _ssim_terms(pred, target, g):
    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = _blur(pred, g), _blur(target, g)
    var_x = _blur(pred * pred, g) - mu_x**2
    var_y = _blur(target * target, g) - mu_y**2
    cov = _blur(pred * target, g) - mu_x * mu_y
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    lum = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return lum, cs


def ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - SSIM (11x11 Gaussian, sigma 1.5, data range 1)."""
    lum, cs = _ssim_terms(pred.float(), target.float(), _gauss(1.5, 5, pred.device))
    return 1 - (lum * cs).mean()


def ms_ssim_loss(pred: torch.Tensor, target: torch.Tensor, *, scales: int = 3) -> torch.Tensor:
    """1 - MS-SSIM with the standard scale weights renormalised to ``scales`` levels (patches are small)."""
    weights = torch.tensor([0.0448, 0.2856, 0.3001, 0.2363, 0.1333][:scales], device=pred.device)
    weights = weights / weights.sum()
    g = _gauss(1.5, 5, pred.device)
    x, y = pred.float(), target.float()
    value = torch.ones((), device=pred.device)
    for level in range(scales):
        lum, cs = _ssim_terms(x, y, g)
        term = (lum * cs).mean() if level == scales - 1 else cs.mean()
        value = value * term.clamp(min=1e-6) ** weights[level]
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return 1 - value


def edge_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Charbonnier distance between Laplacians: keeps edges sharp where L1 alone blurs."""
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=pred.device)
    k = k.view(1, 1, 3, 3).repeat(pred.shape[1], 1, 1, 1)

    def lap(t):
        return F.conv2d(F.pad(t.float(), (1, 1, 1, 1), mode="replicate"), k, groups=t.shape[1])

    return charbonnier(lap(pred), lap(target))


def temporal_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Charbonnier distance between the frame-to-frame changes of output and clean clips: flicker
    (residue that comes and goes) costs, motion of the scene does not. The training form of the
    temporal error that `streamrain eval` reports on sequences."""
    return charbonnier(pred[:, 1:].float() - pred[:, :-1].float(), target[:, 1:].float() - target[:, :-1].float())


CLIP_LOSSES = {"temporal": temporal_loss}

# Clip terms the network computes itself, from what it estimates inside (``forward_clips(clean=)``).
NETWORK_CLIP_LOSSES = ("alignment",)  # TRNet.alignment_error: its offsets against the clean clip

LOSSES = {
    "l1": lambda p, t: F.l1_loss(p.float(), t.float()),
    "charbonnier": lambda p, t: charbonnier(p.float(), t.float()),
    "ssim": ssim_loss,
    "ms_ssim": ms_ssim_loss,
    "edge": edge_loss,
}


def combined_loss(weights: dict[str, float]):
    """The weighted sum of the image terms in ``weights`` (clip terms are left to ``clip_loss``)."""
    unknown = sorted(set(weights) - set(LOSSES) - set(CLIP_LOSSES) - set(NETWORK_CLIP_LOSSES))
    if unknown:
        raise ValueError(f"unknown loss term(s) {unknown}; allowed: "
                         f"{sorted(LOSSES) + sorted(CLIP_LOSSES) + sorted(NETWORK_CLIP_LOSSES)}")

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * LOSSES[name](pred, target) for name, w in weights.items() if w and name in LOSSES)

    return loss


def clip_loss(weights: dict[str, float]):
    """The weighted sum of the clip terms in ``weights``, on ``(B, T, 3, H, W)`` clips."""

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * CLIP_LOSSES[name](pred, target) for name, w in weights.items() if w and name in CLIP_LOSSES)

    return loss
