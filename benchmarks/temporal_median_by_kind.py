"""How informative the aligned median of neighbouring frames is on a clip recipe's own rain.

    python benchmarks/temporal_median_by_kind.py models/trnet-v6.toml [--models trnet-v6]

TRNet's luma residual is frame t's luma less the median of t and its nearest aligned frames. Where
rain on frame t is gone from its neighbours, that median is the clean scene; where the rain is
dense or falls slowly, a pixel under a streak on t is under one on t +- 1 too and the median is no
better than the input. This puts each ``[rain.NAME]`` kind of a recipe alone on clips made from the
recipe's held-out photos (camera paths) and on its real clean clips (new rain over them), aligns
the neighbours as TRNet does (global shift rounded to whole pixels) and prints the mean luma PSNR
of the centre frames: the rainy input, the median of 3 (t, t +- 1), the median of 5 (t, t +- 1,
t +- 2), and of each model given (a temporal model's own output). No dev set is involved.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def luma_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over pictures of the PSNR of (N, 1, H, W) luma in [0, 1]."""
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


def aligned_lumas(clip: torch.Tensor, centre: int, offsets: list[int]) -> list[torch.Tensor]:
    """Luma (1, 1, H, W) of ``clip``'s frames centre + d for each d, each moved onto the centre
    frame by the global shift rounded to whole pixels, as ``TRNet.luma_residuals`` moves them."""
    from streamrain.archs.trnet import coarse_spectrum, global_shift, luma_of, moved_by_whole_pixels

    height, width = clip.shape[-2:]
    spectra = coarse_spectrum(clip)
    lumas = F.pixel_unshuffle(luma_of(clip), 2)
    out = []
    for d in offsets:
        n = centre + d
        shift = global_shift(spectra[centre:centre + 1], spectra[n:n + 1], height, width)
        sx, sy = (4.0 * shift[0]).round().to(torch.int64).tolist()
        out.append(F.pixel_shuffle(moved_by_whole_pixels(lumas[n:n + 1], sx, sy), 2))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", type=Path)
    p.add_argument("--models", nargs="*", default=[], help="temporal models to score beside the medians")
    p.add_argument("--clips", type=int, default=24, help="clips per kind of rain and source (default 24)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    from streamrain.archs.trnet import luma_of
    from streamrain.train.clips import SyntheticClips, load_clip_pool
    from streamrain.train.data import load_clean_pool
    from streamrain.train.recipe import load_recipe
    from streamrain.train.synth import RainMix
    from streamrain.train.trainer import _hold_out
    from streamrain.train.video_rain import add_rain_to_clip
    from streamrain.zoo import load_model

    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe)
    data = recipe.data
    if not data.frames or data.frames < 5:
        raise SystemExit(f"{args.recipe}: not a clip recipe of 5 frames or more")
    photos = load_clean_pool(data.clean_dirs, max_side=data.max_side, min_side=data.min_side,
                             clip_every=data.clip_every, exclude=data.exclude)
    _, held_out = _hold_out(photos, data.val_every_nth_image)
    clips = load_clip_pool(list(data.video_dirs), list(data.frame_dirs), max_side=data.max_side,
                           min_frames=data.frames)
    sources = {"photos": SyntheticClips([], held_out, frames=data.frames, patch=data.patch, rain=recipe.rain),
               "clips": SyntheticClips(clips, [], frames=data.frames, patch=data.patch, rain=recipe.rain)}
    kinds = (list(zip(recipe.rain.names, recipe.rain.params)) if isinstance(recipe.rain, RainMix)
             else [("rain", recipe.rain)])
    nets = {name: load_model(name).net.eval() for name in args.models}
    centre = data.frames // 2
    print(f"{recipe.path.name}: {args.clips} clips of {data.frames} frames, {data.patch} px, per kind and "
          f"source; mean luma PSNR (dB) of frame {centre}")
    header = f"{'kind':8s} {'source':7s} {'input':>7s} {'median3':>8s} {'median5':>8s} "
    print(header + " ".join(f"{name:>10s}" for name in nets))
    for kind, params in kinds:
        for source, maker in sources.items():
            gen = torch.Generator().manual_seed(1)
            scores: dict[str, list[float]] = {}
            for _ in range(args.clips):
                clean = maker.clean_clip(gen)
                rainy = add_rain_to_clip(clean, params, gen)
                truth = luma_of(clean[centre:centre + 1])
                own, *near = aligned_lumas(rainy, centre, [0, -1, 1, -2, 2])
                stack3 = torch.cat([own] + near[:2])
                stack5 = torch.cat([own] + near)
                results = {"input": own, "median3": stack3.median(0, keepdim=True).values,
                           "median5": stack5.median(0, keepdim=True).values}
                with torch.inference_mode():
                    for name, net in nets.items():
                        results[name] = luma_of(net(rainy)[centre:centre + 1].clamp(0, 1))
                for name, picture in results.items():
                    scores.setdefault(name, []).append(luma_psnr(picture, truth))
            row = [sum(v) / len(v) for v in scores.values()]
            print(f"{kind:8s} {source:7s} {row[0]:7.2f} {row[1]:8.2f} {row[2]:8.2f} "
                  + " ".join(f"{s:10.2f}" for s in row[3:]), flush=True)


if __name__ == "__main__":
    main()
