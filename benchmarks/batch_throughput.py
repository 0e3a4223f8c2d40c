"""Files per hour and frames per second of `streamrain batch` over a folder of short clips, for each
--jobs setting, in one run (so the settings are compared under the same machine load).

    python benchmarks/batch_throughput.py [--clips 20] [--seconds 2] [--size 640x360] [--jobs 1 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=20)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--size", default="640x360")
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    width, height = map(int, args.size.split("x"))

    from streamrain.batch import BatchOptions, run_batch
    from streamrain.bench import make_test_clip
    from streamrain.config import RunOptions
    from streamrain.pipeline.job import make_derainer

    derainer = make_derainer(RunOptions())
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "card"
        folder.mkdir()
        for i in range(args.clips):
            make_test_clip(folder / f"clip{i:03d}.mp4", width=width, height=height,
                           frames=int(args.seconds * 25))
        for jobs in args.jobs:
            t0 = time.perf_counter()
            summary = run_batch(folder, Path(tmp) / f"out-jobs{jobs}", derainer=derainer,
                                options=BatchOptions(jobs=jobs))
            wall = time.perf_counter() - t0
            results.append({"jobs": jobs, "files": summary.count("ok"), "frames": summary.frames,
                            "wall_s": round(wall, 2), "files_per_hour": round(summary.count("ok") * 3600 / wall),
                            "fps": round(summary.frames / wall, 2)})
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
