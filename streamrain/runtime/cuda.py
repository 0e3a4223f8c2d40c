"""CUDA path: pinned host staging buffers, a copy stream beside the compute stream, fp16 on the GPU,
and the uint8 <-> float conversion done on the GPU (only uint8 crosses the bus).

Upload of a batch runs on the copy stream; the compute stream waits on an event for it, so the next
batch's upload can overlap the current batch's compute when the caller runs ahead.
Not testable on the CPU-only CI machine; kept deliberately small.
"""

from __future__ import annotations

import numpy as np
import torch

from streamrain.runtime.layout import to_channels_last


class CudaRunner:
    def __init__(self, module: torch.nn.Module, dtype: torch.dtype, device: torch.device):
        self.module = to_channels_last(module.to(device=device, dtype=dtype))
        self.dtype = dtype
        self.device = device
        self.copy_stream = torch.cuda.Stream(device)
        self.compute_stream = torch.cuda.Stream(device)
        self._host_in: torch.Tensor | None = None
        self._host_out: torch.Tensor | None = None

    def _staging(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        if self._host_in is None or tuple(self._host_in.shape) != shape:
            self._host_in = torch.empty(shape, dtype=torch.uint8).pin_memory()
            self._host_out = torch.empty(shape, dtype=torch.uint8).pin_memory()
        return self._host_in, self._host_out

    def __call__(self, rgb_u8_bhwc: np.ndarray) -> np.ndarray:
        host_in, host_out = self._staging(rgb_u8_bhwc.shape)
        host_in.numpy()[...] = rgb_u8_bhwc
        uploaded = torch.cuda.Event()
        with torch.cuda.stream(self.copy_stream):
            frames = host_in.to(self.device, non_blocking=True)
            uploaded.record(self.copy_stream)
        with torch.cuda.stream(self.compute_stream), torch.inference_mode():
            self.compute_stream.wait_event(uploaded)
            frames.record_stream(self.compute_stream)
            x = frames.permute(0, 3, 1, 2).to(self.dtype).div_(255.0)
            y = self.module(x)
            out = y.float().mul_(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
            host_out.copy_(out, non_blocking=True)
        self.compute_stream.synchronize()
        return host_out.numpy().copy()
