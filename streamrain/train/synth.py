"""Synthetic rain over clean images, batched in torch.

Tensor contract: clean and rainy images are float32 ``(B, 3, H, W)`` in [0, 1]; rain layers are
``(B, 1, H, W)`` (rain is achromatic, as in Rain100L/H, where the R and B residuals correlate at 0.99).

A streak layer is made like the Photoshop recipe behind Rain100L/H: sparse random seeds, widened by a
small Gaussian across, smeared along the fall direction by a tapered kernel (motion blur), scaled by a
brightness and added to the image. Heavy rain adds a veil (light scattered by the accumulated drops).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

Range = tuple[float, float]


@dataclass(frozen=True)
class RainParams:
    """Ranges from which each sample's rain is drawn uniformly."""

    layers: tuple[int, int] = (1, 2)
    density: Range = (0.002, 0.02)  # fraction of pixels that seed a streak
    angle_deg: Range = (-25.0, 25.0)  # from vertical, shared by the layers of one sample (+-5 jitter)
    length_px: Range = (8.0, 40.0)
    width_sigma_px: Range = (0.3, 1.0)
    brightness: Range = (0.3, 1.0)
    veil: Range = (0.0, 0.0)  # heavy-rain haze: fraction of atmospheric light mixed in
    veil_probability: float = 0.0
    lens_drops: tuple[int, int] = (0, 0)  # drops sitting on the lens or windscreen
    lens_drop_radius_px: Range = (4.0, 14.0)
    lens_drop_probability: float = 0.0

    @classmethod
    def from_dict(cls, values: dict) -> "RainParams":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown rain parameter(s) {unknown}; allowed: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _uniform(n: int, bounds: Range, gen: torch.Generator) -> torch.Tensor:
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _taper_kernels(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 1, size, 1) vertical kernels: brighter in the middle of a streak, fading at its ends."""
    t = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    half = lengths[:, None] / 2
    taper = torch.clamp(1 - (t[None] / half) ** 2, min=0).sqrt()
    return taper[:, None, :, None]


def _across_blur(x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Per-sample horizontal blur normalised to peak 1: widens a seed without dimming its centre."""
    n, radius = x.shape[0], 3
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t[None] / sigmas[:, None]) ** 2)  # (N, 7), peak 1
    return F.conv2d(x.transpose(0, 1), k[:, None, None, :], padding=(0, radius), groups=n).transpose(0, 1)


def _rotate_crop(canvas: torch.Tensor, angles_rad: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The centre ``height x width`` of each square canvas, rotated by its angle (bilinear)."""
    n, _, side, _ = canvas.shape
    cos, sin = torch.cos(angles_rad), torch.sin(angles_rad)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * width / side, -sin * height / side
    theta[:, 1, 0], theta[:, 1, 1] = sin * width / side, cos * height / side
    grid = F.affine_grid(theta, [n, 1, height, width], align_corners=False)
    return F.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def streak_layer(
    n: int, height: int, width: int, params: RainParams, gen: torch.Generator,
    angles_rad: torch.Tensor | None = None,
) -> torch.Tensor:
    """One streak layer per sample, (n, 1, height, width), values >= 0 (not clipped).

    Streaks are drawn vertically on a square canvas large enough for any rotation (a 1-D smear costs
    far less than a 2-D line kernel), then the canvas is rotated to the fall angle and cropped.
    """
    side = math.ceil(math.hypot(height, width)) + 2
    density = _uniform(n, params.density, gen)
    seeds = (torch.rand(n, 1, side, side, generator=gen) < density[:, None, None, None]).float()
    seeds = seeds * torch.rand(n, 1, side, side, generator=gen)  # each drop its own brightness
    seeds = _across_blur(seeds, _uniform(n, params.width_sigma_px, gen))
    size = int(math.ceil(params.length_px[1])) | 1
    kernels = _taper_kernels(_uniform(n, params.length_px, gen), size)
    streaks = F.conv2d(seeds.transpose(0, 1), kernels, padding=(size // 2, 0), groups=n).transpose(0, 1)
    if angles_rad is None:
        angles_rad = torch.deg2rad(_uniform(n, params.angle_deg, gen))
    streaks = _rotate_crop(streaks, angles_rad, height, width)
    return streaks * _uniform(n, params.brightness, gen)[:, None, None, None]


def add_rain(clean: torch.Tensor, params: RainParams, gen: torch.Generator) -> torch.Tensor:
    """Rainy version of ``clean`` (B, 3, H, W) in [0, 1], with rain drawn from ``params``."""
    n, _, h, w = clean.shape
    base_angle = torch.deg2rad(_uniform(n, params.angle_deg, gen))
    max_layers = int(params.layers[1])
    counts = torch.randint(int(params.layers[0]), max_layers + 1, (n,), generator=gen)
    rain = torch.zeros(n, 1, h, w)
    for layer in range(max_layers):
        jitter = torch.deg2rad(_uniform(n, (-5.0, 5.0), gen)) if layer else torch.zeros(n)
        streaks = streak_layer(n, h, w, params, gen, angles_rad=base_angle + jitter)
        rain = rain + streaks * (counts > layer).float()[:, None, None, None]
    rainy = clean + rain.clamp(0, 1)
    veil = _uniform(n, params.veil, gen) * (torch.rand(n, generator=gen) < params.veil_probability).float()
    light = _uniform(n, (0.75, 1.0), gen)
    v = veil[:, None, None, None]
    rainy = rainy * (1 - v) + v * light[:, None, None, None]
    if params.lens_drop_probability > 0 and params.lens_drops[1] > 0:
        rainy = add_lens_drops(rainy, params, gen)
    return rainy.clamp(0, 1)


def add_lens_drops(image: torch.Tensor, params: RainParams, gen: torch.Generator) -> torch.Tensor:
    """Drops on the lens: out of focus, each shows a blurred, flipped, brighter patch of the scene
    behind it (a drop is a small lens), with a soft edge."""
    n, _, h, w = image.shape
    out = image.clone()
    # What a drop shows: the scene heavily defocused and turned upside down, as through a tiny lens.
    blurred = F.interpolate(F.avg_pool2d(image, 8, ceil_mode=True), size=(h, w), mode="bilinear",
                            align_corners=False).flip(-2)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    for i in range(n):
        if float(torch.rand(1, generator=gen)) >= params.lens_drop_probability:
            continue
        count = int(torch.randint(params.lens_drops[0], params.lens_drops[1] + 1, (1,), generator=gen))
        mask = torch.zeros(h, w)
        for _ in range(count):
            r = float(_uniform(1, params.lens_drop_radius_px, gen))
            cy, cx = float(torch.rand(1, generator=gen)) * h, float(torch.rand(1, generator=gen)) * w
            squash = 0.7 + 0.6 * float(torch.rand(1, generator=gen))  # drops are rarely round
            d = torch.sqrt(((yy - cy) / (r * squash)) ** 2 + ((xx - cx) / r) ** 2)
            mask = torch.maximum(mask, torch.clamp((1.0 - d) * 4.0, 0, 1))  # soft rim
        out[i] = image[i] * (1 - mask) + (blurred[i] * 1.1 + 0.05).clamp(0, 1) * mask
    return out


def falling_rain(frames: int, height: int, width: int, params: RainParams, gen: torch.Generator, *,
                 speed_px: float = 24.0) -> torch.Tensor:
    """Rain for a video, (frames, 1, height, width): each layer is one tall streak field that slides
    along its fall direction from frame to frame, so a drop moves instead of flickering."""
    travel = int(math.ceil(speed_px * frames)) + 1
    tall = height + travel
    angle = torch.deg2rad(_uniform(1, params.angle_deg, gen))
    layers = int(torch.randint(int(params.layers[0]), int(params.layers[1]) + 1, (1,), generator=gen))
    rain = torch.zeros(frames, 1, height, width)
    for layer in range(layers):
        speed = speed_px * (1.0 + 0.5 * layer)  # nearer layers fall faster
        field = streak_layer(1, tall, width, params, gen, angles_rad=angle)[0, 0]
        dx_per_px = math.tan(float(angle))
        for t in range(frames):
            top = int(round(travel - speed * t)) % (tall - height + 1)
            shift = int(round(speed * t * dx_per_px)) % width
            rain[t, 0] += torch.roll(field[top:top + height], shifts=-shift, dims=1)
    return rain.clamp(0, 1)
