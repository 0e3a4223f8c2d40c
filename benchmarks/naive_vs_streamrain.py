"""What a user would script by hand, timed against `streamrain` on the same clip in one run.

The naive loop: OpenCV reads a frame, the same model runs eagerly in fp32 on that one frame, OpenCV
writes it (no batching, no threads, no bf16). Then the same clip goes through streamrain's pipeline
with its defaults. Needs opencv-python (the `gui` or `dev` extra).

    python benchmarks/naive_vs_streamrain.py [--size 640x360] [--frames 150] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def naive_fps(clip: Path, out: Path, model: torch.nn.Module) -> float:
    import cv2  # imported here: only this baseline needs it

    capture = cv2.VideoCapture(str(clip))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25
    writer = None
    frames = 0
    t0 = time.perf_counter()
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        x = torch.from_numpy(bgr[:, :, ::-1].copy()).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            y = model(x)
        result = (y[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype("uint8")[:, :, ::-1]
        if writer is None:
            h, w = result.shape[:2]
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        writer.write(result)
        frames += 1
    writer.release()
    capture.release()
    return frames / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="640x360")
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--model", default=None)
    p.add_argument("--backend", default="eager", choices=("eager", "compile", "tensorrt"))
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    width, height = map(int, args.size.split("x"))

    import streamrain
    from streamrain.bench import make_test_clip
    from streamrain.config import RunOptions
    from streamrain.pipeline.job import derain_file, make_derainer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = make_test_clip(tmp / "clip.mp4", width=width, height=height, frames=args.frames)
        naive = naive_fps(clip, tmp / "naive.mp4", streamrain.load_model(args.model))
        options = RunOptions(model=args.model, backend=args.backend, batch=args.batch)
        stats = derain_file(str(clip), tmp / "streamrain.mp4", options=options, derainer=make_derainer(options))
    result = {"size": args.size, "frames": args.frames, "backend": args.backend, "batch": args.batch, "naive_fps": round(naive, 2),
              "streamrain_fps": round(stats.fps, 2), "speedup": round(stats.fps / naive, 2),
              "streamrain_derain_stage_fps": round(stats.stages["derain"].fps, 2),
              "streamrain_efficiency_vs_derain_stage": round(stats.fps / stats.stages["derain"].fps, 3)}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
