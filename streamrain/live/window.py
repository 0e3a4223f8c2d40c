"""The live preview window: rainy | derained side by side (or a draggable split), with fps, latency
and dropped frames drawn over it.

The window lives in its own process (``streamrain/live/_window_process.py``, OpenCV only) and this module is the
handle the live session holds. A separate process, rather than a window made in this one, because:

* opencv-python's window freezes when PyAV was imported before the first ``imshow`` (two FFmpeg
  copies in one process), and importing ``streamrain`` already imports PyAV, so no order of imports
  here could avoid it; the child never imports PyAV.
* ``cv2.imshow`` without a usable display aborts the whole process, which Python cannot catch; in
  a child it only ends the child, and the session reports it as a WindowError.

Frames are sent newest-first: if the window falls behind, a frame it has not shown yet is replaced
by the next one, so the pipeline never waits on the window.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from streamrain.errors import OutputError

log = logging.getLogger(__name__)

_CHILD = Path(__file__).resolve().with_name("_window_process.py")
NO_WINDOW_HINT = "run with --no-window (and --output FILE or URL) where there is no display"


class WindowError(OutputError):
    """The preview window cannot be shown (no display, no OpenCV, or the window process died)."""


def display_problem() -> str | None:
    """Why no window can be shown here, or None when one can (as far as can be told without trying)."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        display = os.environ.get("DISPLAY", "")
        if not display:
            wayland = " (OpenCV's window needs X11 or XWayland)" if os.environ.get("WAYLAND_DISPLAY") else ""
            return f"no display: DISPLAY is not set{wayland}"
        local = re.fullmatch(r"(?:unix)?:(\d+)(?:\.\d+)?", display)
        if local and not Path(f"/tmp/.X11-unix/X{local.group(1)}").exists():
            return f"no X server answers on DISPLAY={display}"
    return None


def opencv_available() -> bool:
    """Whether the window process can import cv2 (checked without importing it here)."""
    return importlib.util.find_spec("cv2") is not None


class PreviewWindow:
    """Handle on the window process. ``open()``, then ``show()`` per frame, then ``close()``.

    ``on_event`` is called from a reader thread with each event dict the window sends: ``shown``
    (``latency_s``), ``quit``, ``record``, ``snapshot`` (``path``), ``error`` (``message``), and
    ``closed`` when the window process ends.
    """

    def __init__(self, *, title: str = "streamrain preview", snapshot_dir: Path | str = ".",
                 on_event: Callable[[dict], None] | None = None, ready_timeout_s: float = 30.0):
        self.title = title
        self.snapshot_dir = Path(snapshot_dir)
        self.on_event = on_event or (lambda event: None)
        self.ready_timeout_s = ready_timeout_s
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self._ready = threading.Event()
        self._pending = None
        self._wake = threading.Condition()
        self._closing = False
        self._threads: list[threading.Thread] = []

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def open(self) -> None:
        problem = display_problem()
        if problem:
            raise WindowError(f"cannot open the preview window: {problem}; {NO_WINDOW_HINT}")
        if not opencv_available():
            raise WindowError("the preview window needs OpenCV: pip install 'streamrain[gui]' "
                              "(or run with --no-window)")
        if not self.snapshot_dir.is_dir():
            raise WindowError(f"snapshot folder {self.snapshot_dir} does not exist")
        self._stderr = tempfile.TemporaryFile()
        # -P: the script's folder (streamrain/live/) stays off sys.path, so nothing of the package loads.
        self._proc = subprocess.Popen(
            [sys.executable, "-P", str(_CHILD), "--title", self.title, "--snapshot-dir", str(self.snapshot_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        self._start_thread("events", self._read_events)
        deadline = time.monotonic() + self.ready_timeout_s
        while not self._ready.wait(0.05):
            if not self.alive or time.monotonic() > deadline:
                reason = self._child_error() or ("it did not answer within "
                                                 f"{self.ready_timeout_s:g} s")
                self.close()
                raise WindowError(f"cannot open the preview window ({reason}); {NO_WINDOW_HINT}")
        self._start_thread("frames", self._send_frames)

    def show(self, rainy_rgb: np.ndarray, derained_rgb: np.ndarray, *, captured_s: float, dropped: int = 0,
             recording: bool = False) -> None:
        """Hand a frame pair to the window without waiting; a pair not yet sent is replaced."""
        if rainy_rgb.shape != derained_rgb.shape:
            rainy_rgb = derained_rgb  # a model that changed the size: show what there is
        header = {"h": int(derained_rgb.shape[0]), "w": int(derained_rgb.shape[1]),
                  "captured_s": captured_s, "dropped": dropped, "recording": recording}
        with self._wake:
            self._pending = (header, rainy_rgb, derained_rgb)
            self._wake.notify()

    def close(self) -> None:
        """Close the window and wait for its process and threads (killing the process if it hangs)."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        current = threading.current_thread()
        for t in self._threads:
            if t.name.endswith("frames") and t is not current:
                t.join(timeout=5)
        if self._proc is not None:
            try:
                self._proc.stdin.close()  # end of stdin: the window closes itself
            except OSError:
                pass
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log.warning("the preview window did not close; killing it")
                self._proc.kill()
                self._proc.wait(timeout=5)
        for t in self._threads:
            if t is not current:
                t.join(timeout=5)
        if self._proc is not None and self._proc.stdout:
            self._proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._threads.clear()

    # -- threads ----------------------------------------------------------------------------------

    def _start_thread(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=f"streamrain-window-{name}", daemon=True)
        self._threads.append(t)
        t.start()

    def _send_frames(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._closing:
                    self._wake.wait()
                if self._closing:
                    return
                header, rainy, derained = self._pending
                self._pending = None
            head = json.dumps(header).encode()
            payload_len = rainy.nbytes + derained.nbytes
            try:
                self._proc.stdin.write(struct.pack("<II", len(head), payload_len) + head)
                self._proc.stdin.write(np.ascontiguousarray(rainy, np.uint8).data)
                self._proc.stdin.write(np.ascontiguousarray(derained, np.uint8).data)
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                return  # the window went away; the events thread reports it

    def _read_events(self) -> None:
        for line in self._proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "ready":
                self._ready.set()
                continue
            self._dispatch(event)
        self._proc.wait()
        if self._ready.is_set():
            self._dispatch({"event": "closed", "returncode": self._proc.returncode})

    def _dispatch(self, event: dict) -> None:
        try:
            self.on_event(event)
        except Exception:  # noqa: BLE001 - a failing handler must not stop the window's events
            log.exception("preview window event %s failed", event.get("event"))

    def _child_error(self) -> str | None:
        if self._proc is None or self._proc.poll() is None:
            return None
        self._stderr.seek(0)
        noise = ("QFontDatabase", "Qt no longer ships fonts")  # opencv-python's Qt, on every start
        lines = [ln.strip() for ln in self._stderr.read().decode(errors="replace").splitlines()
                 if ln.strip() and not any(n in ln for n in noise)]
        telling = [ln for ln in lines if "could not connect" in ln or "cannot open display" in ln.lower()]
        tail = (telling or lines or [""])[-1]
        return f"the window process ended with status {self._proc.returncode}" + (f": {tail}" if tail else "")
