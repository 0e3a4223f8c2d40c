"""Models scored on a recipe's held-out synthetic rain, one kind of rain at a time.

    python benchmarks/synthetic_val_by_kind.py models/srnet-v6.toml --models srnet-v3 srnet-v5 srnet-v6

The training log's validation PSNR mixes every kind of rain of the recipe (and its rain-free share,
whose input scores 100 dB), so it says that a checkpoint got better, not where. This draws the
recipe's held-out clean images (the ones training never sees), puts each ``[rain.NAME]`` kind on
them alone (same patches, same seed for every model) and prints the mean PSNR (RGB, per patch) of
the input and of each model. Models are names `streamrain models list` knows (bundled or in
$STREAMRAIN_HOME, where `streamrain train RECIPE --export` can put a run's latest weights). No dev
set is involved: use it to compare checkpoints and designs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def mean_psnr(out: torch.Tensor, clean: torch.Tensor) -> float:
    mse = ((out - clean) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", type=Path)
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--patches", type=int, default=48, help="patches per kind of rain (default 48)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    from streamrain.train.data import SyntheticPairs, load_clean_pool
    from streamrain.train.recipe import load_recipe
    from streamrain.train.synth import RainMix
    from streamrain.train.trainer import _hold_out
    from streamrain.zoo import load_model

    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe)
    data = recipe.data
    pool = load_clean_pool(data.clean_dirs, max_side=data.max_side, min_side=data.min_side,
                           clip_every=data.clip_every)
    _, held_out = _hold_out(pool, data.val_every_nth_image)
    kinds = (zip(recipe.rain.names, recipe.rain.params) if isinstance(recipe.rain, RainMix)
             else [("rain", recipe.rain)])
    nets = {name: load_model(name).net.eval() for name in args.models}
    print(f"{len(held_out)} held-out images of {recipe.path.name}, {args.patches} patches of "
          f"{data.patch}x{data.patch} per kind; mean PSNR (RGB, dB)")
    print(f"{'kind':8s} {'input':>7s} " + " ".join(f"{name:>12s}" for name in nets))
    for kind, params in kinds:
        gen = torch.Generator().manual_seed(1)
        rainy, clean = SyntheticPairs(held_out, patch=data.patch, rain=params, scale=(1.0, 1.0)).batch(
            args.patches, gen)
        with torch.inference_mode():
            scores = [mean_psnr(net(rainy).clamp(0, 1), clean) for net in nets.values()]
        print(f"{kind:8s} {mean_psnr(rainy, clean):7.2f} " + " ".join(f"{s:12.2f}" for s in scores), flush=True)


if __name__ == "__main__":
    main()
