"""Before/after sheet of real rainy photos: one row per photo, the input then each model's output.

    python benchmarks/real_rain_sheet.py --models srnet-v3 srnet-v5 quality \
        --photos 1 20 45 70 101 130 --out real-rain.png

Real rain has no ground truth, so this is for judging by eye (the model cards link the command,
not the picture: the photos are third-party data, ../shared/data/real-rain-photos, never
committed). Each photo is shrunk to --height pixels high; models run in their default precision.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--photos", nargs="+", default=["1", "20", "45", "70", "101", "130"],
                   help="photo names in --dir without suffix")
    p.add_argument("--dir", type=Path, default=ROOT.parent / "shared" / "data" / "real-rain-photos")
    p.add_argument("--height", type=int, default=300)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    from streamrain.runtime.derainer import Derainer
    from streamrain.runtime.temporal import TemporalDerainer, is_temporal
    from streamrain.zoo import load_model

    def derainer(name: str):
        # A temporal model takes each photo as a clip of one frame (its window all that frame).
        module = load_model(name)
        return TemporalDerainer(module, device="cpu") if is_temporal(module) else Derainer(module, device="cpu")

    derainers = [derainer(name) for name in args.models]
    rows = []
    for stem in args.photos:
        matches = sorted(args.dir.glob(f"{stem}.*"))
        if not matches:
            raise SystemExit(f"{args.dir}: no photo named {stem}")
        photo = Image.open(matches[0]).convert("RGB")
        width = round(photo.width * args.height / photo.height) // 4 * 4
        rgb = np.array(photo.resize((width, args.height), Image.Resampling.LANCZOS))
        rows.append(np.concatenate([rgb] + [d(rgb[None])[0] for d in derainers], axis=1))
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0))) for r in rows])
    image = Image.fromarray(sheet)
    draw = ImageDraw.Draw(image)
    columns = ["input", *args.models]
    first_width = rows[0].shape[1] // len(columns)
    for i, label in enumerate(columns):
        draw.text((i * first_width + 6, 4), label, fill=(255, 255, 0))
    image.save(args.out)
    print(f"wrote {args.out}: {len(rows)} photos x {columns}")


if __name__ == "__main__":
    main()
