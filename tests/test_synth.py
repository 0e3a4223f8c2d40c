"""Rain synthesis: each component of heavy and real rain does what it says, can be switched off, and
the whole is deterministic for a seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamrain.train.camera import jpeg_compress
from streamrain.train.recipe import RecipeError, load_recipe
from streamrain.train.synth import RainMix, RainParams, add_rain, rain_from_dict

MODELS = Path(__file__).resolve().parents[1] / "models"
NO_STREAKS = dict(density=(0.0, 0.0), layers=(1, 1))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _scene(seed: int = 0, size: int = 64) -> torch.Tensor:
    """A smooth picture with structure: blurred noise in [0.2, 0.8]."""
    x = torch.rand(2, 3, size // 8, size // 8, generator=_gen(seed))
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    return 0.2 + 0.6 * x.clamp(0, 1)


def test_synthesis_is_deterministic_for_a_seed_with_every_component_on():
    mix = load_recipe(MODELS / "srnet-v4.toml").rain
    clean = _scene()
    a, b = add_rain(clean, mix, _gen(7)), add_rain(clean, mix, _gen(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, add_rain(clean, mix, _gen(8)))
    assert a.min() >= 0 and a.max() <= 1


def test_every_component_off_leaves_the_scene_untouched():
    clean = _scene()
    assert torch.equal(add_rain(clean, RainParams(**NO_STREAKS), _gen()), clean)


def test_a_uniform_veil_lowers_contrast_by_its_strength():
    clean = _scene()
    params = RainParams(**NO_STREAKS, veil=(0.4, 0.4), veil_probability=1.0, veil_light=(0.9, 0.9))
    rainy = add_rain(clean, params, _gen())
    # I = J t + A (1 - t) with t = 0.6 everywhere: every deviation from the mean shrinks to 0.6.
    ratio = rainy.std(dim=(2, 3)) / clean.std(dim=(2, 3))
    torch.testing.assert_close(ratio, torch.full_like(ratio, 0.6), atol=1e-4, rtol=0)
    torch.testing.assert_close(rainy, clean * 0.6 + 0.9 * 0.4, atol=1e-5, rtol=0)


def test_a_veil_varying_with_depth_is_thicker_at_the_top():
    clean = torch.full((4, 3, 64, 64), 0.2)
    params = RainParams(**NO_STREAKS, veil=(0.4, 0.4), veil_probability=1.0, veil_depth_variation=1.0)
    haze = add_rain(clean, params, _gen()) - clean
    assert (haze[:, :, :16].mean(dim=(1, 2, 3)) > haze[:, :, -16:].mean(dim=(1, 2, 3))).all()


def _direction_spread(rain: torch.Tensor) -> float:
    """Change along the rows over change along the columns: ~0 for vertical streaks only."""
    dy = (rain[..., 1:, :] - rain[..., :-1, :]).abs().mean()
    dx = (rain[..., :, 1:] - rain[..., :, :-1]).abs().mean()
    return float(dy / dx)


def test_rain_from_several_directions():
    clean = torch.zeros(4, 3, 96, 96)
    one_way = RainParams(layers=(3, 3), angle_deg=(0.0, 0.0), direction_jitter_deg=0.0, density=(0.002, 0.002),
                         length_px=(30.0, 30.0), brightness=(0.3, 0.3))
    several = RainParams(**{**one_way.__dict__, "multi_direction_probability": 1.0,
                            "multi_direction_spread_deg": 40.0})
    assert _direction_spread(add_rain(clean, one_way, _gen())) < 0.15  # measured 0.07
    assert _direction_spread(add_rain(clean, several, _gen())) > 0.25  # measured 0.31


def test_near_layer_is_wide_and_switches_off():
    clean = torch.zeros(2, 3, 96, 96)
    near = RainParams(**NO_STREAKS, near_probability=1.0, near_density=(0.001, 0.001),
                      angle_deg=(0.0, 0.0), near_blur_px=(2.0, 2.0), near_width_sigma_px=(1.5, 1.5))
    far = RainParams(layers=(1, 1), density=(0.001, 0.001), angle_deg=(0.0, 0.0), width_sigma_px=(0.3, 0.3))
    near_rain = add_rain(clean, near, _gen())[:, 0]
    far_rain = add_rain(clean, far, _gen())[:, 0]
    assert near_rain.max() > 0.05
    # Out of focus and wide: for the same number of drops, lit over many more columns.
    lit = lambda r: (r.amax(dim=1) > 0.01).float().mean()  # noqa: E731
    assert lit(near_rain) > 2 * lit(far_rain)
    assert torch.equal(add_rain(clean, RainParams(**{**near.__dict__, "near_probability": 0.0}), _gen()), clean)


def test_splashes_land_on_the_lower_half():
    clean = torch.zeros(2, 3, 64, 64)
    params = RainParams(**NO_STREAKS, splash_probability=1.0, splash_density=(0.02, 0.02))
    splashes = add_rain(clean, params, _gen())
    assert splashes[:, :, :28].max() == 0
    assert splashes[:, :, 40:].mean() > 0.005


def test_occluding_streaks_cover_the_scene_instead_of_adding_to_it():
    clean = torch.full((2, 3, 64, 64), 0.5)
    added = RainParams(layers=(1, 1), density=(0.01, 0.01), brightness=(0.5, 0.5))
    occluding = RainParams(**{**added.__dict__, "occlusion_probability": 1.0})
    # The same draws: over grey 0.5, white rain of intensity a adds a, or covers: 0.5 (1 - a) + a.
    a = add_rain(clean, added, _gen()) - clean
    o = add_rain(clean, occluding, _gen()) - clean
    assert a.max() > 0.1
    unclipped = a < 0.49  # where 0.5 + a did not reach white
    torch.testing.assert_close(o[unclipped], a[unclipped] * 0.5, atol=1e-5, rtol=0)


def test_streaks_lit_by_the_scene_take_its_colour():
    clean = torch.zeros(2, 3, 64, 64)
    clean[:, 0] = 0.3  # a red scene
    white = RainParams(layers=(1, 1), density=(0.01, 0.01), brightness=(0.5, 0.5))
    lit = RainParams(**{**white.__dict__, "scene_light": (1.0, 1.0)})
    w = add_rain(clean, white, _gen()) - clean
    r = add_rain(clean, lit, _gen()) - clean
    unclipped = w[:, 0] < 0.69  # where the red channel did not reach 1
    torch.testing.assert_close(w[:, 0][unclipped], w[:, 2][unclipped])  # white: the same in every channel
    assert r[:, 0].sum() > 2 * r[:, 2].sum()


def test_sensor_noise_has_its_sigma_at_mid_grey():
    clean = torch.full((2, 3, 64, 64), 0.5)
    params = RainParams(**NO_STREAKS, noise_probability=1.0, noise_sigma=(0.02, 0.02))
    noise = add_rain(clean, params, _gen()) - clean
    assert abs(float(noise.std()) - 0.02) < 0.002


def test_jpeg_matches_a_real_jpeg_encoder():
    """The torch JPEG against libjpeg (Pillow) at the same quality on a natural photo."""
    image_module = pytest.importorskip("PIL.Image")
    data = pytest.importorskip("skimage.data")
    import io
    rgb = data.astronaut()[:256, :256]
    for quality in (30, 75):
        buf = io.BytesIO()
        image_module.fromarray(rgb).save(buf, format="JPEG", quality=quality, subsampling=2)
        real = np.asarray(image_module.open(buf).convert("RGB")).astype(np.float64)
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
        ours = jpeg_compress(x, torch.tensor([float(quality)]))[0].permute(1, 2, 0).numpy() * 255
        to_real = 10 * np.log10(255 ** 2 / ((ours - real) ** 2).mean())
        to_source = 10 * np.log10(255 ** 2 / ((real - rgb) ** 2).mean())
        # Far closer to libjpeg's result than libjpeg's result is to the original.
        assert to_real > to_source + 6, (quality, to_real, to_source)


def test_jpeg_switches_off_and_lowers_quality_with_quality():
    clean = _scene(size=64)
    off = RainParams(**NO_STREAKS, jpeg_probability=0.0)
    assert torch.equal(add_rain(clean, off, _gen()), clean)
    err = [float((jpeg_compress(clean, torch.tensor([q, q])) - clean).abs().mean()) for q in (20.0, 90.0)]
    assert err[0] > err[1] > 0


def test_a_mix_draws_each_kind_by_its_share():
    mix = rain_from_dict({"none": {"share": 3, **{k: list(v) for k, v in NO_STREAKS.items()}},
                          "veiled": {"share": 1, "density": [0.0, 0.0], "veil": [0.5, 0.5],
                                     "veil_probability": 1.0}})
    assert isinstance(mix, RainMix) and mix.shares == (0.75, 0.25)
    clean = torch.full((400, 3, 8, 8), 0.2)
    veiled = (add_rain(clean, mix, _gen()) - clean).abs().amax(dim=(1, 2, 3)) > 0
    assert 0.18 < float(veiled.float().mean()) < 0.32


@pytest.mark.parametrize("rain, message", [
    ('[rain.heavy]\nshare = 1\nvail = [0.1, 0.2]\n', r"\[rain.heavy\].*'vail'"),
    ('[rain]\ndensity = [0.1, 0.2]\n[rain.heavy]\nshare = 1\n', "not both"),
    ('[rain.heavy]\nshare = 0\n', "share must be > 0"),
])
def test_recipe_rain_errors_name_the_key(tmp_path, rain, message):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "x"\narch = "srnet"\n[data]\nclean_dirs = ["."]\n{rain}')
    with pytest.raises(RecipeError, match=message):
        load_recipe(recipe)
