"""The live session: opens the window, the source and the output, runs the Pipeline under the live
policy, and turns Ctrl-C and the window's keys into finishing, aborting and recording."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from streamrain.config import RunOptions
from streamrain.errors import InputError
from streamrain.io.frames import VideoInfo
from streamrain.io.sink import EncodeOptions
from streamrain.live.capture import live_spec
from streamrain.live.options import LIVE_RUN_DEFAULTS, LiveOptions
from streamrain.live.output import LiveOutput, RecentFrames, open_output
from streamrain.live.source import LiveSource
from streamrain.pipeline.runner import Pipeline
from streamrain.pipeline.stats import LatencyStats, RunStats

log = logging.getLogger(__name__)


class LiveSession:
    """Derain a live source until it ends, ``duration_s`` passes, the window quits or ``finish()``.

    ``derainer`` is any callable ``rgb_u8_bhwc -> rgb_u8_bhwc`` (a ``Derainer``; tests pass stand-ins).
    ``output`` is a file path or a stream URL, or None; ``window`` opens the preview window.
    """

    def __init__(self, source: str, *, derainer: Callable[[np.ndarray], np.ndarray],
                 options: LiveOptions = LiveOptions(), run: RunOptions | None = None,
                 output: str | Path | None = None, window: bool = True,
                 progress: Callable[[RunStats], None] | None = None,
                 on_window_event: Callable[[dict], None] | None = None,
                 window_title: str = "streamrain preview"):
        self.source = source
        self.derainer = derainer
        self.options = options
        self.run_options = run or replace(RunOptions(), **LIVE_RUN_DEFAULTS)
        self.output = output
        self.window = window
        self.progress = progress
        self.on_window_event = on_window_event
        self.window_title = window_title
        self.finished = threading.Event()
        self.stopped = threading.Event()
        self.stats: RunStats | None = None
        self.recordings: list[Path] = []
        self._live_output: LiveOutput | None = None

    def finish(self) -> None:
        """End gracefully: stop reading, derain and write what is in flight, keep the output."""
        self.finished.set()

    def abort(self) -> None:
        """End now: nothing is kept at the output."""
        self.stopped.set()

    def run(self) -> RunStats:
        o = self.run_options
        encode = EncodeOptions(codec=o.codec, crf=o.crf, preset=o.preset, pix_fmt=o.pix_fmt, copy_audio=False)
        spec = live_spec(self.source, self.options)
        record_dir = Path(self.options.record_dir)
        output_sink = open_output(self.output, encode) if self.output is not None else None
        latency = LatencyStats(until="shown" if self.window else "output")
        window = None
        if self.window:
            from streamrain.live.window import PreviewWindow

            window = PreviewWindow(title=self.window_title, snapshot_dir=record_dir,
                                   on_event=lambda event: self._on_window_event(event, latency))
            window.open()  # before the source: no display should fail before a camera is opened
        try:
            recent = RecentFrames() if window else None
            source = LiveSource(spec, options=self.options, finish=self.finished, stop=self.stopped,
                                on_frame=recent.add if recent else None)
            try:
                return self._run_pipeline(source, output_sink, window, recent, latency, encode, record_dir)
            finally:
                source.close()
        finally:
            if window is not None:
                window.close()

    def _run_pipeline(self, source: LiveSource, output_sink, window, recent, latency: LatencyStats,
                      encode: EncodeOptions, record_dir: Path) -> RunStats:
        self._warm_up(source.info)
        o = self.run_options
        live_output = LiveOutput(window=window, output=output_sink, encode=encode, record_dir=record_dir,
                                 recent=recent)
        pipeline = Pipeline(source, self.derainer, live_output, batch=o.batch, policy="live",
                            queue_frames=o.queue_frames or None, progress=self._progress_with(source),
                            model_name=getattr(self.derainer, "name", ""),
                            device_label=getattr(self.derainer, "device_label", ""), stop_event=self.stopped)
        stats = live_output.stats = self.stats = pipeline.stats
        stats.latency, stats.reconnects = latency, 0
        self._live_output = live_output
        try:
            stats = self._run_interruptible(pipeline)
        finally:
            stats.reconnects = source.reconnects
            self.recordings = list(live_output.recordings)
        if source.lost:
            kept = f"; what came before was kept at {self.output}" if self.output is not None else ""
            raise InputError(source.lost + kept)
        return stats

    def _warm_up(self, info: VideoInfo) -> None:
        """One model call before the first frame: the first call is slow (kernel selection, caches)
        and would otherwise show up as the run's worst latency."""
        t0 = time.perf_counter()
        self.derainer(np.zeros((1, info.height, info.width, 3), np.uint8))
        log.info("model warm-up at %dx%d: %.0f ms", info.width, info.height, (time.perf_counter() - t0) * 1000)

    def _progress_with(self, source: LiveSource) -> Callable[[RunStats], None]:
        def progress(stats: RunStats) -> None:
            stats.reconnects = source.reconnects
            if self.progress:
                self.progress(stats)
        return progress

    def _run_interruptible(self, pipeline: Pipeline) -> RunStats:
        """Run the pipeline in a thread so a first Ctrl-C (or SIGTERM) can finish gracefully."""
        result: dict = {}

        def target() -> None:
            try:
                result["stats"] = pipeline.run()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
                result["error"] = exc

        worker = threading.Thread(target=target, name="streamrain-live", daemon=True)
        worker.start()
        interrupts = 0
        while worker.is_alive():
            try:
                worker.join(timeout=0.1)
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts == 1:
                    log.warning("finishing (the output is kept); interrupt again to stop at once")
                    self.finish()
                else:
                    self.abort()
        if "error" in result:
            raise result["error"]
        return result["stats"]

    def _on_window_event(self, event: dict, latency: LatencyStats) -> None:
        kind = event.get("event")
        if kind == "shown":
            latency.add(float(event["latency_s"]))
        elif kind in ("quit", "closed"):
            self.finish()
        elif kind == "record" and self._live_output is not None:
            self._live_output.toggle_recording()
        elif kind == "snapshot":
            log.warning("snapshot saved: %s", event.get("path"))
        elif kind == "error":
            log.warning("preview window: %s", event.get("message"))
        if self.on_window_event:
            self.on_window_event(event)
