"""Memory layout: channels_last speeds up 2-D convolutions on CPUs and GPUs alike."""

from __future__ import annotations

import torch


def to_channels_last(module: torch.nn.Module) -> torch.nn.Module:
    """Puts every 4-D parameter and buffer of ``module`` in channels_last, in place.

    ``Module.to(memory_format=torch.channels_last)`` refuses networks with 3-D convolutions (SDSEN's
    5-D weights), so only the tensors that have a channels_last layout are converted.
    """
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.dim() == 4:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return module
