"""Bounded queues whose blocking calls give up when the run is stopping.

Every wait is sliced into short timeouts so that a stop (an error in another stage, Ctrl-C)
reaches every stage within a fraction of a second instead of leaving one blocked forever.
"""

from __future__ import annotations

import queue
import threading

END = object()  # sentinel: the upstream stage finished normally
_POLL_S = 0.05


class Stopped(Exception):
    """Raised inside a stage when the run is being stopped."""


class StageQueue:
    def __init__(self, maxsize: int, stop: threading.Event):
        self._q: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = stop

    def put(self, item) -> None:
        while True:
            if self._stop.is_set():
                raise Stopped
            try:
                self._q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def put_latest(self, item) -> object | None:
        """Put without waiting: when full, drop the oldest item and return it (live policy)."""
        dropped = None
        while True:
            try:
                self._q.put_nowait(item)
                return dropped
            except queue.Full:
                try:
                    dropped = self._q.get_nowait()
                except queue.Empty:
                    pass

    def get(self):
        while True:
            if self._stop.is_set():
                raise Stopped
            try:
                return self._q.get(timeout=_POLL_S)
            except queue.Empty:
                continue

    def get_nowait(self):
        try:
            return self._q.get_nowait()
        except queue.Empty:
            return None
