"""Live sessions: lavfi paced in real time, a model slower than the source, MPEG-TS over UDP from a
PyAV sender (derained, recorded, reconnected after the sender stops), re-streaming to UDP, the
webcam preset. Wall-clock assertions are generous: the CPU here is shared with other jobs."""

from __future__ import annotations

import fractions
import json
import socket
import threading
import time
import tomllib
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import probe
from streamrain.config import build_options
from streamrain.errors import ConfigError, InputError
from streamrain.live.capture import camera_options, live_spec
from streamrain.live.options import LIVE_RUN_DEFAULTS, LiveOptions, build_live_options
from streamrain.live.session import LiveSession
from streamrain.live.source import backoff_delays
from streamrain.pipeline.stats import LatencyStats
from streamrain.zoo import DEFAULT_MODEL, DEFAULT_VIDEO_MODEL

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
LAVFI_25FPS = "lavfi:testsrc2=size=160x96:rate=25,realtime"


def identity(frames_bhwc: np.ndarray) -> np.ndarray:
    return frames_bhwc


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def streamrain_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("streamrain-") and t.is_alive()]


class TsSender(threading.Thread):
    """Sends solid-colour 160x96 frames as MPEG-TS over UDP at 25 fps, in real time, like a camera."""

    def __init__(self, url: str, colour_rgb: tuple[int, int, int], seconds: float):
        super().__init__(daemon=True)
        self.url, self.colour, self.seconds = url, colour_rgb, seconds
        self.sent = 0

    def run(self) -> None:
        with av.open(self.url, "w", format="mpegts") as out:
            v = out.add_stream("libx264", rate=25)
            v.width, v.height, v.pix_fmt = 160, 96, "yuv420p"
            v.options = {"preset": "ultrafast", "tune": "zerolatency", "g": "10"}
            start = time.monotonic()
            for i in range(round(self.seconds * 25)):
                frame = av.VideoFrame.from_ndarray(np.full((96, 160, 3), self.colour, np.uint8), format="rgb24")
                frame.pts, frame.time_base = i, fractions.Fraction(1, 25)
                for packet in v.encode(frame):
                    out.mux(packet)
                self.sent += 1
                time.sleep(max(0.0, start + (i + 1) / 25 - time.monotonic()))
            for packet in v.encode(None):
                out.mux(packet)


def test_lavfi_in_real_time_runs_for_the_duration(tmp_path):
    out = tmp_path / "live.mp4"
    session = LiveSession(LAVFI_25FPS, derainer=identity, options=LiveOptions(duration_s=3), output=str(out),
                          window=False)
    stats = session.run()
    pts_s = probe(out)["video"]["pts_s"]
    # Paced by the source, not decoded as fast as possible; the file spans about the duration.
    assert stats.wall_s >= 2.9
    assert 2.5 <= pts_s[-1] - pts_s[0] <= 3.3
    assert len(pts_s) == stats.frames_out >= 40
    assert stats.frames_in == stats.frames_out + stats.dropped
    report = json.loads(json.dumps(stats.to_json()))
    assert report["latency_until"] == "output" and report["reconnects"] == 0
    assert report["latency_ms"]["n"] == stats.frames_out
    assert 0 <= report["latency_ms"]["mean"] <= report["latency_ms"]["p95"] <= report["latency_ms"]["max"]
    assert not streamrain_threads()


def test_slow_model_drops_stale_frames_and_latency_stays_bounded(tmp_path):
    model_s = 0.25  # 4 fps against a 25 fps source

    def slow_model(frames_bhwc):
        time.sleep(model_s)
        return frames_bhwc

    session = LiveSession(LAVFI_25FPS, derainer=slow_model, options=LiveOptions(duration_s=4),
                          output=str(tmp_path / "slow.mp4"), window=False)
    stats = session.run()
    report = stats.to_json()
    assert stats.dropped >= stats.frames_in // 2
    assert stats.frames_in == stats.frames_out + stats.dropped  # every frame is either written or counted
    assert report["dropped"] == stats.dropped
    # Queued instead of dropped, the last frames would wait ~3 s (4 s x (1 - 4/25)); dropped, a frame
    # waits at most for the call before it and its own.
    assert report["latency_ms"]["max"] < 1500
    assert report["latency_ms"]["mean"] >= model_s * 1000 * 0.9  # the model's time is part of it
    assert len(probe(tmp_path / "slow.mp4")["video"]["pts_s"]) == stats.frames_out


def _dominant_colours(path: Path) -> list[tuple[str, float]]:
    """('red' | 'blue' | 'other', pts_s) per frame of a recording."""
    result = []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            mean = frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
            name = "red" if mean[0] > mean[2] + 60 else "blue" if mean[2] > mean[0] + 60 else "other"
            result.append((name, float(frame.pts * frame.time_base)))
    return result


def test_udp_stream_is_derained_recorded_and_reconnected(tmp_path):
    from streamrain import load_model
    from streamrain.runtime.derainer import Derainer

    port = free_udp_port()
    url = f"udp://127.0.0.1:{port}?pkt_size=1316"
    out = tmp_path / "recorded.mp4"
    first = TsSender(url, (220, 30, 30), seconds=3.0)
    second = TsSender(url, (30, 30, 220), seconds=3.0)
    options = LiveOptions(stall_timeout_s=0.8, reconnect_delay_s=0.2, open_timeout_s=10)
    session = LiveSession(f"udp://127.0.0.1:{port}", derainer=Derainer(load_model(), device="cpu"),
                          options=options, output=str(out), window=False)

    def sender_script():
        first.join()
        time.sleep(2.0)  # silent longer than stall_timeout_s: the stream counts as lost
        second.start()
        second.join()
        session.finish()

    first.start()
    script = threading.Thread(target=sender_script, daemon=True)
    script.start()
    stats = session.run()
    script.join(timeout=10)

    assert stats.reconnects >= 1
    assert stats.model == DEFAULT_MODEL  # derained by the real model
    frames = _dominant_colours(out)
    names = [name for name, _ in frames]
    assert "red" in names and "blue" in names, names
    last_red = max(t for name, t in frames if name == "red")
    first_blue = min(t for name, t in frames if name == "blue")
    # Recording went on after the reconnection, stamped by the wall clock: the gap is in the file.
    assert first_blue - last_red >= 1.0
    assert not streamrain_threads()


def test_reconnecting_gives_up_after_the_attempts_and_keeps_the_recording(tmp_path):
    port = free_udp_port()
    out = tmp_path / "kept.mp4"
    sender = TsSender(f"udp://127.0.0.1:{port}?pkt_size=1316", (220, 30, 30), seconds=2.0)
    sender.start()
    options = LiveOptions(stall_timeout_s=0.6, reconnect_delay_s=0.1, reconnect_attempts=2, open_timeout_s=0.5)
    session = LiveSession(f"udp://127.0.0.1:{port}", derainer=identity, options=options, output=str(out),
                          window=False)
    with pytest.raises(InputError, match="2 reconnection attempt"):
        session.run()
    sender.join()
    assert len(probe(out)["video"]["pts_s"]) >= 5
    assert not streamrain_threads()


def test_derained_stream_is_restreamed_over_udp(tmp_path):
    port = free_udp_port()
    received: list[tuple[int, int]] = []

    def receive():
        with av.open(f"udp://127.0.0.1:{port}", timeout=(20, 2)) as c:
            try:
                for frame in c.decode(video=0):
                    received.append((frame.width, frame.height))
            except av.FFmpegError:
                pass  # the sender stopped: the read times out

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    time.sleep(0.3)  # the receiver's socket is bound before anything is sent
    session = LiveSession(LAVFI_25FPS, derainer=identity, options=LiveOptions(duration_s=3),
                          output=f"udp://127.0.0.1:{port}", window=False)
    stats = session.run()
    receiver.join(timeout=20)
    assert stats.frames_out >= 40
    assert len(received) >= 20  # a receiver joining mid-stream starts at the next keyframe
    assert set(received) == {(160, 96)}


def test_a_file_is_paced_and_not_reconnected(clip):
    src = clip("in.mp4", frames=25, audio=True)  # one second at 25 fps
    session = LiveSession(str(src), derainer=identity, options=LiveOptions(reconnect_delay_s=0.1), window=False)
    stats = session.run()
    assert stats.frames_in == 25 and stats.reconnects == 0
    assert stats.wall_s >= 0.9  # played at its own speed, not decoded flat out


def test_first_connection_failure_is_an_input_error():
    port = free_udp_port()
    session = LiveSession(f"udp://127.0.0.1:{port}", derainer=identity,
                          options=LiveOptions(open_timeout_s=0.5), window=False)
    with pytest.raises(InputError, match="cannot open"):
        session.run()


# -- options and presets ---------------------------------------------------------------------------

def test_webcam_preset_loads_for_preview_and_for_the_file_command():
    preset = PIPELINES / "webcam.toml"
    run, live = build_live_options(preset)
    assert run.batch == 1 and not run.copy_audio
    assert live.input_format == "mjpeg" and live.reconnect
    assert build_options(preset).batch == 1  # the [live] table is skipped by the other commands
    values = {k: v for k, v in tomllib.loads(preset.read_text()).items() if k != "live"}
    assert all(values[k] == v for k, v in LIVE_RUN_DEFAULTS.items())  # the preset states the defaults


def test_flags_beat_the_preset_and_unknown_live_keys_are_named(tmp_path):
    run, live = build_live_options(PIPELINES / "webcam.toml", run={"batch": 2, "crf": None},
                                   live={"duration_s": 5.0, "framerate": None})
    assert run.batch == 2 and run.crf is None and run.preset == LIVE_RUN_DEFAULTS["preset"] == "fastest"
    assert live.duration_s == 5.0 and live.framerate == 30
    bad = tmp_path / "bad.toml"
    bad.write_text("[live]\nstall_timeout = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in \[live\]: stall_timeout"):
        build_live_options(bad)
    with pytest.raises(ConfigError, match="reconnect_delay_s must be a positive"):
        LiveOptions(reconnect_delay_s=0)


def test_camera_options_use_each_capture_system_s_names():
    options = LiveOptions(video_size="1280x720", framerate=30, input_format="mjpeg")
    assert camera_options("v4l2", options) == {"video_size": "1280x720", "framerate": "30",
                                               "input_format": "mjpeg"}
    assert camera_options("dshow", options)["vcodec"] == "mjpeg"
    assert "pixel_format" not in camera_options("avfoundation", options)
    spec = live_spec("udp://127.0.0.1:5000", options)
    assert spec.is_live and spec.options["fflags"] == "nobuffer" and "video_size" not in spec.options


def test_backoff_doubles_up_to_the_cap():
    delays = backoff_delays(0.5, 3.0)
    assert [next(delays) for _ in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_latency_stats_quantiles():
    latency = LatencyStats()
    for ms in range(1, 101):
        latency.add(ms / 1000)
    report = latency.to_json()
    assert report["n"] == 100 and report["max"] == 100.0 and report["mean"] == pytest.approx(50.5)
    assert 95.0 <= report["p95"] <= 96.0


# -- command line -----------------------------------------------------------------------------------

def test_preview_command_headless_with_stats_json(tmp_path):
    from streamrain.cli import main

    out, stats_json = tmp_path / "out.mp4", tmp_path / "stats.json"
    code = main(["preview", "lavfi:testsrc2=size=64x48:rate=25,realtime", "--no-window", "--duration", "2",
                 "--output", str(out), "--stats-json", str(stats_json), "--no-progress"])
    assert code == 0
    report = json.loads(stats_json.read_text())
    for key in ("frames_in", "frames_out", "dropped", "wall_s", "fps", "model", "device", "stages"):
        assert key in report
    assert set(report["latency_ms"]) >= {"mean", "p95", "max"} and report["model"] == DEFAULT_VIDEO_MODEL
    assert len(probe(out)["video"]["pts_s"]) == report["frames_out"] > 0


def test_preview_records_into_webm_with_vp9_at_its_fastest(tmp_path):
    # The live defaults name no encoder's own preset, so every container's default encoder takes them.
    from streamrain.cli import main

    out = tmp_path / "out.webm"
    code = main(["preview", "lavfi:testsrc2=size=64x48:rate=25,realtime", "--no-window", "--duration", "1",
                 "--output", str(out), "--no-progress"])
    assert code == 0
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "vp9"
        assert sum(1 for _ in container.decode(video=0)) > 0


def test_preview_command_without_a_display_says_no_window(monkeypatch, capsys):
    from streamrain.cli import main

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code = main(["preview", "lavfi:testsrc2=size=64x48:rate=25,realtime", "--duration", "1"])
    assert code == 1
    assert "--no-window" in capsys.readouterr().err
