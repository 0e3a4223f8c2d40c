"""CUDA path: pinned host staging buffers, separate upload, compute and download streams, fp16 on
the GPU, and the uint8 <-> float conversion done on the GPU (only uint8 crosses the bus).

Batches go through ``submit`` and ``collect``. Each of the two slots owns its pinned buffers and
events, so while batch N is computed, batch N+1 is uploaded and batch N-1 downloaded: the caller
submits the next batch before it collects the previous one (``streamrain.pipeline.runner`` does).
A batch submitted with a ``TilePlan`` is uploaded whole (uint8 is small) and derained tile by
tile on the GPU (``streamrain.runtime.tiling``), so only one tile's activations are live at once.
With ``timing`` set, each phase of a batch is bracketed by timing events, and ``timeline(handle)``
gives its (start, end) in milliseconds on one clock (benchmarks/gpu_check.py reads it).
Not testable on the CPU-only CI machine; kept deliberately small.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from streamrain.runtime.layout import to_channels_last
from streamrain.runtime.tiling import TilePlan, tiled_rgb


@dataclass
class _Slot:
    host_in: torch.Tensor  # pinned uint8 (B, H, W, 3)
    host_out: torch.Tensor
    done: torch.cuda.Event  # recorded when host_out holds the batch's result


PHASES = ("upload", "compute", "download")


class CudaRunner:
    slots = 2

    def __init__(self, module: torch.nn.Module, dtype: torch.dtype, device: torch.device, *, timing: bool = False):
        self.module = to_channels_last(module.to(device=device, dtype=dtype))
        self.dtype = dtype
        self.device = device
        self.upload_stream = torch.cuda.Stream(device)
        self.compute_stream = torch.cuda.Stream(device)
        self.download_stream = torch.cuda.Stream(device)
        self._slots: list[_Slot | None] = [None] * self.slots
        self._next = 0
        self.timing = timing
        self._origin: torch.cuda.Event | None = None
        self._marks: list[list[torch.cuda.Event]] = [[] for _ in range(self.slots)]

    def _mark(self, marks: list, stream: torch.cuda.Stream) -> None:
        if self.timing:
            event = torch.cuda.Event(enable_timing=True)
            event.record(stream)
            marks.append(event)

    def timeline(self, handle: int) -> dict[str, tuple[float, float]]:
        """Each phase's (start, end) in ms from the first timed batch's upload, for the batch
        ``handle`` last collected (``timing`` must have been set when it was submitted)."""
        marks = self._marks[handle]
        if len(marks) != 2 * len(PHASES) or self._origin is None:
            raise RuntimeError("no timeline: set CudaRunner.timing before submitting the batch")
        ms = [self._origin.elapsed_time(m) for m in marks]
        return {phase: (ms[2 * i], ms[2 * i + 1]) for i, phase in enumerate(PHASES)}

    def _slot(self, index: int, shape: tuple[int, ...]) -> _Slot:
        slot = self._slots[index]
        if slot is None or tuple(slot.host_in.shape) != shape:
            if slot is not None:
                slot.done.synchronize()  # its buffers may still be in use by the GPU
            slot = _Slot(torch.empty(shape, dtype=torch.uint8).pin_memory(),
                         torch.empty(shape, dtype=torch.uint8).pin_memory(), torch.cuda.Event())
            self._slots[index] = slot
        return slot

    def frames_to_float(self, frames_bchw_u8: torch.Tensor) -> torch.Tensor:
        """The network on uint8 frames already on the GPU: float ``(B, 3, H, W)`` in [0, 1] out."""
        return self.module(frames_bchw_u8.to(self.dtype).div_(255.0))

    def submit(self, rgb_u8_bhwc: np.ndarray, *, plan: TilePlan | None = None) -> int:
        """Queues one batch on the GPU and returns its handle for ``collect``. At most ``slots``
        batches may be in flight: collect a handle before submitting ``slots`` more. With ``plan``
        the frames are derained one at a time, tile by tile."""
        index = self._next
        self._next = (index + 1) % self.slots
        slot = self._slot(index, rgb_u8_bhwc.shape)
        slot.done.synchronize()  # the slot's previous batch has left host_in and host_out
        slot.host_in.numpy()[...] = rgb_u8_bhwc
        uploaded, computed = torch.cuda.Event(), torch.cuda.Event()
        marks = self._marks[index] = []
        if self.timing and self._origin is None:
            self._origin = torch.cuda.Event(enable_timing=True)
            self._origin.record(self.upload_stream)
        with torch.cuda.stream(self.upload_stream):
            self._mark(marks, self.upload_stream)
            frames = slot.host_in.to(self.device, non_blocking=True)
            uploaded.record(self.upload_stream)
            self._mark(marks, self.upload_stream)
        with torch.cuda.stream(self.compute_stream), torch.inference_mode():
            self.compute_stream.wait_event(uploaded)
            self._mark(marks, self.compute_stream)
            frames.record_stream(self.compute_stream)
            if plan is None:
                y = self.frames_to_float(frames.permute(0, 3, 1, 2))
                out = y.float().mul_(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
            else:
                out = tiled_rgb(frames, self.frames_to_float, plan)
            computed.record(self.compute_stream)
            self._mark(marks, self.compute_stream)
        with torch.cuda.stream(self.download_stream):
            self.download_stream.wait_event(computed)
            self._mark(marks, self.download_stream)
            out.record_stream(self.download_stream)
            slot.host_out.copy_(out, non_blocking=True)
            slot.done.record(self.download_stream)
            self._mark(marks, self.download_stream)
        return index

    def collect(self, handle: int) -> np.ndarray:
        slot = self._slots[handle]
        slot.done.synchronize()
        return slot.host_out.numpy().copy()

    def __call__(self, rgb_u8_bhwc: np.ndarray, *, plan: TilePlan | None = None) -> np.ndarray:
        return self.collect(self.submit(rgb_u8_bhwc, plan=plan))
