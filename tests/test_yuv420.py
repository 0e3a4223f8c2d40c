"""Deraining 4:2:0 video as decoded: SRNet's Y'CbCr form, and the source, pipeline and sink paths
that carry I420 frames from the decoder to the encoder without an RGB conversion."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import i420_of_rgb, pattern, player_rgb, probe, rgb_of_i420
from streamrain.archs.srnet import SRNet
from streamrain.config import RunOptions
from streamrain.errors import ModelError
from streamrain.io.frames import Frame, YuvMatrix
from streamrain.io.sink import EncodeOptions, VideoSink
from streamrain.io.source import VideoSource, parse_source
from streamrain.pipeline.job import derain_file, make_derainer
from streamrain.runtime.derainer import Derainer
from streamrain.runtime.wrapper import DerainModule
from streamrain.zoo import DEFAULT_MODEL
from streamrain.zoo import load_model


def i420_of(rgb_u8: np.ndarray, yuv: YuvMatrix) -> np.ndarray:
    frame = av.VideoFrame.from_ndarray(rgb_u8, format="rgb24")
    return frame.reformat(format="yuv420p", dst_colorspace=yuv.sws_matrix,
                          dst_color_range=2 if yuv.full_range else 1).to_ndarray()


def reference_yuv420(net: SRNet, i420: torch.Tensor, yuv: YuvMatrix) -> torch.Tensor:
    """What the Y'CbCr form must equal: to RGB with each chroma sample over its 2x2 block, SRNet's
    residual, back with chroma averaged over the block, rounded and clamped as codes."""
    rgb = rgb_of_i420(i420, yuv)
    with torch.inference_mode():
        out = rgb - F.pixel_shuffle(net.double().rain_s2d(F.pixel_unshuffle(rgb, 2)), 2)
    net.float()
    return i420_of_rgb(out, yuv)


@pytest.mark.parametrize("yuv", [YuvMatrix(5, False), YuvMatrix(1, True), YuvMatrix(9, False)])
def test_yuv420_form_is_the_rgb_round_trip_in_fp32(yuv):
    torch.manual_seed(0)
    net = SRNet(half_channels=8, quarter_channels=16, blocks=2).eval()
    for p in net.parameters():
        p.data.normal_(0, 0.05)
    i420 = torch.from_numpy(np.stack([i420_of(pattern(i, 48, 32), yuv) for i in range(2)]))
    with torch.inference_mode():
        out = net.yuv420_form(torch.float32, yuv)(i420)
    expected = reference_yuv420(net, i420, yuv)
    assert out.shape == i420.shape and out.dtype == torch.uint8
    assert (expected.int() - i420.int()).abs().float().mean() > 2  # the net really changes the picture
    diff = (out.int() - expected.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3  # only ties rounded the other way


def test_yuv420_form_in_bf16_matches_the_rgb_path_of_the_bundled_model():
    """The shipped model through swscale and RGB vs as decoded: the same picture to ~45 dB."""
    yuv = YuvMatrix(5, False)
    rgb = np.stack([pattern(i, 64, 48) for i in range(2)])
    i420 = np.stack([i420_of(f, yuv) for f in rgb])
    derainer = Derainer(load_model(), device="cpu", precision="bf16")
    assert derainer.accepts_yuv420
    decoded_rgb = np.stack([av.VideoFrame.from_ndarray(a, format="yuv420p").to_ndarray(
        format="rgb24", src_colorspace=5, src_color_range=1) for a in i420])
    via_rgb = np.stack([i420_of(f, yuv) for f in derainer(decoded_rgb)])
    as_decoded = derainer(i420, yuv=yuv)
    mse = np.mean((via_rgb.astype(float) - as_decoded.astype(float)) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) > 40


def test_only_a_network_with_a_4_2_0_form_on_the_cpu_eager_path_takes_yuv420():
    srnet = load_model()
    assert not Derainer(srnet, device="cpu", backend="compile").accepts_yuv420
    torch.manual_seed(0)
    other = DerainModule(torch.nn.Conv2d(3, 3, 1), name="conv", arch="conv")
    derainer = Derainer(other, device="cpu")
    assert not derainer.accepts_yuv420
    with pytest.raises(ModelError, match="4:2:0"):
        derainer(np.zeros((1, 12, 8), np.uint8), yuv=YuvMatrix(5, False))


def test_source_keeps_yuv420_only_where_it_can(clip):
    cases = {("yuv420p", 64, 48): True, ("yuv444p", 64, 48): False, ("yuv420p", 66, 50): False}
    for (pix_fmt, width, height), kept in cases.items():
        path = clip(f"{pix_fmt}-{width}.mp4", width=width, height=height, frames=3, audio=False,
                    pix_fmt=pix_fmt)
        with VideoSource(parse_source(str(path))) as source:
            frames = list(source.items(keep_yuv420=True))
        assert len(frames) == 3
        for f in frames:
            if kept:
                assert f.rgb_u8 is None and f.yuv420_u8.shape == (height * 3 // 2, width)
                assert f.yuv == YuvMatrix(5, False)  # untagged and under 720 lines: BT.601, limited
            else:
                assert f.yuv420_u8 is None and f.rgb_u8.shape == (height, width, 3)


class Recording:
    """The real derainer, noting what each batch held."""

    def __init__(self, derainer):
        self.inner, self.layouts = derainer, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def submit(self, batch, **layout):
        self.layouts.append("yuv420" if layout.get("yuv") else "rgb")
        return self.inner.submit(batch, **layout)


def test_file_job_derains_4_2_0_as_decoded_and_agrees_with_the_rgb_path(clip, tmp_path):
    src = clip("in.mp4", width=64, height=48, frames=10)
    results = {}
    for yuv420 in (True, False):
        options = RunOptions(model=DEFAULT_MODEL, yuv420=yuv420, batch=4)  # a single-frame model's path
        derainer = Recording(make_derainer(options))
        out = tmp_path / f"out-{yuv420}.mp4"
        stats = derain_file(str(src), out, options=options, derainer=derainer)
        assert stats.frames_out == 10
        assert set(derainer.layouts) == {"yuv420" if yuv420 else "rgb"}
        results[yuv420] = probe(out)
    a, b = results[True]["video"], results[False]["video"]
    assert a["pts_s"] == b["pts_s"] == probe(src)["video"]["pts_s"]
    assert [x["codec"] for x in results[True]["audio"]] == ["aac"]
    for x, y in zip(a["rgb"], b["rgb"]):
        mse = np.mean((x.astype(float) - y.astype(float)) ** 2)
        assert 10 * np.log10(255 ** 2 / mse) > 35


def test_sink_converts_a_yuv420_frame_in_another_matrix(clip, tmp_path):
    """A frame whose matrix is not the stream's is converted, not written as if it were."""
    with VideoSource(parse_source(str(clip("in.mp4", frames=2, audio=False)))) as source:
        info = source.info  # BT.601 limited, as the sink will write it
    hd_full = YuvMatrix(1, True)
    i420 = i420_of(pattern(5, 64, 48), hd_full)
    as_meant = av.VideoFrame.from_ndarray(i420, format="yuv420p").to_ndarray(
        format="rgb24", src_colorspace=1, src_color_range=2)
    misread = av.VideoFrame.from_ndarray(i420, format="yuv420p").to_ndarray(
        format="rgb24", src_colorspace=5, src_color_range=1)
    sink = VideoSink(tmp_path / "out.mp4", EncodeOptions(crf=0))
    sink.start(info)
    for i in range(2):
        sink.write(Frame(None, i, info.time_base, i, yuv420_u8=i420, yuv=hd_full))
    sink.commit()
    with av.open(str(tmp_path / "out.mp4")) as c:
        decoded = player_rgb(next(c.decode(video=0))).astype(int)
    assert np.abs(misread.astype(int) - as_meant).mean() > 7  # what writing the planes as they are gives
    assert np.abs(decoded - as_meant).mean() < 3.5  # one more 4:2:0 generation


def test_rgb_flag_turns_the_4_2_0_path_off(clip, tmp_path):
    from streamrain.cli import _run_parser, main

    assert _run_parser().parse_args(["a.mp4", "b.mp4", "--rgb"]).yuv420 is False
    assert _run_parser().parse_args(["a.mp4", "b.mp4"]).yuv420 is None  # the preset's or RunOptions' value
    out = tmp_path / "out.mp4"
    assert main([str(clip("in.mp4", frames=4)), str(out), "--rgb", "--no-progress"]) == 0
    assert len(probe(out)["video"]["pts_s"]) == 4


def test_yuv420_form_names_the_sizes_it_takes():
    form = SRNet(half_channels=8, quarter_channels=16, blocks=1).yuv420_form(torch.float32, YuvMatrix(5, False))
    with pytest.raises(ValueError, match="multiples of 4"):
        form(torch.zeros(1, 15, 12, dtype=torch.uint8))  # H = 10
