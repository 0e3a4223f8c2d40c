"""Importing the authors' checkpoints, and what users see for models without weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

import streamrain
from conftest import needs_shared
from streamrain.cli import main
from streamrain.errors import ModelError


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMRAIN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_corrupt_checkpoint_is_refused_with_a_reason(tmp_path, home, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    assert main(["models", "import", "dpenet", str(bad), "--name", "x"]) == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith("streamrain: error: ") and "not a readable PyTorch checkpoint" in line
    assert not (home / "models" / "x.safetensors").exists()


def test_wrong_networks_checkpoint_names_what_did_not_match(tmp_path, home):
    spanet = needs_shared("official-weights", "spanet", "latest")
    from streamrain.importer import import_checkpoint
    with pytest.raises(ModelError, match="not a dpenet checkpoint: .*(missing|unexpected)"):
        import_checkpoint("dpenet", spanet, name="oops")


def test_imported_dpenet_reproduces_the_authors_output_with_default_settings(tmp_path, home, monkeypatch):
    weights = needs_shared("official-weights", "dpenet", "Rain100H.pth")
    ref_dir = needs_shared("dpenet-reference")
    # As on a CPU with native bf16, where `auto` would take bf16 were DPENet's verdict to allow it
    # (bf16 reproduces the authors' output to ~44 dB only); elsewhere oneDNN emulates bf16 alike.
    import streamrain.runtime.derainer
    monkeypatch.setattr(streamrain.runtime.derainer, "cpu_has_bf16", lambda: True)
    assert main(["models", "import", "dpenet", str(weights), "--name", "dpenet-rain100h"]) == 0
    assert "dpenet-rain100h" in streamrain.list_models()
    card = json.loads((home / "models" / "dpenet-rain100h.json").read_text())
    assert card["arch"] == "dpenet" and card["source"] == "Rain100H.pth" and "bf16" in card["precision"]["psnr_y"]
    out = tmp_path / "out.png"
    assert main([str(ref_dir / "rainy.png"), str(out), "--model", "dpenet-rain100h", "--no-progress"]) == 0
    from streamrain.train.data import read_image
    from streamrain.train.metrics import psnr
    got, ref = read_image(out).float(), read_image(ref_dir / "official-output-rain100h.png").float()
    assert psnr(got, ref) >= 50.0


def test_spanet_imports_and_lists_as_usable(home, capsys):
    weights = needs_shared("official-weights", "spanet", "latest")
    assert main(["models", "import", "spanet", str(weights), "--name", "spanet-spa"]) == 0
    capsys.readouterr()
    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["spanet-spa"]["weights"] is True and rows["spanet-spa"]["arch"] == "spanet"
    model = streamrain.load_model("spanet-spa")
    import torch
    with torch.inference_mode():
        y = model(torch.rand(1, 3, 17, 23))
    assert y.shape == (1, 3, 17, 23) and np.isfinite(y.numpy()).all()


@pytest.mark.parametrize("name", ["aimhnet", "remaen", "sdsen"])
def test_weightless_models_explain_how_to_get_weights(name, tmp_path, capsys, home, clip, monkeypatch):
    import streamrain.zoo
    monkeypatch.setattr(streamrain.zoo, "BUNDLED_DIR", tmp_path / "no-bundled-weights")
    code = main([str(clip("a.mp4", frames=2)), str(tmp_path / "o.mp4"), "--model", name, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "has no weights here" in err and "streamrain train" in err
    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[name]["weights"] is False


def test_an_architecture_name_stands_for_its_weights(tmp_path, home, monkeypatch):
    import streamrain.zoo
    from streamrain.archs import ARCHS
    from streamrain.weights import save_weights
    monkeypatch.setattr(streamrain.zoo, "BUNDLED_DIR", tmp_path / "no-bundled-weights")
    for name in ("sdsen-a", "sdsen-b"):
        save_weights(streamrain.zoo.user_dir() / f"{name}.safetensors", ARCHS["sdsen"](), arch="sdsen", arch_args={})
    assert streamrain.load_model("sdsen").name == "sdsen-b"  # the newest version
    assert "sdsen" not in streamrain.list_models()  # no weightless placeholder beside real weights
