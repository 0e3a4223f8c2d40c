"""Model cards: the JSON file beside a weight file (``NAME.json`` next to ``NAME.safetensors``).

A card holds what is known about one set of weights and is costly or impossible to recompute when a
model is listed or loaded: measured metrics, the network's cost (``params``, ``gmac_per_megapixel``)
and the precision verdict (which reduced precisions the weights run in without losing quality).
Bundled weights carry cards written by the project; `streamrain models import` writes one for an
imported checkpoint. Weights without a card can still carry the cost in their safetensors header
(the trainer writes it there, since users copy only the ``.safetensors`` file).

The precision verdict, as ``benchmarks/precision_verdicts.py`` writes it::

    "precision": {"reduced_ok": ["bf16"], "threshold_db": 0.05,
                  "psnr_y": {"fp32": 33.23, "bf16": 33.22}, "cost_db": {"bf16": 0.01},
                  "measured_on": "rain100l, all 100 pairs"}

``reduced_ok`` lists the reduced precisions whose Rain100L PSNR-Y is within ``threshold_db`` of
fp32's, either way: a gain is no better than a loss, since either means the reduced precision
computes a measurably different network from the one chosen (SPANet scores 0.49 dB *higher* in
bf16 on Rain100L, a test set it was not trained for). `--precision auto` uses only those
(streamrain.runtime.derainer.resolve_precision).
"""

from __future__ import annotations

import json
from pathlib import Path

# A reduced precision may change Rain100L PSNR-Y by at most this much against fp32 to be a default.
PRECISION_THRESHOLD_DB = 0.05
REDUCED_PRECISIONS = ("bf16", "fp16")

# Architectures whose weights users import (`streamrain models import`): their cost at the default
# arguments and the precision verdict, measured once with the authors' own checkpoints by
# benchmarks/precision_verdicts.py --arch (an import has no test data to measure with). Also used
# for the weightless entries `models list` shows for every published network.
ARCH_CARDS_PATH = Path(__file__).resolve().parent / "archs" / "cards.json"


def card_path(weights: Path) -> Path:
    return Path(weights).with_suffix(".json")


def read_card(weights: Path) -> dict:
    """The card beside ``weights``; {} when there is none or it is unreadable (a card is optional)."""
    try:
        card = json.loads(card_path(weights).read_text())
    except (OSError, ValueError):
        return {}
    return card if isinstance(card, dict) else {}


def write_json(path: Path, data: dict) -> None:
    """Writes ``data`` atomically (a reader never sees half a card), two-space indented as the
    project's cards are."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.chmod(0o644)
    tmp.replace(path)


def update_card(weights: Path, **sections) -> dict:
    """Sets top-level keys of the card beside ``weights`` (created if missing), keeping the rest."""
    card = read_card(weights)
    card.update(sections)
    write_json(card_path(weights), card)
    return card


def arch_cards() -> dict[str, dict]:
    try:
        return json.loads(ARCH_CARDS_PATH.read_text())
    except FileNotFoundError:
        return {}


def precision_verdict(psnr_y: dict[str, float], *, measured_on: str) -> dict:
    """The card's ``precision`` section from PSNR-Y per precision (``fp32`` and reduced ones)."""
    cost = {p: round(psnr_y["fp32"] - psnr_y[p], 4) for p in REDUCED_PRECISIONS if p in psnr_y}
    return {"reduced_ok": [p for p, c in cost.items() if abs(c) <= PRECISION_THRESHOLD_DB],
            "threshold_db": PRECISION_THRESHOLD_DB,
            "psnr_y": {p: round(v, 4) for p, v in psnr_y.items()}, "cost_db": cost,
            "measured_on": measured_on}


def reduced_ok(card: dict) -> frozenset[str] | None:
    """The reduced precisions a card allows by default; None when it holds no verdict.

    fp16 (the CUDA default) is allowed with bf16 unless it was measured itself: it rounds eight
    times finer than bf16 (10 mantissa bits against 7), so weights that lose nothing in bf16 lose
    less in fp16; the CPU cannot measure it (no fast fp16 kernels), a GPU check can."""
    verdict = card.get("precision")
    if not isinstance(verdict, dict) or not isinstance(verdict.get("reduced_ok"), list):
        return None
    allowed = set(verdict["reduced_ok"])
    if "bf16" in allowed and "fp16" not in verdict.get("cost_db", {}):
        allowed.add("fp16")
    return frozenset(allowed)
