"""End-to-end offline runs on real clips made with PyAV: timestamps, audio, tags, sizes."""

from __future__ import annotations

import json

import av

import numpy as np
import pytest

from conftest import probe
from streamrain.cli import main
from streamrain.config import RunOptions
from streamrain.pipeline.job import derain_file
from streamrain.zoo import DEFAULT_MODEL, DEFAULT_VIDEO_MODEL


class Identity:
    """A derainer that changes nothing, to check what the I/O alone does to a video."""

    name = "identity"
    device_label = "cpu:none"

    def __call__(self, rgb_u8_bhwc):
        return rgb_u8_bhwc.copy()


def assert_same_colours(a: np.ndarray, b: np.ndarray) -> None:
    """Measured on these test frames: one more 4:2:0 generation costs ~2.1 levels of mean absolute
    error, decoding with the wrong matrix (BT.601 vs 709) or range (full vs limited) costs ~7."""
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3.5


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


def test_vfr_clip_keeps_every_frame_and_timestamp(clip, tmp_path):
    pts_ms = [0, 40, 80, 200, 210, 220, 500, 540, 1000, 1033]
    src = clip("vfr.mp4", pts_ms=pts_ms, audio=False)
    out = tmp_path / "out.mp4"
    stats = derain_file(str(src), out, options=RunOptions(batch=3))
    assert stats.frames_in == stats.frames_out == len(pts_ms)
    got = probe(out)["video"]["pts_s"]
    assert got == pytest.approx([ms / 1000 for ms in pts_ms], abs=1e-3)


def test_audio_is_kept_with_the_same_duration(clip, tmp_path):
    src = clip("a.mp4", frames=50, fps=25)
    out = tmp_path / "out.mp4"
    derain_file(str(src), out, options=RunOptions(), derainer=Identity())
    before, after = probe(src)["audio"], probe(out)["audio"]
    assert len(after) == 1 and after[0]["codec"] == "aac"
    assert after[0]["duration_s"] == pytest.approx(before[0]["duration_s"], abs=1 / 25)


def test_audio_the_container_cannot_carry_is_reencoded(clip, tmp_path):
    src = clip("pcm.mkv", frames=25, audio_codec="pcm_s16le")
    out = tmp_path / "out.mp4"
    derain_file(str(src), out, derainer=Identity())
    after = probe(out)["audio"]
    assert [a["codec"] for a in after] == ["aac"]
    assert after[0]["duration_s"] == pytest.approx(1.0, abs=0.1)


def test_rotation_and_colour_tags_survive(clip, tmp_path):
    tags = {"colorspace": 1, "color_range": 1, "color_primaries": 1, "color_trc": 1}
    src = clip("tagged.mp4", rotation=90, colour=tags, audio=False)
    out = tmp_path / "out.mp4"
    derain_file(str(src), out, derainer=Identity())
    a, b = probe(src)["video"], probe(out)["video"]
    assert b["rotation"] == a["rotation"] == 90
    for key in ("colorspace", "color_range", "color_primaries", "color_trc"):
        assert b[key] == a[key] == tags[key], key
    assert_same_colours(a["rgb"][1], b["rgb"][1])


def test_untagged_hd_colours_round_trip(clip, tmp_path):
    src = clip("hd.mp4", width=1280, height=720, frames=3, audio=False)
    out = tmp_path / "out.mp4"
    derain_file(str(src), out, derainer=Identity())
    assert_same_colours(probe(src)["video"]["rgb"][0], probe(out)["video"]["rgb"][0])


@pytest.mark.parametrize("size", [(65, 37), (33, 48)])
def test_odd_frame_sizes_are_kept(clip, tmp_path, size):
    width, height = size
    src = clip("odd.mp4", width=width, height=height, frames=5, audio=False, pix_fmt="yuv444p")
    out = tmp_path / "out.mp4"
    derain_file(str(src), out)
    v = probe(out)["video"]
    assert (v["width"], v["height"]) == size
    assert len(v["pts_s"]) == 5


def test_still_image_in_png_out(tmp_path):
    import av
    img = np.random.default_rng(0).integers(0, 255, (31, 45, 3), dtype=np.uint8)
    src = tmp_path / "in.png"
    av.VideoFrame.from_ndarray(img, format="rgb24").save(str(src))
    out = tmp_path / "out.png"
    assert main([str(src), str(out), "--no-progress"]) == 0
    v = probe(out)["video"]
    assert (v["width"], v["height"]) == (45, 31)
    assert leftovers(tmp_path) == []


def test_stats_json_has_the_documented_fields(clip, tmp_path):
    src = clip("s.mp4", frames=12, audio=False)
    stats_path = tmp_path / "stats.json"
    assert main([str(src), str(tmp_path / "o.mp4"), "--no-progress", "--stats-json", str(stats_path)]) == 0
    stats = json.loads(stats_path.read_text())
    assert {"frames_in", "frames_out", "dropped", "wall_s", "fps", "model", "device", "stages"} <= set(stats)
    assert stats["frames_in"] == stats["frames_out"] == 12 and stats["dropped"] == 0
    assert set(stats["stages"]) == {"decode", "derain", "encode"}
    for stage in stats["stages"].values():
        assert stage["fps"] > 0 and stage["busy_s"] > 0
    assert stats["model"] == DEFAULT_VIDEO_MODEL  # a video out: the video default


def test_a_still_picture_out_is_derained_by_the_still_image_default(clip, tmp_path):
    src = clip("still.mp4", frames=1, audio=False)
    stats = derain_file(str(src), tmp_path / "still.png")
    assert stats.model == DEFAULT_MODEL != DEFAULT_VIDEO_MODEL
    assert derain_file(str(src), tmp_path / "still.png", options=RunOptions(model=DEFAULT_VIDEO_MODEL)).model \
        == DEFAULT_VIDEO_MODEL  # --model still wins


def test_container_metadata_is_kept(clip, tmp_path):
    import av
    plain = clip("plain.mp4", frames=5)
    src = tmp_path / "dashcam.mp4"
    with av.open(str(plain)) as inp, av.open(str(src), "w") as out:
        out.metadata.update({"creation_time": "2026-01-02T03:04:05.000000Z", "title": "dashcam A001"})
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.size:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    output = tmp_path / "out.mp4"
    derain_file(str(src), output, derainer=Identity())
    with av.open(str(output)) as c:
        assert c.metadata["creation_time"] == "2026-01-02T03:04:05.000000Z"
        assert c.metadata["title"] == "dashcam A001"


class OverlappingIdentity(Identity):
    """Stands in for the CUDA derainer's submit/collect interface and records the call order."""

    max_in_flight = 2

    def __init__(self):
        self.calls, self._results = [], {}

    def submit(self, rgb_u8_bhwc):
        handle = sum(call == "submit" for call, _ in self.calls)
        self._results[handle] = 255 - rgb_u8_bhwc
        self.calls.append(("submit", handle))
        return handle

    def collect(self, handle):
        self.calls.append(("collect", handle))
        return self._results.pop(handle)


def test_overlapping_derainer_gets_the_next_batch_before_it_returns_one(clip, tmp_path):
    src = clip("overlap.mp4", frames=10, audio=False)
    derainer, out = OverlappingIdentity(), tmp_path / "out.mp4"
    stats = derain_file(str(src), out, options=RunOptions(batch=3), derainer=derainer)
    assert stats.frames_out == 10
    # Batches of 3, 3, 3, 1: each collect comes after the following batch was submitted; the last
    # two are drained at the end.
    assert derainer.calls == [("submit", 0), ("submit", 1), ("collect", 0), ("submit", 2), ("collect", 1),
                              ("submit", 3), ("collect", 2), ("collect", 3)]
    with av.open(str(src)) as a, av.open(str(out)) as b:
        pairs = zip(a.decode(video=0), b.decode(video=0))
        for original, inverted in pairs:  # every frame came back, in order, as its own negative
            assert_same_colours(255 - original.to_ndarray(format="rgb24"), inverted.to_ndarray(format="rgb24"))


def test_encoder_runs_one_thread_beside_a_cpu_derainer_on_few_cores(monkeypatch):
    import types

    import torch

    from streamrain.pipeline import job
    cpu, gpu = (types.SimpleNamespace(device=torch.device(kind)) for kind in ("cpu", "cuda"))
    monkeypatch.setattr(job, "usable_cores", lambda: 2)
    assert [job.encoder_threads(d) for d in (cpu, gpu, Identity())] == [1, None, None]
    chosen = job.encode_options(RunOptions(crf=21, preset="faster"), cpu)
    assert (chosen.threads, chosen.crf, chosen.preset) == (1, 21, "faster")
    monkeypatch.setattr(job, "usable_cores", lambda: 16)
    assert job.encoder_threads(cpu) is None


def test_sink_encodes_with_the_thread_count_it_is_given(clip, tmp_path):
    from streamrain.io.sink import EncodeOptions, VideoSink
    from streamrain.io.source import VideoSource, parse_source
    src, out = clip("threads.mp4", frames=6, audio=False), tmp_path / "out.mp4"
    sink = VideoSink(out, EncodeOptions(threads=1))
    with VideoSource(parse_source(str(src))) as source:
        sink.start(source.info)
        for frame in source.items():
            sink.write(frame)
        assert sink.video.codec_context.thread_count == 1
    sink.commit()
    assert len(probe(out)["video"]["pts_s"]) == 6
