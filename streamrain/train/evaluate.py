"""`streamrain eval`: a model on paired rainy/clean folders, with the deraining protocol's metrics.

Images go through the same uint8 path as video frames (the Derainer), so the numbers describe what
users get, precision included. ``--rainy``/``--clean`` folders pair files by exact name; ``--pairs``
takes any layout of ``streamrain.train.paired`` (its test split where it has one).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from streamrain.errors import InputError
from streamrain.train.data import IMAGE_SUFFIXES, read_image
from streamrain.train.metrics import psnr, rgb_to_y, ssim
from streamrain.train.paired import PairsError, find_pairs, load_pair


@dataclass
class EvalResult:
    model: str
    n: int
    psnr_y: float
    ssim_y: float
    psnr_rgb: float
    ssim_rgb: float
    input_psnr_y: float
    seconds: float

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def paired_files(rainy_dir: Path, clean_dir: Path) -> list[tuple[Path, Path]]:
    for d in (rainy_dir, clean_dir):
        if not Path(d).is_dir():
            raise InputError(f"{d}: not a folder")
    clean = {p.name: p for p in Path(clean_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs = [(p, clean[p.name]) for p in sorted(Path(rainy_dir).iterdir()) if p.name in clean]
    if not pairs:
        raise InputError(f"no file names in common between {rainy_dir} and {clean_dir}")
    return pairs


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

    def load(rainy_path, clean_path):
        rainy, clean = read_image(rainy_path), read_image(clean_path)
        if rainy.shape != clean.shape:
            raise InputError(f"{rainy_path.name}: rainy {tuple(rainy.shape)} and clean "
                             f"{tuple(clean.shape)} differ in size")
        return rainy, clean
    return [(r.name, lambda r=r, c=c: load(r, c)) for r, c in paired_files(Path(rainy_dir), Path(clean_dir))]


def evaluate(derainer, pairs: list, *, limit: int | None = None, on_image=None) -> EvalResult:
    """Scores ``derainer`` on ``pairs`` from ``pair_loaders``."""
    pairs = pairs[:limit]
    sums = dict(psnr_y=0.0, ssim_y=0.0, psnr_rgb=0.0, ssim_rgb=0.0, input_psnr_y=0.0)
    seconds = 0.0
    for name, load in pairs:
        try:
            rainy, clean = load()
        except PairsError as exc:
            raise InputError(str(exc)) from exc
        t0 = time.perf_counter()
        out = derainer(rainy.permute(1, 2, 0).contiguous().numpy()[None])[0]
        seconds += time.perf_counter() - t0
        out = torch.from_numpy(out).permute(2, 0, 1).float()
        clean_f = clean.float()
        y_out, y_clean = rgb_to_y(out), rgb_to_y(clean_f)
        sums["psnr_y"] += psnr(y_out, y_clean)
        sums["ssim_y"] += ssim(y_out, y_clean)
        sums["psnr_rgb"] += psnr(out, clean_f)
        sums["ssim_rgb"] += ssim(out, clean_f)
        sums["input_psnr_y"] += psnr(rgb_to_y(rainy.float()), y_clean)
        if on_image:
            on_image(name)
    n = len(pairs)
    return EvalResult(model=derainer.name, n=n, seconds=round(seconds, 3),
                      **{k: v / n for k, v in sums.items()})
