"""What `streamrain models list` shows: each model's size, cost and the precision it runs in, read
from the figures stored in its card (streamrain.cards) rather than recomputed, so listing stays fast.

``cost`` counts the figures live; it runs once per set of weights (benchmarks/precision_verdicts.py
for bundled models, the importer and the trainer for users'), and here only for weights that carry
no stored figures (a file made by hand).
"""

from __future__ import annotations

import json

import torch

from streamrain.archs import ARCHS
from streamrain.runtime.derainer import resolve_device, resolve_precision
from streamrain.weights import WeightsError, read_metadata
from streamrain.zoo import DEFAULT_VIDEO_MODEL, ModelEntry, catalog


def _arch_args(entry: ModelEntry) -> dict:
    if entry.weights is None:
        return {}
    try:
        return json.loads(read_metadata(entry.weights).get("arch_args", "{}"))
    except WeightsError:
        return {}


def cost(arch: str, arch_args: dict) -> tuple[int, float]:
    """(parameters, GMAC per megapixel), counted on the meta device: no memory, no compute, but a
    full trace of the network (seconds for the big ones). A temporal network's cost is per output
    frame inside a long clip, per-frame features counted once: a clip one frame longer than its
    window costs that much more than one frame shorter."""
    with torch.device("meta"):
        net = ARCHS[arch](**arch_args)
        side = max(128, int(getattr(net, "pad_multiple", 1)))
        frames = 2 * (net.past + net.future) + 2 if getattr(net, "temporal", False) else 1
        macs = _macs(net, frames, side) - (_macs(net, frames - 1, side) if frames > 1 else 0)
    params = sum(p.numel() for p in net.parameters())
    return params, macs / (side * side) * 1e6 / 1e9


def _stored_cost(entry: ModelEntry) -> tuple[int, float]:
    params, gmac = entry.card.get("params"), entry.card.get("gmac_per_megapixel")
    if isinstance(params, int) and isinstance(gmac, (int, float)):
        return params, float(gmac)
    return cost(entry.arch, _arch_args(entry))


def _auto_precision(entry: ModelEntry, device: torch.device) -> str | None:
    """What `--precision auto` runs the model in on ``device``; None for a weightless entry whose
    architecture has no verdict to go by."""
    if entry.weights is None and entry.reduced_precisions is None:
        return None
    dtype = resolve_precision("auto", device, reduced_ok=entry.reduced_precisions)
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def _macs(net, frames: int, side: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        net(torch.empty(frames, 3, side, side))
    return counter.get_total_flops() / 2


def describe_models() -> list[dict]:
    """One row per known model, in name order: ``name``, ``arch``, ``params``, ``gmac_per_mp``,
    ``weights``, ``default``, ``precision`` (the default precision on this machine's default device),
    ``precision_measured``, ``temporal``, ``alias_of`` and ``self_ensemble`` (an alias: the model it
    runs, on how many flipped copies), ``fps_640x360`` (the card's ``bench_fps_640x360``: `streamrain
    bench --size 640x360` end to end on the project's 2-core CPU; None where not measured),
    ``metrics``, ``how_to_get``."""
    device = resolve_device("auto")
    rows = []
    for name, entry in sorted(catalog().items()):
        if entry.arch not in ARCHS:
            continue
        params, gmac = _stored_cost(entry)
        gmac *= entry.self_ensemble  # an alias's card holds its base's cost: once per flipped copy
        rows.append({"name": name, "arch": entry.arch, "params": params, "gmac_per_mp": round(gmac, 2),
                     "weights": entry.weights is not None, "default": entry.default,
                     "video_default": entry.name == DEFAULT_VIDEO_MODEL,
                     "precision": _auto_precision(entry, device),
                     "precision_measured": entry.reduced_precisions is not None,
                     "temporal": bool(getattr(ARCHS[entry.arch], "temporal", False)),
                     "alias_of": entry.alias_of or None, "self_ensemble": entry.self_ensemble,
                     "fps_640x360": entry.card.get("bench_fps_640x360"),
                     "metrics": entry.metrics, "how_to_get": entry.how_to_get})
    return rows
