"""Clean training crops packed small enough to travel with the repository to a lent GPU machine.

The GPU machine sees only the working tree (a few MiB to spare) and has Pillow but no PyAV, so the
clean pool travels as JPEG crops (quality 95: ~25 KB for 256x256), one per picture of the pool in
turn, until a byte budget is spent. The trainer reads them like any clean folder.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from streamrain.train.data import load_clean_pool


def pack_clean_crops(clean_dirs: list[Path], out_dir: Path, *, side: int = 256, budget_bytes: int = 13 << 20,
                     max_side: int = 1024, seed: int = 0, exclude: tuple[str, ...] = ()) -> tuple[int, int]:
    """Writes ``out_dir/NNNNN.jpg`` crops of the clean pictures under ``clean_dirs`` until
    ``budget_bytes``; returns (crops, bytes)."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise RuntimeError("packing crops needs Pillow: pip install -e '.[dev]'") from exc
    pool = load_clean_pool(clean_dirs, max_side=max_side, min_side=side, exclude=exclude)
    gen = torch.Generator().manual_seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    count = total = 0
    while True:
        for i in torch.randperm(len(pool), generator=gen).tolist():
            _, h, w = pool[i].shape
            top = int(torch.randint(h - side + 1, (1,), generator=gen))
            left = int(torch.randint(w - side + 1, (1,), generator=gen))
            crop = pool[i][:, top:top + side, left:left + side].permute(1, 2, 0).numpy()
            buf = io.BytesIO()
            Image.fromarray(crop).save(buf, format="JPEG", quality=95)
            if total + buf.tell() > budget_bytes:
                return count, total
            (out_dir / f"{count:05d}.jpg").write_bytes(buf.getvalue())
            count, total = count + 1, total + buf.tell()
