"""A contact sheet of synthetic rain, so a person can judge it next to real rain.

Rows of (clean | synthetic rainy) crops drawn from a recipe's rain parameters, optionally followed
by crops of real rainy images (e.g. Rain100L) for comparison. Written as PNG with PyAV.
"""

from __future__ import annotations

from pathlib import Path

import av
import torch

from streamrain.train.data import list_media, read_image
from streamrain.train.synth import RainParams, add_rain


def _crop(image: torch.Tensor, side: int, gen: torch.Generator) -> torch.Tensor:
    _, h, w = image.shape
    side_h, side_w = min(side, h), min(side, w)
    top = int(torch.randint(h - side_h + 1, (1,), generator=gen))
    left = int(torch.randint(w - side_w + 1, (1,), generator=gen))
    tile = torch.zeros(3, side, side, dtype=torch.uint8)
    tile[:, :side_h, :side_w] = image[:, top:top + side_h, left:left + side_w]
    return tile


def contact_sheet(clean_dirs: list[Path], rain: RainParams, *, count: int = 8, tile: int = 192,
                  real_dir: Path | None = None, seed: int = 0) -> torch.Tensor:
    """uint8 (3, H, W): ``count`` rows of clean | rainy, then a row of real rainy crops if given."""
    gen = torch.Generator().manual_seed(seed)
    files = [p for p in list_media(clean_dirs) if p.suffix.lower() not in (".mp4", ".avi", ".mkv", ".mov")]
    if not files:
        raise ValueError(f"no clean images under {[str(d) for d in clean_dirs]}")
    picks = torch.randperm(len(files), generator=gen)[:count].tolist()
    clean = torch.stack([_crop(read_image(files[i], max_side=4 * tile), tile, gen) for i in picks])
    rainy = (add_rain(clean.float() / 255, rain, gen) * 255).round().to(torch.uint8)
    rows = [torch.cat([c, r], dim=2) for c, r in zip(clean, rainy)]
    if real_dir is not None:
        real = sorted(p for p in Path(real_dir).iterdir() if p.is_file())[:2]
        rows.append(torch.cat([_crop(read_image(p), tile, gen) for p in real] +
                              [torch.zeros(3, tile, tile * max(0, 2 - len(real)), dtype=torch.uint8)], dim=2))
    columns = 2
    grid_rows = [torch.cat(rows[i:i + columns], dim=2) if len(rows[i:i + columns]) == columns
                 else torch.cat(rows[i:i + columns] + [torch.zeros_like(rows[0])], dim=2)
                 for i in range(0, len(rows), columns)]
    return torch.cat(grid_rows, dim=1)


def save_png(image_chw: torch.Tensor, path: Path) -> None:
    frame = av.VideoFrame.from_ndarray(image_chw.permute(1, 2, 0).contiguous().numpy(), format="rgb24")
    frame.save(str(path))
