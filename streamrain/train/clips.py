"""Clean clips for temporal training: real footage, and pseudo-video made from photos.

Tensor contract: a clip in a pool is uint8 ``(T, 3, H, W)``; what ``clip_patch`` and ``camera_path``
give is float32 ``(T, 3, P, P)`` in [0, 1].

Real clips are the video files under the clean folders and the folders of consecutive frames named
as such (``frame_dirs``: every folder under them that directly holds images is one sequence, in
name order - a folder of unrelated photos must not be mistaken for one). Photos become clips by a
smooth random camera path: pan, zoom and a slight roll, with a little shake, about as fast as a
handheld or dashcam camera moves (NTURain's camera moves ~3 px per frame at 640x480).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from streamrain.train.data import IMAGE_SUFFIXES, VIDEO_SUFFIXES, _av, _frame_to_chw, read_image
from streamrain.train.synth import RainMix, RainParams
from streamrain.train.video_rain import add_rain_to_clip

log = logging.getLogger(__name__)


def read_clip(path: Path, *, max_side: int, max_frames: int) -> torch.Tensor:
    """uint8 (T, 3, H, W): the first ``max_frames`` consecutive frames of a video file."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(_frame_to_chw(frame, max_side))
            if len(frames) == max_frames:
                break
    return torch.stack(frames)


def frame_folders(dirs: list[Path]) -> list[Path]:
    """Every folder under ``dirs`` (themselves included) that directly holds images."""
    found = []
    for d in dirs:
        for folder in [Path(d), *sorted(p for p in Path(d).rglob("*") if p.is_dir())]:
            if any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
                found.append(folder)
    return found


def load_clip_pool(video_dirs: list[Path], frame_dirs: list[Path], *, max_side: int, min_frames: int,
                   max_frames: int = 120) -> list[torch.Tensor]:
    """The clips under the folders: video files under ``video_dirs``, frame sequences under
    ``frame_dirs``; clips shorter than ``min_frames`` are left out."""
    pool = []
    av = _av()
    for d in video_dirs:
        for path in sorted(p for p in Path(d).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES):
            if av is None:  # a GPU burst machine has no PyAV: its clips come as frame folders
                log.warning("skipping %s: reading clips needs PyAV", path)
                continue
            try:
                pool.append(read_clip(path, max_side=max_side, max_frames=max_frames))
            except (av.FFmpegError, RuntimeError) as exc:
                log.warning("skipping %s: %s", path, exc)
    for folder in frame_folders(frame_dirs):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:max_frames]
        frames = [read_image(p, max_side=max_side) for p in files]
        if len({f.shape for f in frames}) == 1:
            pool.append(torch.stack(frames))
        else:
            log.warning("skipping %s: its frames differ in size", folder)
    return [clip for clip in pool if clip.shape[0] >= min_frames]


def clip_patch(clip: torch.Tensor, frames: int, patch: int, gen: torch.Generator) -> torch.Tensor:
    """``frames`` consecutive frames of ``clip``, cropped to the same ``patch`` square (the whole
    short side shrunk to it when the clip is small), flipped left-right half the time."""
    t, _, h, w = clip.shape
    start = int(torch.randint(t - frames + 1, (1,), generator=gen))
    side = min(h, w, max(patch, round(patch / (0.5 + 0.5 * float(torch.rand(1, generator=gen))))))
    top = int(torch.randint(h - side + 1, (1,), generator=gen))
    left = int(torch.randint(w - side + 1, (1,), generator=gen))
    out = clip[start:start + frames, :, top:top + side, left:left + side].float().div_(255)
    if side != patch:
        out = F.interpolate(out, size=(patch, patch), mode="bilinear", antialias=True, align_corners=False)
    return out.flip(-1) if float(torch.rand(1, generator=gen)) < 0.5 else out


def camera_path(image: torch.Tensor, frames: int, patch: int, gen: torch.Generator, *,
                pan_px: float = 4.0) -> torch.Tensor:
    """A pseudo-video of ``frames`` views of the photo ``image`` (uint8 (3, H, W)) along a smooth
    random camera path: a steady pan of up to ``pan_px`` output pixels per frame in a random
    direction, a zoom of up to 1 % per frame, a roll of up to 0.3 degrees per frame, and a little shake."""
    _, h, w = image.shape
    u = lambda lo, hi: lo + (hi - lo) * float(torch.rand(1, generator=gen))  # noqa: E731
    # The view's half-size in normalised image coordinates: a square of side ``view`` pixels.
    view = min(h, w) * u(0.5, 0.9)
    direction = u(0, 2 * math.pi)
    speed = u(0, pan_px) * view / patch  # image pixels per frame
    zoom, roll = u(-0.01, 0.01), math.radians(u(-0.3, 0.3))
    # Keep the whole path inside the photo: start where the pan has room to run.
    travel_x, travel_y = speed * math.cos(direction) * frames, speed * math.sin(direction) * frames
    margin = view * 0.75
    cx0 = u(margin + max(0.0, -travel_x), max(margin + max(0.0, -travel_x), w - margin - max(0.0, travel_x)))
    cy0 = u(margin + max(0.0, -travel_y), max(margin + max(0.0, -travel_y), h - margin - max(0.0, travel_y)))
    theta = torch.zeros(frames, 2, 3)
    for t in range(frames):
        shake_x, shake_y = (0.3 * float(v) for v in torch.randn(2, generator=gen))
        scale = view * (1 + zoom) ** t
        angle = roll * t
        cx = cx0 + speed * math.cos(direction) * t + shake_x
        cy = cy0 + speed * math.sin(direction) * t + shake_y
        # affine_grid maps output [-1, 1] to input [-1, 1]: scale and rotate the view, then move it.
        sx, sy = scale / w, scale / h
        theta[t, 0] = torch.tensor([sx * math.cos(angle), -sx * math.sin(angle), 2 * cx / w - 1])
        theta[t, 1] = torch.tensor([sy * math.sin(angle), sy * math.cos(angle), 2 * cy / h - 1])
    src = image.float().div(255)[None].expand(frames, -1, -1, -1)
    # Shrink the photo first so that bilinear sampling does not alias when the view is large.
    factor = max(1, int(view // (2 * patch)))
    if factor > 1:
        src = F.avg_pool2d(src, factor)
    grid = F.affine_grid(theta, [frames, 3, patch, patch], align_corners=False)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class SyntheticClips:
    """Batches of (rainy, clean) clips, float32 ``(B, T, 3, P, P)``, deterministic for a given
    generator state: real clean clips (``clips``) and photos moved along a camera path
    (``photos``, a share ``photo_share`` of the samples), with rain that falls through them."""

    def __init__(self, clips: list[torch.Tensor], photos: list[torch.Tensor], *, frames: int, patch: int,
                 rain: RainParams | RainMix, photo_share: float = 0.5):
        if not clips and not photos:
            raise ValueError("no clean clips and no photos to make clips from")
        self.clips = [c for c in clips if c.shape[0] >= frames and min(c.shape[2:]) >= patch // 2]
        self.photos, self.frames, self.patch, self.rain = photos, frames, patch, rain
        self.photo_share = photo_share if self.clips and photos else (1.0 if photos else 0.0)

    def clean_clip(self, gen: torch.Generator) -> torch.Tensor:
        if float(torch.rand(1, generator=gen)) < self.photo_share:
            photo = self.photos[int(torch.randint(len(self.photos), (1,), generator=gen))]
            return camera_path(photo, self.frames, self.patch, gen).clamp_(0, 1)
        clip = self.clips[int(torch.randint(len(self.clips), (1,), generator=gen))]
        return clip_patch(clip, self.frames, self.patch, gen)

    def batch(self, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        clean = torch.stack([self.clean_clip(gen) for _ in range(size)])
        rainy = torch.stack([add_rain_to_clip(c, self.rain, gen) for c in clean])
        return rainy, clean
