"""The preview window's own process: OpenCV and numpy only, run as a script, never imported.

``streamrain.live.window`` starts this file with ``python -P`` (no script folder on sys.path), so the
``streamrain`` package, and with it PyAV, is never imported here: with PyAV loaded before the
first ``imshow`` the opencv-python window freezes (two FFmpeg copies in one process; PyAV #978,
opencv #29195; reproduced here with opencv-python 5.0.0 and av 18.1).

Protocol. stdin carries frames, each ``<u32 header length><u32 payload length>``, a JSON header
``{"h", "w", "captured_s", "dropped", "recording"}`` and the payload: the rainy then the derained
frame, RGB uint8 ``(h, w, 3)`` each. End of stdin closes the window. stdout carries JSON lines:
``ready``, ``shown`` (with ``latency_s``: the monotonic clock is system-wide, so the capture time
stamped in the parent compares with ours), ``quit``, ``record``, ``snapshot`` (with ``path``),
``error`` (with ``message``).

Keys: q or Esc quit, space switches side by side <-> split (drag the split with the mouse),
s saves a PNG of what is shown, r starts or stops recording (done by the parent, which encodes).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import struct
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

_KEY_ESC, _KEY_SPACE = 27, 32
_WHITE, _BLACK, _RED = (255, 255, 255), (0, 0, 0), (40, 40, 230)  # BGR
_MAX_WIDTH = 1600
_MIN_HEIGHT = 270


class _Latest:
    """A one-frame mailbox: a new frame replaces one not yet shown (the newest is always shown)."""

    def __init__(self):
        self._item = None
        self._lock = threading.Lock()
        self.ended = False

    def put(self, item) -> None:
        with self._lock:
            self._item = item

    def take(self):
        with self._lock:
            item, self._item = self._item, None
            return item


def _read_frames(stream, mailbox: _Latest) -> None:
    """Reader thread: stdin -> mailbox, until the parent closes stdin."""
    try:
        while True:
            sizes = stream.read(8)
            if len(sizes) < 8:
                break
            header_len, payload_len = struct.unpack("<II", sizes)
            header = json.loads(stream.read(header_len))
            payload = stream.read(payload_len)
            if len(payload) < payload_len:
                break
            h, w = header["h"], header["w"]
            pair = np.frombuffer(payload, np.uint8).reshape(2, h, w, 3)
            mailbox.put((header, pair))
    finally:
        mailbox.ended = True


class _View:
    """What the window shows and how: side by side or split, where the split is, the overlay."""

    def __init__(self):
        self.split_view = False
        self.split = 0.5  # fraction of the width showing the rainy frame in split view
        self.frame_w = 0
        self.shown_s: collections.deque[float] = collections.deque(maxlen=30)
        self.latency_s = 0.0

    def on_mouse(self, event, x, y, flags, _param) -> None:
        dragging = event == cv2.EVENT_MOUSEMOVE and flags & cv2.EVENT_FLAG_LBUTTON
        if self.split_view and self.frame_w and (event == cv2.EVENT_LBUTTONDOWN or dragging):
            self.split = min(1.0, max(0.0, x / self.frame_w))

    @property
    def fps(self) -> float:
        if len(self.shown_s) < 2:
            return 0.0
        return (len(self.shown_s) - 1) / max(1e-6, self.shown_s[-1] - self.shown_s[0])

    def compose(self, rainy_rgb: np.ndarray, derained_rgb: np.ndarray, header: dict) -> np.ndarray:
        rainy, derained = rainy_rgb[..., ::-1], derained_rgb[..., ::-1]  # OpenCV draws BGR
        h, w = rainy.shape[:2]
        # Tiny streams enlarged so the overlay stays legible, large ones reduced to fit a screen
        # (the window opens at the picture's size; the user can resize it from there).
        shown_w = w if self.split_view else 2 * w
        if h < _MIN_HEIGHT:
            factor = float(-(-_MIN_HEIGHT // h))  # whole pixels: a sharp enlargement
        else:
            factor = min(1.0, _MAX_WIDTH / shown_w)
        if factor != 1.0:
            w, h = round(w * factor), round(h * factor)
            method = cv2.INTER_NEAREST if factor > 1 else cv2.INTER_AREA
            rainy, derained = (cv2.resize(f, (w, h), interpolation=method) for f in (rainy, derained))
        if self.split_view:
            cut = round(self.split * w)
            image = np.ascontiguousarray(derained)
            image[:, :cut] = rainy[:, :cut]
            cv2.line(image, (cut, 0), (cut, h - 1), _WHITE, 1)
            labels = [("rainy", 6), ("derained", w - 6 - _text_width("derained"))]
        else:
            image = np.ascontiguousarray(np.concatenate([rainy, derained], axis=1))
            labels = [("rainy", 6), ("derained", w + 6)]
        self.frame_w = image.shape[1]
        scale = _text_scale(h)
        for text, x in labels:
            _outlined(image, text, (x, h - 8), scale)
        status = f"{self.fps:4.1f} fps  latency {self.latency_s * 1000:4.0f} ms  dropped {header['dropped']}"
        _outlined(image, status, (6, round(18 * scale) + 4), scale)
        if header.get("recording"):
            _outlined(image, "REC", (image.shape[1] - round(40 * scale) - 6, round(18 * scale) + 4), scale,
                      colour=_RED)
        return image


def _text_scale(height: int) -> float:
    return max(0.35, min(1.0, height / 540))


def _text_width(text: str) -> int:
    return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)[0][0]


def _outlined(image, text, origin, scale, colour=_WHITE) -> None:
    """Text readable on any picture: a dark outline under the letters."""
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, _BLACK, 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--title", default="streamrain preview")
    p.add_argument("--snapshot-dir", type=Path, default=Path("."))
    args = p.parse_args(argv)
    # stdout is the protocol: anything a library prints goes to stderr instead.
    events = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def emit(event: str, **fields) -> None:
        try:
            events.write(json.dumps({"event": event, **fields}) + "\n")
        except (BrokenPipeError, ValueError):
            pass  # the parent is gone; the end of stdin stops the loop

    title = args.title
    view = _View()
    # A window the user can resize (the picture scales with it); GUI_NORMAL: no Qt toolbar.
    cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
    cv2.setMouseCallback(title, view.on_mouse)
    cv2.imshow(title, np.full((180, 640, 3), 12, np.uint8))  # near black: up, waiting for frames
    cv2.waitKey(1)
    emit("ready")

    mailbox = _Latest()
    threading.Thread(target=_read_frames, args=(sys.stdin.buffer, mailbox), daemon=True).start()
    image = None
    sized_for = None
    while True:
        item = mailbox.take()
        if item is not None:
            header, (rainy, derained) = item
            image = view.compose(rainy, derained, header)
            if image.shape != sized_for:  # first frame, view switched, or the stream changed size
                cv2.resizeWindow(title, image.shape[1], image.shape[0])
                sized_for = image.shape
            cv2.imshow(title, image)
        elif mailbox.ended:
            break
        key = cv2.waitKey(1 if item is not None else 10) & 0xFF  # paints what imshow was given
        if item is not None:
            now = time.monotonic()
            view.shown_s.append(now)
            view.latency_s = now - header["captured_s"]
            emit("shown", latency_s=view.latency_s)
        if key in (ord("q"), ord("Q"), _KEY_ESC):
            emit("quit")
            break
        if key == _KEY_SPACE:
            view.split_view = not view.split_view
        elif key in (ord("s"), ord("S")) and image is not None:
            path = args.snapshot_dir / f"streamrain-snapshot-{datetime.now():%Y%m%d-%H%M%S-%f}.png"
            if cv2.imwrite(str(path), image):
                emit("snapshot", path=str(path))
            else:
                emit("error", message=f"cannot write the snapshot {path}")
        elif key in (ord("r"), ord("R")):
            emit("record")
        if cv2.getWindowProperty(title, cv2.WND_PROP_VISIBLE) < 1:
            emit("quit")  # closed with the window's own button
            break
    cv2.destroyAllWindows()
    cv2.waitKey(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
