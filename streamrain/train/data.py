"""Training data: clean images (and frames of clean clips) turned into rainy/clean pairs on the fly.

Images are read with PyAV (no extra image library) and kept in memory as uint8 ``(3, H, W)`` tensors,
shrunk so that their longest side is at most ``max_side``. Where PyAV is missing (a GPU machine lent
for a training burst has Pillow but no PyAV), images are read with Pillow and clips are skipped. Patches get scale jitter and flips, then
rain from ``streamrain.train.synth``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from streamrain.train.synth import RainMix, RainParams, add_rain

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm"}


def _av():
    """PyAV, or None where it is not installed."""
    try:
        import av
    except ImportError:
        return None
    return av


def _decode_errors() -> tuple[type[Exception], ...]:
    """What reading a broken image raises: PyAV's error, or Pillow's (OSError) without PyAV."""
    av = _av()
    return (av.FFmpegError,) if av is not None else (OSError,)


def _frame_to_chw(frame, max_side: int) -> torch.Tensor:
    scale = min(1.0, max_side / max(frame.width, frame.height))
    if scale < 1.0:
        frame = frame.reformat(
            width=max(2, round(frame.width * scale)), height=max(2, round(frame.height * scale)),
            interpolation="AREA",
        )
    return torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).contiguous()


def read_image(path: Path, *, max_side: int = 100_000) -> torch.Tensor:
    """uint8 RGB (3, H, W) of the first frame of an image file."""
    av = _av()
    if av is None:
        return _read_image_pillow(path, max_side)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return _frame_to_chw(frame, max_side)


def _read_image_pillow(path: Path, max_side: int) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = min(1.0, max_side / max(image.size))
        if scale < 1.0:
            image = image.resize((max(2, round(image.width * scale)), max(2, round(image.height * scale))),
                                 Image.Resampling.BOX)
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()


def read_clip_frames(path: Path, *, every: int, max_side: int) -> list[torch.Tensor]:
    av = _av()
    if av is None:
        log.warning("skipping %s: reading clips needs PyAV", path)
        return []
    with av.open(str(path)) as container:
        return [
            _frame_to_chw(frame, max_side)
            for i, frame in enumerate(container.decode(video=0)) if i % every == 0
        ]


def list_media(dirs: list[Path], *, exclude: tuple[str, ...] = ()) -> list[Path]:
    files = []
    for d in dirs:
        for p in sorted(Path(d).rglob("*")):
            rel = str(p.relative_to(d))
            if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES and not any(x in rel for x in exclude):
                files.append(p)
    return files


def load_clean_pool(
    dirs: list[Path], *, max_side: int, min_side: int, clip_every: int = 25, exclude: tuple[str, ...] = (),
) -> list[torch.Tensor]:
    """Every usable clean picture under ``dirs``; unreadable files are logged and skipped."""
    pool: list[torch.Tensor] = []
    for path in list_media(dirs, exclude=exclude):
        try:
            if path.suffix.lower() in VIDEO_SUFFIXES:
                images = read_clip_frames(path, every=clip_every, max_side=max_side)
            else:
                images = [read_image(path, max_side=max_side)]
        except (_decode_errors() + (StopIteration,)) as exc:
            log.warning("skipping %s: %s", path, exc)
            continue
        pool.extend(im for im in images if min(im.shape[1:]) >= min_side)
    if not pool:
        raise ValueError(f"no clean images of at least {min_side} px found under {[str(d) for d in dirs]}")
    return pool


def random_crop(pool: list[torch.Tensor], patch: int, scale: tuple[float, float],
                gen: torch.Generator) -> torch.Tensor:
    """A float ``(C, patch, patch)`` crop in [0, 1] of a random uint8 image of ``pool``: a random
    square shrunk by a random factor from ``scale`` (scale jitter), flipped left-right half the time."""
    image = pool[int(torch.randint(len(pool), (1,), generator=gen))]
    _, h, w = image.shape
    s = scale[0] + (scale[1] - scale[0]) * float(torch.rand(1, generator=gen))
    side = min(h, w, max(patch, round(patch / s)))
    top = int(torch.randint(h - side + 1, (1,), generator=gen))
    left = int(torch.randint(w - side + 1, (1,), generator=gen))
    crop = image[:, top:top + side, left:left + side].float().div_(255)
    if side != patch:
        crop = F.interpolate(crop[None], size=(patch, patch), mode="bilinear",
                             antialias=True, align_corners=False)[0]
    if float(torch.rand(1, generator=gen)) < 0.5:
        crop = crop.flip(-1)
    return crop


class SyntheticPairs:
    """Draws batches of (rainy, clean) float patches, deterministic for a given generator state."""

    def __init__(self, pool: list[torch.Tensor], *, patch: int, rain: RainParams | RainMix,
                 scale: tuple[float, float] = (0.5, 1.0)):
        self.pool = pool
        self.patch = patch
        self.rain = rain
        self.scale = scale

    def batch(self, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        clean = torch.stack([random_crop(self.pool, self.patch, self.scale, gen)
                             for _ in range(size)]).clamp_(0, 1)
        return add_rain(clean, self.rain, gen), clean


class MixedPairs:
    """Batches drawn from several pair sources (synthetic, paired folders) in fixed shares."""

    def __init__(self, sources: list, shares: list[float]):
        self.sources = sources
        self.shares = shares

    def batch(self, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        counts = [round(size * share) for share in self.shares[:-1]]
        counts.append(size - sum(counts))
        parts = [source.batch(n, gen) for source, n in zip(self.sources, counts) if n > 0]
        return torch.cat([rainy for rainy, _ in parts]), torch.cat([clean for _, clean in parts])
