"""A rainy/clean frame-folder sequence through the product itself, losslessly, then scored.

    python benchmarks/sequence_through_product.py --model trnet-v1 [--causal] \
        --rainy ../shared/data/nturain-a1/rainy --clean ../shared/data/nturain-a1/clean

Packs the rainy frames into an FFV1 (bgr0) file at 30 fps, runs `streamrain in.mkv out.mkv --codec
ffv1 --pix-fmt bgr0 --model NAME` on it (decode, batches, the model's window across them, encode:
what a user runs), and scores out.mkv's frames against the clean ones with `streamrain eval`'s
metrics: PSNR/SSIM on Y and RGB and the temporal error. Prints one JSON object.

`--pix-fmt yuv420p` packs and writes 4:2:0 instead (still FFV1, so only the chroma subsampling is
lost), as nearly all video is: the model then gets the frames as decoded where it has a 4:2:0
form; `--rgb` makes streamrain convert them to RGB for it instead, to compare the two paths.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def frames_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def pack_lossless(files: list[Path], path: Path, pix_fmt: str = "bgr0") -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=30)
        first = np.asarray(Image.open(files[0]).convert("RGB"))
        stream.width, stream.height, stream.pix_fmt = first.shape[1], first.shape[0], pix_fmt
        stream.time_base = Fraction(1, 30)
        for index, file in enumerate(files):
            frame = av.VideoFrame.from_ndarray(np.asarray(Image.open(file).convert("RGB")), format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame.reformat(format=pix_fmt)):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--causal", action="store_true")
    p.add_argument("--rainy", type=Path, required=True)
    p.add_argument("--clean", type=Path, required=True)
    p.add_argument("--precision", default="auto")
    p.add_argument("--pix-fmt", choices=("bgr0", "yuv420p"), default="bgr0", help="of the packed input and the output")
    p.add_argument("--rgb", action="store_true", help="pass --rgb: the model gets RGB frames")
    args = p.parse_args()

    import torch

    from streamrain.cli import main as streamrain
    from streamrain.train.evaluate import _Scores

    rainy_files, clean_files = frames_of(args.rainy), frames_of(args.clean)
    if [f.name for f in rainy_files] != [f.name for f in clean_files]:
        raise SystemExit("--rainy and --clean must hold the same frame names")
    with tempfile.TemporaryDirectory() as work:
        source, output = Path(work) / "in.mkv", Path(work) / "out.mkv"
        pack_lossless(rainy_files, source, args.pix_fmt)
        code = streamrain([str(source), str(output), "--codec", "ffv1", "--pix-fmt", args.pix_fmt, "--model", args.model,
                           "--precision", args.precision, "--no-progress", *(["--causal"] if args.causal else []),
                           *(["--rgb"] if args.rgb else [])])
        if code:
            raise SystemExit(f"streamrain exited with {code}")
        with av.open(str(output)) as container:
            derained = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if len(derained) != len(clean_files):
        raise SystemExit(f"{len(derained)} frames out for {len(clean_files)} in")
    scores = _Scores(temporal=True)
    def chw(rgb: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)

    for rainy_file, clean_file, out in zip(rainy_files, clean_files, derained):
        rainy, clean = (np.asarray(Image.open(f).convert("RGB")) for f in (rainy_file, clean_file))
        scores.add(chw(rainy), chw(clean), chw(out))
    result = {"model": args.model, "causal": args.causal, "pix_fmt": args.pix_fmt, "rgb": args.rgb, "frames": scores.n,
              **{k: round(v, 4) for k, v in scores.means().items()}}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
