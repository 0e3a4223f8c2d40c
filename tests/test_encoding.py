"""Encoder flags are honoured or refused up front, each container gets a codec it carries, and
``--crf 0`` is lossless: real clips with audio, real encoders, decoded back and compared."""

from __future__ import annotations

import av
import numpy as np
import pytest

from conftest import probe
from streamrain.cli import main
from streamrain.config import RunOptions
from streamrain.io.source import VideoSource
from streamrain.pipeline.job import derain_file, make_derainer
from streamrain.zoo import DEFAULT_MODEL

FRAMES = 6


class Identity:
    """A derainer that changes nothing: what comes out is what the I/O alone does."""

    name = "identity"
    device_label = "cpu:none"

    def __call__(self, rgb_u8_bhwc):
        return rgb_u8_bhwc.copy()


class Recording:
    """Wraps a real derainer and notes which layout each batch came in."""

    def __init__(self, inner):
        self.inner, self.layouts = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, batch, **layout):
        self.layouts.append("yuv420" if layout.get("yuv") else "rgb")
        return self.inner(batch, **layout)

    def submit(self, batch, **layout):
        self.layouts.append("yuv420" if layout.get("yuv") else "rgb")
        return self.inner.submit(batch, **layout)


@pytest.fixture(scope="module")
def derainer():
    """The bundled single-frame default (its 4:2:0 and RGB paths are what these tests follow), once
    for the module, so two runs of a test derain identically."""
    derainer = make_derainer(RunOptions(model=DEFAULT_MODEL))
    yield derainer
    derainer.close()  # its worker threads would outlive the module (test_live counts threads)


def streams_of(path):
    with av.open(str(path)) as c:
        video = c.streams.video[0]
        return {"format": c.format.name, "video": video.codec_context.codec.canonical_name,
                "audio": [s.codec_context.codec.canonical_name for s in c.streams.audio]}


def decoded(path, fmt: str) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format=fmt) for f in c.decode(video=0)]


def run_cli(capsys, *args) -> tuple[int, list[str]]:
    code = main([*map(str, args), "--no-progress"])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


# -- each container gets a codec it carries, with the audio --------------------------------------

@pytest.mark.parametrize("suffix, video, audio", [
    (".mp4", "h264", "aac"), (".mkv", "h264", "aac"), (".mov", "h264", "aac"),
    (".webm", "vp9", "opus"), (".avi", "mpeg4", "mp3")])
def test_each_container_gets_a_codec_it_carries(clip, tmp_path, suffix, video, audio):
    src = clip("in.mp4", frames=FRAMES)  # H.264 + AAC, 64x48
    out = tmp_path / f"out{suffix}"
    stats = derain_file(str(src), out, derainer=Identity())
    assert stats.frames_out == FRAMES
    got = streams_of(out)
    assert suffix.lstrip(".").replace("mkv", "matroska") in got["format"]
    assert (got["video"], got["audio"]) == (video, [audio])
    before, after = probe(src), probe(out)
    pts, pts_in = np.array(after["video"]["pts_s"]), np.array(before["video"]["pts_s"])
    assert len(pts) == FRAMES
    # Matroska shifts every stream by the encoder's delay to keep dts non-negative; the spacing stays.
    assert pts[0] - pts_in[0] == pytest.approx(0, abs=0.025)
    assert np.diff(pts) == pytest.approx(np.diff(pts_in), abs=1e-3)
    # The picture came through (one more lossy generation: a few levels of mean absolute error).
    for a, b in zip(before["video"]["rgb"], after["video"]["rgb"]):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 4


@pytest.mark.parametrize("source, output, treatment", [
    ("pcm.mkv", "out.mp4", ("aac", "re-encoded")),  # MP4 takes no PCM
    ("pcm.mkv", "out.avi", ("pcm_s16le", "copied")),
    ("opus.mkv", "out.mp4", ("opus", "copied")),
    ("aac.mp4", "out.webm", ("opus", "re-encoded")),  # WebM takes Opus or Vorbis only
    ("aac.mp4", "out.avi", ("mp3", "re-encoded"))])  # AAC in AVI would push the video a frame late
def test_audio_is_copied_or_reencoded_to_what_the_container_takes(clip, tmp_path, source, output, treatment):
    codec = {"pcm.mkv": "pcm_s16le", "opus.mkv": "libopus", "aac.mp4": "aac"}[source]
    src = clip(source, frames=FRAMES, audio_codec=codec)
    derain_file(str(src), tmp_path / output, derainer=Identity())
    assert streams_of(tmp_path / output)["audio"] == [treatment[0]]


# -- an encoder gets frames and a pixel format it takes ------------------------------------------

@pytest.mark.parametrize("pix_fmt", [None, "rgb24"])
def test_libx264rgb_gets_rgb_frames_and_honours_crf(clip, tmp_path, derainer, pix_fmt):
    src = clip("in.mp4", frames=FRAMES)
    out = tmp_path / "out.mp4"
    recording = Recording(derainer)
    options = RunOptions(codec="libx264rgb", crf=21, preset="ultrafast", pix_fmt=pix_fmt or "auto")
    stats = derain_file(str(src), out, options=options, derainer=recording)
    assert stats.frames_out == FRAMES
    assert set(recording.layouts) == {"rgb"}  # the bundled model would take 4:2:0; this encoder cannot
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "gbrp"  # H.264 RGB, as FFmpeg decodes it
    # x264 writes its settings into the stream: the crf and the preset (ultrafast: subme=0) arrived.
    settings = out.read_bytes()
    assert b"crf=21.0" in settings and b"subme=0" in settings


def test_input_pixel_format_is_kept_where_the_encoder_takes_it(clip, tmp_path):
    src = clip("in444.mp4", frames=FRAMES, audio=False, pix_fmt="yuv444p")
    for suffix, expected in ((".mp4", "yuv444p"), (".avi", "yuv420p")):  # MPEG-4 takes 4:2:0 only
        out = tmp_path / f"out{suffix}"
        derain_file(str(src), out, derainer=Identity())
        with av.open(str(out)) as c:
            assert c.streams.video[0].codec_context.pix_fmt == expected


# -- --crf 0 is lossless -------------------------------------------------------------------------

def test_crf_0_keeps_every_value_the_model_outputs(clip, tmp_path, derainer):
    """FFV1 is lossless by design, so its file holds exactly what the model put out; --crf 0 through
    x264 and VP9 must decode to the very same planes, and the default crf must not (or the check
    could not fail)."""
    src = clip("in.mp4", frames=FRAMES)
    runs = {"ffv1.mkv": RunOptions(codec="ffv1"), "crf0.mp4": RunOptions(crf=0),
            "crf0.webm": RunOptions(crf=0), "crf0-x265.mkv": RunOptions(codec="libx265", crf=0),
            "default.mp4": RunOptions()}
    for name, options in runs.items():
        recording = Recording(derainer)
        derain_file(str(src), tmp_path / name, options=options, derainer=recording)
        assert set(recording.layouts) == {"yuv420"}  # 4:2:0 end to end: nothing converted
    reference = decoded(tmp_path / "ffv1.mkv", "yuv420p")
    assert len(reference) == FRAMES
    for name in ("crf0.mp4", "crf0.webm", "crf0-x265.mkv"):
        assert all(np.array_equal(a, b) for a, b in zip(decoded(tmp_path / name, "yuv420p"), reference)), name
    lossy = decoded(tmp_path / "default.mp4", "yuv420p")
    assert not all(np.array_equal(a, b) for a, b in zip(lossy, reference))


def test_crf_0_is_lossless_in_rgb_too(clip, tmp_path, derainer):
    src = clip("in.mp4", frames=FRAMES)
    ffv1, x264rgb = tmp_path / "ffv1.mkv", tmp_path / "x264rgb.mkv"
    derain_file(str(src), ffv1, options=RunOptions(codec="ffv1", pix_fmt="bgr0"), derainer=derainer)
    derain_file(str(src), x264rgb, options=RunOptions(codec="libx264rgb", crf=0), derainer=derainer)
    a, b = decoded(ffv1, "rgb24"), decoded(x264rgb, "rgb24")
    assert len(a) == FRAMES and all(np.array_equal(x, y) for x, y in zip(a, b))


# -- what cannot be honoured is refused before decoding, naming the flag -------------------------

REFUSALS = [
    ("out.webm", ["--codec", "libx264"], "--codec libx264"),
    ("out.mp4", ["--codec", "libx264rgb", "--pix-fmt", "yuv420p"], "--pix-fmt yuv420p"),
    ("out.mp4", ["--codec", "nope"], "--codec nope"),
    ("out.mp4", ["--codec", "aac"], "--codec aac"),
    ("out.mp4", ["--pix-fmt", "nope"], "--pix-fmt nope"),
    ("out.mp4", ["--crf", "60"], "--crf 60"),
    ("out.mkv", ["--codec", "ffv1", "--crf", "20"], "--crf 20"),
    ("out.avi", ["--crf", "20"], "--crf 20"),  # MPEG-4 has no crf
    ("out.mkv", ["--codec", "libvpx", "--crf", "0"], "--crf 0"),  # VP8 has no lossless mode
    ("out.webm", ["--preset", "veryfast"], "--preset veryfast"),
    ("out.mp4", ["--preset", "turbo"], "--preset turbo"),
    ("out.mkv", ["--codec", "ffv1", "--preset", "fast"], "--preset fast"),
    ("out.webm", ["--audio-codec", "aac"], "--audio-codec aac"),
    ("out.mp4", ["--no-audio", "--audio-codec", "aac"], "--audio-codec aac"),
    ("out.png", ["--crf", "10"], "--crf 10"),
    ("out.xyz", [], ".xyz"),
]


@pytest.mark.parametrize("output, flags, named", REFUSALS, ids=[" ".join([o, *f]) for o, f, _ in REFUSALS])
def test_a_flag_that_cannot_be_honoured_is_refused_up_front(clip, tmp_path, capsys, monkeypatch,
                                                             output, flags, named):
    src = clip("in.mp4", frames=FRAMES)

    def no_decoding(self, **kwargs):
        raise AssertionError("decoding started before the flags were checked")
        yield

    monkeypatch.setattr(VideoSource, "items", no_decoding)
    code, lines = run_cli(capsys, src, tmp_path / output, *flags)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("streamrain: error: ") and named in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]  # nothing created, not even a partial


def test_audio_copy_that_the_container_cannot_take_is_refused(clip, tmp_path, capsys):
    src = clip("pcm.mkv", frames=FRAMES, audio_codec="pcm_s16le")
    code, lines = run_cli(capsys, src, tmp_path / "out.mp4", "--audio-codec", "copy")
    assert code == 1 and len(lines) == 1 and "--audio-codec copy" in lines[0] and "pcm_s16le" in lines[0]
    assert not (tmp_path / "out.mp4").exists()


def test_a_subsampled_pix_fmt_is_refused_for_an_odd_size(clip, tmp_path, capsys):
    src = clip("odd.mp4", width=65, height=37, frames=3, audio=False, pix_fmt="yuv444p")
    code, lines = run_cli(capsys, src, tmp_path / "out.mp4", "--pix-fmt", "yuv420p")
    assert code == 1 and "--pix-fmt yuv420p" in lines[0] and "65x37" in lines[0]
    assert main([str(src), str(tmp_path / "out.mp4"), "--no-progress"]) == 0  # left out: one that fits
    assert probe(tmp_path / "out.mp4")["video"]["width"] == 65


# -- --preset fastest: each encoder's own fastest preset -------------------------------------------

@pytest.mark.parametrize("container, codec, option, value", [
    ("mp4", "auto", "preset", "ultrafast"), ("webm", "auto", "cpu-used", "8"),
    ("mkv", "libx265", "preset", "ultrafast")])
def test_preset_fastest_names_each_encoder_s_fastest(container, codec, option, value):
    from fractions import Fraction

    from streamrain.io.encoding import EncodeOptions, plan_output

    plan = plan_output(EncodeOptions(codec=codec, preset="fastest"), container=container, width=64, height=48,
                       time_base=Fraction(1, 25), rate=Fraction(25))
    assert plan.video.options[option] == value


def test_preset_fastest_leaves_an_encoder_without_presets_as_it_is():
    from fractions import Fraction

    from streamrain.io.encoding import EncodeOptions, plan_output

    plan = plan_output(EncodeOptions(codec="ffv1", preset="fastest"), container="mkv", width=64, height=48,
                       time_base=Fraction(1, 25), rate=Fraction(25))
    assert plan.video.codec == "ffv1" and "preset" not in plan.video.options
