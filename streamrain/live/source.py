"""The live source: frames restamped by the wall clock, paced when the source is not live, and
reconnected with back-off after a loss."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import replace
from fractions import Fraction
from typing import Callable, Iterator

from streamrain.errors import InputError
from streamrain.io.frames import Frame, VideoInfo
from streamrain.io.source import SourceSpec, VideoSource
from streamrain.live.options import LiveOptions

log = logging.getLogger(__name__)

WALL_TIME_BASE = Fraction(1, 1000)


def backoff_delays(first_s: float, max_s: float) -> Iterator[float]:
    """Waits before each reconnection attempt: first_s, doubling, capped at max_s."""
    delay = first_s
    while True:
        yield min(delay, max_s)
        delay = min(delay * 2, max_s)


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
        reconnected = False  # the next frame follows a reconnection: a temporal model's window restarts
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
                                    captured_s=captured_s, discontinuity=reconnected)
                    reconnected = False
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
            reconnected = True

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
