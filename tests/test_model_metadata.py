"""What is stored about each model instead of recomputed: its cost and its precision verdict, and how
`--precision auto` and `streamrain models list` use them."""

from __future__ import annotations

import json

import pytest
import torch

import streamrain
from streamrain.cards import (PRECISION_THRESHOLD_DB, arch_cards, precision_verdict, read_card, reduced_ok,
                              update_card)
from streamrain.cli import main
from streamrain.modelinfo import cost
from streamrain.runtime.derainer import Derainer, resolve_device, resolve_precision
from streamrain.weights import read_metadata, save_weights
from streamrain.zoo import BUNDLED_DIR, resolve

BUNDLED = sorted(BUNDLED_DIR.glob("*.safetensors"))
TINY_SRNET = {"half_channels": 8, "quarter_channels": 8, "blocks": 1}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMRAIN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_stored_cost_matches_a_live_count():
    card = read_card(BUNDLED_DIR / "srnet-v1.safetensors")
    params, gmac = cost("srnet", json.loads(read_metadata(BUNDLED_DIR / "srnet-v1.safetensors")["arch_args"]))
    assert card["params"] == params
    assert card["gmac_per_megapixel"] == pytest.approx(gmac, abs=0.01)


@pytest.mark.parametrize("weights", BUNDLED, ids=lambda p: p.stem)
def test_every_bundled_model_has_its_cost_and_a_consistent_precision_verdict(weights):
    card = read_card(weights)
    assert isinstance(card["params"], int) and card["gmac_per_megapixel"] > 0
    verdict = card["precision"]  # benchmarks/precision_verdicts.py writes it; run it for new weights
    cost_db = verdict["psnr_y"]["fp32"] - verdict["psnr_y"]["bf16"]
    assert verdict["cost_db"]["bf16"] == pytest.approx(cost_db, abs=1e-3)
    assert ("bf16" in verdict["reduced_ok"]) == (abs(cost_db) <= PRECISION_THRESHOLD_DB)
    # Single-frame models on Rain100L; temporal ones on a rainy video, where their neighbours count.
    temporal = resolve(weights.stem).arch == "trnet"
    assert verdict["measured_on"].startswith("nturain-a1" if temporal else "rain100l")


@pytest.mark.parametrize("arch", ["dpenet", "spanet"])
def test_importable_architectures_have_a_verdict_measured_with_the_authors_weights(arch):
    card = arch_cards()[arch]
    assert card["precision"]["checkpoint"] and set(card["precision"]["psnr_y"]) == {"fp32", "bf16"}
    assert card["params"] == cost(arch, {})[0]


def test_the_verdict_keeps_only_reduced_precisions_within_the_threshold():
    verdict = precision_verdict({"fp32": 30.0, "bf16": 29.9, "fp16": 29.99}, measured_on="rain100l, test")
    assert verdict["reduced_ok"] == ["fp16"] and verdict["cost_db"] == {"bf16": 0.1, "fp16": 0.01}
    # a gain as large is a different network too, not a free improvement
    assert precision_verdict({"fp32": 30.0, "bf16": 30.1}, measured_on="x")["reduced_ok"] == []


def test_fp16_goes_with_bf16_unless_measured_itself():
    assert reduced_ok({"precision": precision_verdict({"fp32": 30.0, "bf16": 29.99}, measured_on="x")}) == {
        "bf16", "fp16"}
    assert reduced_ok({"precision": precision_verdict({"fp32": 30.0, "bf16": 29.0}, measured_on="x")}) == set()
    measured = precision_verdict({"fp32": 30.0, "bf16": 29.99, "fp16": 29.5}, measured_on="x")
    assert reduced_ok({"precision": measured}) == {"bf16"}
    assert reduced_ok({}) is None


def test_auto_precision_follows_the_verdict_and_an_explicit_one_wins(monkeypatch):
    import streamrain.runtime.derainer as derainer_module
    monkeypatch.setattr(derainer_module, "cpu_has_bf16", lambda: True)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu, reduced_ok=frozenset({"bf16"})) == torch.bfloat16
    assert resolve_precision("auto", cpu, reduced_ok=frozenset()) == torch.float32
    assert resolve_precision("auto", cpu, reduced_ok=None) == torch.float32  # never measured: fp32
    assert resolve_precision("auto", cuda, reduced_ok=frozenset({"fp16"})) == torch.float16
    assert resolve_precision("auto", cuda, reduced_ok=frozenset({"bf16"})) == torch.float32
    assert resolve_precision("bf16", cpu, reduced_ok=frozenset()) == torch.bfloat16
    monkeypatch.setattr(derainer_module, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", cpu, reduced_ok=frozenset({"bf16"})) == torch.float32


def test_a_user_models_card_sets_its_default_precision(home, monkeypatch):
    import streamrain.runtime.derainer as derainer_module
    monkeypatch.setattr(derainer_module, "cpu_has_bf16", lambda: True)
    weights = home / "models" / "mine.safetensors"
    save_weights(weights, streamrain.archs.ARCHS["srnet"](**TINY_SRNET), arch="srnet", arch_args=TINY_SRNET)
    assert Derainer(streamrain.load_model("mine"), device="cpu").dtype == torch.float32  # no card yet
    update_card(weights, precision=precision_verdict({"fp32": 30.0, "bf16": 29.99}, measured_on="rain100l"))
    assert resolve("mine").reduced_precisions == {"bf16", "fp16"}
    assert Derainer(streamrain.load_model("mine"), device="cpu").dtype == torch.bfloat16
    assert Derainer(streamrain.load_model("mine"), device="cpu", precision="fp32").dtype == torch.float32


def test_models_list_reads_figures_from_the_header_or_card_before_counting(home, monkeypatch):
    import streamrain.modelinfo
    weights = home / "models" / "mine.safetensors"
    save_weights(weights, streamrain.archs.ARCHS["srnet"](**TINY_SRNET), arch="srnet", arch_args=TINY_SRNET,
                 extra={"params": "123", "gmac_per_megapixel": "4.5"})
    monkeypatch.setattr(streamrain.modelinfo, "cost", lambda *a: pytest.fail("counted a stored cost"))
    rows = {r["name"]: r for r in streamrain.modelinfo.describe_models()}
    assert (rows["mine"]["params"], rows["mine"]["gmac_per_mp"]) == (123, 4.5)
    assert rows["mine"]["precision"] == "fp32" and rows["mine"]["precision_measured"] is False


def _list_rows(capsys) -> list[dict]:
    assert main(["models", "list", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_piped_models_list_prints_full_names_one_model_per_line(home, capsys):
    long_name = "a-very-long-model-name-that-a-terminal-table-would-cut-short-v12"
    save_weights(home / "models" / f"{long_name}.safetensors", streamrain.archs.ARCHS["srnet"](**TINY_SRNET),
                 arch="srnet", arch_args=TINY_SRNET)
    rows = _list_rows(capsys)
    assert main(["models", "list"]) == 0  # capsys: stdout is not a terminal
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["name", "arch", "params"]
    assert len(lines) == 1 + len(rows)
    for line, row in zip(lines[1:], rows):
        cells = line.split()
        assert cells[0] == row["name"] and cells[1] == row["arch"] and cells[2] == f"{row['params']:,}"
        assert row["precision"] is None or row["precision"] in cells
    assert not any(c in "".join(lines) for c in "│┃…━")  # no box drawing, nothing elided


def test_models_list_json_says_the_precision_each_model_runs_in(capsys):
    rows = {r["name"]: r for r in _list_rows(capsys)}
    names = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    for weights in BUNDLED:
        expected = resolve_precision("auto", resolve_device("auto"), reduced_ok=resolve(weights.stem).reduced_precisions)
        assert rows[weights.stem]["precision"] == names[expected]
        measured = "precision" in read_card(weights)
        assert rows[weights.stem]["precision_measured"] is measured
        if not measured:  # never measured: fp32 whatever the device offers
            assert expected == torch.float32


def test_emulated_bf16_rounds_every_result_and_stays_near_real_bf16():
    from streamrain.train.precision import Bf16Emulated
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(inplace=True),
                              torch.nn.Conv2d(8, 3, 3, padding=1)).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.inference_mode():
        exact = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            real = net(x).float()
        emulated = Bf16Emulated(net)(x)
    assert torch.equal(emulated, emulated.bfloat16().float())  # bf16 values only
    assert (emulated - real).abs().max() <= 2 * (real - exact).abs().max() + 1e-6
    assert not torch.equal(emulated, exact)


def test_measure_precision_writes_a_verdict_for_a_model(home):
    from streamrain.train.precision import measure_precision
    weights = home / "models" / "mine.safetensors"
    save_weights(weights, streamrain.archs.ARCHS["srnet"](**TINY_SRNET), arch="srnet", arch_args=TINY_SRNET)
    torch.manual_seed(0)
    rainy, clean = (torch.randint(0, 256, (3, 24, 32), dtype=torch.uint8) for _ in range(2))
    verdict = measure_precision("mine", [("a.png", lambda: (rainy, clean))], measured_on="rain100l, test",
                                threads=1, emulate=True)
    assert set(verdict["psnr_y"]) == {"fp32", "bf16"} and verdict["bf16"] == "emulated in fp32 kernels"
    assert verdict["reduced_ok"] == (["bf16"] if abs(verdict["cost_db"]["bf16"]) <= PRECISION_THRESHOLD_DB else [])


# -- the quality alias ------------------------------------------------------------------------------

def test_quality_alias_resolves_to_its_base_run_on_flipped_copies():
    from streamrain.runtime.self_ensemble import FlipEnsemble
    from streamrain.zoo import QUALITY_ALIAS, load_model

    entry = resolve(QUALITY_ALIAS)
    base = resolve(entry.alias_of)
    assert entry.weights == base.weights and entry.self_ensemble == 4
    module = load_model(QUALITY_ALIAS)
    assert isinstance(module.net, FlipEnsemble) and module.name == QUALITY_ALIAS
    x = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0))  # (no padding for any SRNet)
    net = load_model(base.name).net
    with torch.no_grad():
        by_hand = (net(x) + net(x.flip(-1)).flip(-1) + net(x.flip(-2)).flip(-2) + net(x.flip(-2, -1)).flip(-2, -1)) / 4
        assert torch.allclose(module(x), by_hand.clamp(0, 1), atol=1e-6)
        # The CPU runtime runs the base's inference form, ensembled the same way.
        derained = Derainer(module, device="cpu", precision="fp32")(
            (x[0].permute(1, 2, 0).numpy()[None] * 255).round().astype("uint8"))
    assert derained.shape == (1, 40, 56, 3)


def test_quality_alias_names_the_best_shipped_model_on_heavy_rain_and_lists_its_cost():
    from streamrain.modelinfo import describe_models
    from streamrain.zoo import QUALITY_ALIAS

    rows = {r["name"]: r for r in describe_models()}
    quality = rows[QUALITY_ALIAS]
    heavy = quality["metrics"]["rain100h_dev_psnr_y"]  # measured for the alias itself, not inherited
    for name, row in rows.items():
        assert row["metrics"].get("rain100h_dev_psnr_y", 0) <= heavy, f"{name} beats the quality alias"
    base = rows[quality["alias_of"]]
    assert quality["gmac_per_mp"] == pytest.approx(4 * base["gmac_per_mp"], abs=0.05)
    assert quality["fps_640x360"] and quality["precision"] == base["precision"]


def test_an_alias_of_a_missing_model_is_not_listed(home):
    (home / "models").mkdir(parents=True)
    (home / "models" / "nothing.json").write_text('{"alias_of": "no-such-model"}')
    from streamrain.zoo import catalog
    assert "nothing" not in catalog()
