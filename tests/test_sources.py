"""Sources other than plain files: lavfi graphs, HTTP on 127.0.0.1, damaged packets, spec parsing."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest

from conftest import probe
from streamrain.errors import InputError
from streamrain.io.source import VideoSource, parse_source
from streamrain.pipeline.job import derain_file


def test_lavfi_source(tmp_path):
    out = tmp_path / "out.mp4"
    stats = derain_file("lavfi:testsrc2=size=64x48:rate=10:duration=1", out)
    assert stats.frames_out == 10
    assert len(probe(out)["video"]["pts_s"]) == 10


@pytest.fixture
def http_server(tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_source_with_audio(clip, tmp_path, http_server):
    clip("served.mp4", frames=15)
    out = tmp_path / "out.mp4"
    stats = derain_file(f"{http_server}/served.mp4", out)
    assert stats.frames_out == 15
    assert len(probe(out)["audio"]) == 1


def test_http_404_is_an_input_error(http_server):
    with pytest.raises(InputError, match="cannot open"):
        VideoSource(parse_source(f"{http_server}/missing.mp4"))


def test_damaged_packets_are_skipped_and_counted(clip, tmp_path):
    import av
    import numpy as np
    good = clip("good.mkv", frames=60, audio=False, width=96, height=64)
    damaged = tmp_path / "damaged.mkv"
    rng = np.random.default_rng(0)
    # Same container, but three coded pictures replaced by garbage: the demuxer stays in step,
    # the decoder refuses those packets.
    with av.open(str(good)) as inp, av.open(str(damaged), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for i, packet in enumerate(inp.demux(inp.streams.video[0])):
            if not packet.size:
                continue
            if i in (20, 21, 40):
                packet.update(bytes([0, 0, 0, 1, 0x65]) + rng.integers(0, 256, packet.size - 5, dtype=np.uint8).tobytes())
            packet.stream = stream
            out.mux(packet)
    out_path = tmp_path / "out.mp4"
    stats = derain_file(str(damaged), out_path)
    assert stats.decode_errors == 3
    assert 20 <= stats.frames_out < 60 and len(probe(out_path)["video"]["pts_s"]) == stats.frames_out


@pytest.mark.parametrize("spec, url, fmt, live", [
    ("lavfi:testsrc=rate=5", "testsrc=rate=5", "lavfi", False),
    ("lavfi:testsrc,realtime", "testsrc,realtime", "lavfi", True),
    ("rtsp://127.0.0.1:8554/cam", "rtsp://127.0.0.1:8554/cam", None, True),
    ("udp://127.0.0.1:5000", "udp://127.0.0.1:5000", None, True),
    ("http://127.0.0.1/a.mp4", "http://127.0.0.1/a.mp4", None, False),
])
def test_parse_source(spec, url, fmt, live):
    parsed = parse_source(spec)
    assert (parsed.url, parsed.format, parsed.is_live) == (url, fmt, live)


def test_camera_index_maps_to_the_platform_device():
    parsed = parse_source("0", camera_options={"video_size": "640x480"})
    assert parsed.is_live and parsed.options == {"video_size": "640x480"}
    assert parsed.url in ("/dev/video0", "0", "video=0")


def test_unknown_scheme_is_refused():
    with pytest.raises(InputError, match="unsupported URL scheme 'gopher'"):
        parse_source("gopher://example/x")
