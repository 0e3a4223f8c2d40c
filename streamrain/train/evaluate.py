"""`streamrain eval`: a model on paired rainy/clean images or sequences, with the deraining protocol's metrics.

Images go through the same uint8 path as video frames (the Derainer), so the numbers describe what
users get, precision included. ``--rainy``/``--clean`` folders pair files by exact name; ``--pairs``
takes any layout of ``streamrain.train.paired`` (its test split where it has one).

A *sequence* is consecutive frames of one video: a pair of frame folders (sorted by name = time order)
or a pair of videos (decoded like the product decodes them, paired by frame index). Its frames go
through a ``FrameStream`` in time order, which may hand outputs back a few frames later (a temporal
derainer's look-ahead); each output is scored against the oldest frame still waiting. A sequence adds
the temporal error: the mean over t >= 1 of mean |(out_t - out_{t-1}) - (clean_t - clean_{t-1})| on
BT.601 Y (``rgb_to_y``'s 16-235 scale); lower is steadier, 0 is perfect. ``input_*`` scores the rainy
frames themselves, the baseline. Over several sequences each sequence counts once (the mean of the
per-sequence means), as video-deraining papers average over their test sequences.

Images are uint8 ``(3, H, W)`` tensors; derainers and frame streams see numpy ``rgb_u8_hwc`` frames.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np
import torch

from streamrain.errors import InputError, ModelError
from streamrain.io.source import VideoSource, parse_source
from streamrain.train.data import IMAGE_SUFFIXES, read_image
from streamrain.train.metrics import psnr, rgb_to_y, ssim
from streamrain.train.paired import PairsError, find_pairs, load_pair


@dataclass
class EvalResult:
    """What `streamrain eval --json` writes; the optional fields only for sequences."""

    model: str
    n: int
    psnr_y: float
    ssim_y: float
    psnr_rgb: float
    ssim_rgb: float
    input_psnr_y: float
    seconds: float
    input_ssim_y: float | None = None
    temporal_error: float | None = None
    input_temporal_error: float | None = None
    sequences: list[dict] | None = None  # per-sequence scores, when more than one sequence was scored

    def to_json(self) -> dict:
        return {k: _rounded(v) for k, v in self.__dict__.items() if v is not None}


def _rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        return [{k: _rounded(v) for k, v in item.items()} for item in value]
    return value


# -- image pairs ----------------------------------------------------------------------------------

def paired_files(rainy_dir: Path, clean_dir: Path) -> list[tuple[Path, Path]]:
    for d in (rainy_dir, clean_dir):
        if not Path(d).is_dir():
            raise InputError(f"{d}: not a folder")
    clean = {p.name: p for p in Path(clean_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs = [(p, clean[p.name]) for p in sorted(Path(rainy_dir).iterdir()) if p.name in clean]
    if not pairs:
        raise InputError(f"no file names in common between {rainy_dir} and {clean_dir}")
    return pairs


def _load_same_size(rainy_path: Path, clean_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    rainy, clean = read_image(rainy_path), read_image(clean_path)
    if rainy.shape != clean.shape:
        raise InputError(f"{rainy_path.name}: rainy {tuple(rainy.shape)} and clean "
                         f"{tuple(clean.shape)} differ in size")
    return rainy, clean


def pair_loaders(rainy_dir: Path | None = None, clean_dir: Path | None = None, *,
                 pairs_dir: Path | None = None, side_by_side: str = "rainy-left") -> list:
    """[(name, load)] where load() gives uint8 (3, H, W) rainy and clean images of the same size.
    Raises InputError at once when the folders hold no pairs."""
    if pairs_dir is not None:
        try:
            _, files = find_pairs(Path(pairs_dir), split="test")
        except PairsError as exc:
            raise InputError(str(exc)) from exc
        return [(f.rainy.name, lambda f=f: load_pair(f, side_by_side=side_by_side)) for f in files]
    return [(r.name, lambda r=r, c=c: _load_same_size(r, c))
            for r, c in paired_files(Path(rainy_dir), Path(clean_dir))]


class _Scores:
    """Running means of the protocol's metrics over frames; with ``temporal`` also input SSIM-Y and
    the temporal errors of consecutive frames (which is why frames must be added in time order)."""

    def __init__(self, *, temporal: bool):
        self.temporal = temporal
        self.n = 0
        self.sums = dict(psnr_y=0.0, ssim_y=0.0, psnr_rgb=0.0, ssim_rgb=0.0, input_psnr_y=0.0)
        if temporal:
            self.sums.update(input_ssim_y=0.0, temporal_error=0.0, input_temporal_error=0.0)
        self._previous_y: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def add(self, rainy: torch.Tensor, clean: torch.Tensor, out: torch.Tensor) -> None:
        out_f, clean_f, rainy_f = out.float(), clean.float(), rainy.float()
        y_out, y_clean, y_rainy = rgb_to_y(out_f), rgb_to_y(clean_f), rgb_to_y(rainy_f)
        self.sums["psnr_y"] += psnr(y_out, y_clean)
        self.sums["ssim_y"] += ssim(y_out, y_clean)
        self.sums["psnr_rgb"] += psnr(out_f, clean_f)
        self.sums["ssim_rgb"] += ssim(out_f, clean_f)
        self.sums["input_psnr_y"] += psnr(y_rainy, y_clean)
        if self.temporal:
            self.sums["input_ssim_y"] += ssim(y_rainy, y_clean)
            if self._previous_y is not None:
                prev_out, prev_clean, prev_rainy = self._previous_y
                change_clean = y_clean - prev_clean
                self.sums["temporal_error"] += ((y_out - prev_out) - change_clean).abs().mean().item()
                self.sums["input_temporal_error"] += ((y_rainy - prev_rainy) - change_clean).abs().mean().item()
            self._previous_y = (y_out, y_clean, y_rainy)
        self.n += 1

    def means(self) -> dict[str, float]:
        temporal_keys = ("temporal_error", "input_temporal_error")
        return {k: v / (self.n - 1 if k in temporal_keys else self.n) for k, v in self.sums.items()}


def evaluate(derainer, pairs: list, *, limit: int | None = None, on_image=None) -> EvalResult:
    """Scores ``derainer`` on ``pairs`` from ``pair_loaders``, each image on its own."""
    pairs = pairs[:limit]
    scores = _Scores(temporal=False)
    seconds = 0.0
    for name, load in pairs:
        try:
            rainy, clean = load()
        except PairsError as exc:
            raise InputError(str(exc)) from exc
        t0 = time.perf_counter()
        out = derainer(_to_hwc(rainy)[None])[0]
        seconds += time.perf_counter() - t0
        scores.add(rainy, clean, _to_chw(out))
        if on_image:
            on_image(name)
    return EvalResult(model=derainer.name, n=scores.n, seconds=round(seconds, 3), **scores.means())


def _to_hwc(chw_u8: torch.Tensor) -> np.ndarray:
    return chw_u8.permute(1, 2, 0).contiguous().numpy()


def _to_chw(rgb_u8_hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb_u8_hwc).permute(2, 0, 1)


# -- sequences ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sequence:
    """Consecutive frames of one video: ``frames()`` yields (rainy, clean) uint8 (3, H, W) in time order."""

    name: str
    frames: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]] = field(repr=False)


def folder_sequence(rainy_dir: Path, clean_dir: Path, *, name: str | None = None) -> Sequence:
    """Two folders of frames with the same file names, sorted by name = time order. Raises InputError
    at once when a frame lacks its partner (a gap would make a "consecutive" difference span two steps)."""
    rainy_dir, clean_dir = Path(rainy_dir), Path(clean_dir)
    for d in (rainy_dir, clean_dir):
        if not d.is_dir():
            raise InputError(f"{d}: not a folder")
    names = {d: sorted(p.name for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
             for d in (rainy_dir, clean_dir)}
    for d, other in ((rainy_dir, clean_dir), (clean_dir, rainy_dir)):
        missing = sorted(set(names[d]) - set(names[other]))
        if missing:
            raise InputError(f"{d / missing[0]}: no frame of that name in {other} "
                             f"({len(missing)} unpaired); a sequence needs every frame in both folders")
    if len(names[rainy_dir]) < 2:
        raise InputError(f"{rainy_dir}: a sequence needs at least 2 frames; it has {len(names[rainy_dir])}")

    def frames():
        for frame_name in names[rainy_dir]:
            yield _load_same_size(rainy_dir / frame_name, clean_dir / frame_name)
    return Sequence(name or rainy_dir.parent.name or str(rainy_dir), frames)


def video_sequence(rainy_video: Path, clean_video: Path, *, name: str | None = None) -> Sequence:
    """Two videos decoded as the product decodes them (the stream's own colour matrix), paired by frame
    index. Raises InputError when their frame counts or sizes differ."""
    specs = [parse_source(str(p)) for p in (rainy_video, clean_video)]

    def frames():
        with VideoSource(specs[0], copy_streams=False) as rainy_src, \
                VideoSource(specs[1], copy_streams=False) as clean_src:
            rainy_frames, clean_frames = rainy_src.items(), clean_src.items()
            for index in itertools.count():
                rainy, clean = next(rainy_frames, None), next(clean_frames, None)
                if rainy is None or clean is None:
                    if rainy is not None or clean is not None:
                        counts = (index + (rainy is not None) + sum(1 for _ in rainy_frames),
                                  index + (clean is not None) + sum(1 for _ in clean_frames))
                        raise InputError(f"--rainy {rainy_video} has {counts[0]} frames but --clean "
                                         f"{clean_video} has {counts[1]}; the videos must match frame for frame")
                    return
                if rainy.rgb_u8.shape != clean.rgb_u8.shape:
                    raise InputError(f"frame {index}: --rainy {rainy_video} is {rainy.rgb_u8.shape[1]}x"
                                     f"{rainy.rgb_u8.shape[0]} but --clean {clean_video} is "
                                     f"{clean.rgb_u8.shape[1]}x{clean.rgb_u8.shape[0]}")
                yield _to_chw(rainy.rgb_u8), _to_chw(clean.rgb_u8)
    return Sequence(name or Path(rainy_video).stem, frames)


def sequences_in(root: Path) -> list[Sequence]:
    """One sequence per subfolder of ``root`` (sorted by name), each holding ``rainy/`` and ``clean/``
    folders of frames; the subfolder's name names the sequence."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"--sequences {root}: not a folder")
    subfolders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not subfolders:
        raise InputError(f"--sequences {root}: no subfolders (expected NAME/rainy/ and NAME/clean/)")
    for d in subfolders:
        if not ((d / "rainy").is_dir() and (d / "clean").is_dir()):
            raise InputError(f"--sequences {root}: {d.name}/ has no rainy/ and clean/ folders")
    return [folder_sequence(d / "rainy", d / "clean", name=d.name) for d in subfolders]


class FrameStream(Protocol):
    """Frames in, in time order; derained frames out, in the same order, possibly a few pushes later
    (look-ahead). ``flush()`` at the end of the input returns whatever is still held."""

    def push(self, rgb_u8_hwc: np.ndarray) -> list[np.ndarray]: ...

    def flush(self) -> list[np.ndarray]: ...


class PerFrame:
    """A single-frame derainer (``derainer(rgb_u8_bhwc) -> rgb_u8_bhwc``) as a FrameStream: every
    frame comes back at once, derained on its own."""

    def __init__(self, derainer):
        self.derainer = derainer

    def push(self, rgb_u8_hwc: np.ndarray) -> list[np.ndarray]:
        return [self.derainer(rgb_u8_hwc[None])[0]]

    def flush(self) -> list[np.ndarray]:
        return []


class Streamed:
    """A temporal derainer's stream (``TemporalDerainer.stream()``) as a FrameStream: one frame per
    batch, outputs back once their look-ahead has arrived, the rest at ``flush()``."""

    def __init__(self, stream):
        self.stream = stream

    def push(self, rgb_u8_hwc: np.ndarray) -> list[np.ndarray]:
        return [pixels for _, pixels in self.stream.collect(self.stream.submit(rgb_u8_hwc[None]))]

    def flush(self) -> list[np.ndarray]:
        return [pixels for _, pixels in self.stream.flush()]


def evaluate_sequences(derainer, sequences: list[Sequence], *, limit: int | None = None,
                       on_frame: Callable[[str], None] | None = None,
                       open_stream: Callable[[], FrameStream] | None = None) -> EvalResult:
    """Scores ``derainer`` on each sequence, frames fed in time order.

    ``open_stream`` makes a fresh FrameStream per sequence, so nothing of one sequence reaches the
    next; by default ``PerFrame(derainer)``. ``limit``: only the first N frames of each sequence.
    """
    if not sequences:
        raise InputError("no sequences to evaluate")
    if limit is not None and limit < 2:
        raise InputError(f"--limit {limit}: a sequence needs at least 2 frames for the temporal error")
    open_stream = open_stream or (lambda: PerFrame(derainer))
    per_sequence = [_score_sequence(seq, open_stream(), limit=limit, on_frame=on_frame) for seq in sequences]
    keys = [k for k in per_sequence[0] if k not in ("name", "n", "seconds")]
    means = {k: float(np.mean([s[k] for s in per_sequence])) for k in keys}
    return EvalResult(model=derainer.name, n=sum(s["n"] for s in per_sequence),
                      seconds=round(sum(s["seconds"] for s in per_sequence), 3), **means,
                      sequences=per_sequence if len(per_sequence) > 1 else None)


def _score_sequence(sequence: Sequence, stream: FrameStream, *, limit: int | None,
                    on_frame: Callable[[str], None] | None) -> dict:
    scores = _Scores(temporal=True)
    waiting: deque[tuple[torch.Tensor, torch.Tensor]] = deque()  # frames pushed, not yet back
    seconds = 0.0

    def score(outputs: list[np.ndarray]) -> None:
        for out in outputs:
            if not waiting:
                raise ModelError(f"{sequence.name}: the derainer returned more frames than it was given")
            rainy, clean = waiting.popleft()
            scores.add(rainy, clean, _to_chw(out))
            if on_frame:
                on_frame(sequence.name)

    for rainy, clean in itertools.islice(sequence.frames(), limit):
        waiting.append((rainy, clean))
        t0 = time.perf_counter()
        outputs = stream.push(_to_hwc(rainy))
        seconds += time.perf_counter() - t0
        score(outputs)
    t0 = time.perf_counter()
    outputs = stream.flush()
    seconds += time.perf_counter() - t0
    score(outputs)
    if waiting:
        raise ModelError(f"{sequence.name}: the derainer returned {scores.n} frames for "
                         f"{scores.n + len(waiting)}")
    if scores.n < 2:
        raise InputError(f"{sequence.name}: a sequence needs at least 2 frames; it has {scores.n}")
    return {"name": sequence.name, "n": scores.n, **scores.means(), "seconds": round(seconds, 3)}
