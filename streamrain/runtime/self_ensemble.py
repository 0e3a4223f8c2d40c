"""FlipEnsemble: a network run on flipped copies of the frame, the results flipped back and averaged.

Rain streaks are not symmetric under a flip (they lean one way), so the copies make different
mistakes, and their mean is closer to the clean frame: measured on srnet-v5 (models/srnet-v5.md)
at four copies (as is, left-right, up-down, both) for four times the cost. The quality tier
(`--model quality`) runs the best shipped network this way.

Tensor contract: as the wrapped network's, float32 RGB ``(B, 3, H, W)``.
"""

from __future__ import annotations

import torch
from torch import nn

# The flips, as the dimensions of (B, 3, H, W) each reverses: none, width, height, both.
_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


class FlipEnsemble(nn.Module):
    def __init__(self, net: nn.Module, copies: int = 4):
        super().__init__()
        if not 1 <= copies <= len(_FLIPS):
            raise ValueError(f"a flip ensemble has 1 to {len(_FLIPS)} copies; got {copies}")
        self.net, self.copies = net, copies
        # What the runtime reads off a network (streamrain.runtime.wrapper): the same as the net's.
        self.input_order = getattr(net, "input_order", "rgb")
        self.pad_multiple = int(getattr(net, "pad_multiple", 1))
        self.clamps_output = bool(getattr(net, "clamps_output", False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for dims in _FLIPS[:self.copies]:
            out = self.net(x.flip(dims) if dims else x)
            out = out.flip(dims) if dims else out
            total = out if total is None else total + out
        return total / self.copies

    @property
    def inference_form(self):
        """The wrapped network's inference form (SRNet's folded form, which computes in the dtype
        it is given) ensembled the same way; None, as for any network, where it has none."""
        inner = getattr(self.net, "inference_form", None)
        if inner is None:
            return None
        return lambda dtype: FlipEnsemble(inner(dtype), self.copies)
