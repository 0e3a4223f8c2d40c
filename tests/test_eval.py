"""`streamrain eval`: the JSON contract, the paired layouts, clear errors, and the shipped model's quality."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import torch

from conftest import needs_shared
from streamrain.cli import main
from streamrain.train.metrics import psnr, rgb_to_y
from streamrain.zoo import DEFAULT_MODEL


def _save(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    av.VideoFrame.from_ndarray(rgb, format="rgb24").save(str(path))


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(3):
        clean = rng.integers(30, 200, (6, 8, 3)).astype(np.uint8).repeat(8, 0).repeat(8, 1)
        rainy = clean.copy()
        rainy[:, 5 + 7 * i::17] = 250  # a few streaks
        pairs.append((rainy, clean))
        _save(tmp_path / "folders" / "rainy" / f"{i}.png", rainy)
        _save(tmp_path / "folders" / "clean" / f"{i}.png", clean)
        _save(tmp_path / "sbs" / f"{i}.png", np.concatenate([clean, rainy], 1))
    return tmp_path, pairs


def test_eval_json_follows_the_contract(dataset, tmp_path):
    root, pairs = dataset
    out = tmp_path / "r.json"
    assert main(["eval", "--rainy", str(root / "folders" / "rainy"), "--clean", str(root / "folders" / "clean"),
                 "--json", str(out), "--precision", "fp32"]) == 0
    result = json.loads(out.read_text())
    assert set(result) == {"model", "n", "psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "input_psnr_y", "seconds"}
    assert result["n"] == 3 and result["model"] == DEFAULT_MODEL
    expected_input = np.mean([psnr(rgb_to_y(torch.from_numpy(r).permute(2, 0, 1).float()),
                                   rgb_to_y(torch.from_numpy(c).permute(2, 0, 1).float())) for r, c in pairs])
    assert result["input_psnr_y"] == pytest.approx(expected_input, abs=1e-3)

    side = tmp_path / "s.json"
    assert main(["eval", "--pairs", str(root / "sbs"), "--side-by-side", "clean-left", "--json", str(side),
                 "--precision", "fp32"]) == 0
    assert json.loads(side.read_text())["psnr_y"] == pytest.approx(result["psnr_y"], abs=1e-3)


def test_eval_needs_one_kind_of_input(dataset, capsys):
    root, _ = dataset
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--rainy", str(root / "folders" / "rainy")])
    assert exit_info.value.code == 2 and "either --rainy and --clean, or --pairs" in capsys.readouterr().err


def test_eval_of_a_folder_without_pairs_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["eval", "--pairs", str(tmp_path / "empty")]) != 0
    err = capsys.readouterr().err.strip()
    assert "no pairs found" in err and len(err.splitlines()) == 1


def test_default_model_removes_rain100l_rain(tmp_path):
    rain100l = needs_shared("rain100l")
    out = tmp_path / "r.json"
    assert main(["eval", "--rainy", str(rain100l / "rainy"), "--clean", str(rain100l / "clean"),
                 "--limit", "10", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    # The shipped model gains several dB on real test images it never saw (card: +6 dB on all 100).
    assert result["n"] == 10 and result["psnr_y"] > result["input_psnr_y"] + 4
