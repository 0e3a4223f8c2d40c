"""A contact sheet of synthetic rain, so a person can judge it next to real rain.

Rows of (clean | synthetic rainy) crops drawn from a recipe's rain, and, given a folder of real rainy
photos, a third column of crops of those at a comparable scale, so synthetic and real rain sit side
by side. Written as PNG with PyAV.
"""

from __future__ import annotations

from pathlib import Path

import av
import torch
import torch.nn.functional as F

from streamrain.train.clips import camera_path, clip_patch, read_clip
from streamrain.train.data import IMAGE_SUFFIXES, VIDEO_SUFFIXES, list_media, read_image
from streamrain.train.synth import RainMix, RainParams, add_rain
from streamrain.train.video_rain import add_rain_to_clip


def _crop(image: torch.Tensor, side: int, gen: torch.Generator) -> torch.Tensor:
    _, h, w = image.shape
    side_h, side_w = min(side, h), min(side, w)
    top = int(torch.randint(h - side_h + 1, (1,), generator=gen))
    left = int(torch.randint(w - side_w + 1, (1,), generator=gen))
    tile = torch.zeros(3, side, side, dtype=torch.uint8)
    tile[:, :side_h, :side_w] = image[:, top:top + side_h, left:left + side_w]
    return tile


def _real_tile(path: Path, tile: int, gen: torch.Generator) -> torch.Tensor:
    """A crop of a real photo shrunk so that its short side is twice the tile: a view about as
    wide as a training patch, whatever the photo's resolution, so streaks show at their scale."""
    image = read_image(path)
    _, h, w = image.shape
    scale = min(1.0, 2 * tile / min(h, w))
    if scale < 1.0:
        size = (max(tile, round(h * scale)), max(tile, round(w * scale)))
        image = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True,
                              align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
    return _crop(image, tile, gen)


def contact_sheet(clean_dirs: list[Path], rain: RainParams | RainMix, *, count: int = 8, tile: int = 192,
                  real_dir: Path | None = None, seed: int = 0) -> torch.Tensor:
    """uint8 (3, H, W): ``count`` rows of clean | rainy, with a crop of a real rainy photo beside each
    row when ``real_dir`` is given."""
    gen = torch.Generator().manual_seed(seed)
    files = [p for p in list_media(clean_dirs) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise ValueError(f"no clean images under {[str(d) for d in clean_dirs]}")
    picks = torch.randperm(len(files), generator=gen)[:count].tolist()
    clean = torch.stack([_crop(read_image(files[i], max_side=4 * tile), tile, gen) for i in picks])
    rainy = (add_rain(clean.float() / 255, rain, gen) * 255).round().to(torch.uint8)
    columns = [clean, rainy]
    if real_dir is not None:
        real = [p for p in sorted(Path(real_dir).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not real:
            raise ValueError(f"no images under {real_dir}")
        order = torch.randperm(len(real), generator=gen).tolist()
        columns.append(torch.stack([_real_tile(real[order[i % len(real)]], tile, gen)
                                    for i in range(len(picks))]))
    return torch.cat([torch.cat(list(row), dim=2) for row in zip(*columns)], dim=1)


def sequence_strip(clean_dirs: list[Path], rain: RainParams | RainMix, *, frames: int = 6, count: int = 4,
                   tile: int = 192, seed: int = 0) -> torch.Tensor:
    """uint8 (3, H, W): ``count`` rows of ``frames`` consecutive synthetic rainy frames, the clean first
    frame leading each row; rows alternate between real clips (the videos under ``clean_dirs``) and
    photos moved along a random camera path."""
    gen = torch.Generator().manual_seed(seed)
    media = list_media(clean_dirs)
    photos = [p for p in media if p.suffix.lower() in IMAGE_SUFFIXES]
    videos = [p for p in media if p.suffix.lower() in VIDEO_SUFFIXES]
    if not photos and not videos:
        raise ValueError(f"no clean images or clips under {[str(d) for d in clean_dirs]}")
    rows = []
    for i in range(count):
        if videos and (i % 2 == 0 or not photos):
            path = videos[int(torch.randint(len(videos), (1,), generator=gen))]
            clean = clip_patch(read_clip(path, max_side=4 * tile, max_frames=4 * frames), frames, tile, gen)
        else:
            path = photos[int(torch.randint(len(photos), (1,), generator=gen))]
            clean = camera_path(read_image(path, max_side=4 * tile), frames, tile, gen)
        rainy = add_rain_to_clip(clean, rain, gen)
        row = torch.cat([clean[:1], rainy]).mul(255).round().to(torch.uint8)
        rows.append(torch.cat(list(row), dim=2))
    return torch.cat(rows, dim=1)


def save_png(image_chw: torch.Tensor, path: Path) -> None:
    frame = av.VideoFrame.from_ndarray(image_chw.permute(1, 2, 0).contiguous().numpy(), format="rgb24")
    frame.save(str(path))
