"""What deraining 4:2:0 frames as decoded costs in quality, against converting them to RGB first.

Each Rain100L rainy image (cropped to a multiple of 4) is turned into a BT.601 4:2:0 frame, as a
video would carry it. The same frame is then derained both ways streamrain can: through swscale
to RGB, the model, and back (`--rgb`), and by the model's 4:2:0 form (the default). Both results
are converted to RGB the same way and scored against the clean image with `streamrain eval`'s
metrics. Needs ../shared/data/rain100l.

    python benchmarks/yuv420_quality.py [--model M] [--data ../shared/data/rain100l] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import av
import numpy as np
import torch



def to_i420(rgb_u8: np.ndarray) -> np.ndarray:
    frame = av.VideoFrame.from_ndarray(rgb_u8, format="rgb24")
    return frame.reformat(format="yuv420p", dst_colorspace=5, dst_color_range=1).to_ndarray()


def to_rgb(i420_u8: np.ndarray) -> np.ndarray:
    frame = av.VideoFrame.from_ndarray(i420_u8, format="yuv420p")
    return frame.to_ndarray(format="rgb24", src_colorspace=5, src_color_range=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared/data/rain100l")
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    from streamrain.io.frames import YuvMatrix
    from streamrain.runtime.derainer import Derainer
    from streamrain.train.data import read_image
    from streamrain.train.evaluate import paired_files
    from streamrain.train.metrics import psnr, rgb_to_y
    from streamrain.zoo import load_model

    derainer = Derainer(load_model(args.model), device="cpu")
    if not derainer.accepts_yuv420:
        raise SystemExit(f"{derainer.name} has no 4:2:0 form")
    yuv = YuvMatrix(5, False)
    scores = {"input": [], "rgb_path": [], "yuv420_path": []}
    for rainy_path, clean_path in paired_files(args.data / "rainy", args.data / "clean"):
        rainy, clean = read_image(rainy_path), read_image(clean_path)  # uint8 (3, H, W)
        h, w = (rainy.shape[1] // 4) * 4, (rainy.shape[2] // 4) * 4
        rainy_i420 = to_i420(rainy[:, :h, :w].permute(1, 2, 0).contiguous().numpy())
        clean_y = rgb_to_y(clean[:, :h, :w].double())
        via_rgb = to_rgb(to_i420(derainer(to_rgb(rainy_i420)[None])[0]))
        as_decoded = to_rgb(derainer(rainy_i420[None], yuv=yuv)[0])
        for name, rgb in (("input", to_rgb(rainy_i420)), ("rgb_path", via_rgb), ("yuv420_path", as_decoded)):
            scores[name].append(psnr(rgb_to_y(torch.from_numpy(rgb).permute(2, 0, 1).double()), clean_y))
    result = {"model": derainer.name, "n": len(scores["input"]),
              **{f"psnr_y_{name}": round(float(np.mean(v)), 4) for name, v in scores.items()}}
    result["yuv420_minus_rgb_db"] = round(result["psnr_y_yuv420_path"] - result["psnr_y_rgb_path"], 4)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
