"""The preview window under a real Xvfb: it appears and shows pictures, its keys work, and without a
display the session fails with a clear error instead of aborting the process.

Needs Xvfb (and xdotool for the key test) from apt, as .ci/run installs them, and opencv-python
(the `dev` extra); each test says what it skipped for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import av
import numpy as np
import pytest

from conftest import probe
from streamrain.live.options import LiveOptions
from streamrain.live.session import LiveSession
from streamrain.live import window
from streamrain.live.window import WindowError, opencv_available

LAVFI = "lavfi:testsrc2=size=160x96:rate=25,realtime"
SCREEN_W, SCREEN_H = 1024, 600
OPENBOX_RC = """<?xml version="1.0" encoding="UTF-8"?>
<openbox_config xmlns="http://openbox.org/3.4/rc">
  <applications>
    <application class="*">
      <decor>no</decor>
      <position force="yes"><x>0</x><y>0</y></position>
    </application>
  </applications>
</openbox_config>
"""


def identity(frames_bhwc: np.ndarray) -> np.ndarray:
    return frames_bhwc


@pytest.fixture
def xvfb(monkeypatch, tmp_path):
    """A private X server with a window manager; DISPLAY points at it for this test (and the window
    process it starts).

    The window manager is not decoration: on a bare X server, opencv-python's Qt now and then misses
    the MapNotify of its window and never paints it (seen in up to one run in three here, under
    load); a window manager maps windows itself, as every desktop does. Configured to leave windows
    undecorated at the top-left corner, so the screen shows the picture alone.
    """
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb; .ci/run does)")
    if shutil.which("openbox") is None or shutil.which("xprop") is None:
        pytest.skip("no window manager for Xvfb (apt-get install openbox x11-utils; .ci/run does)")
    if not opencv_available():
        pytest.skip("opencv-python is not installed (pip install -e '.[dev]')")
    if "x11grab" not in av.formats_available:
        pytest.skip("this PyAV build has no x11grab to take screenshots with")
    read_fd, write_fd = os.pipe()
    # -displayfd: Xvfb picks a free display number itself and writes it here once it accepts clients.
    # -noreset: by default the server resets when its last client leaves (a screenshot taken before
    # the window process connects), and a window created during that reset is never painted.
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{SCREEN_W}x{SCREEN_H}x24",
                               "-nolisten", "tcp", "-noreset"], pass_fds=(write_fd,), stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        number = f.readline().strip()
    if not number:
        server.kill()
        server.wait()
        pytest.skip("Xvfb did not start")
    display = f":{number}"
    monkeypatch.setenv("DISPLAY", display)
    config = tmp_path / "openbox-rc.xml"
    config.write_text(OPENBOX_RC)
    wm = subprocess.Popen(["openbox", "--config-file", str(config)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    running = wait_for(lambda: "window id" in subprocess.run(
        ["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"], capture_output=True, text=True).stdout, 20)
    try:
        assert running, "the window manager did not start"
        yield display
    finally:
        wm.terminate()
        wm.wait(timeout=10)
        server.terminate()
        server.wait(timeout=10)


def screenshot(display: str) -> np.ndarray:
    with av.open(display, format="x11grab", options={"video_size": f"{SCREEN_W}x{SCREEN_H}",
                                                       "draw_mouse": "0"}) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def screenshot_when(display: str, condition, timeout_s: float = 10.0) -> np.ndarray:
    """The first screenshot that meets ``condition`` (the last one taken if none does in time)."""
    deadline = time.monotonic() + timeout_s
    while True:
        image = screenshot(display)
        if condition(image) or time.monotonic() > deadline:
            return image
        time.sleep(0.1)


def lit_fraction(image: np.ndarray) -> float:
    return float((image.max(axis=2) > 16).mean())


def picture_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """top, left, height, width of what is lit on the screen (the window's picture)."""
    rows, cols = np.nonzero(image.max(axis=2) > 16)
    return int(rows.min()), int(cols.min()), int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def split_line_at(image: np.ndarray) -> float | None:
    """Where the split view's white line is, as a fraction of the picture's width."""
    top, left, height, width = picture_box(image)
    picture = image[top:top + height, left:left + width]
    white_share = (picture.min(axis=2) > 230).mean(axis=0)
    columns = np.nonzero(white_share > 0.9)[0]
    return float(columns.mean() / width) if columns.size else None


def halves_differ(image: np.ndarray) -> float:
    """Mean difference between the left and right halves of what is lit (the window's picture)."""
    top, left, height, width = picture_box(image)
    picture = image[top:top + height, left:left + width].astype(np.int16)
    half = width // 2
    return float(np.abs(picture[:, :half] - picture[:, half:2 * half]).mean())


def run_in_thread(session: LiveSession) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def target():
        try:
            result["stats"] = session.run()
        except BaseException as exc:  # noqa: BLE001 - checked by the test
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_window_appears_and_shows_rainy_and_derained(xvfb, tmp_path):
    shown = []
    session = LiveSession(LAVFI, derainer=identity, options=LiveOptions(duration_s=4, record_dir=str(tmp_path)),
                          window=True, on_window_event=lambda e: shown.append(e) if e["event"] == "shown" else None)
    blank = screenshot(xvfb)
    thread, result = run_in_thread(session)
    assert wait_for(lambda: len(shown) >= 10, 20), "the window showed no frames"
    # The X server draws what the window process painted a moment later, on a loaded machine maybe
    # much later: poll.
    image = screenshot_when(xvfb, lambda shot: lit_fraction(shot) > 0.2)
    assert lit_fraction(image) > 0.2, "the screen stayed blank"
    thread.join(timeout=30)
    assert "error" not in result, result.get("error")
    assert lit_fraction(blank) < 0.01
    # testsrc2's colour bars, twice side by side, fill a good part of the screen (enlarged x3).
    assert image.std() > 30
    rows, cols = np.nonzero(image.max(axis=2) > 16)
    assert cols.max() - cols.min() > 1.8 * (rows.max() - rows.min())  # two frames wide, one high
    report = result["stats"].to_json()
    assert report["latency_until"] == "shown" and report["latency_ms"]["n"] >= 10


def test_window_keys_snapshot_view_record_and_quit(xvfb, tmp_path):
    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed (apt-get install xdotool; .ci/run does)")
    events = []
    session = LiveSession(LAVFI, derainer=identity, options=LiveOptions(duration_s=60, record_dir=str(tmp_path)),
                          window=True, on_window_event=events.append, window_title="streamrain keys")

    def press(key: str) -> None:
        # Focus the window, then type through XTEST (real key events; Qt ignores synthetic ones).
        subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--name", "streamrain keys",
                        "windowfocus", "--sync"], check=True, timeout=20)
        subprocess.run(["xdotool", "key", key], check=True, timeout=20)

    def seen(kind: str, count: int = 1):
        return lambda: sum(e["event"] == kind for e in events) >= count

    started = time.monotonic()
    thread, result = run_in_thread(session)
    assert wait_for(seen("shown", 5), 20)
    side_by_side = screenshot_when(xvfb, lambda image: lit_fraction(image) > 0.2)
    press("space")
    # The window takes the split view's shape (and repaints) at its own pace: wait for it.
    split = screenshot_when(xvfb, lambda image: 0 < lit_fraction(image) < 0.7 * lit_fraction(side_by_side)
                            and split_line_at(image) is not None)
    assert 0 < lit_fraction(split) < 0.7 * lit_fraction(side_by_side), "no split view after space"
    top, left, height, width = picture_box(split)
    middle_y = top + height // 2
    subprocess.run(["xdotool", "mousemove", str(left + width // 2), str(middle_y), "mousedown", "1",
                    "mousemove", str(left + width // 4), str(middle_y), "mouseup", "1"], check=True, timeout=20)
    dragged = screenshot_when(xvfb, lambda image: (split_line_at(image) or 1.0) < 0.4)
    press("s")
    assert wait_for(seen("snapshot"), 10)
    press("r")
    assert wait_for(seen("record"), 10)
    time.sleep(1.5)
    press("r")
    assert wait_for(seen("record", 2), 10)
    press("q")
    thread.join(timeout=30)
    assert not thread.is_alive() and "error" not in result, result.get("error")
    assert time.monotonic() - started < 45  # q ended it, not the 60 s duration

    # Side by side, the derainer being the identity, the right half repeats the left; split, it does not.
    assert halves_differ(side_by_side) < 20 < halves_differ(split)
    # The split line (white, full height) starts in the middle and follows the mouse.
    assert split_line_at(split) == pytest.approx(0.5, abs=0.05)
    assert split_line_at(dragged) == pytest.approx(0.25, abs=0.05)
    snapshot = next(e["path"] for e in events if e["event"] == "snapshot")
    with av.open(snapshot) as c:
        picture = next(c.decode(video=0))
    assert (picture.width, picture.height) == (480, 288)  # what was shown: one 160x96 frame enlarged x3
    assert len(session.recordings) == 1 and session.recordings[0].exists()
    assert 10 <= len(probe(session.recordings[0])["video"]["pts_s"]) <= 75


def test_no_display_is_a_clear_error_not_an_abort(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    session = LiveSession(LAVFI, derainer=identity, options=LiveOptions(duration_s=1), window=True)
    with pytest.raises(WindowError, match="--no-window"):
        session.run()


@pytest.mark.skipif(not opencv_available(), reason="opencv-python is not installed")
def test_a_display_nobody_answers_on_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("DISPLAY", ":987")
    session = LiveSession(LAVFI, derainer=identity, options=LiveOptions(duration_s=1), window=True)
    with pytest.raises(WindowError, match="no X server answers on DISPLAY=:987.*--no-window"):
        session.run()


@pytest.mark.skipif(not opencv_available(), reason="opencv-python is not installed")
def test_window_process_that_cannot_connect_is_reported_not_fatal(monkeypatch):
    # A remote-style display is not checked up front: the window process itself fails to connect
    # (Qt aborts it), and this process carries on with a WindowError.
    monkeypatch.setenv("DISPLAY", "127.0.0.1:987")
    session = LiveSession(LAVFI, derainer=identity, options=LiveOptions(duration_s=1), window=True)
    with pytest.raises(WindowError, match="window process ended.*--no-window"):
        session.run()


@pytest.mark.skipif(not opencv_available(), reason="opencv-python is not installed")
def test_the_window_process_script_starts_from_where_the_handle_looks():
    # Runs without a display: a wrong path would otherwise only show as "the window process ended".
    done = subprocess.run([sys.executable, "-P", str(window._CHILD), "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--snapshot-dir" in done.stdout
