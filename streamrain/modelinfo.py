"""What `streamrain models list` shows: size and cost of each model, computed without running it."""

from __future__ import annotations

import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from streamrain.archs import ARCHS
from streamrain.weights import WeightsError, read_metadata
from streamrain.zoo import catalog


def _arch_args(entry) -> dict:
    if entry.weights is None:
        return {}
    try:
        return json.loads(read_metadata(entry.weights).get("arch_args", "{}"))
    except WeightsError:
        return {}


def cost(arch: str, arch_args: dict) -> tuple[int, float]:
    """(parameters, GMAC per megapixel), counted on the meta device: no memory, no compute.
    A temporal network's cost is per output frame inside a long clip, per-frame features counted
    once: a clip one frame longer than its window costs that much more than one frame shorter."""
    with torch.device("meta"):
        net = ARCHS[arch](**arch_args)
        side = max(128, int(getattr(net, "pad_multiple", 1)))
        frames = 2 * (net.past + net.future) + 2 if getattr(net, "temporal", False) else 1
        macs = _macs(net, frames, side) - (_macs(net, frames - 1, side) if frames > 1 else 0)
    params = sum(p.numel() for p in net.parameters())
    return params, macs / (side * side) * 1e6 / 1e9


def _macs(net, frames: int, side: int) -> float:
    with FlopCounterMode(display=False) as counter:
        net(torch.empty(frames, 3, side, side))
    return counter.get_total_flops() / 2


def describe_models() -> list[dict]:
    rows = []
    for name, entry in sorted(catalog().items()):
        if entry.arch not in ARCHS:
            continue
        params, gmac = cost(entry.arch, _arch_args(entry))
        rows.append({"name": name, "arch": entry.arch, "params": params, "gmac_per_mp": round(gmac, 2),
                     "weights": entry.weights is not None, "default": entry.default,
                     "temporal": bool(getattr(ARCHS[entry.arch], "temporal", False)),
                     "metrics": entry.metrics, "how_to_get": entry.how_to_get})
    return rows
