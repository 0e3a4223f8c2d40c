"""Tiling of large frames: plans, feathering, seams that do not show, the memory estimate, --tile."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest
import torch

from streamrain.cli import main
from streamrain.config import build_options
from streamrain.errors import ConfigError
from streamrain.io.frames import YuvMatrix
from streamrain.runtime import derainer as derainer_module
from streamrain.runtime.derainer import Derainer
from streamrain.runtime.memory import bytes_per_pixel, remembered
from streamrain.runtime.tiling import TilePlan, feather, plan_for_budget, spans
from streamrain.zoo import load_model

from conftest import needs_shared


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def photo(width: int, height: int) -> np.ndarray:
    """A real rainy photo (Rain100L) stretched to the size: texture and rain streaks, not noise."""
    from PIL import Image

    rainy = sorted(needs_shared("rain100l", "rainy").iterdir())[0]
    return np.asarray(Image.open(rainy).convert("RGB").resize((width, height), Image.BICUBIC)).copy()


@pytest.mark.parametrize("length, tile, overlap, align", [(1080, 512, 32, 4), (1920, 500, 32, 1), (3840, 1280, 128, 128),
                                                          (100, 64, 32, 1), (512, 512, 32, 4)])
def test_spans_cover_the_frame_aligned_and_overlapping(length, tile, overlap, align):
    windows = spans(length, tile=tile, overlap=overlap, align=align)
    assert windows[0][0] == 0 and windows[-1][1] == length
    assert all(s % align == 0 and e - s <= tile for s, e in windows)
    assert all(a[1] - b[0] >= overlap and b[0] > a[0] for a, b in zip(windows, windows[1:]))


def test_feather_weights_sum_to_one_and_fade_towards_inner_edges():
    windows = spans(1000, tile=300, overlap=40, align=4)
    weights = feather(windows, 1000)
    total = torch.zeros(1000)
    for (s, e), w in zip(windows, weights):
        total[s:e] += w
    assert torch.allclose(total, torch.ones(1000), atol=1e-6)
    first, second = weights[0], weights[1]
    assert first[0] == 1 and first[-1] < 0.05 and second[0] < 0.05  # no fade at the frame's own edge


def test_budget_plan_whole_batch_then_frame_by_frame_then_tiles():
    kwargs = dict(bytes_per_pixel=100.0, overlap=32, align=4)
    assert plan_for_budget(1080, 1920, batch=4, budget_bytes=4 * 1080 * 1920 * 100, **kwargs) is None
    whole = plan_for_budget(1080, 1920, batch=4, budget_bytes=1080 * 1920 * 100, **kwargs)
    assert whole == TilePlan.whole(1080, 1920)
    budget = 300_000 * 100
    tiled = plan_for_budget(1080, 1920, batch=4, budget_bytes=budget, **kwargs)
    h, w = tiled.tile_hw
    assert tiled.count > 1 and h * w * 100 <= budget


def test_tile_option_is_validated_with_the_allowed_values():
    assert build_options(tile="512").tile == 512 and build_options(tile="AUTO").tile == "auto"
    for bad in ("big", "16", 0, True):
        with pytest.raises(ConfigError, match="tile must be auto, off or a tile size"):
            build_options(tile=bad)


@pytest.fixture(scope="module")
def srnet():
    return load_model("srnet-v3")


def test_srnet_tiles_do_not_show_at_1080p(srnet):
    frame = photo(1920, 1080)[None]
    whole = Derainer(srnet, device="cpu", precision="fp32", tile="off")(frame)
    tiled_derainer = Derainer(srnet, device="cpu", precision="fp32", tile=512)
    tiled = tiled_derainer(frame)
    assert tiled_derainer.tile_plan(frame.shape).count == 12
    assert psnr(tiled, whole) >= 45


def test_srnet_tiles_do_not_show_on_decoded_420_frames(srnet):
    rgb = photo(1920, 1080)
    i420 = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuv420p", dst_colorspace=1, dst_color_range=1).to_ndarray()[None]
    yuv = YuvMatrix(1, False)
    whole = Derainer(srnet, device="cpu", precision="fp32", tile="off")(i420, yuv=yuv)
    tiled_derainer = Derainer(srnet, device="cpu", precision="fp32", tile=500)
    tiled = tiled_derainer(i420, yuv=yuv)
    plan = tiled_derainer.tile_plan(i420.shape, yuv=yuv)
    assert plan.count > 1 and all(v % 4 == 0 for span in plan.rows + plan.cols for v in span[:1])
    assert psnr(tiled, whole) >= 45


def test_a_seed_network_tiles_do_not_show():
    # ReMAEN (squeeze-excitation: a global mean in every block) costs ~1.6 TMAC per megapixel, so
    # a small frame in small tiles; its tiles still see only part of the frame's statistics.
    remaen = load_model("remaen-v1")
    frame = photo(112, 64)[None]
    whole = Derainer(remaen, device="cpu", precision="fp32", tile="off")(frame)
    tiled_derainer = Derainer(remaen, device="cpu", precision="fp32", tile=72)
    tiled = tiled_derainer(frame)
    assert tiled_derainer.tile_plan(frame.shape).count == 2
    assert psnr(tiled, whole) >= 45


def test_activation_memory_is_measured_and_grows_with_the_frame(srnet):
    derainer = Derainer(srnet, device="cpu", precision="fp32")
    module = derainer.module
    per_pixel = []
    for side in (64, 128):
        frames = torch.zeros(1, side, side, 3, dtype=torch.uint8).permute(0, 3, 1, 2)
        per_pixel.append(bytes_per_pixel(lambda x: module(x.float().div_(255)), frames, module=module))
    # float32 input and output alone are 24 bytes a pixel; the network's maps add to them.
    assert per_pixel[0] > 24 and per_pixel[1] == pytest.approx(per_pixel[0], rel=0.05)


def test_measured_figures_are_remembered_on_disk(tmp_path):
    cache, calls = tmp_path / "activation_memory.json", []
    key = {"model": "m", "dtype": "torch.float32"}
    first = remembered(key, lambda: calls.append(1) or 123.0, cache)
    again = remembered(key, lambda: calls.append(1) or 999.0, cache)
    assert first == again == 123.0 and len(calls) == 1
    assert remembered({**key, "dtype": "torch.bfloat16"}, lambda: 61.0, cache) == 61.0
    cache.write_text("not json")
    assert remembered(key, lambda: 7.0, cache) == 7.0  # a damaged cache costs a measurement only


def test_auto_tiles_when_a_frame_would_not_fit(srnet, monkeypatch):
    monkeypatch.setattr(derainer_module, "budget_bytes", lambda device, share=1: 8 << 20)
    frames = photo(640, 360)[None].repeat(2, axis=0)
    auto = Derainer(srnet, device="cpu", precision="fp32")
    plan = auto.tile_plan(frames.shape)
    assert plan is not None and plan.count > 1
    whole = Derainer(srnet, device="cpu", precision="fp32", tile="off")(frames)
    assert psnr(auto(frames), whole) >= 45
    assert Derainer(srnet, device="cpu", tile="off").tile_plan(frames.shape) is None


def test_tile_flag_end_to_end_and_refused_values(clip, tmp_path, capsys):
    src = clip("in.mp4", width=160, height=96, frames=3, audio=False)
    out = tmp_path / "out.mp4"
    assert main([str(src), str(out), "--tile", "64", "--no-progress"]) == 0
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 3
    assert main([str(src), str(tmp_path / "bad.mp4"), "--tile", "huge", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("streamrain: error: tile must be auto, off or a tile size")
    assert not (tmp_path / "bad.mp4").exists()
