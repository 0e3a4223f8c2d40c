"""Paired folders: rendered or captured (rainy, clean) pairs in the layouts deraining datasets ship in.

``find_pairs(root)`` recognises, in this order:

- ``trainA/`` (rainy) beside ``trainB/`` (clean), CycleGAN style; ``split="test"`` reads testA/testB.
  Training only ever reads the train split.
- two sibling folders, rainy and clean, under any of the names in ``FOLDER_NAMES`` (``rainy/clean``,
  ``rain/norain``, ``input/target``, ``input/gt``...). Files match by name once the usual prefixes
  and suffixes are removed (``rain-001.png`` ~ ``norain-001.png``); when several rainy renderings share
  one background (Rain1400's ``901_3.jpg`` ~ ``901.jpg``) the part after the last ``_`` is dropped.
- otherwise every image directly under ``root`` is one side-by-side pair; ``side_by_side`` says
  which half is rainy ("rainy-left" or "clean-left").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from streamrain.train.data import IMAGE_SUFFIXES, random_crop, read_image

FOLDER_NAMES = [("rainy", "clean"), ("rain", "norain"), ("input", "target"), ("input", "gt"),
                ("rainy", "gt"), ("data", "gt"), ("rain", "clean")]
SIDE_BY_SIDE = ("rainy-left", "clean-left")
_AFFIXES = re.compile(r"^(no)?(rain|rainy|clean|gt|input|target)[-_]|[-_](no)?(rain|rainy|clean|gt|input|target)$")


class PairsError(ValueError):
    pass


@dataclass(frozen=True)
class PairFiles:
    rainy: Path
    clean: Path | None  # None: one side-by-side image holds both


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _key(path: Path) -> str:
    return _AFFIXES.sub("", path.stem.lower())


def _match(rainy_dir: Path, clean_dir: Path) -> list[PairFiles]:
    clean = {_key(p): p for p in _images(clean_dir)}
    pairs = []
    for rainy in _images(rainy_dir):
        key = _key(rainy)
        partner = clean.get(key) or clean.get(key.rsplit("_", 1)[0])
        if partner is None:
            raise PairsError(f"{rainy} has no clean partner in {clean_dir}")
        pairs.append(PairFiles(rainy, partner))
    if not pairs:
        raise PairsError(f"no images in {rainy_dir}")
    return pairs


def find_pairs(root: Path, *, split: str = "train") -> tuple[str, list[PairFiles]]:
    """The layout found under ``root`` and its pairs, in a stable order."""
    root = Path(root)
    if not root.is_dir():
        raise PairsError(f"{root}: not a folder")
    letter = {"train": "train", "test": "test"}[split]
    if (root / f"{letter}A").is_dir() and (root / f"{letter}B").is_dir():
        return "cyclegan", _match(root / f"{letter}A", root / f"{letter}B")
    for rainy_name, clean_name in FOLDER_NAMES:
        if (root / rainy_name).is_dir() and (root / clean_name).is_dir():
            return "folders", _match(root / rainy_name, root / clean_name)
    images = _images(root)
    if not images:
        raise PairsError(f"{root}: no pairs found (expected trainA/trainB, rainy/clean-style folders "
                         "or side-by-side images)")
    return "side_by_side", [PairFiles(p, None) for p in images]


def load_pair(files: PairFiles, *, side_by_side: str = "rainy-left",
              max_side: int = 100_000) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (3, H, W) rainy and clean images of one pair, the same size."""
    if files.clean is None:
        if side_by_side not in SIDE_BY_SIDE:
            raise PairsError(f"side_by_side must be one of {SIDE_BY_SIDE}, not {side_by_side!r}")
        both = read_image(files.rainy)
        half = both.shape[2] // 2
        left, right = both[:, :, :half], both[:, :, half:2 * half]
        rainy, clean = (left, right) if side_by_side == "rainy-left" else (right, left)
    else:
        rainy, clean = read_image(files.rainy), read_image(files.clean)
        if rainy.shape != clean.shape:
            raise PairsError(f"{files.rainy} is {tuple(rainy.shape[1:])} but {files.clean} is "
                             f"{tuple(clean.shape[1:])}")
    scale = min(1.0, max_side / max(rainy.shape[1:]))
    if scale < 1.0:  # shrink both alike so that they stay aligned
        size = (max(2, round(rainy.shape[1] * scale)), max(2, round(rainy.shape[2] * scale)))
        both = torch.nn.functional.interpolate(torch.cat([rainy, clean])[None].float(), size=size,
                                               mode="area")[0].round().clamp(0, 255).to(torch.uint8)
        rainy, clean = both[:3], both[3:]
    return rainy, clean


class PairedPatches:
    """Aligned random patches of loaded pairs: the same crop, scale and flip for both halves."""

    def __init__(self, pairs: list[tuple[torch.Tensor, torch.Tensor]], *, patch: int,
                 scale: tuple[float, float] = (0.5, 1.0)):
        # Stacked as 6 channels so one crop serves both images.
        self.stacked = [torch.cat([rainy, clean]) for rainy, clean in pairs]
        self.patch = patch
        self.scale = scale

    def batch(self, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        crops = torch.stack([random_crop(self.stacked, self.patch, self.scale, gen) for _ in range(size)])
        return crops[:, :3].clamp(0, 1), crops[:, 3:].clamp(0, 1)
