"""Training parts: metrics against scikit-image, rain synthesis, recipes, and a short resumable run."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from streamrain.train.metrics import psnr, rgb_to_y, ssim
from streamrain.train.recipe import RecipeError, load_recipe
from streamrain.train.synth import RainParams, add_rain, falling_rain
from streamrain.train.trainer import Trainer, export_checkpoint

MODELS = Path(__file__).resolve().parents[1] / "models"


def test_metrics_agree_with_scikit_image():
    metrics = pytest.importorskip("skimage.metrics", reason="scikit-image is the oracle (dev extra)")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 40, 52)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).round()
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    ref_ssim = metrics.structural_similarity(a.transpose(1, 2, 0), b.transpose(1, 2, 0), data_range=255,
                                             gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                             channel_axis=2)
    assert ssim(ta, tb) == pytest.approx(ref_ssim, abs=1e-4)
    assert psnr(ta, tb) == pytest.approx(metrics.peak_signal_noise_ratio(a, b, data_range=255), abs=0.01)
    ya, yb = rgb_to_y(ta), rgb_to_y(tb)
    ref_y = metrics.structural_similarity(ya[0].numpy(), yb[0].numpy(), data_range=255, gaussian_weights=True,
                                          sigma=1.5, use_sample_covariance=False)
    assert ssim(ya, yb) == pytest.approx(ref_y, abs=1e-4)


def test_luma_is_matlab_bt601():
    white, black = torch.full((3, 1, 1), 255.0), torch.zeros(3, 1, 1)
    assert rgb_to_y(white).item() == 235 and rgb_to_y(black).item() == 16


def test_rain_is_added_within_range_and_follows_density():
    gen = torch.Generator().manual_seed(0)
    clean = torch.full((4, 3, 64, 64), 0.4)
    light = add_rain(clean, RainParams(density=(0.001, 0.001), layers=(1, 1)), gen)
    heavy = add_rain(clean, RainParams(density=(0.01, 0.01), layers=(1, 1)), gen)
    assert light.min() >= 0.4 - 1e-6 and heavy.max() <= 1.0
    assert (heavy - clean).mean() > 3 * (light - clean).mean() > 0


def test_falling_rain_moves_between_frames():
    gen = torch.Generator().manual_seed(1)
    rain = falling_rain(3, 48, 48, RainParams(angle_deg=(0.0, 0.0), layers=(1, 1)), gen, speed_px=5.0)
    assert rain.shape == (3, 1, 48, 48)
    # Frame 1 is frame 0 moved down by 5 px (same drops, not new ones).
    assert torch.allclose(rain[1, 0, 5:], rain[0, 0, :-5], atol=1e-5)
    assert not torch.allclose(rain[1], rain[0])


@pytest.mark.parametrize("recipe", sorted(MODELS.glob("*.toml")), ids=lambda p: p.name)
def test_every_recipe_loads(recipe):
    r = load_recipe(recipe)
    assert r.name and r.optim.steps > 0


def test_recipe_unknown_key_is_named(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('name = "x"\narch = "srnet"\n[data]\nclean_dirs = []\nbatchsize = 3\n')
    with pytest.raises(RecipeError, match="unknown key\\(s\\) \\['batchsize'\\]"):
        load_recipe(path)
    path.write_text('name = "x"\narch = "srnet"\n[data]\nclean_dirs = ["."]\n[train]\nzero_after_init = ["tail"]\n')
    with pytest.raises(RecipeError, match="zero_after_init needs init_from"):
        load_recipe(path)


@pytest.fixture
def tiny_recipe(tmp_path):
    images = tmp_path / "clean"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        smooth = rng.integers(0, 256, (6, 8, 3)).astype(np.uint8).repeat(8, 0).repeat(8, 1)
        av.VideoFrame.from_ndarray(smooth, format="rgb24").save(str(images / f"{i}.png"))
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(f"""
name = "tiny"
arch = "srnet"
[arch_args]
half_channels = 8
quarter_channels = 8
blocks = 1
[data]
clean_dirs = ["{images}"]
min_side = 32
patch = 32
batch = 4
val_every_nth_image = 3
[optim]
lr = 3e-3
steps = 20
warmup_steps = 2
[train]
seed = 3
val_every = 10
val_batches = 1
bf16 = false
threads = 1
""")
    return load_recipe(recipe)


def test_short_run_learns_and_resumes_exactly(tiny_recipe, tmp_path):
    losses = []
    straight = Trainer(tiny_recipe, tmp_path / "straight", progress=lambda s, t, loss, r: losses.append(loss))
    result = straight.run()
    assert result.step == 20 and (tmp_path / "straight" / "model.safetensors").exists()
    assert np.mean(losses[-5:]) < np.mean(losses[:5])

    first = Trainer(tiny_recipe, tmp_path / "resumed", max_steps=10)
    assert first.run().step == 10 and first.checkpoint_path.exists()
    second = Trainer(tiny_recipe, tmp_path / "resumed")
    assert second.step == 10  # picked up from the checkpoint
    assert second.run().step == 20
    for a, b in zip(straight.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_export_writes_the_checkpoints_weights_mid_run(tiny_recipe, tmp_path):
    from streamrain.weights import build_from_weights, read_metadata

    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        export_checkpoint(tiny_recipe, tmp_path / "run", tmp_path / "early.safetensors")
    trainer = Trainer(tiny_recipe, tmp_path / "run", max_steps=7)
    trainer.run()
    assert export_checkpoint(tiny_recipe, tmp_path / "run", tmp_path / "early.safetensors") == 7
    header = read_metadata(tmp_path / "early.safetensors")
    assert header["steps"] == "7"
    # the cost `models list` shows, stored once (users copy only the .safetensors file)
    assert int(header["params"]) == sum(p.numel() for p in trainer.model.parameters())
    assert float(header["gmac_per_megapixel"]) > 0
    exported = build_from_weights(tmp_path / "early.safetensors").state_dict()
    for name, value in trainer.model.state_dict().items():
        assert torch.allclose(exported[name], value.half().float())
    with pytest.raises(ValueError, match="belongs to recipe 'tiny'"):
        export_checkpoint(replace(tiny_recipe, name="other"), tmp_path / "run", tmp_path / "x.safetensors")


def test_resume_refuses_another_recipes_checkpoint(tiny_recipe, tmp_path):
    Trainer(tiny_recipe, tmp_path / "run", max_steps=1).run()
    with pytest.raises(ValueError, match="belongs to recipe 'tiny'"):
        Trainer(replace(tiny_recipe, name="other"), tmp_path / "run")


def test_lens_drops_blur_patches_of_the_scene():
    gen = torch.Generator().manual_seed(2)
    clean = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    params = RainParams(density=(0.0, 0.0), lens_drops=(3, 3), lens_drop_probability=1.0,
                        lens_drop_radius_px=(6.0, 8.0))
    rainy = add_rain(clean, params, gen)
    changed = (rainy - clean).abs().amax(1) > 1e-6
    assert 0.02 < changed.float().mean() < 0.6  # a few drops, not the whole frame
    # Inside a drop the scene is defocused: far less pixel-to-pixel variation than the noise behind.
    assert rainy[0][:, changed[0]].std() < clean[0][:, changed[0]].std()


def test_synth_contact_sheet(tiny_recipe, tmp_path, capsys):
    from streamrain.cli import main
    sheet = tmp_path / "sheet.png"
    assert main(["synth", str(tiny_recipe.path), "--out", str(sheet), "--count", "4",
                 "--real", str(tiny_recipe.data.clean_dirs[0])]) == 0
    with av.open(str(sheet)) as c:
        frame = next(c.decode(video=0))
    assert (frame.width, frame.height) == (3 * 192, 4 * 192)  # a row per sample: clean | rainy | real


def test_fine_tuning_starts_from_shipped_weights(tiny_recipe, tmp_path):
    Trainer(tiny_recipe, tmp_path / "base").run()
    weights = tmp_path / "base" / "model.safetensors"
    tuned = replace(tiny_recipe, name="tuned", train=replace(tiny_recipe.train, init_from=weights))
    trainer = Trainer(tuned, tmp_path / "tuned")
    from streamrain.weights import build_from_weights
    for a, b in zip(trainer.model.state_dict().values(), build_from_weights(weights).state_dict().values()):
        assert torch.equal(a, b)
    assert trainer.step == 0  # new optimiser and schedule; only the weights carry over
    # A part named in zero_after_init starts at zero, the rest as the weights were.
    silent = replace(tuned, train=replace(tuned.train, zero_after_init=("tail",)))
    model = Trainer(silent, tmp_path / "silent").model
    assert not model.tail.weight.any() and not model.tail.bias.any()
    assert torch.equal(model.head.weight, build_from_weights(weights).head.weight)
    with pytest.raises(ValueError, match="zero_after_init: srnet has no parameter 'tale'"):
        Trainer(replace(tuned, train=replace(tuned.train, zero_after_init=("tale",))), tmp_path / "typo")
    # Another SRNet's weights are adopted where they fit (a deep stage added starts at zero) ...
    deeper = replace(tuned, arch_args={**tuned.arch_args, "deep_channels": 8, "deep_blocks": 1})
    adopted = Trainer(deeper, tmp_path / "deeper").model
    assert torch.equal(adopted.tail.weight, build_from_weights(weights).tail.weight)
    assert not adopted.deep_up.weight.any()
    # ... and refused where they do not.
    wider = replace(tuned, arch_args={**tuned.arch_args, "half_channels": 12})
    with pytest.raises(ValueError, match="cannot adopt an SRNet of 8/8 channels"):
        Trainer(wider, tmp_path / "wider")


def test_bgr_networks_are_trained_in_bgr(tiny_recipe, tmp_path):
    # DerainModule flips RGB to BGR for networks that declare it: training must feed them the same.
    trainer = Trainer(tiny_recipe, tmp_path / "run", max_steps=1)
    seen = []

    class Recorder(torch.nn.Module):
        input_order = "bgr"

        def forward(self, x):
            seen.append(x)
            return x * 0.5

    trainer.model = Recorder()
    rgb = torch.rand(1, 3, 4, 4)
    out = trainer.forward(rgb)
    assert torch.equal(seen[0], rgb.flip(1)) and torch.allclose(out, rgb * 0.5)


def test_stage_loss_supervises_every_stage_in_the_networks_channel_order(tiny_recipe, tmp_path):
    from streamrain.archs.sdsen import SDSEN

    recipe = replace(tiny_recipe, arch="sdsen", arch_args={"channels": 2, "stages": 3},
                     train=replace(tiny_recipe.train, stage_loss=True))
    trainer = Trainer(recipe, tmp_path / "run", max_steps=1)
    assert isinstance(trainer.model, SDSEN)
    for p in trainer.model.parameters():  # weights large enough that the stages differ
        p.data.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
    rainy, clean = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        stages = [s.flip(1) for s in trainer.model.forward_stages(rainy.flip(1))]  # SDSEN is BGR
        expected = sum(trainer.loss_fn(s, clean) for s in stages) / 3
        final_only = trainer.loss_fn(trainer.forward(rainy), clean)
        got = trainer.training_loss(rainy, clean)
    assert len(stages) == 3 and torch.allclose(stages[-1], trainer.forward(rainy))
    assert torch.allclose(got, expected) and not torch.allclose(got, final_only)
    srnet_recipe = replace(tiny_recipe, train=replace(tiny_recipe.train, stage_loss=True))
    with pytest.raises(RecipeError, match="stage_loss needs a multi-stage network"):
        Trainer(srnet_recipe, tmp_path / "run2", max_steps=1)


def test_batches_drawn_in_workers_train_and_a_time_budget_stops_with_a_checkpoint(tiny_recipe, tmp_path):
    result = Trainer(tiny_recipe, tmp_path / "run", max_steps=3, data_workers=1).run()
    assert result.step == 3 and not result.stopped_early
    timed = Trainer(tiny_recipe, tmp_path / "timed", max_steps=3, max_seconds=0.0).run()
    assert timed.step == 0 and timed.stopped_early
    assert (tmp_path / "timed" / "checkpoint.pt").exists()


def test_a_gpu_burst_runs_from_packed_crops_without_pyav(tiny_recipe, tmp_path):
    """What a lent GPU machine does (it has no PyAV): pack here, then train from the pack with av
    unimportable (on the CPU, for a few steps)."""
    import subprocess
    import sys
    from streamrain.train.pack import pack_clean_crops
    pack = tmp_path / "pack"
    crops, size = pack_clean_crops(list(tiny_recipe.data.clean_dirs), pack, side=32, budget_bytes=20_000)
    assert crops > 6 and size <= 20_000  # more crops than pictures: it goes round the pool again
    assert sum(p.stat().st_size for p in pack.iterdir()) == size
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_train.py"
    block_av = "import sys, runpy; sys.modules['av'] = None; sys.argv = sys.argv[1:]; " \
               "runpy.run_path(sys.argv[0], run_name='__main__')"
    run = subprocess.run([sys.executable, "-c", block_av, str(script), str(tiny_recipe.path), "--device", "cpu",
                          "--pack", str(pack), "--out", str(tmp_path / "out"), "--minutes", "0.1", "--workers", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "tiny" / "burst.json").read_text())
    assert summary["step"] > 0 and (tmp_path / "out" / "tiny" / "checkpoint.pt").exists()


# -- temporal models: clips ------------------------------------------------------------------------

@pytest.fixture
def clip_recipe(tiny_recipe, tmp_path):
    """tiny_recipe's photos plus one sequence of 8 frames (a folder), for a small TRNet on 5-frame clips."""
    sequence = tmp_path / "frames" / "seq"
    sequence.mkdir(parents=True)
    rng = np.random.default_rng(1)
    scene = rng.integers(0, 256, (8, 12, 3)).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    for t in range(8):
        av.VideoFrame.from_ndarray(np.roll(scene, 2 * t, axis=1)[:, :80], format="rgb24").save(
            str(sequence / f"{t:03d}.png"))
    text = tiny_recipe.path.read_text().replace('name = "tiny"', 'name = "tiny-clips"').replace(
        'arch = "srnet"', 'arch = "trnet"').replace(
        "half_channels = 8\nquarter_channels = 8\nblocks = 1",
        "half_channels = 8\nquarter_channels = 8\nkey_channels = 4\nvalue_channels = 4\nflow_channels = 4\n"
        "feat_blocks = 1\nfuse_blocks = 1").replace(
        "batch = 4", f'batch = 2\nframes = 5\nframe_dirs = ["{tmp_path / "frames"}"]').replace(
        "threads = 1", "threads = 1\ncausal_fraction = 0.5")
    path = tmp_path / "clips.toml"
    path.write_text(text)
    return load_recipe(path)


def test_a_temporal_model_trains_on_clips_and_resumes_exactly(clip_recipe, tmp_path):
    straight = Trainer(clip_recipe, tmp_path / "straight")
    rainy, clean = straight.pairs.batch(2, torch.Generator().manual_seed(0))
    assert rainy.shape == clean.shape == (2, 5, 3, 32, 32) and len(straight.pairs.clips) == 1
    assert straight.val_set[0][0].shape == (2, 5, 3, 32, 32)
    result = straight.run()
    assert result.step == 20 and math.isfinite(result.val_psnr)
    first = Trainer(clip_recipe, tmp_path / "resumed", max_steps=10)
    first.run()
    second = Trainer(clip_recipe, tmp_path / "resumed")
    assert second.run().step == 20
    for a, b in zip(straight.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_causal_batches_never_see_the_future(clip_recipe, tmp_path):
    trainer = Trainer(clip_recipe, tmp_path / "run")
    for p in trainer.model.parameters():  # weights that make every path matter
        p.data.normal_(0, 0.1)
    rainy, _ = trainer.pairs.batch(1, torch.Generator().manual_seed(0))
    later = rainy.clone()
    later[:, 3:] = torch.rand_like(later[:, 3:])  # frames 3 and 4 replaced
    with torch.no_grad():
        a, b = (trainer.forward(x, causal=True) for x in (rainy, later))
        offline = trainer.forward(later)
    assert torch.equal(a[:3], b[:3])  # frames 0..2 computed from frames up to their own only
    assert not torch.equal(offline[:3], a[:3])  # offline, frames 1 and 2 look ahead


def test_trnet_adopts_an_srnet_and_starts_as_exactly_that_srnet(clip_recipe, tmp_path):
    from streamrain.archs.srnet import SRNet

    srnet = SRNet(half_channels=8, quarter_channels=8, blocks=2).eval()
    for p in srnet.parameters():
        p.data.normal_(0, 0.1)
    weights = tmp_path / "srnet.safetensors"
    from streamrain.weights import save_weights
    save_weights(weights, srnet, arch="srnet", arch_args={"half_channels": 8, "quarter_channels": 8, "blocks": 2},
                 dtype=torch.float32)
    recipe = replace(clip_recipe, train=replace(clip_recipe.train, init_from=weights))
    trainer = Trainer(recipe, tmp_path / "run")
    clip = torch.rand(1, 5, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(trainer.model.eval().forward_clips(clip)[0], srnet(clip[0]), atol=1e-6)
    deeper = SRNet(half_channels=8, quarter_channels=8, blocks=3)
    save_weights(weights, deeper, arch="srnet", arch_args={"half_channels": 8, "quarter_channels": 8, "blocks": 3})
    with pytest.raises(ValueError, match="cannot adopt an SRNet of 8/8 channels and 3 blocks"):
        Trainer(recipe, tmp_path / "other")


def test_clip_recipes_are_checked(clip_recipe, tmp_path):
    text = clip_recipe.path.read_text()
    for change, message in [(('arch = "trnet"', 'arch = "srnet"'), "frames is for temporal models"),
                            (("frames = 5", "frames = 1"), "frames must be 0 \\(images\\) or at least 2")]:
        path = tmp_path / "bad.toml"
        path.write_text(text.replace(*change))
        with pytest.raises(RecipeError, match=message):
            load_recipe(path)


def test_temporal_loss_costs_flicker_not_motion(clip_recipe, tmp_path):
    from streamrain.train.losses import temporal_loss

    clean = torch.rand(2, 5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    moved = clean + 0.1  # the same changes from frame to frame: no flicker, however far from clean
    flicker = clean.clone()
    flicker[:, 1::2] += 0.1  # residue that comes and goes
    assert temporal_loss(moved, clean) < 2e-3 < 0.05 < temporal_loss(flicker, clean)
    recipe = replace(clip_recipe, loss={**clip_recipe.loss, "temporal": 1.0})
    assert Trainer(recipe, tmp_path / "run", max_steps=3).run().step == 3
    text = clip_recipe.path.read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("frames = 5\n", "").replace('arch = "trnet"', 'arch = "srnet"')
                   + "[loss]\ntemporal = 1.0\n")
    with pytest.raises(RecipeError, match="unknown loss term\\(s\\) \\['temporal'\\].*clip recipes only"):
        load_recipe(bad)


def test_the_alignment_term_scores_the_offsets_against_the_clean_clip(clip_recipe, tmp_path):
    # The clip pans 2 px a frame (half a quarter-resolution pixel): offsets that follow the pan
    # align the clean frames better than none do.
    from PIL import Image

    from streamrain.archs.trnet import window

    trainer = Trainer(clip_recipe, tmp_path / "probe")
    net = trainer.model.eval()
    frames = sorted((tmp_path / "frames" / "seq").iterdir())[:5]
    clean = torch.from_numpy(np.stack([np.asarray(Image.open(p).convert("RGB")) for p in frames]))
    clean = clean.permute(0, 3, 1, 2).float() / 255
    windows = [window(t, first=0, last=4, past=2, future=2) for t in range(5)]
    pairs = [(w[2], n) for w in windows for n in w if n != w[2]]
    with torch.no_grad():
        feats = net.features(clean)
        net.flow = lambda centre, neighbour: torch.zeros(centre.shape[0], 2, *centre.shape[2:])
        still = net.alignment_error(feats, clean, windows)
        following = torch.tensor([[(n - t) * 0.5, 0.0] for t, n in pairs])
        net.flow = lambda centre, neighbour: following[:, :, None, None].expand(-1, -1, *centre.shape[2:])
        assert net.alignment_error(feats, clean, windows) < 0.5 * still
    # In a recipe, the term is added to the loss with its weight.
    del net.flow
    rainy, clean_clips = trainer.pairs.batch(2, torch.Generator().manual_seed(0))
    losses = []
    for weight in (0.0, 2.0):
        trainer.recipe = replace(clip_recipe, loss={**clip_recipe.loss, "alignment": weight})
        with torch.no_grad():
            losses.append(trainer.training_loss(rainy, clean_clips))
    with torch.no_grad():
        _, error = net.forward_clips(rainy, clean=clean_clips)
    assert error > 0 and torch.allclose(losses[1] - losses[0], 2.0 * error, rtol=1e-3)


def test_train_command_refuses_a_negative_worker_count(tiny_recipe, capsys):
    from streamrain.cli import main

    assert main(["train", str(tiny_recipe.path), "--data-workers", "-1"]) == 1
    assert "--data-workers must be >= 0" in capsys.readouterr().err
