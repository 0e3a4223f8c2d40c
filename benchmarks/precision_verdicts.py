"""Measure what bf16 costs each model on Rain100L and write the verdict (and the network's cost) into
its card, which `--precision auto` and `streamrain models list` read.

    python benchmarks/precision_verdicts.py                  # every bundled model (streamrain/weights)
    python benchmarks/precision_verdicts.py --model srnet-v4 # one model, bundled or in $STREAMRAIN_HOME
    python benchmarks/precision_verdicts.py --model trnet-v1 # temporal: on --sequence (NTURain a1)
    python benchmarks/precision_verdicts.py --arch dpenet=../shared/data/official-weights/dpenet/Rain100L.pth \
        --arch spanet=../shared/data/official-weights/spanet/latest   # importable architectures

A model is measured as `streamrain eval` scores (streamrain.train.precision), once in fp32 and once
in bf16 (emulated in fp32 kernels on a CPU without native bf16, whose reference bf16 kernels are
~20x slower), one after the other on 2 threads, on the first --pairs pairs of Rain100L (20 by
default: a full pass of the big networks takes hours on two cores, and a loss of 0.05 dB shows on
20 images as well as on 100; the bundled cards say what each was measured on). A temporal model is
measured on a rainy video's first --frames frames through its stream (native bf16 only): still
images would leave its neighbours' alignment out. Bundled and user models get ``precision``,
``params`` and ``gmac_per_megapixel`` in ``NAME.json`` beside their weights; an architecture's verdict, measured
with the authors' checkpoint imported into a temporary folder, goes into streamrain/archs/cards.json
(with every architecture's cost at its default arguments), from which `streamrain models import`
copies it into the imported model's card.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure, and write the cards of, the checkout this script is in


def measure(name: str, data: Path, *, pairs_limit: int, threads: int, sequence: Path,
            frames: int) -> dict:
    """The card fields for model ``name``: its cost, counted now, and its precision verdict (a
    temporal model's on the first ``frames`` frames of the ``sequence`` folder's rainy video)."""
    from streamrain.modelinfo import cost
    from streamrain.archs import ARCHS
    from streamrain.train.evaluate import folder_sequence, pair_loaders
    from streamrain.train.precision import measure_precision, measure_temporal_precision
    from streamrain.weights import read_metadata
    from streamrain.zoo import resolve

    entry = resolve(name)
    params, gmac = cost(entry.arch, json.loads(read_metadata(entry.weights).get("arch_args", "{}")))
    started = time.monotonic()
    if getattr(ARCHS.get(entry.arch), "temporal", False):
        if not (sequence / "rainy").is_dir():
            raise SystemExit(f"--sequence {sequence}: no rainy/ and clean/ frame folders ({name} is temporal)")
        measured_on = f"{sequence.name}, its first {frames} frames through the stream (offline window)"
        verdict = measure_temporal_precision(entry.name, folder_sequence(sequence / "rainy", sequence / "clean"),
                                             measured_on=measured_on, limit=frames, threads=threads)
    else:
        pairs = pair_loaders(data / "rainy", data / "clean")
        total = len(pairs)
        if pairs_limit:
            pairs = pairs[:pairs_limit]
        measured_on = (f"{data.name}, all {total} pairs" if len(pairs) == total
                       else f"{data.name}, first {len(pairs)} of {total} pairs (sorted by name)")
        verdict = measure_precision(entry.name, pairs, measured_on=measured_on, threads=threads)
    print(f"{entry.name}: fp32 {verdict['psnr_y']['fp32']:.4f}  bf16 {verdict['psnr_y']['bf16']:.4f}  "
          f"cost {verdict['cost_db']['bf16']:+.4f} dB -> reduced_ok {verdict['reduced_ok']}  "
          f"({measured_on}; {time.monotonic() - started:.0f} s)", flush=True)
    return {"params": params, "gmac_per_megapixel": round(gmac, 2), "precision": verdict}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", help="model name (repeatable); default: every bundled model")
    p.add_argument("--arch", action="append", default=[], metavar="ARCH=CHECKPOINT",
                   help="an importable architecture and the authors' checkpoint to measure it with")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "rain100l")
    p.add_argument("--pairs", type=int, default=20, help="the first N pairs (default 20; 0: all)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (1 beside a training run)")
    p.add_argument("--sequence", type=Path, default=ROOT.parent / "shared" / "data" / "nturain-a1",
                   help="rainy/ and clean/ frame folders: what a temporal model is measured on")
    p.add_argument("--frames", type=int, default=30, help="a temporal model: the sequence's first N frames")
    args = p.parse_args()
    if not (args.data / "rainy").is_dir():
        raise SystemExit(f"--data {args.data}: no rainy/ and clean/ folders (Rain100L)")

    from streamrain.cards import ARCH_CARDS_PATH, arch_cards, update_card, write_json
    from streamrain.zoo import BUNDLED_DIR, resolve

    options = dict(pairs_limit=args.pairs, threads=args.threads, sequence=args.sequence, frames=args.frames)
    if args.arch:
        from streamrain.importer import import_checkpoint

        from streamrain.archs import ARCHS
        from streamrain.modelinfo import cost

        cards = arch_cards()
        for arch in ARCHS:  # the cost at default arguments, for imports and weightless entries
            params, gmac = cost(arch, {})
            cards[arch] = {**cards.get(arch, {}), "params": params, "gmac_per_megapixel": round(gmac, 2)}
        write_json(ARCH_CARDS_PATH, dict(sorted(cards.items())))
        with tempfile.TemporaryDirectory() as home:
            os.environ["STREAMRAIN_HOME"] = home
            for spec in args.arch:
                arch, _, checkpoint = spec.partition("=")
                import_checkpoint(arch, Path(checkpoint), name=f"{arch}-measured")
                fields = measure(f"{arch}-measured", args.data, **options)
                fields["precision"]["checkpoint"] = Path(checkpoint).name
                cards[arch] = {**cards.get(arch, {}), **fields}
                write_json(ARCH_CARDS_PATH, dict(sorted(cards.items())))
        return
    names = args.model or sorted(w.stem for w in BUNDLED_DIR.glob("*.safetensors"))
    for name in names:
        update_card(resolve(name).weights, **measure(name, args.data, **options))


if __name__ == "__main__":
    main()
