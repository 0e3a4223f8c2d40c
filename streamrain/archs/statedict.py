"""Shared checks for converting upstream checkpoints: unwrap, strip ``module.``, verify every key
and shape against the port, and say exactly what does not fit."""

from __future__ import annotations

from collections.abc import Mapping

import torch


def unwrap_state_dict(obj: object, *, name: str, wrappers: tuple[str, ...] = ("net", "state_dict", "model")
                      ) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint (bare, or under one of ``wrappers``), without ``module.`` prefixes."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a state dict (mapping), got {type(obj).__name__}")
    state = obj
    for wrapper in wrappers:
        if isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{name} state dict entry {key!r} is a {type(value).__name__}, not a tensor")
        converted[str(key).removeprefix("module.")] = value
    return converted


def check_fits(state: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor], name: str) -> None:
    """Raise ValueError naming missing keys, unexpected keys and shape mismatches, if any."""
    missing = sorted(set(reference) - set(state))
    unexpected = sorted(set(state) - set(reference))
    mismatched = [
        f"{key}: got {tuple(state[key].shape)}, expected {tuple(reference[key].shape)}"
        for key in sorted(set(state) & set(reference))
        if state[key].shape != reference[key].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {missing[:10]}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {unexpected[:10]}")
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): {mismatched[:10]}")
    if problems:
        raise ValueError(f"state dict does not fit {name}: " + "; ".join(problems))
