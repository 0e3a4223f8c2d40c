"""A live session: a camera, a network stream or a ``lavfi`` graph derained with bounded latency, shown
in the preview window and/or written to a file or re-streamed.

What this adds to the live policy of the Pipeline (drop the oldest waiting frame, never wait):

* Frames are restamped by the wall clock (milliseconds since the first frame): after a reconnection
  the stream's own timestamps restart or jump, and dropped frames must leave gaps, not squeeze time.
  So a file written for ten seconds lasts ten seconds.
* A network stream or camera that stops (EOF, or silent for ``stall_timeout_s``) is reopened with
  back-off (``reconnect_delay_s`` doubling up to ``reconnect_max_delay_s``); a file or ``lavfi``
  graph that ends just ends the session. Each connection is closed before the next is opened.
* Sources that are not live (a file, ``lavfi`` without ``realtime``) are paced to their timestamps,
  as a player would, instead of decoded as fast as possible and mostly dropped.
* Latency is measured per frame from ``Frame.captured_s`` (when it left the decoder; what happened
  before inside a camera or the network cannot be seen from here) to the moment the window showed it,
  or, without a window, to the moment the output took it.
* ``finish()`` (window key q, ``--duration``, a first Ctrl-C) ends the source: what is in flight is
  derained and written and the output is kept. A second Ctrl-C aborts (nothing kept at the output).
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
import tomllib
from dataclasses import dataclass, fields, replace
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np

from streamrain.config import RunOptions, load_preset
from streamrain.errors import ConfigError, InputError, OutputError
from streamrain.io.frames import Frame, VideoInfo
from streamrain.io.sink import EncodeOptions, VideoSink
from streamrain.io.source import SourceSpec, VideoSource, parse_source
from streamrain.io.stream_sink import StreamSink, stream_scheme
from streamrain.pipeline.runner import Pipeline
from streamrain.pipeline.stats import LatencyStats, RunStats

log = logging.getLogger(__name__)

WALL_TIME_BASE = Fraction(1, 1000)
CAPTURE_FORMATS = ("v4l2", "dshow", "avfoundation")
# Read what arrives now instead of buffering ahead (FFmpeg's low-latency input flags).
_LOW_DELAY = {"fflags": "nobuffer", "flags": "low_delay"}
# The RunOptions a live session starts from (pipelines/webcam.toml holds the same values): one frame
# per model call, since a batch would wait for frames that do not exist yet; an encoder that keeps
# up on a CPU the model already loads; no audio, which dropped frames would put out of sync.
LIVE_RUN_DEFAULTS = {"batch": 1, "queue_frames": 1, "crf": 23, "preset": "ultrafast", "copy_audio": False}


@dataclass(frozen=True)
class LiveOptions:
    """Options of `streamrain preview` (the ``[live]`` table of a preset)."""

    duration_s: float | None = None  # stop after this long (from the first frame); None: until quit
    video_size: str | None = None  # camera capture size, "1280x720"
    framerate: float | None = None  # camera frame rate
    input_format: str | None = None  # camera format, "mjpeg" for HD on most UVC cameras
    reconnect: bool = True  # reopen network streams and cameras after a loss
    reconnect_delay_s: float = 0.5  # wait before the first attempt; doubles after each failure
    reconnect_max_delay_s: float = 10.0
    reconnect_attempts: int = 0  # failed attempts in a row before giving up; 0: never give up
    open_timeout_s: float = 10.0  # connecting and reading the stream's first packets
    stall_timeout_s: float = 5.0  # a stream silent this long counts as lost
    record_dir: str = "."  # where r recordings and s snapshots go

    def __post_init__(self):
        for name in ("reconnect_delay_s", "reconnect_max_delay_s", "open_timeout_s", "stall_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"{name} must be a positive number of seconds; got {value!r}")
        if self.duration_s is not None and (not isinstance(self.duration_s, (int, float)) or self.duration_s <= 0):
            raise ConfigError(f"duration_s must be a positive number of seconds; got {self.duration_s!r}")
        if not isinstance(self.reconnect_attempts, int) or self.reconnect_attempts < 0:
            raise ConfigError(f"reconnect_attempts must be 0 (no limit) or more; got {self.reconnect_attempts!r}")
        if self.video_size is not None and not _is_size(self.video_size):
            raise ConfigError(f"video_size must look like 1280x720; got {self.video_size!r}")
        if self.framerate is not None and (not isinstance(self.framerate, (int, float)) or self.framerate <= 0):
            raise ConfigError(f"framerate must be a positive number; got {self.framerate!r}")


def _is_size(text) -> bool:
    parts = str(text).lower().split("x")
    return len(parts) == 2 and all(p.isdigit() and int(p) > 0 for p in parts)


def backoff_delays(first_s: float, max_s: float) -> Iterator[float]:
    """Waits before each reconnection attempt: first_s, doubling, capped at max_s."""
    delay = first_s
    while True:
        yield min(delay, max_s)
        delay = min(delay * 2, max_s)


def build_live_options(preset_file: Path | None = None, *, run: dict | None = None,
                       live: dict | None = None) -> tuple[RunOptions, LiveOptions]:
    """RunOptions and LiveOptions from live defaults, a preset (its ``[live]`` table for the latter),
    and overrides that are not None."""
    run_values = dict(LIVE_RUN_DEFAULTS)
    live_values: dict = {}
    if preset_file:
        run_values.update(load_preset(preset_file))
        table = tomllib.loads(Path(preset_file).read_text()).get("live", {})
        if not isinstance(table, dict):
            raise ConfigError(f"preset {preset_file}: live must be a table ([live])")
        allowed = [f.name for f in fields(LiveOptions)]
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise ConfigError(f"preset {preset_file}: unknown key(s) in [live]: {', '.join(unknown)}; "
                              f"allowed: {', '.join(allowed)}")
        live_values.update(table)
    run_values.update({k: v for k, v in (run or {}).items() if v is not None})
    live_values.update({k: v for k, v in (live or {}).items() if v is not None})
    try:
        return replace(RunOptions(), **run_values), LiveOptions(**live_values)
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc


def live_spec(source: str, options: LiveOptions) -> SourceSpec:
    """What to open for ``source``: camera options for devices, low-delay flags for network streams."""
    spec = parse_source(source)
    if spec.format in CAPTURE_FORMATS:
        return parse_source(source, camera_options=camera_options(spec.format, options))
    if spec.is_live and spec.format is None:
        return replace(spec, options={**_LOW_DELAY, **(spec.options or {})})
    return spec


def camera_options(capture_format: str, options: LiveOptions) -> dict:
    """The capture device's own names for size, rate and input format."""
    values = {}
    if options.video_size:
        values["video_size"] = options.video_size.lower()
    if options.framerate:
        values["framerate"] = f"{options.framerate:g}"
    if options.input_format:
        key = {"v4l2": "input_format", "dshow": "vcodec", "avfoundation": "pixel_format"}[capture_format]
        if capture_format == "avfoundation" and options.input_format.lower() == "mjpeg":
            log.info("avfoundation cameras deliver raw frames; input_format mjpeg ignored")
        else:
            values[key] = options.input_format
    return values


# -- source ---------------------------------------------------------------------------------------

class LiveSource:
    """The Pipeline's source in live mode: frames restamped by the wall clock, reconnected after a loss.

    The first connection is made here, so a wrong address fails at once with InputError; later
    losses are retried (network streams and cameras only).
    """

    other_streams = ()  # video only: under load frames are dropped, and audio would drift from them

    def __init__(self, spec: SourceSpec, *, options: LiveOptions = LiveOptions(),
                 finish: threading.Event | None = None, stop: threading.Event | None = None,
                 on_frame: Callable[[Frame], None] | None = None):
        self.spec = spec
        self.options = options
        self.finish = finish or threading.Event()
        self.stop = stop or threading.Event()
        self.on_frame = on_frame
        self.reconnects = 0
        self.frames = 0
        self.lost: str | None = None  # why the stream ended for good, when reconnecting gave up
        self._closed_decode_errors = 0
        self._items: Iterator | None = None
        self._current: VideoSource | None = self._open(options.open_timeout_s)
        first = self._current.info
        # A URL whose scheme does not say (http, https) is live when it has no duration: a camera's
        # HTTP stream, not a file on a web server.
        self.live = spec.is_live or ("://" in spec.url and spec.format is None and first.duration_s is None)
        self.info: VideoInfo = replace(first, time_base=WALL_TIME_BASE, frames=0, duration_s=None,
                                       is_live=True, metadata={})

    @property
    def reconnectable(self) -> bool:
        return self.options.reconnect and self.live and self.spec.format != "lavfi"

    @property
    def paced(self) -> bool:
        return not self.live

    @property
    def decode_errors(self) -> int:
        current = self._current.decode_errors if self._current is not None else 0
        return self._closed_decode_errors + current

    def _open(self, open_timeout_s: float) -> VideoSource:
        return VideoSource(self.spec, timeout_s=(open_timeout_s, self.options.stall_timeout_s),
                           copy_streams=False)

    def items(self) -> Iterator[Frame]:
        self._items = self._frames()
        return self._items

    def _frames(self) -> Iterator[Frame]:
        t0_s: float | None = None
        first_pts_s = 0.0
        last_pts = -1
        deadline = None
        while self._current is not None:
            reason = "the stream stopped"
            try:
                for item in self._current.items():
                    if not isinstance(item, Frame):
                        continue
                    if t0_s is None:
                        t0_s, first_pts_s = item.captured_s, item.pts_s
                        if self.options.duration_s:
                            deadline = t0_s + self.options.duration_s
                    captured_s = item.captured_s
                    if self.paced:
                        wait_s = t0_s + (item.pts_s - first_pts_s) - time.monotonic()
                        if wait_s > 0 and self._wait(wait_s):
                            return
                        captured_s = time.monotonic()
                    if self._ended(deadline):
                        return
                    last_pts = max(last_pts + 1, round((captured_s - t0_s) * 1000))
                    frame = replace(item, pts=last_pts, time_base=WALL_TIME_BASE, index=self.frames,
                                    captured_s=captured_s)
                    self.frames += 1
                    if self.on_frame:
                        self.on_frame(frame)
                    yield frame
            except InputError as exc:
                if t0_s is None:
                    raise  # never got a frame: a wrong address or a dead stream, not a loss
                reason = str(exc)
            finally:
                self._close_current()
            if not self.reconnectable or self._ended(deadline):
                return
            self._current = self._reconnect(reason, deadline)

    def _reconnect(self, reason: str, deadline: float | None) -> VideoSource | None:
        """A new connection, or None when the session ends first or the attempts run out.

        Giving up ends the stream like a finish (what was recorded is kept) and sets ``lost``, which
        the session turns into an error once the output is safe.
        """
        url = self.spec.url
        log.warning("%s: %s; reconnecting", url, reason)
        delays = backoff_delays(self.options.reconnect_delay_s, self.options.reconnect_max_delay_s)
        for attempt in itertools.count(1):
            if self.options.reconnect_attempts and attempt > self.options.reconnect_attempts:
                self.lost = (f"{url}: stream lost and {self.options.reconnect_attempts} reconnection "
                             f"attempt(s) failed ({reason})")
                log.error("%s", self.lost)
                return None
            wait_s = next(delays)
            if deadline is not None:
                wait_s = min(wait_s, max(0.0, deadline - time.monotonic()))
            if self._wait(wait_s) or self._ended(deadline):
                return None
            open_timeout_s = self.options.open_timeout_s
            if deadline is not None:
                open_timeout_s = max(0.1, min(open_timeout_s, deadline - time.monotonic()))
            try:
                source = self._open(open_timeout_s)
            except InputError as exc:
                reason = str(exc)
                log.info("%s: reconnection attempt %d failed: %s", url, attempt, reason)
                continue
            self.reconnects += 1
            log.warning("%s: reconnected (attempt %d)", url, attempt)
            return source

    def _wait(self, seconds: float) -> bool:
        """Sleep, waking early for a finish or stop; True when the session should end."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if self.finish.wait(min(max(left, 0.0), 0.1)) or self.stop.is_set():
                return True
            if left <= 0.1:
                return False

    def _ended(self, deadline: float | None) -> bool:
        return self.finish.is_set() or self.stop.is_set() or (
            deadline is not None and time.monotonic() >= deadline)

    def _close_current(self) -> None:
        if self._current is not None:
            self._closed_decode_errors += self._current.decode_errors
            self._current.close()
            self._current = None

    def close(self) -> None:
        """Close the connection; call once the pipeline's threads have ended."""
        items, self._items = self._items, None
        if items is not None:
            if items.gi_running:  # a stage still inside a native read: closing under it could crash
                log.warning("the source is still being read; leaving its connection to the OS")
                return
            items.close()  # runs the generator's finally: the connection is closed there
        self._close_current()


# -- output ---------------------------------------------------------------------------------------

class _Recording:
    """A sink whose timestamps start at its own first frame (a recording started mid-session)."""

    def __init__(self, sink, info: VideoInfo):
        self.sink = sink
        self.info = info
        self.first_pts: int | None = None

    def write(self, frame: Frame) -> None:
        if self.first_pts is None:
            self.sink.start(replace(self.info, width=frame.rgb_u8.shape[1], height=frame.rgb_u8.shape[0]))
            self.first_pts = frame.pts
        self.sink.write(replace(frame, pts=frame.pts - self.first_pts))


def open_output(target: str | Path, options: EncodeOptions):
    """A file sink (written atomically) or, for a URL, a stream sink."""
    if isinstance(target, str) and stream_scheme(target):
        return StreamSink(target, options)
    if isinstance(target, str) and "://" in target:
        raise OutputError(f"{target}: unsupported output URL; supported: udp://, tcp://, srt://, rtp://, "
                          f"rtmp://, rtsp:// (MPEG-TS, FLV or RTSP) or a file path")
    return VideoSink(Path(target), options)


class _RecentFrames:
    """The rainy frames still in flight, by index, for the window's side-by-side view (bounded)."""

    def __init__(self, size: int = 32):
        self._frames: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def add(self, frame: Frame) -> None:
        with self._lock:
            self._frames[frame.index] = frame.rgb_u8
            while len(self._frames) > self._size:
                self._frames.popitem(last=False)

    def pop(self, index: int) -> np.ndarray | None:
        with self._lock:
            return self._frames.pop(index, None)


class LiveOutput:
    """The Pipeline's sink in live mode: feeds the window, the ``--output`` target and r recordings.

    A failing ``--output`` fails the session (like any sink); a failing r recording is only logged
    and stopped, since the window is what the user is watching.
    """

    def __init__(self, *, stats: RunStats | None = None, window=None, output=None,
                 encode: EncodeOptions = EncodeOptions(), record_dir: Path = Path("."),
                 recent: _RecentFrames | None = None):
        self.stats = stats or RunStats()
        self.window = window
        self.encode = encode
        self.record_dir = Path(record_dir)
        self.recent = recent
        self.info: VideoInfo | None = None
        self.recordings: list[Path] = []
        self._output = output
        self._main: _Recording | None = None
        self._recording: _Recording | None = None
        self._toggle = threading.Event()

    @property
    def recording(self) -> bool:
        return self._recording is not None

    def toggle_recording(self) -> None:
        """Start or stop an r recording at the next frame (safe from any thread)."""
        self._toggle.set()

    def start(self, info: VideoInfo, other_streams=()) -> None:
        self.info = info
        if self._output is not None:
            self._main = _Recording(self._output, info)

    def write(self, frame: Frame) -> None:
        if self._toggle.is_set():
            self._toggle.clear()
            self._switch_recording()
        if self._main is not None:
            self._main.write(frame)
        if self._recording is not None:
            try:
                self._recording.write(frame)
            except (OutputError, av.FFmpegError, OSError) as exc:
                log.error("recording %s stopped: %s", self.recordings[-1], exc)
                self._recording.sink.abort()
                self._recording = None
        if self.window is not None:
            rainy = self.recent.pop(frame.index) if self.recent else None
            self.window.show(frame.rgb_u8 if rainy is None else rainy, frame.rgb_u8,
                             captured_s=frame.captured_s, dropped=self.stats.dropped, recording=self.recording)
        elif self.stats.latency is not None:  # with a window, latency is taken when it shows the frame
            self.stats.latency.add(time.monotonic() - frame.captured_s)

    def write_other(self, packet) -> None:
        """Live sources carry video only."""

    def _switch_recording(self) -> None:
        if self._recording is None:
            path = self.record_dir / f"streamrain-rec-{datetime.now():%Y%m%d-%H%M%S}.mp4"
            try:
                self._recording = _Recording(VideoSink(path, self.encode), self.info)
            except OutputError as exc:
                log.error("cannot record: %s", exc)
                return
            self.recordings.append(path)
            log.warning("recording to %s", path)
        else:
            recording, self._recording = self._recording, None
            try:
                self._close(recording)
                log.warning("recording saved: %s", self.recordings[-1])
            except OutputError as exc:
                log.error("recording %s lost: %s", self.recordings[-1], exc)

    @staticmethod
    def _close(recording: _Recording) -> None:
        if recording.first_pts is None:
            recording.sink.abort()  # started and stopped before a frame came: nothing to keep
        else:
            recording.sink.commit()

    def commit(self) -> None:
        """Keep what was written: the r recording in progress, then the --output target."""
        if self._recording is not None:
            self._switch_recording()
        if self._output is None:
            return
        if self._main is None or self._main.first_pts is None:
            self._output.abort()
            raise OutputError(f"{self._output.target}: no frame was written")
        self._close(self._main)

    def abort(self) -> None:
        for recording in (self._recording, self._main):
            if recording is not None:
                recording.sink.abort()
        if self._output is not None and self._main is None:
            self._output.abort()

    def discard_file(self) -> None:
        for recording in (self._recording, self._main):
            if recording is not None:
                recording.sink.discard_file()


# -- session --------------------------------------------------------------------------------------

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
            recent = _RecentFrames() if window else None
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
