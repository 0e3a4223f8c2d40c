"""Every bundled weight file has a machine-readable card beside it and a model card in models/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamrain.train.recipe import load_recipe
from streamrain.weights import read_metadata
from streamrain.zoo import BUNDLED_DIR

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sorted(BUNDLED_DIR.glob("*.safetensors"))


def test_something_is_bundled():
    assert BUNDLED, "the default model's weights must ship inside the package"


@pytest.mark.parametrize("weights", BUNDLED, ids=lambda p: p.stem)
def test_bundled_weights_have_cards(weights):
    card = json.loads(weights.with_suffix(".json").read_text())
    for key in ("name", "arch", "recipe", "steps", "cpu_hours", "metrics"):
        assert key in card, key
    assert card["name"] == weights.stem and card["arch"] == read_metadata(weights)["arch"]
    recipe = load_recipe(ROOT / card["recipe"])
    assert recipe.name == card["name"] and recipe.arch == card["arch"]
    assert card["metrics"]["rain100l_psnr_y"] > card["metrics"]["rain100l_input_psnr_y"]
    readme = (ROOT / "models" / f"{card['name']}.md").read_text()
    assert f"{card['metrics']['rain100l_psnr_y']:.2f}" in readme  # the card quotes the measured figure
