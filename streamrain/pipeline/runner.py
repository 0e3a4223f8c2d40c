"""The threaded pipeline: decode -> batch -> derain -> encode, one thread per stage.

Items flowing between stages are ``Frame``s and, in demux order, the packets of streams the sink
copies (audio, subtitles, data). Offline policy never drops a frame: a full queue makes the stage
before it wait, so memory stays flat. Live policy never waits on a slow stage: the oldest waiting
frame is dropped (and counted) so that what comes out is always recent.

With ``keep_yuv420`` the source keeps 4:2:0 frames as decoded and the derainer gets them with
their colour matrix (``Derainer.accepts_yuv420``); batches never mix layouts, sizes or matrices.

A temporal derainer (``TemporalDerainer``: ``derain.temporal``) keeps its window in a stream of its
own for this run: a batch's call returns the frames it completed, with their own ``Frame``s (so
pts and index are theirs), possibly of earlier batches; the end of the input flushes the rest.
Live runs ask for its causal mode: no frame waits for a later one.

The first exception in any stage stops every stage (each notices within a fraction of a second) and
is re-raised by ``run()``; so is KeyboardInterrupt. The sink is aborted on any failure.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import replace
from typing import Callable, Literal

import numpy as np

from streamrain.errors import PipelineError, StreamrainError
from streamrain.io.frames import Frame
from streamrain.pipeline.queues import END, StageQueue, Stopped
from streamrain.pipeline.stats import RunStats, Timer

log = logging.getLogger(__name__)

Policy = Literal["offline", "live"]


def layout_of(frame: Frame) -> dict:
    """How a batch of frames like this one is described to the derainer: 4:2:0 frames (the source
    keeps them so only for a derainer that takes them) say their matrix; RGB needs nothing."""
    return {"yuv": frame.yuv} if frame.yuv420_u8 is not None else {}


class Pipeline:
    def __init__(self, source, derain: Callable[[np.ndarray], np.ndarray], sink, *, batch: int = 4,
                 keep_yuv420: bool = False, policy: Policy = "offline", queue_frames: int | None = None,
                 progress: Callable[[RunStats], None] | None = None, model_name: str = "",
                 device_label: str = "", stop_event: threading.Event | None = None):
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        if policy not in ("offline", "live"):
            raise ValueError(f"policy must be 'offline' or 'live', got {policy!r}")
        self.source, self.derain, self.sink = source, derain, sink
        self.keep_yuv420 = keep_yuv420
        self.batch, self.policy, self.progress = batch, policy, progress
        self.stop = stop_event or threading.Event()
        depth = queue_frames or (2 * batch + 2 if policy == "offline" else batch)
        # Offline: room for the other streams' packets between frames (audio runs at ~50 packets/s).
        # Live sources carry no other stream, and every frame waiting in a queue is added latency.
        room = depth * 4 if policy == "offline" else depth
        self.q_decoded = StageQueue(room, self.stop)
        self.q_derained = StageQueue(room, self.stop)
        self.stats = RunStats(model=model_name, device=device_label)
        self._errors: list[tuple[str, BaseException]] = []
        # Live runs keep one batch at a time: a batch held in flight would be added latency.
        self._max_in_flight = getattr(derain, "max_in_flight", 1) if policy == "offline" else 1
        self._in_flight: deque = deque()
        self._stream = (derain.stream(causal=True if policy == "live" else None)
                        if getattr(derain, "temporal", False) else None)

    # -- stages -------------------------------------------------------------------------------

    def _decode(self) -> None:
        timing = self.stats.stages["decode"]
        items = self.source.items(keep_yuv420=True) if self.keep_yuv420 else self.source.items()
        while True:
            with Timer(timing):
                item = next(items, END)
            if item is END:
                break
            if isinstance(item, Frame):
                timing.frames += 1
                self.stats.frames_in += 1
                if self.policy == "live":
                    if isinstance(self.q_decoded.put_latest(item), Frame):
                        self.stats.dropped += 1
                    continue
            self.q_decoded.put(item)
        self.stats.decode_errors = getattr(self.source, "decode_errors", 0)
        self.q_decoded.put(END)

    def _derain(self) -> None:
        timing = self.stats.stages["derain"]
        pending: list[Frame] = []
        finished = False
        while not finished:
            item = self.q_decoded.get()
            while True:
                if item is END:
                    finished = True
                    break
                if not isinstance(item, Frame):
                    self.q_derained.put(item)  # a copied stream's packet: straight through
                elif pending and item.layout_key != pending[0].layout_key:
                    self._derain_batch(pending, timing)  # never mix sizes, layouts or matrices
                    pending = [item]
                else:
                    pending.append(item)
                if len(pending) >= self.batch:
                    break
                # Offline waits for a full batch; live takes whatever is there now.
                item = self.q_decoded.get() if self.policy == "offline" else self.q_decoded.get_nowait()
                if item is None:
                    break
            if pending:
                self._derain_batch(pending, timing)
                pending = []
        while self._in_flight:
            self._collect_oldest(timing)
        if self._stream is not None:
            with Timer(timing):
                derained = self._stream.flush()
            self._emit(derained, timing)
        self.q_derained.put(END)

    def _derain_batch(self, frames: list[Frame], timing) -> None:
        batch = np.stack([f.pixels for f in frames])
        if self._stream is not None:
            runner, kwargs = self._stream, {"tags": frames, "times_s": [f.pts_s for f in frames],
                                            "discontinuous": [f.discontinuity for f in frames],
                                            **layout_of(frames[0])}
        else:
            runner, kwargs = self.derain, layout_of(frames[0])
        if self._max_in_flight <= 1:
            with Timer(timing):
                if self._stream is not None:
                    derained = runner.collect(runner.submit(batch, **kwargs))
                else:
                    derained = list(zip(frames, runner(batch, **kwargs)))
            self._emit(derained, timing)
            return
        # A derainer that overlaps batches (CUDA streams, CPU workers): submit this one before
        # collecting the oldest, so that it runs while the previous batch finishes or comes back.
        with Timer(timing):
            self._in_flight.append((frames, runner.submit(batch, **kwargs)))
        if len(self._in_flight) >= self._max_in_flight:
            self._collect_oldest(timing)

    def _collect_oldest(self, timing) -> None:
        frames, handle = self._in_flight.popleft()
        with Timer(timing):
            if self._stream is not None:
                derained = self._stream.collect(handle)  # (frame, pixels) of the frames it completed
            else:
                derained = list(zip(frames, self.derain.collect(handle)))
        self._emit(derained, timing)

    def _emit(self, derained: list[tuple[Frame, np.ndarray]], timing) -> None:
        timing.frames += len(derained)
        for f, pixels in derained:
            as_rgb = f.rgb_u8 is not None
            self.q_derained.put(replace(f, rgb_u8=pixels) if as_rgb else replace(f, yuv420_u8=pixels))

    def _encode(self) -> None:
        timing = self.stats.stages["encode"]
        early_packets = []
        started = False
        while True:
            item = self.q_derained.get()
            if item is END:
                break
            with Timer(timing):
                if isinstance(item, Frame):
                    if not started:
                        self.sink.start(self.source.info, getattr(self.source, "other_streams", ()))
                        started = True
                        for packet in early_packets:
                            self.sink.write_other(packet)
                        early_packets.clear()
                    self.sink.write(item)
                    timing.frames += 1
                    self.stats.frames_out += 1
                elif started:
                    self.sink.write_other(item)
                else:
                    early_packets.append(item)
        with Timer(timing):
            self.sink.commit()

    # -- orchestration ------------------------------------------------------------------------

    def _guard(self, name: str, stage: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                stage()
            except Stopped:
                pass
            except BaseException as exc:  # noqa: BLE001 - every failure must stop the other stages
                self._errors.append((name, exc))
                self.stop.set()
        return run

    def run(self) -> RunStats:
        threads = [
            threading.Thread(target=self._guard(name, fn), name=f"streamrain-{name}", daemon=True)
            for name, fn in (("decode", self._decode), ("derain", self._derain), ("encode", self._encode))
        ]
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=0.1)
                if self.progress:
                    self.progress(self.stats)
        except BaseException:
            self.stop.set()
            if self._join(threads):
                self.sink.abort()
            else:  # a stage is stuck inside a native call: closing its muxer under it could crash
                log.warning("stages still running after the stop: %s",
                            ", ".join(t.name for t in threads if t.is_alive()))
                self.sink.discard_file()
            raise
        finally:
            self.stats.ended_s = time.monotonic()
        if self._errors:
            self.sink.abort()
            name, exc = self._errors[0]
            if isinstance(exc, StreamrainError):
                raise exc
            raise PipelineError(f"{name} stage failed: {type(exc).__name__}: {exc}") from exc
        if self.stop.is_set():  # stopped from outside (Ctrl-C in a caller, --duration in live mode)
            self.sink.abort()
            raise KeyboardInterrupt
        return self.stats

    @staticmethod
    def _join(threads: list[threading.Thread], timeout_s: float = 30.0) -> bool:
        """Wait for the stages to notice the stop (each does within one batch); True if all ended."""
        deadline = time.monotonic() + timeout_s
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)
