"""TemporalDerainer: a temporal network (``temporal = True``, e.g. TRNet) run over a stream of frames.

Layout: frames are ``rgb_u8_bhwc`` numpy uint8 ``(B, H, W, 3)``, as for ``Derainer``; a network with
a 4:2:0 form (TRNet's ``yuv420_form``) also takes decoded pictures as they are on the CPU, I420 uint8
``(B, H * 3 // 2, W)`` with their ``YuvMatrix`` (``accepts_yuv420``), and gives them back so. A
change of layout or matrix ends a shot, as a change of size does.

The window belongs here, not to the pipeline. A ``FrameStream`` (one per video: ``derainer.stream()``)
takes frames in order, batch by batch, and gives back derained frames in the same order, each with
the tag it came in with (the pipeline's ``Frame``, so its pts and index travel with it). Output t
needs frames t - past .. t + future, so it comes out ``future`` frames later (look-ahead: it delays
emission, it shifts no timestamp); ``flush()`` at the end of the input gives the rest. In causal
mode (live sources) the future slots hold frame t itself, no frame after t is waited for, and output
t comes back from the call that took frame t.

Per-frame features are computed once, by the batch that brought the frame, and kept while a window
still needs them: a batch of B frames costs B feature passes plus the fusion of the outputs it
completes, and the state is bounded by the window plus the batches in flight. Shots: at a
discontinuity (``reset()``, or what ``ShotBoundaries`` finds: a scene cut, a size change, a pts gap,
a source reconnect) the pending outputs are completed with their shot's last frame replicated, and
the next frame starts a new window, so nothing of one shot reaches the other.

On the CPU, ``cpu_workers`` > 1 runs batches on a thread pool, each on its share of the cores, as
``Derainer`` does. Batches depend on their predecessors' features: a worker first computes its own
batch's features, then waits for the earlier frames its windows need. Those belong to batches that
started earlier (the pool is first in, first out) and whose feature pass waits on nothing, so the
wait always ends.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Sequence

import numpy as np
import torch

from streamrain.archs.srnet import i420_from_codes
from streamrain.archs.trnet import FrameFeatures, window
from streamrain.errors import ModelError
from streamrain.io.frames import YuvMatrix
from streamrain.runtime.cuts import ShotBoundaries
from streamrain.runtime.derainer import Backend, Device, Precision, resolve_device, resolve_precision
from streamrain.runtime.layout import to_channels_last
from streamrain.runtime.malloc import keep_freed_memory
from streamrain.runtime.wrapper import DerainModule, pad_to_multiple

log = logging.getLogger(__name__)


def is_temporal(module: torch.nn.Module) -> bool:
    """Whether a ``DerainModule`` (or a bare network) derains from a window of frames."""
    return bool(getattr(getattr(module, "net", module), "temporal", False))


class _Frame:
    """One input frame: its pixels as the network takes them and its features, once its batch has
    computed them."""

    __slots__ = ("size", "yuv", "pixels", "features", "ready", "error")

    def __init__(self, size: tuple[int, int], yuv: YuvMatrix | None):
        self.size = size  # (H, W) before padding
        self.yuv = yuv  # the I420 picture's matrix; None: an RGB frame
        # RGB: (1, 3, H', W') float in [0, 1], padded; I420: (1, 6, H/2, W/2) uint8 codes
        self.pixels: torch.Tensor | None = None
        self.features: FrameFeatures | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None


class _Task:
    """One model call: features of the new frames, then the outputs whose windows are complete."""

    __slots__ = ("batch_u8", "yuv", "new", "outputs")

    def __init__(self, batch_u8: np.ndarray | None, yuv: YuvMatrix | None, new: list[_Frame],
                 outputs: list[tuple[object, list[_Frame]]]):
        self.batch_u8, self.yuv, self.new, self.outputs = batch_u8, yuv, new, outputs


class TemporalDerainer:
    """A temporal model on CPU or CUDA. ``derainer(rgb_u8_bhwc)`` derains the batch as one clip of
    consecutive frames (its own shot); ``derainer.stream()`` derains a video batch by batch."""

    temporal = True

    def __init__(self, module: DerainModule, *, device: Device = "auto", precision: Precision = "auto",
                 backend: Backend = "eager", cpu_workers: int = 1, causal: bool = False,
                 max_gap_s: float = 0.5, scene_cuts: bool = True):
        if backend != "eager":
            raise ModelError(f"model {module.name} is temporal: --backend {backend} is not supported for "
                             f"it; allowed: eager")
        if cpu_workers < 1:
            raise ModelError(f"cpu_workers must be at least 1; got {cpu_workers}")
        if not is_temporal(module):
            raise ModelError(f"model {module.name} is not temporal; use Derainer")
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device,
                                       reduced_ok=getattr(module, "reduced_precisions", None))
        self.name, self.backend = module.name, backend
        self.net = module.net.eval().to(self.device)
        self.multiple = int(getattr(self.net, "pad_multiple", 1))
        self.past, self.future = int(self.net.past), int(self.net.future)
        self.causal = causal
        self.max_gap_s, self.scene_cuts = max_gap_s, scene_cuts
        ShotBoundaries(max_gap_s=max_gap_s)  # validates max_gap_s here, not at the first stream
        self._pool: ThreadPoolExecutor | None = None
        self._all_threads = torch.get_num_threads()
        self._worker_threads = max(1, self._all_threads // cpu_workers)
        self._yuv420_form = None  # the network's yuv420_form where the CPU can use it
        self._yuv420_modules: dict[YuvMatrix, torch.nn.Module] = {}
        if self.device.type == "cpu":
            self._yuv420_form = getattr(self.net, "yuv420_form", None)
            # The network's inference form where it has one (it computes in the dtype itself), as
            # Derainer does; else autocast in bf16 where the CPU has it.
            self._autocast = self.dtype == torch.bfloat16
            inference_form = getattr(self.net, "inference_form", None)
            if inference_form is not None:
                self.net = inference_form(self.dtype).eval()
                self._autocast = False
            to_channels_last(self.net)
            keep_freed_memory()
            if cpu_workers > 1:
                self._pool = ThreadPoolExecutor(cpu_workers, thread_name_prefix="streamrain-temporal")
        else:
            self._autocast = self.dtype != torch.float32
        log.info("temporal model %s (window -%d..+%d) on %s in %s", self.name, self.past, self.future,
                 self.device, str(self.dtype).removeprefix("torch."))

    @property
    def device_label(self) -> str:
        return f"{self.device.type}:{str(self.dtype).removeprefix('torch.')}"

    @property
    def accepts_yuv420(self) -> bool:
        return self._yuv420_form is not None

    def _yuv420_module(self, yuv: YuvMatrix) -> torch.nn.Module:
        if self._yuv420_form is None:
            raise ModelError(f"model {self.name} on {self.device_label} does not take 4:2:0 frames")
        if yuv not in self._yuv420_modules:
            self._yuv420_modules[yuv] = to_channels_last(self._yuv420_form(self.dtype, yuv).eval())
        return self._yuv420_modules[yuv]

    @property
    def max_in_flight(self) -> int:
        """Batches a stream may have submitted before the first is collected (as ``Derainer``)."""
        return 2 * self._pool._max_workers if self._pool is not None else 1

    @property
    def latency_frames(self) -> int:
        """How many frames after frame t its output comes out (offline look-ahead)."""
        return 0 if self.causal else self.future

    def stream(self, *, causal: bool | None = None) -> "FrameStream":
        """A new video: an empty window. ``causal`` None: the derainer's own mode."""
        return FrameStream(self, causal=self.causal if causal is None else causal)

    def __call__(self, rgb_u8_bhwc: np.ndarray, *, yuv: YuvMatrix | None = None) -> np.ndarray:
        """The batch as one clip of consecutive frames: window edges replicated at both ends.
        ``yuv`` given: the batch is I420 pictures in that matrix and range (``accepts_yuv420``)."""
        stream = FrameStream(self, causal=self.causal, inline=True)
        derained = stream.collect(stream.submit(rgb_u8_bhwc, yuv=yuv)) + stream.flush()
        return np.stack([pixels for _, pixels in derained])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    # -- what a stream runs -------------------------------------------------------------------

    def _start(self, task: _Task, *, inline: bool):
        if self._pool is None or inline:
            return self._execute(task, threads=self._all_threads)
        return self._pool.submit(self._execute, task, threads=self._worker_threads)

    def _execute(self, task: _Task, *, threads: int) -> list[tuple[object, np.ndarray]]:
        if self.device.type == "cpu" and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype, enabled=self._autocast):
            if task.new:
                self._compute_features(task)
            results: list[tuple[object, np.ndarray]] = []
            start = 0
            while start < len(task.outputs):  # runs of one size and layout (a change ends a shot)
                centre = task.outputs[start][1][self.past]
                end = start
                while end < len(task.outputs) and (task.outputs[end][1][self.past].size,
                                                   task.outputs[end][1][self.past].yuv) == (centre.size, centre.yuv):
                    end += 1
                results += self._fuse(task.outputs[start:end], centre.size, centre.yuv)
                start = end
            return results

    def _compute_features(self, task: _Task) -> None:
        try:
            if task.yuv is not None:  # (4:2:0 frames are multiples of 4 in size: no padding)
                net = self._yuv420_module(task.yuv)
                bordered = net.codes(torch.from_numpy(task.batch_u8))
                feats, x = net.features(bordered), bordered[..., 1:-1, 1:-1]
            else:
                frames = torch.from_numpy(task.batch_u8).permute(0, 3, 1, 2)  # a channels_last view
                x = pad_to_multiple(frames.to(self.device, non_blocking=True).float().div_(255.0), self.multiple)
                if self.device.type == "cpu":
                    x = x.contiguous(memory_format=torch.channels_last)
                feats = self.net.features(x)
            for i, frame in enumerate(task.new):
                frame.pixels = x[i:i + 1]
                frame.features = FrameFeatures(*(t[i:i + 1] for t in feats))
        except BaseException as exc:
            for frame in task.new:
                frame.error = exc
            raise
        finally:
            for frame in task.new:
                frame.ready.set()

    def _fuse(self, outputs: list[tuple[object, list[_Frame]]], size: tuple[int, int],
              yuv: YuvMatrix | None) -> list:
        # The centres first (each output's own frame, all different), then the other neighbours:
        # the fusion reads the pixels and half-resolution features of the centres only, so only
        # theirs are gathered.
        order: dict[int, int] = {}
        frames: list[_Frame] = []
        for frame in [slots[self.past] for _, slots in outputs] + [f for _, slots in outputs for f in slots]:
            if id(frame) not in order:
                frame.ready.wait()  # computed by this batch or one that started before it
                if frame.error is not None:
                    raise ModelError(f"an earlier batch failed: {frame.error}") from frame.error
                order[id(frame)] = len(frames)
                frames.append(frame)
        centres = frames[:len(outputs)]
        gathered = [torch.cat(parts) for parts in zip(*(f.features[1:] for f in frames))]
        feats = FrameFeatures(torch.cat([f.features.half for f in centres]), *gathered)
        pixels = torch.cat([f.pixels for f in centres])
        windows = [[order[id(frame)] for frame in slots] for _, slots in outputs]
        if yuv is not None:
            out_u8 = i420_from_codes(self._yuv420_module(yuv).fuse_windows(pixels, feats, windows)).numpy()
            return [(tag, out_u8[i]) for i, (tag, _) in enumerate(outputs)]
        out = self.net.fuse_windows(pixels, feats, windows)[..., :size[0], :size[1]]
        out_u8 = out.float().mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
        out_u8 = out_u8.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        return [(tag, out_u8[i]) for i, (tag, _) in enumerate(outputs)]


def _picture_size(shape: tuple[int, ...], yuv: YuvMatrix | None) -> tuple[int, int]:
    """(H, W) of one frame of the batch: RGB (H, W, 3), or I420 (H * 3 // 2, W)."""
    return (shape[0] * 2 // 3, shape[1]) if yuv is not None else (shape[0], shape[1])


class FrameStream:
    """One video through a ``TemporalDerainer``: call from one thread, in frame order.

    ``submit(batch)`` returns a handle; ``collect(handle)`` (in submission order) returns the list
    of ``(tag, rgb_u8)`` outputs that batch completed, possibly of earlier frames, possibly none;
    ``flush()`` at the end returns the rest. Every input frame comes out exactly once.
    """

    def __init__(self, derainer: TemporalDerainer, *, causal: bool, inline: bool = False):
        self.derainer = derainer
        self.causal = causal
        self.inline = inline  # every batch on the calling thread, on every core
        self.shots = 0  # shots started so far
        self._boundaries = ShotBoundaries(max_gap_s=derainer.max_gap_s, scene_cuts=derainer.scene_cuts)
        self._look_ahead = 0 if causal else derainer.future
        self._shot: deque[_Frame] = deque()  # the current shot's frames that a window may still need
        self._base = 0  # position (frames since the stream began) of self._shot[0]
        self._shot_first = 0  # position of the current shot's first frame
        self._next = 0  # position of the next frame to come
        self._pending: deque[tuple[object, int]] = deque()  # (tag, position): outputs not yet planned
        self._carried: list[tuple[object, list[_Frame]]] = []  # completed by reset(), not yet run
        self._in_flight = 0

    def reset(self) -> None:
        """A discontinuity before the next frame: it starts a new window."""
        self._carried += self._end_shot()
        self._boundaries.reset()

    def submit(self, rgb_u8_bhwc: np.ndarray, *, tags: Sequence[object] | None = None,
               times_s: Sequence[float | None] | None = None, discontinuous: Sequence[bool] | None = None,
               yuv: YuvMatrix | None = None):
        """``tags``: what each output is returned with (default: its position in the stream);
        ``times_s``: each frame's timestamp, for the pts-gap test; ``discontinuous``: frames the
        source knows start a new shot (a reconnect); ``yuv``: the batch is I420 pictures in that
        matrix and range (``TemporalDerainer.accepts_yuv420``)."""
        if yuv is not None:
            self.derainer._yuv420_module(yuv)  # built here, on one thread, before any worker uses it
        count = len(rgb_u8_bhwc)
        for name, values in (("tags", tags), ("times_s", times_s), ("discontinuous", discontinuous)):
            if values is not None and len(values) != count:
                raise ValueError(f"{name} has {len(values)} entries for {count} frames")
        outputs, self._carried = self._carried, []
        new: list[_Frame] = []
        for i in range(count):
            reason = self._boundaries.starts_shot(
                rgb_u8_bhwc[i], times_s[i] if times_s is not None else None,
                discontinuous=bool(discontinuous[i]) if discontinuous is not None else False, yuv=yuv)
            if reason is not None:
                log.debug("frame %d starts shot %d: %s", self._next, self.shots + 1, reason)
                self.shots += 1
                outputs += self._end_shot()
            frame = _Frame(_picture_size(rgb_u8_bhwc.shape[1:], yuv), yuv)
            new.append(frame)
            self._shot.append(frame)
            self._pending.append((tags[i] if tags is not None else self._next, self._next))
            self._next += 1
            outputs += self._ready()
        self._forget_unneeded()
        self._in_flight += 1
        return self.derainer._start(_Task(rgb_u8_bhwc if count else None, yuv, new, outputs), inline=self.inline)

    def collect(self, handle) -> list[tuple[object, np.ndarray]]:
        self._in_flight -= 1
        return handle.result() if isinstance(handle, Future) else handle

    def flush(self) -> list[tuple[object, np.ndarray]]:
        """The end of the input: the outputs still waiting for look-ahead, with the last frame
        replicated. Collect every submitted batch first (their outputs come before these)."""
        if self._in_flight:
            raise RuntimeError(f"flush() with {self._in_flight} batch(es) not yet collected")
        outputs, self._carried = self._carried + self._end_shot(), []
        self._boundaries.reset()
        if not outputs:
            return []
        return self.derainer._start(_Task(None, None, [], outputs), inline=True)

    # -- the window ---------------------------------------------------------------------------

    def _slots(self, position: int) -> list[_Frame]:
        positions = window(position, first=self._shot_first, last=self._next - 1, past=self.derainer.past,
                           future=self.derainer.future, causal=self.causal)
        return [self._shot[p - self._base] for p in positions]

    def _ready(self) -> list[tuple[object, list[_Frame]]]:
        """Outputs whose look-ahead has arrived."""
        ready = []
        while self._pending and self._pending[0][1] + self._look_ahead <= self._next - 1:
            tag, position = self._pending.popleft()
            ready.append((tag, self._slots(position)))
        return ready

    def _end_shot(self) -> list[tuple[object, list[_Frame]]]:
        """Every pending output, its window's edge replicated at the shot's last frame; then an
        empty window for the next shot."""
        ended = []
        while self._pending:
            tag, position = self._pending.popleft()
            ended.append((tag, self._slots(position)))
        self._shot.clear()
        self._base = self._shot_first = self._next
        return ended

    def _forget_unneeded(self) -> None:
        """Frames no later window reaches: before the oldest pending output's window."""
        oldest = self._pending[0][1] if self._pending else self._next
        while self._shot and self._base < oldest - self.derainer.past:
            self._shot.popleft()
            self._base += 1
