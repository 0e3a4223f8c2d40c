"""`streamrain models import`: convert an authors' released checkpoint into the project's format.

The file is loaded with ``weights_only=True`` (no code from it runs), converted by the network's own
``convert_official_state_dict`` (which checks every key and shape), and saved as float32 safetensors
in the user's model folder, so `--model NAME` and ``streamrain.load_model(NAME)`` find it. Beside it
goes a card (streamrain.cards) with the architecture's cost and precision verdict, measured once
with the authors' own checkpoints (benchmarks/precision_verdicts.py --arch) and kept in
streamrain/archs/cards.json: an import has no test data to measure with, and the verdict is a
property of the network's arithmetic far more than of one training run's weights.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from streamrain.archs import ARCHS, dpenet, spanet
from streamrain.cards import arch_cards, card_path, write_json
from streamrain.errors import ModelError
from streamrain.weights import save_weights, sha256
from streamrain.zoo import user_dir

CONVERTERS = {"dpenet": dpenet.convert_official_state_dict, "spanet": spanet.convert_official_state_dict}


def import_checkpoint(arch: str, path: Path, *, name: str) -> Path:
    """Convert ``path`` (an authors' checkpoint for ``arch``) and install it as model ``name``."""
    if arch not in CONVERTERS:
        raise ModelError(f"cannot import {arch!r} checkpoints; importable: {', '.join(sorted(CONVERTERS))}")
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ModelError(f"model name {name!r}: use letters, digits, '-', '_' or '.'")
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a readable PyTorch checkpoint ({first})") from exc
    try:
        state = CONVERTERS[arch](raw)
    except ValueError as exc:
        raise ModelError(f"{path}: not a {arch} checkpoint: {exc}") from exc
    net = ARCHS[arch]()
    net.load_state_dict(state, strict=True)
    target = user_dir() / f"{name}.safetensors"
    source = {"source": path.name, "source_sha256": sha256(path)}
    save_weights(target, net, arch=arch, arch_args={}, dtype=torch.float32, extra=source)
    write_json(card_path(target), {"name": name, "arch": arch, **source, **arch_cards().get(arch, {})})
    return target
