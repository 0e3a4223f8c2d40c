"""Rain that moves like rain, over a clip: training data for temporal models.

Tensor contract: sequences are float32 ``(T, 3, H, W)`` in [0, 1], frame 0 first.

The parts of ``streamrain.train.synth`` with the behaviour in time that real rain has:

- each streak layer is one tall field of streaks that slides along its fall direction, so a drop
  persists from frame to frame and new drops enter at the top; every layer has its own speed,
  tied to its streak length (a streak is the distance a drop falls while the shutter is open), so
  near, long streaks fall faster than far, short ones; its density drifts slowly as it enters;
- the veil and the drops on the lens stay where they are; splashes come and go;
- the camera's noise is new in every frame, its JPEG quality is the sequence's.

The rain lives in the camera's frame: a panning camera moves the scene, not the rain.
"""

from __future__ import annotations

import math

import torch

from streamrain.train.camera import jpeg_compress, sensor_noise
from streamrain.train.synth import (
    RainMix, RainParams, apply_lens_drops, canvas_side, chance, composite, defocus, layer_angles,
    lens_drop_masks, rotate_crop, scene_light, splashes, uniform, veil_haze, vertical_streaks,
    _streak_ranges,
)


def sliding_layer(frames: int, height: int, width: int, params: RainParams, gen: torch.Generator,
                  angle_rad: float, *, near: bool = False) -> torch.Tensor:
    """(frames, 1, H, W): one streak layer falling through a clip at a steady speed and direction."""
    density_r, length_r, width_r, bright_r = _streak_ranges(params, near)
    side = canvas_side(height, width)
    length = float(uniform(1, length_r, gen))
    speed = length * float(uniform(1, params.fall_per_length, gen))  # px per frame along the fall
    travel = int(math.ceil(speed * (frames - 1)))
    rows = side + travel
    # Density drifts slowly: a gentle wave along the field, which enters the frame row by row.
    wave = 1 + 0.5 * torch.sin(torch.linspace(0, 2 * math.pi * float(uniform(1, (0.2, 1.0), gen)), rows)
                               + float(uniform(1, (0, 2 * math.pi), gen)))
    density = float(uniform(1, density_r, gen)) * wave
    field = vertical_streaks(1, rows, side, density[None], (length, length), width_r, gen)
    windows = torch.cat([field[:, :, travel - round(speed * t):][:, :, :side] for t in range(frames)])
    layer = rotate_crop(windows, torch.full((frames,), angle_rad), height, width)
    if near:
        layer = defocus(layer, uniform(1, params.near_blur_px, gen).expand(frames))
    return layer * float(uniform(1, bright_r, gen))


def add_rain_to_clip(clean: torch.Tensor, rain: RainParams | RainMix, gen: torch.Generator) -> torch.Tensor:
    """Rainy version of the clip ``clean`` (T, 3, H, W), deterministic for the generator's state."""
    if isinstance(rain, RainMix):
        bounds = torch.tensor(rain.shares).cumsum(0)
        kind = int(torch.searchsorted(bounds, torch.rand(1, generator=gen) * float(bounds[-1])))
        rain = rain.params[min(kind, len(rain.params) - 1)]
    frames, _, h, w = clean.shape
    params = rain
    layers = int(torch.randint(int(params.layers[0]), int(params.layers[1]) + 1, (1,), generator=gen))
    angles = [float(a) for a in layer_angles(1, max(1, layers), params, gen)]
    streaks = torch.zeros(frames, 1, h, w)
    for layer in range(layers):
        streaks += sliding_layer(frames, h, w, params, gen, angles[layer])
    occlude = chance(1, params.occlusion_probability, gen).expand(frames)
    lit = params.scene_light != (0.0, 0.0)
    colour = scene_light(clean, uniform(1, params.scene_light, gen).expand(frames)) if lit \
        else torch.ones(frames, 1, 1, 1)
    rainy = composite(clean, streaks, colour, occlude)
    if params.splash_probability > 0 and float(chance(1, params.splash_probability, gen)):
        rainy = composite(rainy, splashes(frames, h, w, params, gen), colour, occlude)  # new ones each frame
    if params.veil_probability > 0:
        haze, light = veil_haze(1, h, w, params, gen)
        rainy = rainy * (1 - haze) + light * haze
    if params.near_probability > 0 and float(chance(1, params.near_probability, gen)):
        near_angle = float(layer_angles(1, 1, params, gen)[0])
        rainy = composite(rainy, sliding_layer(frames, h, w, params, gen, near_angle, near=True), colour, occlude)
    rainy = rainy.clamp(0, 1)
    if params.lens_drop_probability > 0 and params.lens_drops[1] > 0:
        rainy = apply_lens_drops(rainy, lens_drop_masks(1, h, w, params, gen))
    if params.noise_probability > 0 and float(chance(1, params.noise_probability, gen)):
        rainy = sensor_noise(rainy, uniform(1, params.noise_sigma, gen).expand(frames), gen)
    if params.jpeg_probability > 0 and float(chance(1, params.jpeg_probability, gen)):
        rainy = jpeg_compress(rainy, uniform(1, params.jpeg_quality, gen).expand(frames))
    return rainy
