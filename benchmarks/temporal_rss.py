"""Does a temporal model's window state stay flat? Peak RSS of a long run against a short one.

Each run is a child process (its own peak, ``ru_maxrss``) that derains a generated clip (lavfi
testsrc2, 25 fps) through the real pipeline (`streamrain in out --model M`: decode, TemporalDerainer,
libx264) and reports its peak RSS. A random-init TRNet with the default arguments is used unless
--model names another model; the issue's check is that the 10,000-frame run at 320x180 peaks within
10 % of the 500-frame run.

    python benchmarks/temporal_rss.py [--size 320x180] [--frames 500 10000] [--model M] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(frames: int, size: str, model: str, output: Path) -> dict:
    from streamrain.config import RunOptions
    from streamrain.pipeline.job import derain_file

    width, height = size.split("x")
    graph = f"lavfi:testsrc2=size={width}x{height}:rate=25:duration={frames / 25}"
    t0 = time.perf_counter()
    stats = derain_file(graph, output, options=RunOptions(model=model, preset="ultrafast"))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"frames": stats.frames_out, "peak_rss_mib": round(peak_kb / 1024, 1),
            "wall_s": round(time.perf_counter() - t0, 1), "fps": round(stats.fps, 2), "model": model}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="320x180")
    p.add_argument("--frames", type=int, nargs="+", default=[500, 10000])
    p.add_argument("--model", help="a temporal model (default: a random-init TRNet)")
    p.add_argument("--json", type=Path)
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.size, args.model, args.output)))
        return
    with tempfile.TemporaryDirectory(prefix="streamrain-rss-") as tmp:
        env = dict(os.environ)
        model = args.model
        if model is None:
            import torch

            from streamrain.archs.trnet import TRNet
            from streamrain.weights import save_weights

            env["STREAMRAIN_HOME"] = tmp
            torch.manual_seed(0)
            save_weights(Path(tmp) / "models" / "trnet-rss.safetensors", TRNet(), arch="trnet", arch_args={})
            model = "trnet-rss"
        runs = []
        for frames in args.frames:
            result = subprocess.run(
                [sys.executable, __file__, "--child", str(frames), "--size", args.size, "--model", model,
                 "--output", str(Path(tmp) / f"out-{frames}.mp4")],
                env=env, check=True, capture_output=True, text=True)
            runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]), flush=True)
    base = runs[0]["peak_rss_mib"]
    for run in runs[1:]:
        growth = run["peak_rss_mib"] / base - 1
        print(f"{run['frames']} frames: peak RSS {run['peak_rss_mib']} MiB, {growth:+.1%} against "
              f"{runs[0]['frames']} frames ({base} MiB): {'within' if abs(growth) <= 0.10 else 'OUTSIDE'} 10 %")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
