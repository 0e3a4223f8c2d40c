"""Weight files: safetensors that record the architecture name and its arguments in their metadata.

A weight file is self-describing: ``{"arch": "srnet", "arch_args": "{...json...}", ...}`` in the
safetensors header metadata, so it can be built without any other configuration.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from streamrain.archs import ARCHS


class WeightsError(ValueError):
    """A weight file is missing, corrupt, or does not fit its architecture."""


def save_weights(path: Path, model: torch.nn.Module, *, arch: str, arch_args: dict,
                 dtype: torch.dtype = torch.float16, extra: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    metadata = {"arch": arch, "arch_args": json.dumps(arch_args, sort_keys=True), **(extra or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.chmod(0o644)  # package data and shared model folders: readable by everyone
    tmp.replace(path)


def read_metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from exc


def build_from_weights(path: Path) -> torch.nn.Module:
    """The network described by ``path``, with its weights loaded (float32, CPU, eval mode)."""
    meta = read_metadata(path)
    arch = meta.get("arch")
    if arch not in ARCHS:
        raise WeightsError(f"{path}: unknown architecture {arch!r}; known: {sorted(ARCHS)}")
    args = json.loads(meta.get("arch_args", "{}"))
    model = ARCHS[arch](**args)
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise WeightsError(f"{path}: weights do not fit {arch}: {first}") from exc
    return model.eval()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
