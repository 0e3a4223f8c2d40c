"""A training burst on a lent GPU machine: runs a recipe's training on CUDA for a few minutes.

The machine has torch with CUDA, Pillow and safetensors but no PyAV and no ../shared, so the clean
pictures travel as packed crops (``streamrain.train.pack``) in a git-ignored folder named in the
device tool's ``carry``. Prepare here, then run there from the repository root:

    python benchmarks/gpu_train.py models/srnet-v4.toml --pack-only          # here: writes gpu-pack/
    python3 benchmarks/gpu_train.py models/srnet-v4.toml --out $OUT --minutes 8   # there

The run resumes from the committed ``runs/NAME/checkpoint.pt`` where there is one and writes the new
checkpoint, its log and (when the recipe's steps are done) ``model.safetensors`` under OUT/NAME;
copy the checkpoint back into runs/NAME to go on here. Rain is synthesised by CPU workers, which
keep the GPU fed for small networks; a resumed burst sees other rain than an uninterrupted run would.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from streamrain.train.recipe import load_recipe  # noqa: E402
from streamrain.train.trainer import Trainer  # noqa: E402

PACK = ROOT / "gpu-pack"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", type=Path)
    p.add_argument("--out", type=Path, help="where the run's checkpoint, log and weights go")
    p.add_argument("--minutes", type=float, default=8.0, help="training time (default 8)")
    p.add_argument("--workers", type=int, default=0, help="rain-synthesis workers (default: cores - 2)")
    p.add_argument("--pack", type=Path, default=PACK, help="packed clean crops (default gpu-pack/)")
    p.add_argument("--pack-only", action="store_true", help="write the pack from the recipe's clean_dirs and exit")
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    recipe = load_recipe(args.recipe)
    if args.pack_only:
        from streamrain.train.pack import pack_clean_crops
        shutil.rmtree(args.pack, ignore_errors=True)
        crops, size = pack_clean_crops(list(recipe.data.clean_dirs), args.pack, exclude=recipe.data.exclude)
        print(f"wrote {crops} crops, {size / 2**20:.1f} MiB, to {args.pack}")
        return 0
    if args.out is None:
        p.error("--out is required")
    if not args.pack.is_dir():
        p.error(f"{args.pack} is missing: run with --pack-only first (on a machine with the clean data)")
    # Packed 256 px crops: the full pool's scale jitter and hold-out, without its big pictures.
    recipe = replace(recipe, data=replace(recipe.data, clean_dirs=(args.pack.resolve(),), paired_dirs=(), exclude=(),
                                          max_side=256, min_side=min(256, recipe.data.min_side)))
    run_dir = args.out / recipe.name
    committed = ROOT / "runs" / recipe.name / "checkpoint.pt"
    if committed.exists() and not (run_dir / "checkpoint.pt").exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(committed, run_dir / "checkpoint.pt")
    workers = args.workers or max(1, (torch.get_num_threads() or 4) - 2)
    last_print = [0.0]

    def progress(step, total, loss, rate):
        if time.monotonic() - last_print[0] > 30:
            last_print[0] = time.monotonic()
            print(f"step {step}/{total} loss {loss:.4f} {rate:.1f} it/s", flush=True)

    trainer = Trainer(recipe, run_dir, progress=progress, device=args.device, data_workers=workers,
                      max_seconds=args.minutes * 60)
    start_step, t0 = trainer.step, time.monotonic()
    result = trainer.run()
    summary = {"recipe": recipe.name, "device": args.device, "workers": workers, "start_step": start_step,
               "step": result.step, "seconds": round(time.monotonic() - t0, 1), "loss": result.last_loss,
               "val_psnr": result.val_psnr, "finished": result.step >= recipe.optim.steps}
    (run_dir / "burst.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
