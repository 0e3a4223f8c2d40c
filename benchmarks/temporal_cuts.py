"""How far apart the scene-cut scores of consecutive frames and of real cuts lie (streamrain.runtime.cuts).

Every clean and rainy sequence under ../shared/data (NTURain a1, the driving and OpenCV clips, Vid4,
Aspen) is read frame by frame; for consecutive frames of one sequence the (thumbnail difference,
histogram distance) pair is a non-cut, for the last frame of one sequence against the first of each
other a cut. Prints the largest non-cut scores, the smallest cut scores, and what the thresholds in
streamrain/runtime/cuts.py make of both.

    python benchmarks/temporal_cuts.py [--data ../shared/data] [--max-frames 120]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import av
import numpy as np

from streamrain.runtime.cuts import SCENE_CUT_DIFFERENCE, SCENE_CUT_HISTOGRAM, luma_thumbnail, scene_change

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def _natural(path: Path):
    digits = "".join(c for c in path.stem if c.isdigit())
    return (int(digits) if digits else -1, path.name)


def sequences(data: Path, max_frames: int) -> dict[str, list[np.ndarray]]:
    """name -> RGB frames of every frame folder and video clip used for temporal work."""
    folders = [data / "nturain-a1" / "rainy", data / "nturain-a1" / "clean", data / "clean" / "video-cdvl-aspen",
               *sorted((data / "clean" / "video-vid4").glob("*"))]
    found: dict[str, list[np.ndarray]] = {}
    for folder in folders:
        files = sorted((p for p in folder.glob("*") if p.suffix.lower() in _IMAGE_SUFFIXES), key=_natural)
        if len(files) >= 2:
            frames = []
            for path in files[:max_frames]:
                with av.open(str(path)) as container:
                    frames.append(next(container.decode(video=0)).to_ndarray(format="rgb24"))
            found[str(folder.relative_to(data))] = frames
    for clip in sorted([*(data / "clean" / "driving").glob("*.mp4"), *(data / "clean" / "opencv").glob("*.avi")]):
        with av.open(str(clip)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in itertools.islice(container.decode(video=0), max_frames)]
        found[str(clip.relative_to(data))] = frames
    return found


def _resized(rgb_u8: np.ndarray, shape: tuple) -> np.ndarray:
    rows = np.arange(shape[0]) * rgb_u8.shape[0] // shape[0]
    cols = np.arange(shape[1]) * rgb_u8.shape[1] // shape[1]
    return rgb_u8[rows][:, cols]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--max-frames", type=int, default=120)
    args = p.parse_args()
    seqs = sequences(args.data, args.max_frames)
    thumbs = {name: [luma_thumbnail(f) for f in frames] for name, frames in seqs.items()}
    cut = lambda d, h: d > SCENE_CUT_DIFFERENCE and h > SCENE_CUT_HISTOGRAM  # noqa: E731
    print(f"{'sequence':40s} {'frames':>6s} {'max diff':>9s} {'max hist':>9s} {'false cuts':>10s}")
    for name, ts in thumbs.items():
        scores = [scene_change(a, b) for a, b in zip(ts, ts[1:])]
        flagged = [i + 1 for i, s in enumerate(scores) if cut(*s)]
        print(f"{name:40s} {len(ts):6d} {max(s[0] for s in scores):9.3f} {max(s[1] for s in scores):9.3f} "
              f"{len(flagged):10d} {flagged if flagged else ''}")
    # A cut between two sizes already starts a shot; the picture test is scored as if the second
    # clip had the first one's size (nearest-neighbour resampling).
    cuts = [(a, b, *scene_change(thumbs[a][-1], luma_thumbnail(_resized(seqs[b][0], seqs[a][-1].shape))))
            for a in thumbs for b in thumbs
            if a != b and not {a, b} <= {"nturain-a1/rainy", "nturain-a1/clean"}]
    missed = [c for c in cuts if not cut(c[2], c[3])]
    print(f"\n{len(cuts)} cuts between sequences: smallest difference {min(c[2] for c in cuts):.3f}, "
          f"smallest histogram distance {min(c[3] for c in cuts):.3f}; missed {len(missed)}:")
    for a, b, d, h in sorted(missed, key=lambda c: c[2]):
        print(f"  {a} -> {b}: difference {d:.3f}, histogram {h:.3f}")


if __name__ == "__main__":
    main()
