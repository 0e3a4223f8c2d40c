"""Derainer: uint8 RGB frame batches in, uint8 RGB frame batches out, on CPU or CUDA.

Layout: ``rgb_u8_bhwc`` numpy uint8 ``(B, H, W, 3)``. On the CPU the batch is viewed as a
channels_last ``(B, 3, H, W)`` tensor without a copy and run in bf16 where the CPU has native bf16
(AVX-512 BF16 / AMX): in the network's own inference form where it has one, else under autocast.
On CUDA it goes through pinned staging buffers and a copy stream, in fp16. Either reduced precision
is the default only for weights measured to lose no quality in it (``resolve_precision``).

Offline runs on the CPU use ``cpu_workers`` batches in flight, each on its share of the cores
(``submit``/``collect``), instead of one batch on all of them: measured on 2 cores, two
single-threaded workers use ~15 % less CPU per frame than one two-threaded batch (no OpenMP
barriers), and a decode or encode thread that preempts one worker no longer stalls the other.
Synchronous calls (``derainer(batch)``: live preview, eval) keep every core for one batch.

A network with a 4:2:0 form (SRNet's ``yuv420_form``) also takes batches of decoded pictures as
they are, I420 uint8 ``(B, H * 3 // 2, W)`` with their ``YuvMatrix`` (``accepts_yuv420``): on the
CPU this saves swscale's two conversions per frame, about as much CPU as the encoder itself uses.

Large frames (``tile``): with ``"auto"`` the network's activation memory per pixel is measured once
(``streamrain.runtime.memory``) and a batch whose estimate exceeds the device's budget is derained
one frame at a time, and a frame that alone exceeds it in overlapping tiles
(``streamrain.runtime.tiling``); an integer is a tile side in pixels; ``"off"`` never tiles. The
plan is made once per frame size and layout, on the caller's thread, before a batch is handed on.
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

import numpy as np
import torch

from streamrain.errors import ModelError
from streamrain.io.frames import YuvMatrix
from streamrain.runtime.layout import to_channels_last
from streamrain.runtime.malloc import keep_freed_memory
from streamrain.runtime.memory import budget_bytes, bytes_per_pixel, remembered
from streamrain.runtime.tiling import (DEFAULT_OVERLAP, TileOption, TilePlan, parse_tile, plan_for_budget,
                                       tiled_i420, tiled_rgb)
from streamrain.runtime.wrapper import DerainModule

log = logging.getLogger(__name__)

# Activation bytes per pixel, measured once per model, form, dtype and device (and kept on disk).
_BYTES_PER_PIXEL: dict[tuple, float] = {}

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


def resolve_precision(precision: Precision, device: torch.device, *,
                      reduced_ok: frozenset[str] | None = None) -> torch.dtype:
    """The dtype to run in. An explicit precision is taken as given. ``auto`` takes the device's fast
    precision (fp16 on CUDA, bf16 on a CPU with native bf16) only where the weights' precision
    verdict (``reduced_ok``, from their card: streamrain.cards) says it costs no quality, and fp32
    otherwise, including for weights that were never measured: the default must not cost quality
    (DPENet in bf16 reproduces its authors' output to only ~44 dB, in fp32 to ~99 dB)."""
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ModelError(f"unknown precision {precision!r}; allowed: auto, fp32, bf16, fp16")
    if precision == "auto":
        fast = "fp16" if device.type == "cuda" else "bf16" if cpu_has_bf16() else "fp32"
        precision = fast if fast in (reduced_ok or ()) else "fp32"
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class Derainer:
    """Callable: ``derainer(rgb_u8_bhwc) -> rgb_u8_bhwc``."""

    def __init__(self, module: DerainModule, *, device: Device = "auto", precision: Precision = "auto",
                 backend: Backend = "eager", cpu_workers: int = 1, tile: TileOption = "auto",
                 tile_overlap: int = DEFAULT_OVERLAP):
        if backend not in ("eager", "compile", "tensorrt"):
            raise ModelError(f"unknown backend {backend!r}; allowed: eager, compile, tensorrt")
        if cpu_workers < 1:
            raise ModelError(f"cpu_workers must be at least 1; got {cpu_workers}")
        if not isinstance(tile_overlap, int) or tile_overlap < 0:
            raise ModelError(f"tile_overlap must be 0 or more pixels; got {tile_overlap!r}")
        self.tile = parse_tile(tile)
        self.tile_overlap = tile_overlap
        self._plans: dict[tuple, TilePlan | None] = {}
        self._plan_lock = threading.Lock()
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device,
                                       reduced_ok=getattr(module, "reduced_precisions", None))
        self.module = module.eval().to(self.device)
        self.name = module.name
        self.backend = backend
        self._eager_module = self.module  # what activation memory is measured on
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
            self._eager_module = DerainModule(self.module.net, name=self.name, arch=module.arch)
            self.module.net = torch.compile(self.module.net, dynamic=True)
            if cpu_workers > 1:
                # Two threads entering a first compile at once stalled for over ten minutes here
                # (dynamo traces under a process-wide lock): one batch at a time on every core.
                log.info("--backend compile: one CPU worker instead of %d", cpu_workers)
                cpu_workers = 1
        self._pool: ThreadPoolExecutor | None = None
        self._cpu_workers = cpu_workers
        self._yuv420_form = None  # SRNet.yuv420_form where the CPU eager path can use it
        self._yuv420_modules: dict[YuvMatrix, torch.nn.Module] = {}
        if self.device.type == "cpu":
            # A network may offer a form refactored for inference (SRNet does); it computes in the
            # given dtype itself, so autocast is left off for it.
            self._autocast = self.dtype == torch.bfloat16
            inference_form = getattr(self.module.net, "inference_form", None)
            if self.backend == "eager" and hasattr(self.module.net, "yuv420_form"):
                self._yuv420_form = self.module.net.yuv420_form
            if inference_form is not None and self.backend == "eager":
                # A new wrapper: the caller's module keeps its own (trainable, float32) network.
                self.module = DerainModule(inference_form(self.dtype), name=self.name, arch=module.arch,
                                           reduced_precisions=getattr(module, "reduced_precisions", None))
                self._eager_module = self.module
                self._autocast = False
            to_channels_last(self.module)
            keep_freed_memory()
            self._run = self._run_cpu
            # Thread counts are set before each batch: torch's count is per process (and per OpenMP
            # thread), and other code in the process may have changed it since.
            self._all_threads = torch.get_num_threads()
            self._worker_threads = max(1, self._all_threads // cpu_workers)
            if cpu_workers > 1:
                self._pool = ThreadPoolExecutor(cpu_workers, thread_name_prefix="streamrain-derain")
        else:
            from streamrain.runtime.cuda import CudaRunner
            self._run = CudaRunner(self.module, self.dtype, self.device)
        log.info("model %s on %s in %s", self.name, self.device, str(self.dtype).removeprefix("torch."))

    @property
    def device_label(self) -> str:
        label = f"{self.device.type}:{str(self.dtype).removeprefix('torch.')}"
        return label if self.backend == "eager" else f"{label}:{self.backend}"

    @property
    def cuda_runner(self):
        """The ``CudaRunner`` on CUDA (for instrumentation: benchmarks/gpu_check.py), else None."""
        return None if self.device.type == "cpu" else self._run

    @property
    def accepts_yuv420(self) -> bool:
        return self._yuv420_form is not None

    def __call__(self, rgb_u8_bhwc: np.ndarray, *, yuv: YuvMatrix | None = None) -> np.ndarray:
        """``yuv`` given: the batch is I420 pictures in that matrix and range (``accepts_yuv420``)."""
        if yuv is not None:
            module = self._yuv420_module(yuv)
            return self._run_yuv420(rgb_u8_bhwc, module, threads=self._all_threads,
                                    plan=self.tile_plan(rgb_u8_bhwc.shape, yuv=yuv, share=1))
        plan = self.tile_plan(rgb_u8_bhwc.shape, share=1)
        if self.device.type == "cpu":
            return self._run_cpu(rgb_u8_bhwc, threads=self._all_threads, plan=plan)
        return self._run(rgb_u8_bhwc, plan=plan)

    @property
    def max_in_flight(self) -> int:
        """Batches that may be submitted before the first is collected: 2 on CUDA, where one batch's
        transfers overlap another's compute; on the CPU two per worker, so that a worker that
        finishes takes a waiting batch at once instead of idling until the pipeline thread (which
        shares the cores with decode and encode) collects and submits. With one waiting batch in
        all, a worker that finished before the oldest batch (collected first) took it, and the
        other worker then found none. Measured with a worker timeline at 640x360 on 2 cores
        (1,000 frames): workers idle between batches 130-190 ms per run with one waiting batch,
        20-25 ms with one per worker."""
        if self._pool is not None:
            return 2 * self._cpu_workers
        return getattr(self._run, "slots", 1)

    def submit(self, rgb_u8_bhwc: np.ndarray, *, yuv: YuvMatrix | None = None):
        """Starts a batch; ``collect(handle)`` returns its result. Collect in submission order."""
        if yuv is not None:
            module = self._yuv420_module(yuv)  # built here, on one thread, before any worker uses it
            if self._pool is not None:
                plan = self.tile_plan(rgb_u8_bhwc.shape, yuv=yuv, share=self._cpu_workers)
                return self._pool.submit(self._run_yuv420, rgb_u8_bhwc, module, threads=self._worker_threads,
                                         plan=plan)
            return self(rgb_u8_bhwc, yuv=yuv)
        if self._pool is not None:
            plan = self.tile_plan(rgb_u8_bhwc.shape, share=self._cpu_workers)
            return self._pool.submit(self._run_cpu, rgb_u8_bhwc, threads=self._worker_threads, plan=plan)
        if self.max_in_flight > 1:
            return self._run.submit(rgb_u8_bhwc, plan=self.tile_plan(rgb_u8_bhwc.shape, share=1))
        return self(rgb_u8_bhwc)

    def collect(self, handle) -> np.ndarray:
        if isinstance(handle, Future):
            return handle.result()
        return self._run.collect(handle) if self.max_in_flight > 1 else handle

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _yuv420_module(self, yuv: YuvMatrix) -> torch.nn.Module:
        if self._yuv420_form is None:
            raise ModelError(f"model {self.name} on {self.device_label} does not take 4:2:0 frames")
        if yuv not in self._yuv420_modules:
            self._yuv420_modules[yuv] = self._yuv420_form(self.dtype, yuv).eval()
        return self._yuv420_modules[yuv]

    # -- tiling -------------------------------------------------------------------------------

    def _align(self, yuv: bool) -> int:
        """What tile starts and sizes are multiples of: the network's padding multiple, and 4 for
        4:2:0 pictures (the 4:2:0 form's own requirement)."""
        multiple = max(1, self._eager_module.multiple)
        return math.lcm(multiple, 4) if yuv else multiple

    def _overlap(self, align: int) -> int:
        return -(-self.tile_overlap // align) * align

    def tile_plan(self, shape: tuple[int, ...], *, yuv: YuvMatrix | None = None, share: int = 1) -> TilePlan | None:
        """How a batch of ``shape`` (RGB ``(B, H, W, 3)``, or I420 ``(B, H * 3 // 2, W)`` with ``yuv``)
        is derained: None for whole, else the plan its frames are cut by, one frame at a time.
        ``share``: batches derained at once (each gets that share of the memory budget)."""
        batch, height, width = shape[0], shape[1] * 2 // 3 if yuv is not None else shape[1], shape[2]
        key = (batch, height, width, yuv, share)
        with self._plan_lock:
            if key not in self._plans:
                self._plans[key] = self._make_plan(batch, height, width, yuv, share)
            return self._plans[key]

    def _make_plan(self, batch: int, height: int, width: int, yuv: YuvMatrix | None, share: int) -> TilePlan | None:
        align = self._align(yuv is not None)
        overlap = self._overlap(align)
        if self.tile == "off":
            return None
        if isinstance(self.tile, int):
            if height <= self.tile and width <= self.tile:
                return None
            side = max(-(-self.tile // align) * align, overlap + align)
            plan = TilePlan.grid(height, width, tile_h=side, tile_w=side, overlap=overlap, align=align)
        else:
            per_pixel = self._bytes_per_pixel(yuv)
            budget = budget_bytes(self.device, share=share)
            plan = plan_for_budget(height, width, batch=batch, bytes_per_pixel=per_pixel, budget_bytes=budget,
                                   overlap=overlap, align=align)
            log.info("%s at %dx%d, batch %d: %.0f bytes/pixel measured, budget %d MiB: %s", self.name, width,
                     height, batch, per_pixel, budget >> 20, "whole batches" if plan is None else
                     f"{plan.count} tile(s) of up to {plan.tile_hw[1]}x{plan.tile_hw[0]}, frame by frame")
        return plan

    def _bytes_per_pixel(self, yuv: YuvMatrix | None) -> float:
        from streamrain.zoo import user_dir

        key = {"model": self.name, "arch": self._eager_module.arch, "form": type(self._eager_module.net).__name__,
               "params": sum(p.numel() for p in self._eager_module.parameters()),  # stands in for its arguments
               "dtype": str(self.dtype), "device": self.device.type, "yuv420": yuv is not None,
               "autocast": self._autocast if self.device.type == "cpu" else None}
        in_process = tuple(sorted(key.items()))
        if in_process not in _BYTES_PER_PIXEL:
            _BYTES_PER_PIXEL[in_process] = remembered(key, lambda: self._measure_bytes_per_pixel(yuv),
                                                      user_dir().parent / "activation_memory.json")
        return _BYTES_PER_PIXEL[in_process]

    def _measure_bytes_per_pixel(self, yuv: YuvMatrix | None) -> float:
        """Measured on a small frame (``streamrain.runtime.memory``) with the network in the form
        and dtype it runs in (the eager one under torch.compile or TensorRT: an upper bound)."""
        align = self._align(yuv is not None)
        side = -(-max(64, 2 * align) // align) * align
        if yuv is not None:
            example = torch.full((1, side * 3 // 2, side), 128, dtype=torch.uint8)
            return bytes_per_pixel(self._yuv420_module(yuv), example, pixels=side * side,
                                   module=self._yuv420_module(yuv))
        example = torch.randint(0, 256, (1, side, side, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        example = example.to(self.device).permute(0, 3, 1, 2)
        if self.device.type == "cpu":
            return bytes_per_pixel(lambda x: self._cpu_frames_to_float(x, self._eager_module), example,
                                   module=self._eager_module)
        return bytes_per_pixel(lambda x: self._eager_module(x.to(self.dtype).div_(255.0)), example)

    # -- CPU ------------------------------------------------------------------------------------

    def _run_yuv420(self, i420_u8: np.ndarray, module: torch.nn.Module, *, threads: int,
                    plan: TilePlan | None = None) -> np.ndarray:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        with torch.inference_mode():
            pictures = torch.from_numpy(i420_u8)
            return (module(pictures) if plan is None else tiled_i420(pictures, module, plan)).numpy()

    def _cpu_frames_to_float(self, frames_bchw_u8: torch.Tensor, module: torch.nn.Module) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._autocast):
            return module(frames_bchw_u8.float().div_(255.0))

    def _run_cpu(self, rgb_u8_bhwc: np.ndarray, *, threads: int | None = None,
                 plan: TilePlan | None = None) -> np.ndarray:
        if threads and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        with torch.inference_mode():
            if plan is not None:
                run = lambda tile: self._cpu_frames_to_float(tile, self.module)  # noqa: E731
                return tiled_rgb(torch.from_numpy(rgb_u8_bhwc), run, plan).numpy()
            frames = torch.from_numpy(rgb_u8_bhwc).permute(0, 3, 1, 2)  # a channels_last view, no copy
            out = self._cpu_frames_to_float(frames, self.module)
            out_u8 = out.float().mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
            return out_u8.permute(0, 2, 3, 1).contiguous().numpy()
