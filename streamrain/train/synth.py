"""Synthetic rain over clean images, batched in torch: light streaks, heavy rain and what real rain adds.

Tensor contract: clean and rainy images are float32 ``(B, 3, H, W)`` in [0, 1]; rain layers are
``(B, 1, H, W)`` intensities >= 0 (the shape of the rain; its colour comes from the scene's light).

A rainy picture is built back to front, every part drawn per sample from ``RainParams`` ranges:

1. far and mid streak layers: sparse random seeds, widened by a small Gaussian across, smeared along
   the fall direction by a tapered kernel (motion blur) - the Photoshop recipe behind Rain100L/H.
   Layers share a direction, or (Rain100H) each falls its own way;
2. splashes where drops hit the ground (the lower part of the frame);
3. the veil: light scattered by the accumulated drops, ``I = J t + A (1 - t)``, with the
   transmission ``t`` lower where a depth-like map says the scene is farther (top of the frame,
   smooth random variation): it lowers contrast, more in the distance;
4. one near streak layer in front of the veil: sparse, long, wide and out of focus;
5. drops sitting on the lens; then the camera: sensor noise and JPEG compression (``camera``).

Streaks are either added to the scene (``J + a C``, Rain100L/H's model) or occlude it
(``J (1 - a) + a C``, what dense real rain looks like); their colour ``C`` is white or the light of
the scene around them. Every part but the first is off unless a recipe switches it on, so a recipe
written before a part existed keeps the rain it had. ``RainMix`` draws each sample's rain from one
of several parameter sets (light and heavy rain in one model's data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from streamrain.train.camera import jpeg_compress, sensor_noise

Range = tuple[float, float]


@dataclass(frozen=True)
class RainParams:
    """Ranges from which each sample's rain is drawn uniformly; probabilities per sample."""

    # Far and mid streak layers.
    layers: tuple[int, int] = (1, 2)
    density: Range = (0.002, 0.02)  # fraction of pixels that seed a streak
    angle_deg: Range = (-25.0, 25.0)  # the sample's fall direction, from vertical
    length_px: Range = (8.0, 40.0)
    width_sigma_px: Range = (0.3, 1.0)
    brightness: Range = (0.3, 1.0)
    direction_jitter_deg: float = 5.0  # how far a second layer's direction strays from the first's
    # In clips (``video_rain``): how many streak lengths a drop falls from one frame to the next,
    # 1 / (frame rate x exposure): 1-2 for a 1/30 s frame with the shutter open 1/60-1/30 s; a
    # daylight shutter (1/250 s and shorter) draws short streaks that jump 8 lengths and more.
    fall_per_length: Range = (1.0, 2.0)
    multi_direction_probability: float = 0.0  # each layer falls its own way (Rain100H)...
    multi_direction_spread_deg: float = 40.0  # ...within this many degrees of the sample's direction
    # How streaks meet the scene.
    occlusion_probability: float = 0.0  # streaks occlude the scene rather than add to it
    scene_light: Range = (0.0, 0.0)  # 0: white streaks, 1: streaks take the colour of the scene's light
    # Splashes on the ground.
    splash_probability: float = 0.0
    splash_density: Range = (0.0005, 0.003)
    splash_size_px: Range = (0.6, 1.8)
    splash_brightness: Range = (0.3, 0.9)
    # The veil (rain accumulation): mean fraction of atmospheric light over the frame.
    veil: Range = (0.0, 0.0)
    veil_probability: float = 0.0
    veil_depth_variation: float = 0.0  # 0: the same everywhere; 1: from none (near) to twice the mean (far)
    veil_light: Range = (0.75, 1.0)  # the atmospheric light A
    # One near streak layer, in front of the veil.
    near_probability: float = 0.0
    near_density: Range = (0.0002, 0.001)
    near_length_px: Range = (40.0, 100.0)
    near_width_sigma_px: Range = (1.0, 2.5)
    near_blur_px: Range = (1.0, 3.0)  # out of focus
    near_brightness: Range = (0.3, 0.8)
    # Drops sitting on the lens or windscreen.
    lens_drops: tuple[int, int] = (0, 0)
    lens_drop_radius_px: Range = (4.0, 14.0)
    lens_drop_probability: float = 0.0
    # The camera: noise at mid-grey, in [0, 1] units, and JPEG quality of the rainy picture.
    noise_probability: float = 0.0
    noise_sigma: Range = (0.002, 0.02)
    jpeg_probability: float = 0.0
    jpeg_quality: Range = (40.0, 95.0)

    @classmethod
    def from_dict(cls, values: dict) -> "RainParams":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown rain parameter(s) {unknown}; allowed: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True)
class RainMix:
    """Each sample's rain drawn from one of several named parameter sets, chosen with ``shares``."""

    names: tuple[str, ...]
    shares: tuple[float, ...]
    params: tuple[RainParams, ...]

    @classmethod
    def from_dict(cls, tables: dict) -> "RainMix":
        names, shares, params = [], [], []
        for name, table in tables.items():
            if not isinstance(table, dict):
                raise ValueError(f"a mix of rain kinds takes only tables ([rain.NAME]); {name!r} is not one")
            table = dict(table)
            share = float(table.pop("share", 1.0))
            if share <= 0:
                raise ValueError(f"[rain.{name}] share must be > 0, got {share}")
            try:
                params.append(RainParams.from_dict(table))
            except ValueError as exc:
                raise ValueError(f"[rain.{name}] {exc}") from exc
            names.append(name)
            shares.append(share)
        total = sum(shares)
        return cls(tuple(names), tuple(s / total for s in shares), tuple(params))


def rain_from_dict(values: dict) -> RainParams | RainMix:
    """A recipe's ``[rain]``: one parameter set, or sub-tables ``[rain.NAME]`` (with ``share``) for a mix."""
    tables = [k for k, v in values.items() if isinstance(v, dict)]
    if tables and len(tables) != len(values):
        flat = sorted(set(values) - set(tables))
        raise ValueError(f"give either rain parameters or [rain.NAME] tables, not both (found {flat} beside {tables})")
    return RainMix.from_dict(values) if tables else RainParams.from_dict(values)


def uniform(n: int, bounds: Range, gen: torch.Generator) -> torch.Tensor:
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def chance(n: int, probability: float, gen: torch.Generator) -> torch.Tensor:
    """(n,) float mask: 1 for the samples that get a component drawn with ``probability``."""
    return (torch.rand(n, generator=gen) < probability).float()


def _taper_kernels(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 1, size, 1) vertical kernels: brighter in the middle of a streak, fading at its ends."""
    t = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    half = lengths[:, None] / 2
    taper = torch.clamp(1 - (t[None] / half) ** 2, min=0).sqrt()
    return taper[:, None, :, None]


def _per_sample_conv(x: torch.Tensor, kernels: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
    """Each sample of ``x`` (N, 1, H, W) convolved with its own kernel of ``kernels`` (N, 1, kh, kw)."""
    n = x.shape[0]
    return F.conv2d(x.transpose(0, 1), kernels, padding=padding, groups=n).transpose(0, 1)


def _gaussian_taps(sigmas: torch.Tensor, radius: int, *, peak_one: bool) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t[None] / sigmas.clamp(min=1e-3)[:, None]) ** 2)
    return k if peak_one else k / k.sum(dim=1, keepdim=True)


def _across_blur(x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Per-sample horizontal blur normalised to peak 1: widens a seed without dimming its centre."""
    radius = max(3, math.ceil(3 * float(sigmas.max())))
    k = _gaussian_taps(sigmas, radius, peak_one=True)
    return _per_sample_conv(x, k[:, None, None, :], (0, radius))


def _blur(x: torch.Tensor, sigma_y: torch.Tensor, sigma_x: torch.Tensor) -> torch.Tensor:
    """Per-sample separable Gaussian blur (sums to 1: spreads light without adding any)."""
    ry = max(1, math.ceil(3 * float(sigma_y.max())))
    rx = max(1, math.ceil(3 * float(sigma_x.max())))
    x = _per_sample_conv(x, _gaussian_taps(sigma_y, ry, peak_one=False)[:, None, :, None], (ry, 0))
    return _per_sample_conv(x, _gaussian_taps(sigma_x, rx, peak_one=False)[:, None, None, :], (0, rx))


def rotate_crop(canvas: torch.Tensor, angles_rad: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The centre ``height x width`` of each square canvas, rotated by its angle (bilinear)."""
    n, _, side, _ = canvas.shape
    cos, sin = torch.cos(angles_rad), torch.sin(angles_rad)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * width / side, -sin * height / side
    theta[:, 1, 0], theta[:, 1, 1] = sin * width / side, cos * height / side
    grid = F.affine_grid(theta, [n, 1, height, width], align_corners=False)
    return F.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _streak_ranges(params: RainParams, near: bool) -> tuple[Range, Range, Range, Range]:
    """(density, length, width, brightness) ranges of a far/mid layer, or of the near layer."""
    if near:
        return params.near_density, params.near_length_px, params.near_width_sigma_px, params.near_brightness
    return params.density, params.length_px, params.width_sigma_px, params.brightness


def vertical_streaks(n: int, rows: int, cols: int, density: torch.Tensor, length_range: Range,
                     width_range: Range, gen: torch.Generator) -> torch.Tensor:
    """(n, 1, rows, cols) vertical streaks: seeds (``density`` (n,) or per row (n, rows)), widened
    across, smeared along the fall by a tapered kernel of a per-sample length."""
    p = density[:, None, :, None] if density.dim() == 2 else density[:, None, None, None]
    seeds = (torch.rand(n, 1, rows, cols, generator=gen) < p).float()
    seeds = seeds * torch.rand(n, 1, rows, cols, generator=gen)  # each drop its own brightness
    seeds = _across_blur(seeds, uniform(n, width_range, gen))
    size = int(math.ceil(length_range[1])) | 1
    kernels = _taper_kernels(uniform(n, length_range, gen), size)
    return _per_sample_conv(seeds, kernels, (size // 2, 0))


def defocus(streaks: torch.Tensor, sigma_px: torch.Tensor) -> torch.Tensor:
    """A near layer out of focus by ``sigma_px`` (n,): spread by the blur but kept as visible (wide,
    not faint)."""
    return _blur(streaks, sigma_px, sigma_px) * (1 + sigma_px)[:, None, None, None]


def streak_layer(
    n: int, height: int, width: int, params: RainParams, gen: torch.Generator,
    angles_rad: torch.Tensor | None = None, *, near: bool = False,
) -> torch.Tensor:
    """One streak layer per sample, (n, 1, height, width), values >= 0 (not clipped); ``near`` draws
    the near layer (sparse, long, wide, out of focus) instead of a far/mid one.

    Streaks are drawn vertically on a square canvas large enough for any rotation (a 1-D smear costs
    far less than a 2-D line kernel), then the canvas is rotated to the fall angle and cropped.
    """
    density_r, length_r, width_r, bright_r = _streak_ranges(params, near)
    side = canvas_side(height, width)
    streaks = vertical_streaks(n, side, side, uniform(n, density_r, gen), length_r, width_r, gen)
    if angles_rad is None:
        angles_rad = torch.deg2rad(uniform(n, params.angle_deg, gen))
    streaks = rotate_crop(streaks, angles_rad, height, width)
    if near:
        streaks = defocus(streaks, uniform(n, params.near_blur_px, gen))
    return streaks * uniform(n, bright_r, gen)[:, None, None, None]


def canvas_side(height: int, width: int) -> int:
    """The side of a square canvas that covers a ``height x width`` frame at any rotation."""
    return math.ceil(math.hypot(height, width)) + 2


def layer_angles(n: int, layers: int, params: RainParams, gen: torch.Generator) -> list[torch.Tensor]:
    """Each layer's fall angle (radians, (n,)): near the sample's direction, or its own where the
    sample has rain from several directions."""
    base = uniform(n, params.angle_deg, gen)
    several = chance(n, params.multi_direction_probability, gen)
    angles = []
    for layer in range(layers):
        jitter = uniform(n, (-params.direction_jitter_deg, params.direction_jitter_deg), gen) if layer \
            else torch.zeros(n)
        spread = params.multi_direction_spread_deg
        own = uniform(n, (-spread, spread), gen) if layer else torch.zeros(n)
        angles.append(torch.deg2rad(base + several * own + (1 - several) * jitter))
    return angles


def scene_light(clean: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) colour of the streaks: white, or (``amount`` -> 1) the scene's light around
    them, since a drop refracts what surrounds it - bluish in a street at dusk, grey under clouds."""
    h, w = clean.shape[-2:]
    pool = max(1, min(h, w) // 8)
    surround = F.interpolate(F.avg_pool2d(clean, pool, ceil_mode=True), size=(h, w), mode="bilinear",
                             align_corners=False)
    lit = (surround * 1.3 + 0.15).clamp(0, 1)
    a = amount[:, None, None, None]
    return (1 - a) + a * lit


def composite(image: torch.Tensor, alpha: torch.Tensor, colour: torch.Tensor,
               occlude: torch.Tensor) -> torch.Tensor:
    """Rain of intensity ``alpha`` (B, 1, H, W) and ``colour`` over ``image``: added, or occluding
    where ``occlude`` (B,) is 1."""
    a = alpha.clamp(0, 1)
    o = occlude[:, None, None, None]
    return (1 - o) * (image + a * colour) + o * (image * (1 - a) + a * colour)


def _depth_map(n: int, height: int, width: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 1, H, W) in [0, 1], 1 farthest: the top of a frame is usually farther than its bottom
    (sky, the end of a street), plus smooth random variation (buildings, trees, open space)."""
    rows = torch.linspace(1.0, 0.0, height)[None, None, :, None].expand(n, 1, height, width)
    coarse = torch.rand(n, 1, 4, 4, generator=gen)
    smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)
    tilt = uniform(n, (0.3, 1.0), gen)[:, None, None, None]
    return tilt * rows + (1 - tilt) * smooth


def veil_haze(n: int, height: int, width: int, params: RainParams,
              gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(haze (n, 1, H, W) = 1 - t, atmospheric light (n, 1, 1, 1)) of the veil, zero haze for the
    samples drawn to have none."""
    strength = uniform(n, params.veil, gen) * chance(n, params.veil_probability, gen)
    light = uniform(n, params.veil_light, gen)[:, None, None, None]
    depth = _depth_map(n, height, width, gen)
    variation = params.veil_depth_variation
    shape = (1 - variation) + variation * depth / depth.mean(dim=(2, 3), keepdim=True)
    return (strength[:, None, None, None] * shape).clamp(0, 0.95), light


def add_veil(image: torch.Tensor, params: RainParams, gen: torch.Generator) -> torch.Tensor:
    """The veil of accumulated rain, ``I = J t + A (1 - t)``, for the samples drawn to have one."""
    n, _, h, w = image.shape
    haze, light = veil_haze(n, h, w, params, gen)
    return image * (1 - haze) + light * haze


def splashes(n: int, height: int, width: int, params: RainParams, gen: torch.Generator) -> torch.Tensor:
    """(n, 1, H, W) splashes: small bright crowns, flatter than tall, on the lower half of the frame
    (where the ground usually is), denser towards the bottom."""
    rows = ((torch.linspace(0.0, 1.0, height) - 0.5) / 0.5).clamp(min=0)[None, None, :, None]
    density = uniform(n, params.splash_density, gen)[:, None, None, None] * 2 * rows
    seeds = (torch.rand(n, 1, height, width, generator=gen) < density).float()
    seeds = seeds * torch.rand(n, 1, height, width, generator=gen)
    size = uniform(n, params.splash_size_px, gen)
    # A Gaussian of sigma s sums to 1; times 2*pi*s^2 its peak is the seed's own brightness again.
    peak = 2 * math.pi * (size * 1.5) * (size * 0.7)
    blobs = _blur(seeds, size * 0.7, size * 1.5) * peak[:, None, None, None]
    return blobs * uniform(n, params.splash_brightness, gen)[:, None, None, None]


def lens_drop_masks(n: int, height: int, width: int, params: RainParams,
                    gen: torch.Generator) -> torch.Tensor:
    """(n, 1, H, W) in [0, 1]: where drops sit on the lens, soft-edged; empty for samples drawn to
    have none."""
    yy, xx = torch.meshgrid(torch.arange(height, dtype=torch.float32),
                            torch.arange(width, dtype=torch.float32), indexing="ij")
    masks = torch.zeros(n, 1, height, width)
    for i in range(n):
        if float(torch.rand(1, generator=gen)) >= params.lens_drop_probability:
            continue
        count = int(torch.randint(params.lens_drops[0], params.lens_drops[1] + 1, (1,), generator=gen))
        for _ in range(count):
            r = float(uniform(1, params.lens_drop_radius_px, gen))
            cy, cx = float(torch.rand(1, generator=gen)) * height, float(torch.rand(1, generator=gen)) * width
            squash = 0.7 + 0.6 * float(torch.rand(1, generator=gen))  # drops are rarely round
            d = torch.sqrt(((yy - cy) / (r * squash)) ** 2 + ((xx - cx) / r) ** 2)
            masks[i, 0] = torch.maximum(masks[i, 0], torch.clamp((1.0 - d) * 4.0, 0, 1))  # soft rim
    return masks


def apply_lens_drops(image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Each drop shows a blurred, flipped, brighter patch of the scene behind it (a drop is a small
    lens, out of focus)."""
    h, w = image.shape[-2:]
    blurred = F.interpolate(F.avg_pool2d(image, 8, ceil_mode=True), size=(h, w), mode="bilinear",
                            align_corners=False).flip(-2)
    return image * (1 - masks) + (blurred * 1.1 + 0.05).clamp(0, 1) * masks


def add_lens_drops(image: torch.Tensor, params: RainParams, gen: torch.Generator) -> torch.Tensor:
    """Drops on the lens, for the samples drawn to have them."""
    n, _, h, w = image.shape
    return apply_lens_drops(image, lens_drop_masks(n, h, w, params, gen))


def add_camera(image: torch.Tensor, params: RainParams, gen: torch.Generator) -> torch.Tensor:
    """Sensor noise and JPEG compression, each for the samples drawn to have it."""
    n = image.shape[0]
    if params.noise_probability > 0:
        sigma = uniform(n, params.noise_sigma, gen) * chance(n, params.noise_probability, gen)
        image = sensor_noise(image, sigma, gen)
    if params.jpeg_probability > 0:
        quality = uniform(n, params.jpeg_quality, gen)
        chosen = chance(n, params.jpeg_probability, gen).bool()
        if chosen.any():
            image = image.clone()
            image[chosen] = jpeg_compress(image[chosen], quality[chosen])
    return image


def _add_rain_one_kind(clean: torch.Tensor, params: RainParams, gen: torch.Generator) -> torch.Tensor:
    n, _, h, w = clean.shape
    layers = int(params.layers[1])
    counts = torch.randint(int(params.layers[0]), layers + 1, (n,), generator=gen)
    rain = torch.zeros(n, 1, h, w)
    for layer, angles in enumerate(layer_angles(n, layers, params, gen)):
        streaks = streak_layer(n, h, w, params, gen, angles_rad=angles)
        rain = rain + streaks * (counts > layer).float()[:, None, None, None]
    occlude = chance(n, params.occlusion_probability, gen)
    lit = params.scene_light != (0.0, 0.0)
    colour = scene_light(clean, uniform(n, params.scene_light, gen)) if lit else torch.ones(n, 1, 1, 1)
    rainy = composite(clean, rain, colour, occlude)
    if params.splash_probability > 0:
        drawn = splashes(n, h, w, params, gen)
        rainy = composite(rainy, drawn * chance(n, params.splash_probability, gen)[:, None, None, None],
                          colour, occlude)
    if params.veil_probability > 0:
        rainy = add_veil(rainy, params, gen)
    if params.near_probability > 0:
        near = streak_layer(n, h, w, params, gen, angles_rad=layer_angles(n, 1, params, gen)[0], near=True)
        near = near * chance(n, params.near_probability, gen)[:, None, None, None]
        rainy = composite(rainy, near, colour, occlude)
    rainy = rainy.clamp(0, 1)
    if params.lens_drop_probability > 0 and params.lens_drops[1] > 0:
        rainy = add_lens_drops(rainy, params, gen)
    return add_camera(rainy, params, gen)


def add_rain(clean: torch.Tensor, rain: RainParams | RainMix, gen: torch.Generator) -> torch.Tensor:
    """Rainy version of ``clean`` (B, 3, H, W) in [0, 1], with rain drawn from ``rain``;
    deterministic for the generator's state."""
    if isinstance(rain, RainParams):
        return _add_rain_one_kind(clean, rain, gen)
    bounds = torch.tensor(rain.shares).cumsum(0)
    kinds = torch.searchsorted(bounds, torch.rand(clean.shape[0], generator=gen) * float(bounds[-1]))
    kinds = kinds.clamp(max=len(rain.params) - 1)
    rainy = torch.empty_like(clean)
    for kind, params in enumerate(rain.params):
        chosen = kinds == kind
        if chosen.any():
            rainy[chosen] = _add_rain_one_kind(clean[chosen], params, gen)
    return rainy


def falling_rain(frames: int, height: int, width: int, params: RainParams, gen: torch.Generator, *,
                 speed_px: float = 24.0) -> torch.Tensor:
    """Rain for a video, (frames, 1, height, width): each layer is one tall streak field that slides
    along its fall direction from frame to frame, so a drop moves instead of flickering."""
    travel = int(math.ceil(speed_px * frames)) + 1
    tall = height + travel
    angle = torch.deg2rad(uniform(1, params.angle_deg, gen))
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
