"""The Python API and the runtime contract: any size in, same size out, uint8 path, model listing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import streamrain
from streamrain.archs import ARCHS
from streamrain.cli import main
from streamrain.errors import ModelError
from streamrain.runtime.derainer import Derainer
from streamrain.runtime.wrapper import DerainModule
from streamrain.weights import build_from_weights, save_weights
from streamrain.zoo import DEFAULT_MODEL, DEFAULT_VIDEO_MODEL


def test_default_model_is_bundled_and_listed():
    assert DEFAULT_MODEL in streamrain.list_models()
    model = streamrain.load_model()
    assert model.name == DEFAULT_MODEL


@pytest.mark.parametrize("size", [(37, 29), (64, 48), (5, 7)])
def test_load_model_maps_any_size_to_the_same_size(size):
    model = streamrain.load_model()
    x = torch.rand(2, 3, *size)
    with torch.inference_mode():
        y = model(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1


class Swap(torch.nn.Module):
    """A network trained on BGR that needs multiples of 8: records what it was given."""

    input_order = "bgr"
    pad_multiple = 8
    clamps_output = False

    def forward(self, x):
        self.seen = x.clone()
        return x * 2  # out of range on purpose: the wrapper must clamp


def test_wrapper_pads_flips_channels_crops_and_clamps():
    net = Swap()
    module = DerainModule(net, name="swap", arch="swap")
    x = torch.zeros(1, 3, 10, 13)
    x[:, 0] = 0.25  # red only
    y = module(x)
    assert net.seen.shape[-2:] == (16, 16)  # padded up to multiples of 8
    assert torch.all(net.seen[:, 2, :10, :13] == 0.25) and torch.all(net.seen[:, 0] == 0)  # BGR inside
    assert y.shape == x.shape
    assert torch.allclose(y[:, 0], torch.full_like(y[:, 0], 0.5)) and torch.all(y[:, 1:] == 0)


def test_derainer_uint8_path_matches_float_model():
    model = streamrain.load_model()
    frames = np.random.default_rng(0).integers(0, 256, (2, 24, 40, 3), dtype=np.uint8)
    out = Derainer(model, device="cpu", precision="fp32")(frames)
    assert out.shape == frames.shape and out.dtype == np.uint8
    with torch.inference_mode():
        ref = model(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
    ref_u8 = (ref * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    assert np.abs(out.astype(int) - ref_u8.astype(int)).max() <= 1


def test_weights_round_trip_and_reject_corrupt_files(tmp_path):
    net = ARCHS["srnet"](half_channels=8, quarter_channels=8, blocks=1)
    path = tmp_path / "tiny.safetensors"
    save_weights(path, net, arch="srnet", arch_args={"half_channels": 8, "quarter_channels": 8, "blocks": 1},
                 dtype=torch.float32)
    rebuilt = build_from_weights(path)
    for a, b in zip(net.state_dict().values(), rebuilt.state_dict().values()):
        assert torch.equal(a, b)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        build_from_weights(corrupt)


def test_user_models_are_found_in_streamrain_home(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMRAIN_HOME", str(tmp_path))
    net = ARCHS["srnet"](half_channels=8, quarter_channels=8, blocks=1)
    save_weights(tmp_path / "models" / "mine.safetensors", net, arch="srnet",
                 arch_args={"half_channels": 8, "quarter_channels": 8, "blocks": 1})
    assert "mine" in streamrain.list_models()
    assert streamrain.load_model("mine").arch == "srnet"


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ModelError, match="unknown model 'nope'; known: .*srnet-v1"):
        streamrain.load_model("nope")


def test_models_list_json(capsys):
    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    default = by_name[DEFAULT_MODEL]
    assert default["default"] is True and default["weights"] is True and default["arch"] == "srnet"
    assert default["params"] == sum(p.numel() for p in streamrain.load_model().parameters())
    assert all({"name", "arch", "params", "weights", "default"} <= set(r) for r in rows)
    video = [r for r in rows if r["video_default"]]  # video has a default of its own: temporal
    assert [r["name"] for r in video] == [DEFAULT_VIDEO_MODEL] and video[0]["temporal"] and not video[0]["default"]
    assert main(["models", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert " images " in lines[DEFAULT_MODEL] and " video " in lines[DEFAULT_VIDEO_MODEL]


def test_bench_reports_every_stage(tmp_path, capsys):
    report = tmp_path / "bench.json"
    assert main(["bench", "--size", "64x48", "--frames", "12", "--batch", "4", "--rounds", "3",
                 "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    for key in ("decode_fps", "derain_fps", "encode_fps", "end_to_end_fps", "efficiency"):
        assert result[key] > 0, key
    for stage in ("decode", "derain", "encode", "end_to_end"):  # reported figure: the rounds' median
        assert result[f"{stage}_fps"] == pytest.approx(sorted(result["rounds_fps"][stage])[1], abs=0.01)
    slowest = min(result["decode_fps"], result["derain_fps"], result["encode_fps"])
    assert result["efficiency"] == pytest.approx(result["end_to_end_fps"] / slowest, abs=0.002)
    cpu = result["cpu_ms_per_frame"]
    assert set(cpu) == {"decode", "derain", "encode", "end_to_end"} and all(v > 0 for v in cpu.values())
    ceiling_fps = result["cores"] * 1000 / (cpu["decode"] + cpu["derain"] + cpu["encode"])
    assert result["cpu_bound_efficiency"] == pytest.approx(min(1.0, ceiling_fps / slowest), abs=0.01)
    assert result["frames"] == 12 and (result["width"], result["height"]) == (64, 48)
    assert set(result["stages_in_pipeline"]) == {"decode", "derain", "encode"}
    assert "pipeline efficiency" in capsys.readouterr().out


def test_a_network_with_3d_convolutions_runs_on_the_cpu_path():
    # SDSEN's Conv3d weights have no channels_last layout; the CPU path must still take it.
    net = ARCHS["sdsen"]().eval()
    derainer = Derainer(DerainModule(net, name="sdsen", arch="sdsen"), device="cpu", precision="fp32")
    frames = np.random.default_rng(0).integers(0, 256, (1, 24, 32, 3), dtype=np.uint8)
    out = derainer(frames)
    assert out.shape == frames.shape and out.dtype == np.uint8


def test_cpu_workers_give_the_same_frames_as_one_call():
    module = streamrain.load_model()
    single = Derainer(module, device="cpu", precision="fp32")
    pooled = Derainer(module, device="cpu", precision="fp32", cpu_workers=2)
    # One batch waits behind each of the two running.
    assert (single.max_in_flight, pooled.max_in_flight) == (1, 4)
    batches = [np.random.default_rng(i).integers(0, 256, (2, 40, 56, 3), dtype=np.uint8) for i in range(4)]
    handles = [pooled.submit(b) for b in batches[:3]]
    results = [pooled.collect(handles[0])]
    handles.append(pooled.submit(batches[3]))
    results += [pooled.collect(h) for h in handles[1:]]
    for batch, result in zip(batches, results):
        # Different thread counts may round a value the other way; never by more than one level.
        assert np.abs(result.astype(int) - single(batch).astype(int)).max() <= 1
    pooled.close()
    with pytest.raises(ModelError, match="cpu_workers must be at least 1"):
        Derainer(module, device="cpu", cpu_workers=0)
