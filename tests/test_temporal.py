"""The temporal model (TRNet) and its streaming runtime: windows across batches, shots, causal mode,
and the product around it (pts, audio, models list). A small random-init TRNet stands in for
trained weights; fp32 throughout, so results do not depend on how frames are batched."""

from __future__ import annotations

import threading
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import i420_of_rgb, needs_shared, pattern, probe, rgb_of_i420
from streamrain.archs import ARCHS
from streamrain.archs.srnet import i420_from_codes
from streamrain.archs.trnet import TRNet, coarse_spectrum, global_shift, median_of_five, translate, window
from streamrain.cli import main
from streamrain.config import RunOptions
from streamrain.errors import ModelError
from streamrain.io.frames import Frame, YuvMatrix
from streamrain.modelinfo import cost
from streamrain.pipeline.job import derain_file, make_derainer
from streamrain.pipeline.runner import Pipeline
from streamrain.runtime.cuts import ShotBoundaries, luma_thumbnail, scene_change
from streamrain.runtime.temporal import FrameStream, TemporalDerainer
from streamrain.runtime.wrapper import DerainModule
from streamrain.weights import save_weights
from streamrain.zoo import DEFAULT_VIDEO_MODEL

SMALL = dict(half_channels=8, quarter_channels=16, key_channels=8, value_channels=8, flow_channels=8)


def small_trnet(seed: int = 0, **overrides) -> TRNet:
    torch.manual_seed(seed)
    net = TRNet(**{**SMALL, **overrides}).eval()
    for p in net.parameters():  # weights large enough that every path (the offsets too) matters
        p.data.normal_(0, 0.1)
    return net


def derainer_for(net: TRNet, **options) -> TemporalDerainer:
    return TemporalDerainer(DerainModule(net, name="trnet-test", arch="trnet"), device="cpu",
                            precision="fp32", **options)


@pytest.fixture
def trnet_home(tmp_path, monkeypatch):
    """A STREAMRAIN_HOME holding ``trnet-test`` (random-init weights, float32)."""
    monkeypatch.setenv("STREAMRAIN_HOME", str(tmp_path / "home"))
    from streamrain.zoo import user_dir

    save_weights(user_dir() / "trnet-test.safetensors", small_trnet(), arch="trnet", arch_args=SMALL,
                 dtype=torch.float32)
    return tmp_path / "home"


def moving_clip(frames: int, width: int = 64, height: int = 48) -> np.ndarray:
    return np.stack([pattern(i, width, height) for i in range(frames)])


def other_scene(frames: int, width: int = 64, height: int = 48, seed: int = 5) -> np.ndarray:
    """A dark, textured scene nothing like ``pattern``'s bright gradients, drifting right."""
    base = np.random.default_rng(seed).integers(0, 90, (height, width + frames, 3), dtype=np.uint8)
    return np.stack([base[:, i:i + width] for i in range(frames)])


def run_stream(derainer, frames: np.ndarray, *, batch: int, times_s=None, causal=None, **submit):
    """Every output of one stream, fed ``batch`` frames at a time, as (tag, pixels)."""
    stream = derainer.stream(causal=causal)
    out = []
    for i in range(0, len(frames), batch):
        times = None if times_s is None else times_s[i:i + batch]
        out += stream.collect(stream.submit(frames[i:i + batch], tags=list(range(i, i + len(frames[i:i + batch]))),
                                            times_s=times, **submit))
    return out + stream.flush(), stream


def as_u8(x: torch.Tensor) -> np.ndarray:
    return (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def reference(net: TRNet, frames: np.ndarray, *, causal: bool = False) -> np.ndarray:
    """The training form on the whole clip at once."""
    with torch.inference_mode():
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
        return as_u8(net.forward_clips(x[None], causal=causal)[0])


def max_delta(a, b) -> int:
    return int(np.abs(np.asarray(a).astype(int) - np.asarray(b).astype(int)).max())


# -- the network -------------------------------------------------------------------------------

def test_window_replicates_edges_and_causal_mode_repeats_frame_t():
    assert window(0, first=0, last=9, past=2, future=2) == [0, 0, 0, 1, 2]
    assert window(9, first=0, last=9, past=2, future=2) == [7, 8, 9, 9, 9]
    assert window(5, first=4, last=5, past=2, future=2) == [4, 4, 5, 5, 5]
    assert window(5, first=0, last=9, past=2, future=2, causal=True) == [3, 4, 5, 5, 5]


def test_trnet_is_registered_and_costs_at_most_1_4_srnet_per_output_frame():
    assert ARCHS["trnet"] is TRNet and TRNet.temporal
    _, trnet_gmac = cost("trnet", {})
    _, srnet_gmac = cost("srnet", {"half_channels": 24, "quarter_channels": 48, "blocks": 3})
    assert srnet_gmac < trnet_gmac <= 1.4 * srnet_gmac
    # Per output frame: longer clips cost that much more per extra frame (features counted once).
    assert cost("trnet", {"future": 0})[1] < trnet_gmac


def test_neighbours_change_the_output_and_alignment_is_trained_end_to_end():
    net = small_trnet()
    clip = torch.from_numpy(moving_clip(5)).permute(0, 3, 1, 2).float() / 255
    alone = net.forward_clips(clip[2:3][None])[0, 0]
    in_clip = net.forward_clips(clip[None])[0, 2]
    assert (alone - in_clip).abs().max() > 0.01
    in_clip.mean().backward()
    assert net.flow2.weight.grad.abs().sum() > 0 and net.flow1.weight.grad.abs().sum() > 0


def textured_picture(height: int, width: int, seed: int = 3) -> torch.Tensor:
    """(3, H, W): smooth random texture (blurred noise), something a phase correlation can lock on."""
    noise = torch.rand(1, 3, height // 4, width // 4, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False)[0].clamp(0, 1)


@pytest.mark.parametrize("dx, dy", [(16, 8), (-12, 4), (6, -20)])
def test_global_shift_finds_how_far_the_picture_moved(dx, dy):
    big = textured_picture(240, 320)
    t = big[:, 40:200, 40:280]
    n = big[:, 40 - dy:200 - dy, 40 - dx:280 - dx]  # the scene moved by (dx, dy) pixels
    spectra = coarse_spectrum(torch.stack([t, n]))
    shift = global_shift(spectra[:1], spectra[1:], 160, 240)[0]
    assert torch.allclose(shift, torch.tensor([dx / 4, dy / 4]), atol=0.35)  # quarter-resolution px


@pytest.mark.parametrize("dx, dy", [(3, 1), (-5, 2), (7, -4), (2, 6)])
def test_a_training_patch_is_aligned_to_a_fraction_of_a_pixel(dx, dy):
    # A 128-pixel patch is correlated on a finer grid than a whole frame (``spectrum_pool``): at
    # 8 px a sample these shifts came out up to 0.86 px wrong, which rounds to the wrong pixel.
    big = textured_picture(256, 384, seed=5)
    t = big[:, 64:192, 128:256]
    n = big[:, 64 - dy:192 - dy, 128 - dx:256 - dx]
    spectra = coarse_spectrum(torch.stack([t, n]))
    shift = 4 * global_shift(spectra[:1], spectra[1:], 128, 128)[0]  # full-resolution px
    assert torch.allclose(shift, torch.tensor([float(dx), float(dy)]), atol=0.25)


def test_global_alignment_aligns_a_panning_clip_the_learned_flow_alone_does_not():
    big = textured_picture(160, 320)
    clip = torch.stack([big[:, 16:144, 100 - 8 * t:260 - 8 * t] for t in range(5)])  # 8 px a frame
    windows = [window(t, first=0, last=4, past=2, future=2) for t in range(5)]
    errors = {}
    for on in (False, True):
        net = TRNet(**SMALL, global_alignment=on).eval()  # learned flow at its zero start
        with torch.inference_mode():
            errors[on] = float(net.alignment_error(net.features(clip), clip, windows))
    assert errors[True] < 0.3 * errors[False]
    tiny = TRNet(**SMALL, global_alignment=True).eval()
    with torch.inference_mode():  # frames too small to tell a motion from: the learned flow only
        assert tiny.features(clip[:, :, :24, :24]).spectrum.shape == (5, 0)
        tiny.forward_clips(clip[None, :, :, :24, :24])


def test_translation_is_the_warp_of_a_constant_offset():
    value = textured_picture(24, 40)[None].repeat(3, 1, 1, 1)
    shifts = torch.tensor([[1.25, -0.5], [-3.75, 2.0], [0.0, 0.0]])
    offsets = shifts[:, :, None, None].expand(-1, -1, 24, 40)
    net = TRNet(**SMALL)
    assert torch.allclose(translate(value, shifts), net.warp(value, offsets), atol=1e-5)


def test_without_the_learned_flow_a_network_aligns_by_the_global_shift_alone():
    # A fresh network's learned flow starts at zero: with it or without, the same output.
    torch.manual_seed(0)
    with_flow = TRNet(**SMALL, global_alignment=True).eval()
    without = TRNet(**SMALL, global_alignment=True, learned_flow=False).eval()
    without.load_state_dict(with_flow.state_dict())
    big = textured_picture(96, 200)
    clip = torch.stack([big[:, :64, 60 - 6 * t:140 - 6 * t] for t in range(5)])[None]
    with torch.inference_mode():
        assert torch.allclose(without.forward_clips(clip), with_flow.forward_clips(clip), atol=1e-5)
        folded = without.inference_form(torch.float32)
        windows = [window(t, first=0, last=4, past=2, future=2) for t in range(5)]
        assert torch.allclose(folded.fuse_windows(clip[0], folded.features(clip[0]), windows),
                              without.forward_clips(clip)[0], atol=1e-5)


def test_luma_residuals_are_the_rain_where_the_scene_is_aligned():
    # (256 rows: on a 128-row picture of this smooth texture, correlated at 2 px a sample, the lone
    # bright streak below pulls the 16-px shift to frame 0 half a pixel off, and it rounds wrong)
    big = textured_picture(288, 480)
    clip = torch.stack([big[:, 16:272, 100 - 8 * t:420 - 8 * t] for t in range(5)])  # 8 px a frame
    rainy = clip.clone()
    rainy[2, :, 20:80, 60:62] += 0.3  # a streak on frame 2 only
    net = TRNet(**SMALL, global_alignment=True, luma_median=True).eval()
    with torch.inference_mode():
        feats = net.features(rainy)
        offline, causal, two_frames = (F.pixel_shuffle(net.luma_residuals(feats, [window(
            2, first=first, last=4, past=2, future=2, causal=c)], [2]), 2)[0, 0]  # at full resolution
            for first, c in ((0, False), (0, True), (2, False)))
        shot_of_one = net.luma_residuals(feats, [[2] * 5], [2])
    streak = torch.zeros(256, 320, dtype=torch.bool)
    streak[20:80, 60:62] = True
    inside = (slice(4, -4), slice(20, -20))  # away from the edges the pan brings in
    assert torch.allclose(offline[streak], torch.tensor(0.3), atol=0.02)  # the streak, as added
    assert offline[inside][~streak[inside]].abs().max() < 0.02  # the aligned scene cancels
    assert torch.allclose(causal[streak], torch.tensor(0.3), atol=0.02)  # from frames 1 and 0 there
    assert two_frames[streak].mean() > 0.25  # frames 3 and 4 at a shot's first frame
    assert not shot_of_one.any()  # no other frame: no evidence


def test_median_of_five_is_the_median():
    values = torch.randint(0, 4, (5, 10_000), generator=torch.Generator().manual_seed(0)).float()  # ties too
    assert torch.equal(median_of_five(*values), values.median(0).values)


def test_the_wide_residual_is_the_rain_where_a_streak_stays_two_frames():
    big = textured_picture(288, 480)
    clip = torch.stack([big[:, 16:272, 100 - 8 * t:420 - 8 * t] for t in range(5)])  # 8 px a frame
    rainy = clip.clone()
    rainy[2:4, :, 20:80, 60:62] += 0.3  # slow rain: the same streak on frames 2 and 3
    net = TRNet(**SMALL, global_alignment=True, luma_median=True, wide_median=True).eval()
    with torch.inference_mode():
        feats = net.features(rainy)
        offline, causal = (F.pixel_shuffle(net.luma_residuals(feats, [window(
            2, first=0, last=4, past=2, future=2, causal=c)], [2]), 2)[0] for c in (False, True))
    streak = torch.zeros(256, 320, dtype=torch.bool)
    streak[20:80, 60:62] = True
    # (frame 3's streak is not under frame 2's once frame 3 is aligned: the pan moved the scene)
    three, five = offline[0], offline[1]
    assert torch.allclose(five[streak], torch.tensor(0.3), atol=0.02)  # three frames of five clean
    assert five[slice(4, -4), slice(40, -40)][~streak[4:-4, 40:-40]].abs().max() < 0.02
    assert torch.allclose(three[streak], torch.tensor(0.3), atol=0.02)  # t - 1 and t + 1 clean there
    assert not causal[1].any()  # no look-ahead: the centre three times of five, no evidence


def test_a_streak_that_stays_put_defeats_three_frames_not_five():
    still = textured_picture(128, 160)
    clip = still[None].repeat(5, 1, 1, 1)
    clip[2:4, :, 20:80, 60:62] += 0.3  # on t and t + 1: the median of three is the streak
    net = TRNet(**SMALL, global_alignment=True, luma_median=True, wide_median=True).eval()
    with torch.inference_mode():
        residual = F.pixel_shuffle(net.luma_residuals(net.features(clip), [[0, 1, 2, 3, 4]], [2]), 2)[0]
    assert residual[0, 20:80, 60:62].abs().max() < 1e-6
    assert torch.allclose(residual[1, 20:80, 60:62], torch.tensor(0.3), atol=1e-5)


def test_a_trnet_with_the_wide_median_adopts_one_without_and_starts_as_it():
    narrow = small_trnet(global_alignment=True, luma_median=True)
    wide = TRNet(**SMALL, global_alignment=True, luma_median=True, wide_median=True).eval()
    wide.adopt(narrow)
    clip = torch.from_numpy(moving_clip(5)).permute(0, 3, 1, 2).float()[None] / 255
    with torch.inference_mode():
        assert torch.allclose(wide.forward_clips(clip), narrow.forward_clips(clip), atol=1e-6)
    with pytest.raises(ValueError, match="wide_median needs"):
        TRNet(**SMALL, luma_median=True, wide_median=True, past=2, future=1)


def test_a_trnet_with_the_luma_path_adopts_one_without_and_starts_as_it():
    plain = small_trnet(global_alignment=True)
    grown = TRNet(**SMALL, global_alignment=True, luma_median=True).eval()
    grown.adopt(plain)
    clip = torch.from_numpy(moving_clip(5)).permute(0, 3, 1, 2).float()[None] / 255
    with torch.inference_mode():
        assert torch.equal(grown.forward_clips(clip), plain.forward_clips(clip))
    with pytest.raises(ValueError, match="cannot adopt a TRNet of other widths"):
        TRNet(**{**SMALL, "value_channels": 4}, luma_median=True).adopt(plain)


# -- the streaming runtime ---------------------------------------------------------------------

@pytest.mark.parametrize("frames", [1, 2, 7])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("alignment", [{}, {"global_alignment": True},
                                       {"global_alignment": True, "learned_flow": False},
                                       {"global_alignment": True, "luma_median": True},
                                       {"global_alignment": True, "luma_median": True, "wide_median": True}])
def test_stream_matches_the_clip_whatever_the_batch(frames, causal, alignment):
    net = small_trnet(**alignment)
    clip = moving_clip(frames)
    expected = reference(net, clip, causal=causal)
    derainer = derainer_for(net)
    for batch in (1, 3, 8):
        out, _ = run_stream(derainer, clip, batch=batch, causal=causal)
        assert [tag for tag, _ in out] == list(range(frames))  # each frame once, in order
        assert max_delta(np.stack([p for _, p in out]), expected) <= 1
    assert max_delta(derainer(clip), reference(net, clip, causal=False)) <= 1


def test_cpu_workers_overlap_batches_and_give_the_same_frames():
    net = small_trnet()
    clip = moving_clip(11)
    derainer = derainer_for(net, cpu_workers=2)
    stream = derainer.stream()
    handles = [stream.submit(clip[i:i + 2], tags=list(range(i, min(11, i + 2)))) for i in range(0, 11, 2)]
    out = [item for handle in handles for item in stream.collect(handle)] + stream.flush()
    derainer.close()
    assert [tag for tag, _ in out] == list(range(11))
    assert max_delta(np.stack([p for _, p in out]), reference(net, clip)) <= 1


def test_each_frame_s_features_are_computed_once():
    derainer = derainer_for(small_trnet())
    computed = []
    features = derainer.net.features  # the network the runtime runs (its inference form)
    derainer.net.features = lambda x: computed.append(len(x)) or features(x)
    out, _ = run_stream(derainer, moving_clip(10), batch=3)
    assert len(out) == 10 and sum(computed) == 10  # not 10 x window


def test_look_ahead_delays_outputs_and_causal_mode_does_not():
    derainer = derainer_for(small_trnet())
    clip = moving_clip(4)
    offline, causal = derainer.stream(), derainer.stream(causal=True)
    assert offline.collect(offline.submit(clip[:1])) == []  # frame 0 waits for frames 1 and 2
    assert [tag for tag, _ in offline.collect(offline.submit(clip[1:3]))] == [0]
    assert [tag for tag, _ in offline.flush()] == [1, 2]
    assert [tag for tag, _ in causal.collect(causal.submit(clip[:1]))] == [0]
    with pytest.raises(RuntimeError, match="not yet collected"):
        offline.submit(clip[3:]), offline.flush()


def test_a_scene_cut_restarts_the_window():
    net = small_trnet()
    first, second = moving_clip(6), other_scene(5)
    both = np.concatenate([first, second])
    derainer = derainer_for(net)
    out, stream = run_stream(derainer, both, batch=4)
    assert stream.shots == 2
    after_cut = np.stack([p for _, p in out[6:]])
    alone, _ = run_stream(derainer, second, batch=4)
    assert max_delta(after_cut, np.stack([p for _, p in alone])) <= 1
    before_cut = np.stack([p for _, p in out[:6]])
    assert max_delta(before_cut, reference(net, first)) <= 1
    # Without the cut test the first shot's frames reach into the second: the test can fail.
    blind, _ = run_stream(derainer_for(net, scene_cuts=False), both, batch=4)
    assert max_delta(blind[6][1], out[6][1]) > 1


@pytest.mark.parametrize("boundary", ["pts gap", "reconnect", "reset"])
def test_pts_gaps_reconnects_and_reset_restart_the_window(boundary):
    net = small_trnet()
    clip = moving_clip(8)  # one scene: only the boundary under test can split it
    times_s = [i * 0.04 for i in range(8)]
    derainer = derainer_for(net)
    stream = derainer.stream()
    out = stream.collect(stream.submit(clip[:5], times_s=times_s[:5]))
    if boundary == "reset":
        stream.reset()
    later = [t + (1.0 if boundary == "pts gap" else 0.0) for t in times_s[5:]]
    flags = [boundary == "reconnect", False, False]
    out += stream.collect(stream.submit(clip[5:], times_s=later, discontinuous=flags)) + stream.flush()
    assert stream.shots == 2 and [tag for tag, _ in out] == list(range(8))
    expected = np.concatenate([reference(net, clip[:5]), reference(net, clip[5:])])
    assert max_delta(np.stack([p for _, p in out]), expected) <= 1


def test_a_size_change_mid_stream_restarts_the_window():
    net = small_trnet()
    big, small = moving_clip(4, 64, 48), moving_clip(6, 64, 48)[:, 8:40, 4:52]  # same scene, cropped
    derainer = derainer_for(net)
    stream = derainer.stream()
    out = stream.collect(stream.submit(big)) + stream.collect(stream.submit(small[:3]))
    out += stream.collect(stream.submit(small[3:])) + stream.flush()
    assert stream.shots == 2 and len(out) == 10
    assert max_delta(np.stack([p for _, p in out[:4]]), reference(net, big)) <= 1
    assert max_delta(np.stack([p for _, p in out[4:]]), reference(net, small)) <= 1


class BlockingSource:
    """Yields frame t + 1 only once output t has been written (or fails after a timeout)."""

    def __init__(self, frames: np.ndarray):
        self.frames = frames
        self.written = [threading.Event() for _ in frames]
        self.read_before_output: list[int] = []
        info = type("Info", (), {})()
        self.info, self.other_streams = info, ()

    def items(self):
        for t, pixels in enumerate(self.frames):
            if t > 0 and not self.written[t - 1].wait(timeout=20):
                self.read_before_output.append(t)
                return
            yield Frame(pixels, t * 40, Fraction(1, 1000), t)


class RecordingSink:
    def __init__(self, source: BlockingSource):
        self.source, self.frames = source, []

    def start(self, info, other_streams=()):
        pass

    def write(self, frame: Frame):
        self.frames.append(frame)
        self.source.written[frame.index].set()

    def write_other(self, packet):
        pass

    def commit(self):
        pass

    def abort(self):
        pass


@pytest.mark.parametrize("policy", ["live", "offline"])
def test_causal_mode_never_reads_a_frame_after_t(policy):
    net = small_trnet()
    clip = moving_clip(6)
    source = BlockingSource(clip)
    sink = RecordingSink(source)
    # Live runs are causal whatever the derainer's default; offline asks for it (--causal).
    derainer = derainer_for(net, causal=policy == "offline")
    Pipeline(source, derainer, sink, batch=1, policy=policy).run()
    assert source.read_before_output == []
    assert [f.index for f in sink.frames] == list(range(6))
    assert [f.pts for f in sink.frames] == [t * 40 for t in range(6)]
    assert max_delta(np.stack([f.rgb_u8 for f in sink.frames]), reference(net, clip, causal=True)) <= 1


@pytest.mark.parametrize("options", [{}, {"global_alignment": True, "luma_median": True}, {"global_alignment": True, "luma_median": True, "wide_median": True}])
def test_inference_form_is_the_training_form_in_fp32(options):
    net = small_trnet(**options)
    folded = net.inference_form(torch.float32)
    x = (torch.from_numpy(moving_clip(7)).permute(0, 3, 1, 2).float() / 255).contiguous(
        memory_format=torch.channels_last)
    windows = [window(t, first=0, last=6, past=2, future=2) for t in range(7)]
    with torch.inference_mode():
        expected = net.fuse_windows(x, net.features(x), windows)
        got = folded.fuse_windows(x, folded.features(x), windows)
    assert (expected - x).abs().max() > 0.05 and torch.allclose(got, expected, atol=1e-5)


def test_inference_form_in_bf16_stays_close_to_fp32_on_a_moving_clip():
    # The neighbours are warped (offsets of a pixel or more): torch's bf16 grid_sample on a
    # channels_last input returned garbage (1e16) on exactly this path.
    net = small_trnet()
    x = (torch.from_numpy(moving_clip(7)).permute(0, 3, 1, 2).float() / 255).contiguous(
        memory_format=torch.channels_last)
    windows = [window(t, first=0, last=6, past=2, future=2) for t in range(7)]
    with torch.inference_mode():
        expected = net.fuse_windows(x, net.features(x), windows)
        folded = net.inference_form(torch.bfloat16)
        got = folded.fuse_windows(x, folded.features(x), windows)
        offsets = folded.flow(folded.features(x).motion_as_centre[:1], folded.features(x).motion_as_neighbour[1:2])
    assert offsets.abs().max() > 0.5  # the warps really move the values
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    assert (got - expected).abs().mean() < 0.01


@pytest.mark.parametrize("verdict, expected", [(frozenset({"bf16"}), torch.bfloat16),
                                               (frozenset(), torch.float32), (None, torch.float32)])
def test_temporal_derainer_follows_the_cards_precision_verdict(monkeypatch, verdict, expected):
    import streamrain.runtime.derainer as derainer_module

    monkeypatch.setattr(derainer_module, "cpu_has_bf16", lambda: True)
    module = DerainModule(small_trnet(), name="trnet-test", arch="trnet", reduced_precisions=verdict)
    assert TemporalDerainer(module, device="cpu", precision="auto").dtype == expected


def test_temporal_derainer_refuses_other_backends():
    with pytest.raises(ModelError, match="allowed: eager"):
        derainer_for(small_trnet(), backend="compile")


# -- shot boundaries ---------------------------------------------------------------------------

def test_shot_boundaries_name_their_reason():
    shots = ShotBoundaries(max_gap_s=0.5)
    a, b = moving_clip(2), other_scene(1)
    assert shots.starts_shot(a[0], 0.0) == "first frame"
    assert shots.starts_shot(a[1], 0.04) is None
    assert shots.starts_shot(a[0], 0.08, discontinuous=True) == "source discontinuity"
    assert shots.starts_shot(a[1], 0.70).startswith("timestamp gap")
    assert shots.starts_shot(a[0], 0.60).startswith("timestamp gap")  # backwards: a restart
    assert shots.starts_shot(a[0][:32], 0.64) == "size change"
    assert shots.starts_shot(a[1][:32], 0.68) is None
    assert shots.starts_shot(b[0][:32], 0.72) == "scene cut"
    with pytest.raises(ValueError, match="max_gap_s"):
        ShotBoundaries(max_gap_s=0)


def test_scene_cut_test_on_real_sequences():
    data = needs_shared("nturain-a1", "rainy")
    vid4 = needs_shared("clean", "video-vid4", "walk")

    def read(path):
        with av.open(str(path)) as c:
            return next(c.decode(video=0)).to_ndarray(format="rgb24")

    rainy = [read(p) for p in sorted(data.glob("*"))[:20]]
    shots = ShotBoundaries()
    assert [shots.starts_shot(f) for f in rainy] == ["first frame"] + [None] * 19  # rain and camera motion
    other = read(sorted(vid4.glob("*"))[0])  # 720x480: cropped to NTURain's 640x480, no size change
    cropped = other[:rainy[0].shape[0], :rainy[0].shape[1]]
    assert cropped.shape == rainy[0].shape and shots.starts_shot(cropped) == "scene cut"
    difference, histogram = scene_change(luma_thumbnail(rainy[-1]), luma_thumbnail(rainy[-1]))
    assert difference == histogram == 0.0


# -- decoded 4:2:0 frames ------------------------------------------------------------------------

BT601 = YuvMatrix(5, False)


def panning_i420(frames: int, yuv: YuvMatrix, width: int = 64, height: int = 48) -> torch.Tensor:
    """A textured scene panning 3 px a frame as I420 codes, its colours well inside the RGB cube."""
    big = textured_picture(height, width + 3 * frames) * 0.6 + 0.2
    return i420_of_rgb(torch.stack([big[:, :, 3 * t:3 * t + width] for t in range(frames)]).double(), yuv)


@pytest.mark.parametrize("yuv", [BT601, YuvMatrix(5, True)])
@pytest.mark.parametrize("alignment", [{"global_alignment": True}, {"global_alignment": True, "learned_flow": False},
                                       {"global_alignment": True, "luma_median": True}, {"global_alignment": True, "luma_median": True, "wide_median": True}])
def test_yuv420_form_and_stream_are_the_rgb_round_trip_in_fp32(yuv, alignment):
    torch.manual_seed(0)
    net = TRNet(**SMALL, **alignment).eval()
    for p in net.parameters():
        p.data.normal_(0, 0.03)
    i420 = panning_i420(7, yuv)
    with torch.inference_mode():  # through RGB in float64: the training form, unclamped here
        rgb_out = net.double().forward_clips(rgb_of_i420(i420, yuv)[None])[0]
    net.float()
    assert 0 < rgb_out.min() and rgb_out.max() < 1  # no RGB clamp binds, so the two forms agree
    expected = i420_of_rgb(rgb_out, yuv).numpy()
    assert np.abs(expected.astype(int) - i420.numpy()).mean() > 2  # the net changes the picture
    form = net.yuv420_form(torch.float32, yuv)
    windows = [window(t, first=0, last=6, past=2, future=2) for t in range(7)]
    with torch.inference_mode():
        bordered = form.codes(i420)
        out = i420_from_codes(form.fuse_windows(bordered[..., 1:-1, 1:-1], form.features(bordered), windows))
    diff = np.abs(out.numpy().astype(int) - expected)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-2  # float32 against float64: ties only
    derainer = derainer_for(net)
    assert derainer.accepts_yuv420
    for batch in (1, 3, 8):  # the runtime's window across batches, in 4:2:0 as in RGB
        got, _ = run_stream(derainer, i420.numpy(), batch=batch, yuv=yuv)
        assert [tag for tag, _ in got] == list(range(7))
        assert max_delta(np.stack([p for _, p in got]), out) == 0
    assert max_delta(derainer(i420.numpy(), yuv=yuv), out) == 0


def test_a_change_of_layout_or_matrix_ends_a_shot_and_the_cut_test_reads_y():
    i420 = panning_i420(3, BT601).numpy()
    rgb = np.stack([av.VideoFrame.from_ndarray(f, format="yuv420p").to_ndarray(
        format="rgb24", src_colorspace=5, src_color_range=1) for f in i420])
    assert np.abs(luma_thumbnail(i420[0], BT601) - luma_thumbnail(rgb[0])).mean() < 0.01
    shots = ShotBoundaries()
    reasons = [shots.starts_shot(i420[0], yuv=BT601), shots.starts_shot(i420[1], yuv=BT601),
               shots.starts_shot(i420[2], yuv=YuvMatrix(1, False)), shots.starts_shot(rgb[2]),
               shots.starts_shot(rgb[2])]
    assert reasons == ["first frame", None, "size change", "size change", None]


def test_file_job_gives_the_video_default_4_2_0_as_decoded_and_agrees_with_the_rgb_path(
        clip, tmp_path, monkeypatch):
    layouts = []
    submit = FrameStream.submit

    def recording(self, batch, **kwargs):
        layouts.append("yuv420" if kwargs.get("yuv") else "rgb")
        return submit(self, batch, **kwargs)

    monkeypatch.setattr(FrameStream, "submit", recording)
    src = clip("in.mp4", width=64, height=48, frames=9)
    results = {}
    for yuv420 in (True, False):
        layouts.clear()
        out = tmp_path / f"out-{yuv420}.mp4"
        stats = derain_file(str(src), out, options=RunOptions(yuv420=yuv420, batch=4))
        assert stats.frames_out == 9 and stats.model == DEFAULT_VIDEO_MODEL
        assert set(layouts) == {"yuv420" if yuv420 else "rgb"}
        results[yuv420] = probe(out)
    a, b = results[True]["video"], results[False]["video"]
    assert a["pts_s"] == b["pts_s"] == probe(src)["video"]["pts_s"]
    for x, y in zip(a["rgb"], b["rgb"]):
        mse = np.mean((x.astype(float) - y.astype(float)) ** 2)
        assert 10 * np.log10(255 ** 2 / mse) > 35


# -- the product -------------------------------------------------------------------------------

def lossless(*extra: str) -> list[str]:
    return ["--codec", "ffv1", "--pix-fmt", "bgr0", "--precision", "fp32", "--no-progress", *extra]


def decoded(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_output_is_the_same_whatever_batch_queue_and_workers(trnet_home, clip, tmp_path):
    src = clip("in.mp4", frames=11, audio=False)
    out = tmp_path / "cli.mkv"
    assert main([str(src), str(out), "--model", "trnet-test", "--batch", "3", "--cpu-workers", "2",
                 *lossless()]) == 0
    outputs = [decoded(out)]
    for batch, queue_frames, workers in [(1, 1, 1), (8, 20, 2), (4, 1, 1), (2, 3, 2)]:
        out = tmp_path / f"out-{batch}-{queue_frames}-{workers}.mkv"
        stats = derain_file(str(src), out, options=RunOptions(
            model="trnet-test", batch=batch, queue_frames=queue_frames, cpu_workers=workers,
            codec="ffv1", pix_fmt="bgr0", precision="fp32"))
        assert stats.frames_in == stats.frames_out == 11
        outputs.append(decoded(out))
    assert max_delta(outputs[0], decoded(src)) > 5  # the model changed the frames
    for other in outputs[1:]:
        assert other.shape == outputs[0].shape and max_delta(other, outputs[0]) <= 1


@pytest.mark.parametrize("frames", [1, 2])
def test_one_and_two_frame_videos(trnet_home, clip, tmp_path, frames):
    src = clip(f"{frames}.mp4", frames=frames, audio=False)
    out = tmp_path / f"{frames}.mkv"
    assert main([str(src), str(out), "--model", "trnet-test", *lossless()]) == 0
    got = decoded(out)
    expected = reference(small_trnet(), decoded(src))  # first and last frames: edges replicated
    assert got.shape[0] == frames and max_delta(got, expected) <= 1


def test_cli_keeps_every_pts_and_copies_the_audio(trnet_home, clip, tmp_path):
    pts_ms = [0, 40, 80, 200, 210, 220, 500, 540, 1000, 1033]
    src = clip("vfr.mp4", pts_ms=pts_ms)
    out = tmp_path / "out.mp4"
    assert main([str(src), str(out), "--model", "trnet-test", "--batch", "3", "--no-progress"]) == 0
    assert probe(out)["video"]["pts_s"] == pytest.approx([ms / 1000 for ms in pts_ms], abs=1e-3)

    def audio_packets(path):
        with av.open(str(path)) as c:
            return [bytes(p) for p in c.demux(audio=0) if p.size]

    assert audio_packets(out) == audio_packets(src)


def test_models_list_marks_temporal_models(trnet_home, capsys):
    import json

    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["trnet-test"]["temporal"] is True and rows["srnet-v3"]["temporal"] is False


def test_live_derainer_of_a_temporal_model_is_causal(trnet_home):
    live = make_derainer(RunOptions(model="trnet-test"), live=True)
    offline = make_derainer(RunOptions(model="trnet-test", cpu_workers=1))
    assert isinstance(live, TemporalDerainer) and live.causal and live.latency_frames == 0
    assert not offline.causal and offline.latency_frames == 2
    assert live(moving_clip(1)).shape == (1, 48, 64, 3)  # the live session's warm-up call


@pytest.mark.parametrize("causal", [False, True])
def test_eval_scores_a_sequence_through_the_model_s_window(trnet_home, tmp_path, causal):
    from PIL import Image

    from streamrain.train.evaluate import _Scores

    clean = moving_clip(7)
    rainy = clean.copy()
    rainy[:, :, ::5] = 255  # a streak every 5th column
    for kind, frames in (("rainy", rainy), ("clean", clean)):
        (tmp_path / kind).mkdir()
        for t, frame in enumerate(frames):
            Image.fromarray(frame).save(tmp_path / kind / f"{t:03d}.png")
    report = tmp_path / "eval.json"
    assert main(["eval", "--model", "trnet-test", "--rainy", str(tmp_path / "rainy"), "--clean",
                 str(tmp_path / "clean"), "--sequence", "--precision", "fp32", "--json", str(report),
                 *(["--causal"] if causal else [])]) == 0
    got = __import__("json").loads(report.read_text())

    def scores_of(outputs: np.ndarray) -> dict:
        scores = _Scores(temporal=True)
        for r, c, o in zip(rainy, clean, outputs):
            scores.add(*(torch.from_numpy(a).permute(2, 0, 1) for a in (r, c, o)))
        return scores.means()

    windowed = scores_of(reference(small_trnet(), rainy, causal=causal))
    alone = scores_of(np.concatenate([reference(small_trnet(), rainy[t:t + 1]) for t in range(len(rainy))]))
    for key in ("psnr_y", "ssim_y", "temporal_error"):
        assert got[key] == pytest.approx(windowed[key], abs=2e-3)
    # The neighbours were used, not each frame alone (which random weights change little but clearly).
    assert abs(got["temporal_error"] - alone["temporal_error"]) > 0.05


def test_eval_refuses_causal_for_a_single_frame_model(capsys):
    assert main(["eval", "--model", "srnet-v3", "--rainy", "x", "--clean", "y", "--causal"]) == 1
    assert "--causal: model srnet-v3 is not temporal" in capsys.readouterr().err
