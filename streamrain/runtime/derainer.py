"""Derainer: uint8 RGB frame batches in, uint8 RGB frame batches out, on CPU or CUDA.

Layout: ``rgb_u8_bhwc`` numpy uint8 ``(B, H, W, 3)``. On the CPU the batch is viewed as a
channels_last ``(B, 3, H, W)`` tensor without a copy and run under bf16 autocast where the CPU has
native bf16 (AVX-512 BF16 / AMX); on CUDA it goes through pinned staging buffers and a copy stream,
in fp16.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch

from streamrain.errors import ModelError
from streamrain.runtime.layout import to_channels_last
from streamrain.runtime.wrapper import DerainModule

log = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Backend = Literal["eager", "compile", "tensorrt"]


def cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_device(device: Device) -> torch.device:
    if device not in ("auto", "cpu", "cuda"):
        raise ModelError(f"unknown device {device!r}; allowed: auto, cpu, cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda: no CUDA GPU is available to torch")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_precision(precision: Precision, device: torch.device) -> torch.dtype:
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ModelError(f"unknown precision {precision!r}; allowed: auto, fp32, bf16, fp16")
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_has_bf16() else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class Derainer:
    """Callable: ``derainer(rgb_u8_bhwc) -> rgb_u8_bhwc``."""

    def __init__(self, module: DerainModule, *, device: Device = "auto", precision: Precision = "auto",
                 backend: Backend = "eager"):
        if backend not in ("eager", "compile", "tensorrt"):
            raise ModelError(f"unknown backend {backend!r}; allowed: eager, compile, tensorrt")
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.module = module.eval().to(self.device)
        self.name = module.name
        self.backend = backend
        if backend == "tensorrt":
            if self.device.type != "cuda":
                raise ModelError("--backend tensorrt needs a CUDA GPU (--device cuda)")
            from streamrain.runtime.tensorrt import ShapeRange, build_or_load
            from streamrain.zoo import user_dir
            engine = build_or_load(self.module, device=self.device, dtype=self.dtype, shapes=ShapeRange(),
                                   cache_dir=user_dir().parent / "engines")
            self.backend = "tensorrt" if engine is not None else "eager"
            self.module = engine or self.module
        elif backend == "compile":
            # Compiled once per process (inductor caches kernels on disk between runs); dynamic so
            # that a new frame size does not trigger a recompile.
            self.module.net = torch.compile(self.module.net, dynamic=True)
        if self.device.type == "cpu":
            to_channels_last(self.module)
            self._run = self._run_cpu
        else:
            from streamrain.runtime.cuda import CudaRunner
            self._run = CudaRunner(self.module, self.dtype, self.device)
        log.info("model %s on %s in %s", self.name, self.device, str(self.dtype).removeprefix("torch."))

    @property
    def device_label(self) -> str:
        label = f"{self.device.type}:{str(self.dtype).removeprefix('torch.')}"
        return label if self.backend == "eager" else f"{label}:{self.backend}"

    def __call__(self, rgb_u8_bhwc: np.ndarray) -> np.ndarray:
        return self._run(rgb_u8_bhwc)

    @property
    def max_in_flight(self) -> int:
        """Batches that may be submitted before the first is collected: 2 on CUDA, where one batch's
        transfers overlap another's compute; 1 on the CPU, where a batch is done when submitted."""
        return getattr(self._run, "slots", 1)

    def submit(self, rgb_u8_bhwc: np.ndarray):
        return self._run.submit(rgb_u8_bhwc) if self.max_in_flight > 1 else self._run(rgb_u8_bhwc)

    def collect(self, handle) -> np.ndarray:
        return self._run.collect(handle) if self.max_in_flight > 1 else handle

    def _run_cpu(self, rgb_u8_bhwc: np.ndarray) -> np.ndarray:
        frames = torch.from_numpy(rgb_u8_bhwc).permute(0, 3, 1, 2)  # a channels_last view, no copy
        with torch.inference_mode():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.dtype == torch.bfloat16):
                out = self.module(frames.float().div_(255.0))
            out_u8 = out.float().mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
            return out_u8.permute(0, 2, 3, 1).contiguous().numpy()
