"""Paired-folder datasets: the three layouts, name matching, alignment of crops, and training on them."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from streamrain.train.paired import PairedPatches, PairsError, find_pairs, load_pair
from streamrain.train.recipe import load_recipe
from streamrain.train.trainer import Trainer


def _save(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    av.VideoFrame.from_ndarray(rgb, format="rgb24").save(str(path))


def _scene(seed: int, h: int = 48, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(rainy, clean): the rainy image is the clean one plus a bright vertical line at x = 10."""
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 200, (h // 8, w // 8, 3)).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    rainy = clean.copy()
    rainy[:, 10] = 255
    return rainy, clean


def test_rainy_clean_folders_match_by_name_without_prefixes(tmp_path):
    for i in range(3):
        rainy, clean = _scene(i)
        _save(tmp_path / "rain" / f"rain-{i:03d}.png", rainy)
        _save(tmp_path / "norain" / f"norain-{i:03d}.png", clean)
    layout, pairs = find_pairs(tmp_path)
    assert layout == "folders" and len(pairs) == 3
    assert all(p.rainy.name.removeprefix("rain-") == p.clean.name.removeprefix("norain-") for p in pairs)
    rainy, clean = load_pair(pairs[1])
    assert torch.equal(clean.permute(1, 2, 0), torch.from_numpy(_scene(1)[1]))
    assert (rainy.int() - clean.int())[:, :, 10].min() > 0  # the streak is where it was drawn


def test_many_renderings_share_one_background(tmp_path):
    rainy, clean = _scene(0)
    for k in (1, 2):
        _save(tmp_path / "rainy" / f"901_{k}.png", rainy)
    _save(tmp_path / "clean" / "901.png", clean)
    _, pairs = find_pairs(tmp_path)
    assert [p.clean.name for p in pairs] == ["901.png", "901.png"]


def test_cyclegan_layout_reads_only_the_asked_split(tmp_path):
    for split, n in (("train", 2), ("test", 1)):
        for i in range(n):
            rainy, clean = _scene(i)
            _save(tmp_path / f"{split}A" / f"{i}.png", rainy)
            _save(tmp_path / f"{split}B" / f"{i}.png", clean)
    assert find_pairs(tmp_path)[0] == "cyclegan" and len(find_pairs(tmp_path)[1]) == 2
    assert len(find_pairs(tmp_path, split="test")[1]) == 1


@pytest.mark.parametrize("order", ["rainy-left", "clean-left"])
def test_side_by_side_halves(tmp_path, order):
    rainy, clean = _scene(4)
    _save(tmp_path / "pair.png", np.concatenate([rainy, clean] if order == "rainy-left" else [clean, rainy], 1))
    layout, pairs = find_pairs(tmp_path)
    assert layout == "side_by_side"
    got_rainy, got_clean = load_pair(pairs[0], side_by_side=order)
    assert torch.equal(got_rainy.permute(1, 2, 0), torch.from_numpy(rainy))
    assert torch.equal(got_clean.permute(1, 2, 0), torch.from_numpy(clean))


def test_unmatched_and_mismatched_pairs_are_named(tmp_path):
    rainy, clean = _scene(0)
    _save(tmp_path / "a" / "rainy" / "1.png", rainy)
    _save(tmp_path / "a" / "clean" / "2.png", clean)
    with pytest.raises(PairsError, match="1.png has no clean partner"):
        find_pairs(tmp_path / "a")
    _save(tmp_path / "b" / "rainy" / "1.png", rainy)
    _save(tmp_path / "b" / "clean" / "1.png", clean[:40])
    with pytest.raises(PairsError, match=r"is \(48, 64\) but .* is \(40, 64\)"):
        load_pair(find_pairs(tmp_path / "b")[1][0])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PairsError, match="no pairs found"):
        find_pairs(tmp_path / "empty")


def test_crops_of_a_pair_stay_aligned():
    rainy, clean = _scene(7, 96, 96)
    pair = (torch.from_numpy(rainy).permute(2, 0, 1), torch.from_numpy(clean).permute(2, 0, 1))
    patches = PairedPatches([pair], patch=32, scale=(1.0, 1.0))
    got_rainy, got_clean = patches.batch(16, torch.Generator().manual_seed(0))
    diff = (got_rainy - got_clean).abs().amax(1)  # (16, 32, 32)
    # Wherever the crops differ, they differ along whole columns: the drawn streak, never a shift.
    columns = diff.amax(1) > 0
    assert columns.any() and torch.equal(diff.amin(1) > 0, columns)


def test_training_mixes_pairs_and_synthetic_rain(tmp_path):
    for i in range(6):
        rainy, clean = _scene(i)
        _save(tmp_path / "pairs" / "rainy" / f"{i}.png", rainy)
        _save(tmp_path / "pairs" / "clean" / f"{i}.png", clean)
        _save(tmp_path / "clean" / f"{i}.png", clean)
    recipe = tmp_path / "mixed.toml"
    recipe.write_text(f"""
name = "mixed"
arch = "srnet"
[arch_args]
half_channels = 8
quarter_channels = 8
blocks = 1
[data]
clean_dirs = ["{tmp_path / 'clean'}"]
paired_dirs = ["{tmp_path / 'pairs'}"]
paired_fraction = 0.5
min_side = 32
patch = 32
batch = 4
val_every_nth_image = 3
[optim]
steps = 4
[train]
val_every = 2
val_batches = 1
bf16 = false
threads = 1
""")
    trainer = Trainer(load_recipe(recipe), tmp_path / "run")
    rainy, clean = trainer.pairs.batch(4, torch.Generator().manual_seed(0))
    assert rainy.shape == clean.shape == (4, 3, 32, 32)
    # Synthetic samples come first, then the two paired ones, whose rain is the drawn column.
    paired_diff = (rainy[2:] - clean[2:]).abs().amax(1)
    assert torch.equal(paired_diff.amin(1) > 0, paired_diff.amax(1) > 0)
    assert (paired_diff.amax(1) > 0).any()
    assert trainer.run().step == 4 and (tmp_path / "run" / "model.safetensors").exists()
