"""Model names -> architecture, weight file and what is known about them.

Bundled weights live in ``streamrain/weights/`` (package data, so an installed copy works offline),
each ``NAME.safetensors`` with an optional ``NAME.json`` card (streamrain.cards: measured metrics,
cost, precision verdict). Weights a user imports or trains go to ``$STREAMRAIN_HOME/models``
(default: the user's cache folder), with the same layout.

An alias is a card with no weights of its own: ``NAME.json`` holding ``"alias_of": MODEL`` and
optionally ``"self_ensemble": N`` (the model run on N flipped copies, streamrain.runtime.self_ensemble),
with the figures measured for it (its cost is its base's, once per copy). ``quality``
(streamrain/weights/quality.json) names the best quality the project ships, whatever model that is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from streamrain.archs import ARCHS
from streamrain.cards import arch_cards, read_card, reduced_ok
from streamrain.errors import ModelError
from streamrain.runtime.self_ensemble import FlipEnsemble
from streamrain.runtime.wrapper import DerainModule
from streamrain.weights import WeightsError, build_from_weights, read_metadata

BUNDLED_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL = "srnet-v3"  # still images, and what a model-less Python call loads
# Video (files, folder batches, live, bench): a temporal model, since its figures on video beat the
# single-frame default's (NTURain a1 through the product, models/trnet-v9.md).
DEFAULT_VIDEO_MODEL = "trnet-v9"
QUALITY_ALIAS = "quality"

# Published networks with no weights we may ship: how a user gets some.
_HOW_TO_GET = {
    "aimhnet": "no public weights exist; train them with `streamrain train models/aimhnet.toml`",
    "remaen": "no usable public weights exist; train them with `streamrain train models/remaen.toml`",
    "sdsen": "no public weights exist; train them with `streamrain train models/sdsen.toml`",
    "dpenet": "import the authors' checkpoint: `streamrain models import dpenet PATH.pth --name dpenet`",
    "spanet": "import the authors' checkpoint: `streamrain models import spanet PATH --name spanet`",
}


def user_dir() -> Path:
    home = os.environ.get("STREAMRAIN_HOME")
    if home:
        return Path(home) / "models"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "streamrain" / "models"


# Keys of a card that a weight file's own header may carry instead (the trainer writes them there).
_HEADER_CARD_KEYS = {"params": int, "gmac_per_megapixel": float}


@dataclass(frozen=True)
class ModelEntry:
    name: str
    arch: str
    weights: Path | None
    default: bool = False
    card: dict = field(default_factory=dict)  # streamrain.cards; for a weightless entry, its arch's
    how_to_get: str = ""
    alias_of: str = ""  # an alias: the model whose weights it runs
    self_ensemble: int = 1  # flipped copies averaged (streamrain.runtime.self_ensemble)

    @property
    def metrics(self) -> dict:
        return self.card.get("metrics", {})

    @property
    def reduced_precisions(self) -> frozenset[str] | None:
        """The reduced precisions these weights run in without losing quality; None: not measured."""
        return reduced_ok(self.card)


def _entry_from_file(path: Path) -> ModelEntry:
    name = path.name.removesuffix(".safetensors")
    try:
        header = read_metadata(path)
    except WeightsError:
        header = {}
    card = {}
    for key, kind in _HEADER_CARD_KEYS.items():
        try:
            card[key] = kind(header[key])
        except (KeyError, ValueError):
            pass
    card.update(read_card(path))
    return ModelEntry(name, header.get("arch", "?"), path, default=name == DEFAULT_MODEL, card=card)


def catalog() -> dict[str, ModelEntry]:
    """Every known model: bundled, user-installed (these win on a name clash), and, for published
    networks with no weights here at all, a weightless entry that says how to get some."""
    entries: dict[str, ModelEntry] = {}
    aliases: dict[str, dict] = {}
    for folder in (BUNDLED_DIR, user_dir()):
        if folder.is_dir():
            for path in sorted(folder.glob("*.safetensors")):
                entry = _entry_from_file(path)
                entries[entry.name] = entry
            for path in sorted(folder.glob("*.json")):
                card = read_card(path)
                if "alias_of" in card and not path.with_suffix(".safetensors").exists():
                    aliases[path.stem] = card
    for name, card in aliases.items():
        base = entries.get(card["alias_of"])
        if base is not None and name not in entries:
            # The base model's card (cost, precision verdict) under the alias's own figures: not
            # the base's metrics, which were measured without the ensemble.
            inherited = {k: v for k, v in base.card.items() if k != "metrics"}
            entries[name] = ModelEntry(name, base.arch, base.weights, card={**inherited, **card},
                                       alias_of=base.name, self_ensemble=int(card.get("self_ensemble", 1)))
    with_weights = {e.arch for e in entries.values()}
    published = arch_cards()
    for arch, how in _HOW_TO_GET.items():
        if arch in ARCHS and arch not in with_weights and arch not in entries:
            entries[arch] = ModelEntry(arch, arch, None, card=published.get(arch, {}), how_to_get=how)
    return entries


def _by_arch(name: str, entries: dict[str, ModelEntry]) -> ModelEntry | None:
    """A bare architecture name ("remaen") stands for its weights here: the user's own if any, else
    the bundled ones; the last name in sort order (the newest version) among several."""
    candidates = [e for e in entries.values() if e.arch == name and e.weights is not None]
    if not candidates:
        return None
    return max(candidates, key=lambda e: (e.weights.parent != BUNDLED_DIR, e.name))


def list_models() -> list[str]:
    """Names of every known model (with or without usable weights)."""
    return sorted(catalog())


def resolve(name: str | None, *, video: bool = False) -> ModelEntry:
    """The model called ``name``; None: the default for video (``video``) or for still images."""
    name = name or (DEFAULT_VIDEO_MODEL if video else DEFAULT_MODEL)
    entries = catalog()
    entry = entries.get(name) or (_by_arch(name, entries) if name in ARCHS else None)
    if entry is None:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(sorted(entries))}")
    if entry.weights is None:
        raise ModelError(f"model {name!r} has no weights here: {entry.how_to_get}")
    return entry


def load_model(name: str | None = None, *, device: str = "cpu", video: bool = False) -> torch.nn.Module:
    """The model ``name`` (None: the default, for video with ``video``) as a module mapping float32
    RGB (B, 3, H, W) in [0, 1], any H and W, to the derained image of the same shape."""
    entry = resolve(name, video=video)
    try:
        net = build_from_weights(entry.weights)
    except WeightsError as exc:
        raise ModelError(str(exc)) from exc
    if entry.self_ensemble > 1:
        net = FlipEnsemble(net, entry.self_ensemble)
    return DerainModule(net, name=entry.name, arch=entry.arch,
                        reduced_precisions=entry.reduced_precisions).to(device).eval()
