"""The live output: the derained frames go to the window, the ``--output`` file or stream, and the
recordings the r key starts and stops."""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import av
import numpy as np

from streamrain.errors import OutputError
from streamrain.io.frames import Frame, VideoInfo
from streamrain.io.sink import EncodeOptions, VideoSink
from streamrain.io.stream_sink import StreamSink, stream_scheme
from streamrain.pipeline.stats import RunStats

log = logging.getLogger(__name__)


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


class RecentFrames:
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
                 recent: RecentFrames | None = None):
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
