"""Each CPU fast-path choice timed against the others on one clip, in one run.

The choices the CPU default is made of: bf16 (vs fp32), two single-threaded derain workers (vs one
batch on every core), the batch size, eager (vs torch.compile), and 4:2:0 frames as decoded (vs
converted to RGB). Every variant goes through
``streamrain.bench`` (derain stage alone and end to end, medians of interleaved rounds) on the same
generated clip, so the ratios are comparable even on a noisy machine; the quality side of the
choice (bf16 vs fp32 on Rain100L) is `streamrain eval --precision`.

    python benchmarks/cpu_choices.py [--size 640x360] [--frames 150] [--rounds 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

# (label, precision, cpu_workers, backend, batch, yuv420); the first is the shipped default.
VARIANTS = [
    ("default: bf16, 2 workers, eager, batch 4, 4:2:0", "bf16", 2, "eager", 4, True),
    ("frames converted to RGB (--rgb)", "bf16", 2, "eager", 4, False),
    ("fp32", "fp32", 2, "eager", 4, True),
    ("1 worker on both cores", "bf16", 1, "eager", 4, True),
    ("batch 2", "bf16", 2, "eager", 2, True),
    ("batch 8", "bf16", 2, "eager", 8, True),
    ("torch.compile", "bf16", 2, "compile", 4, True),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="640x360")
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--model", default=None)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    width, height = map(int, args.size.split("x"))

    from streamrain.bench import bench, make_test_clip
    from streamrain.config import RunOptions
    from streamrain.pipeline.job import make_derainer

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_test_clip(Path(tmp) / "clip.mp4", width=width, height=height, frames=args.frames)
        for label, precision, workers, backend, batch, yuv420 in VARIANTS:
            options = RunOptions(model=args.model, precision=precision, cpu_workers=workers, backend=backend,
                                 batch=batch, yuv420=yuv420)
            t0 = time.perf_counter()
            derainer = make_derainer(options)
            result = bench(derainer, clip=clip, options=options, backend=backend, rounds=args.rounds)
            derainer.close()
            rows.append({"variant": label, "derain_fps": round(result.derain_fps, 2),
                         "end_to_end_fps": round(result.end_to_end_fps, 2),
                         "efficiency": round(result.efficiency, 3),
                         "setup_and_bench_s": round(time.perf_counter() - t0, 1)})
    base = rows[0]["end_to_end_fps"]
    for row in rows:
        row["end_to_end_vs_default"] = round(row["end_to_end_fps"] / base, 3)
    print(f"{'variant':50} {'derain fps':>10} {'e2e fps':>8} {'eff':>6} {'e2e/default':>11} {'wall s':>7}")
    for r in rows:
        print(f"{r['variant']:50} {r['derain_fps']:10.1f} {r['end_to_end_fps']:8.1f} {r['efficiency']:6.2f} "
              f"{r['end_to_end_vs_default']:11.2f} {r['setup_and_bench_s']:7.1f}")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "frames": args.frames, "variants": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
