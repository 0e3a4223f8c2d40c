"""Rain that moves like rain over clips, and the clean clips it falls on (real and pseudo-video)."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest
import torch

from conftest import make_clip
from streamrain.train.clips import camera_path, clip_patch, load_clip_pool
from streamrain.train.synth import RainParams
from streamrain.train.video_rain import add_rain_to_clip, sliding_layer

ONE_WAY = dict(angle_deg=(0.0, 0.0), direction_jitter_deg=0.0, layers=(1, 1))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _fall_per_frame(layer: torch.Tensor) -> int:
    """The downward shift (rows) that best maps frame 0 of a vertical layer onto frame 1."""
    a, b = layer[0, 0], layer[1, 0]
    scores = [float((a[: a.shape[0] - s] * b[s:]).sum() / (a[: a.shape[0] - s].norm() * b[s:].norm() + 1e-9))
              for s in range(0, 60)]
    return int(np.argmax(scores)), max(scores)


def test_streaks_persist_and_fall_faster_when_longer():
    short = RainParams(**ONE_WAY, density=(0.004, 0.004), length_px=(10.0, 10.0))
    long = RainParams(**ONE_WAY, density=(0.004, 0.004), length_px=(30.0, 30.0))
    fall_short, match_short = _fall_per_frame(sliding_layer(2, 96, 96, short, _gen(), 0.0))
    fall_long, match_long = _fall_per_frame(sliding_layer(2, 96, 96, long, _gen(), 0.0))
    # The same drops one frame later, lower down: a near-perfect match at the fall distance...
    assert match_short > 0.9 and match_long > 0.9
    # ...which is 1-2 streak lengths per frame (the shutter is open for part of the frame).
    assert 10 <= fall_short <= 20 and 30 <= fall_long <= 60


def test_a_short_shutter_makes_streaks_jump_further_between_frames():
    fast = RainParams(**ONE_WAY, density=(0.004, 0.004), length_px=(6.0, 6.0), fall_per_length=(6.0, 8.0))
    fall, match = _fall_per_frame(sliding_layer(2, 96, 96, fast, _gen(), 0.0))
    assert match > 0.9 and 36 <= fall <= 48  # 6-8 streak lengths of 6 px


def test_veil_and_lens_drops_stay_put_while_streaks_move():
    still = torch.rand(1, 3, 64, 64, generator=_gen(1)).expand(4, -1, -1, -1)
    static = RainParams(density=(0.0, 0.0), layers=(1, 1), veil=(0.3, 0.3), veil_probability=1.0,
                        veil_depth_variation=1.0, lens_drops=(2, 2), lens_drop_probability=1.0)
    rainy = add_rain_to_clip(still, static, _gen())
    assert (rainy - still).abs().max() > 0.1
    assert torch.equal(rainy[0], rainy[3])
    moving = RainParams(**{**static.__dict__, "density": (0.004, 0.004)})
    rainy = add_rain_to_clip(still, moving, _gen())
    assert not torch.equal(rainy[0], rainy[1])


def test_clip_rain_is_deterministic_for_a_seed():
    clip = torch.rand(3, 3, 48, 48, generator=_gen(2))
    params = RainParams(near_probability=1.0, splash_probability=1.0, noise_probability=1.0,
                        jpeg_probability=1.0, veil=(0.2, 0.4), veil_probability=1.0)
    assert torch.equal(add_rain_to_clip(clip, params, _gen(5)), add_rain_to_clip(clip, params, _gen(5)))
    assert not torch.equal(add_rain_to_clip(clip, params, _gen(5)), add_rain_to_clip(clip, params, _gen(6)))


def test_a_camera_path_moves_smoothly_over_a_photo():
    yy, xx = torch.meshgrid(torch.arange(400.0), torch.arange(600.0), indexing="ij")
    photo = (torch.stack([torch.sin(xx / 9), torch.cos(yy / 13), torch.sin((xx + yy) / 17)]) * 100 + 128)
    frames = camera_path(photo.to(torch.uint8), 6, 64, _gen(3))
    assert frames.shape == (6, 3, 64, 64) and 0 <= frames.min() and frames.max() <= 1
    steps = [(frames[t + 1] - frames[t]).abs().mean() for t in range(5)]
    unrelated = (frames[0] - camera_path(photo.to(torch.uint8), 1, 64, _gen(4))[0]).abs().mean()
    assert all(0 < s < unrelated for s in steps)


def test_clip_pool_reads_videos_and_frame_folders(tmp_path):
    videos, frames = tmp_path / "videos", tmp_path / "frames"
    videos.mkdir()
    make_clip(videos / "a.mp4", frames=8)
    make_clip(videos / "short.mp4", frames=2)
    (frames / "walk").mkdir(parents=True)
    (frames / "mixed").mkdir()
    for i in range(5):
        av.VideoFrame.from_ndarray(np.full((40, 56, 3), 20 * i, np.uint8), format="rgb24").save(
            str(frames / "walk" / f"{i:03d}.png"))
        size = (40, 56, 3) if i % 2 else (32, 32, 3)
        av.VideoFrame.from_ndarray(np.zeros(size, np.uint8), format="rgb24").save(str(frames / "mixed" / f"{i}.png"))
    pool = load_clip_pool([videos], [frames], max_side=64, min_frames=4)
    assert sorted(tuple(c.shape) for c in pool) == [(5, 3, 40, 56), (8, 3, 48, 64)]
    walk = next(c for c in pool if c.shape[0] == 5)
    assert [int(f[0, 0, 0]) for f in walk] == [0, 20, 40, 60, 80]  # in name order
    patch = clip_patch(walk, 3, 32, _gen())
    assert patch.shape == (3, 3, 32, 32)
    steps = patch[1:, 0].mean(dim=(1, 2)) - patch[:-1, 0].mean(dim=(1, 2))
    torch.testing.assert_close(steps, torch.full((2,), 20 / 255), atol=1e-3, rtol=0)  # consecutive


def test_synth_strip_of_consecutive_frames(tmp_path):
    from streamrain.cli import main
    clean = tmp_path / "clean"
    clean.mkdir()
    make_clip(clean / "a.mp4", width=96, height=64, frames=8)
    av.VideoFrame.from_ndarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8),
                               format="rgb24").save(str(clean / "photo.png"))
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "x"\narch = "srnet"\n[data]\nclean_dirs = ["{clean}"]\n[rain]\ndensity = [0.01, 0.01]\n')
    out = tmp_path / "strip.png"
    assert main(["synth", str(recipe), "--frames", "4", "--count", "2", "--out", str(out)]) == 0
    with av.open(str(out)) as c:
        frame = next(c.decode(video=0))
    assert (frame.width, frame.height) == (5 * 192, 2 * 192)  # clean + 4 rainy frames, 2 rows
    assert main(["synth", str(recipe), "--frames", "1", "--out", str(out)]) != 0
