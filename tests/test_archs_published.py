"""The five published networks: exact sizes, the authors' checkpoints, fidelity, export, odd sizes."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.export import Dim, export

from streamrain.archs import ARCHS
from streamrain.archs import aimhnet, dpenet, remaen, spanet
from streamrain.archs.aimhnet import AIMHNet
from streamrain.archs.dpenet import DPENet
from streamrain.archs.remaen import ReMAEN
from streamrain.archs.sdsen import SDSEN
from streamrain.archs.spanet import SPANet

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DPENET_FILES = ["Rain100L", "Rain100H", "Rain800", "Rain1400", "HeavyRain"]


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the project's shared data, present in CI but not in a user's clone)")
    return path


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # On a small shared CPU two intra-op threads contending with other work were measured ~80x
    # slower than one; these tests are latency-bound anyway.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def aimhnet_full() -> AIMHNet:
    torch.manual_seed(0)
    return AIMHNet().eval()


def count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def read_rgb(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


# --- registry and sizes -------------------------------------------------------------------------

def test_registry_and_class_attributes():
    expected = {"aimhnet": (AIMHNet, "rgb", 128, True), "remaen": (ReMAEN, "bgr", 1, False),
                "dpenet": (DPENet, "rgb", 1, False), "spanet": (SPANet, "bgr", 1, False),
                "sdsen": (SDSEN, "bgr", 1, False)}
    for name, (cls, order, multiple, clamps) in expected.items():
        assert ARCHS[name] is cls
        assert (cls.input_order, cls.pad_multiple, cls.clamps_output) == (order, multiple, clamps)


@pytest.mark.parametrize("cls, params", [(ReMAEN, 495_771), (DPENet, 647_328), (SPANet, 283_716), (SDSEN, 130_998)])
def test_parameter_counts(cls, params):
    assert count(cls()) == params


def test_aimhnet_parameter_count(aimhnet_full):
    assert count(aimhnet_full) == 21_304_202


# --- the authors' checkpoints -------------------------------------------------------------------

@pytest.mark.parametrize("name", DPENET_FILES)
def test_dpenet_official_checkpoints_load_strictly(name):
    path = shared("official-weights", "dpenet", f"{name}.pth")
    state = dpenet.convert_official_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    DPENet().load_state_dict(state, strict=True)


def test_spanet_official_checkpoint_loads_strictly():
    path = shared("official-weights", "spanet", "latest")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    assert set(obj) >= {"net", "clock", "opt"}
    SPANet().load_state_dict(spanet.convert_official_state_dict(obj), strict=True)


def test_converters_strip_module_prefix_and_name_problems():
    state = {f"module.{k}": v for k, v in DPENet().state_dict().items()}
    DPENet().load_state_dict(dpenet.convert_official_state_dict(state), strict=True)
    state["module.outconv1.0.weight"] = torch.zeros(3, 32, 3, 3)
    del state["module.erpab2.pa.0.weight"]
    state["module.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as err:
        dpenet.convert_official_state_dict(state)
    assert "erpab2.pa.0.weight" in str(err.value) and "extra.weight" in str(err.value)
    assert "outconv1.0.weight" in str(err.value)

    net = {"net": {f"module.{k}": v for k, v in SPANet().state_dict().items()}, "clock": 1, "opt": {}}
    SPANet().load_state_dict(spanet.convert_official_state_dict(net), strict=True)
    del net["net"]["module.SAM1.attention_layer.conv3.bias"]
    with pytest.raises(ValueError, match="SAM1.attention_layer.conv3.bias"):
        spanet.convert_official_state_dict(net)


def test_aimhnet_upstream_state_dict_keys(aimhnet_full):
    # An upstream-format dict: DataParallel prefix, pytorch_wavelets filter buffers, and one conv
    # saved with the newer parametrization-style weight norm.
    ours = aimhnet_full.state_dict()
    upstream = {f"module.{k}": v for k, v in ours.items()}
    upstream["module.DWT.h0_col"] = torch.full((1, 1, 2, 1), 0.7071)
    upstream["module.HGM_3.0.IDWT.g1_row"] = torch.full((1, 1, 1, 2), 0.7071)
    g = upstream.pop("module.conv2x.0.weight_g")
    upstream["module.conv2x.0.parametrizations.weight.original0"] = g
    converted = aimhnet.convert_upstream_state_dict(upstream)
    assert converted.keys() == ours.keys()
    assert converted["conv2x.0.weight_g"] is g
    del upstream["module.conv8x.0.0.weight_v"]
    with pytest.raises(ValueError, match="conv8x.0.0.weight_v"):
        aimhnet.convert_upstream_state_dict(upstream)


def test_remaen_tf_variable_mapping_round_trip():
    net = ReMAEN()
    inverse = {ours: tf for tf, ours in remaen._tf_name_map().items()}
    variables = {}
    for key, value in net.state_dict().items():
        array = value.numpy()
        array = array.transpose(2, 3, 1, 0) if array.ndim == 4 else array.T if array.ndim == 2 else array
        variables[f"derainNet/{inverse[key]}:0"] = array
        variables[f"derainNet/{inverse[key]}/Adam:0"] = array  # optimiser slots are ignored
    state = remaen.convert_tf_variables(variables)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    del variables["derainNet/RMG/Conv_1/weights:0"]
    with pytest.raises(ValueError, match="RMG/Conv_1/weights"):
        remaen.convert_tf_variables(variables)


def test_dpenet_reproduces_authors_output():
    folder = shared("dpenet-reference")
    weights = shared("official-weights", "dpenet", "Rain100H.pth")
    net = DPENet().eval()
    net.load_state_dict(dpenet.convert_official_state_dict(torch.load(weights, map_location="cpu", weights_only=True)))
    rainy = read_rgb(folder / "rainy.png")
    reference = read_rgb(folder / "official-output-rain100h.png").astype(np.float64)
    with torch.no_grad():
        out = net(torch.from_numpy(rainy).permute(2, 0, 1)[None].float() / 255)
    ours = (out.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8).astype(np.float64)
    mse = max(float(((ours - reference) ** 2).mean()), 1e-10)
    psnr = 10 * np.log10(255**2 / mse)
    assert psnr >= 50.0, f"PSNR against the authors' output {psnr:.2f} dB"


# --- SPANet's IRNN ------------------------------------------------------------------------------

def _reference_sweep(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, axis: int, reverse: bool,
                     relu_first: bool) -> torch.Tensor:
    """One direction, one element at a time, written as plainly as possible."""
    out = x.clone()
    n = x.shape[axis]
    order = list(range(n - 1, -1, -1)) if reverse else list(range(n))
    first = x.select(axis, order[0])
    state = torch.relu(first) if relu_first else first
    out.select(axis, order[0]).copy_(state)
    for i in order[1:]:
        state = torch.relu(w * state + b + x.select(axis, i))
        out.select(axis, i).copy_(state)
    return out


@pytest.mark.parametrize("relu_first", [False, True])
def test_irnn_directions_and_implementations(relu_first):
    gen = torch.Generator().manual_seed(3)
    irnn = spanet._IRNN(4, relu_first=relu_first, impl="loop", scan_max_len=64)
    with torch.no_grad():
        for conv in (irnn.left_weight, irnn.right_weight, irnn.up_weight, irnn.down_weight):
            conv.weight.uniform_(-1, 1, generator=gen)  # the released weights are in (-0.5, 1)
            conv.bias.normal_(0, 0.3, generator=gen)
    x = torch.randn(2, 4, 9, 13, generator=gen)
    with torch.no_grad():
        loop = irnn(x)
        irnn.impl = "scan"
        scan = irnn(x)

    def wb(conv):
        return conv.weight.reshape(1, -1, 1), conv.bias.reshape(1, -1, 1)

    expected = (  # upstream's order: up, right, down, left
        _reference_sweep(x, *wb(irnn.up_weight), axis=2, reverse=True, relu_first=relu_first),
        _reference_sweep(x, *wb(irnn.right_weight), axis=3, reverse=False, relu_first=relu_first),
        _reference_sweep(x, *wb(irnn.down_weight), axis=2, reverse=False, relu_first=relu_first),
        _reference_sweep(x, *wb(irnn.left_weight), axis=3, reverse=True, relu_first=relu_first),
    )
    for got_loop, got_scan, want in zip(loop, scan, expected):
        torch.testing.assert_close(got_loop, want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got_scan, want, rtol=1e-5, atol=1e-5)
    if not relu_first:  # the first element is passed through unchanged (f0d982d), even when negative
        assert torch.equal(loop[1][..., 0], x[..., 0]) and (x[..., 0] < 0).any()


def test_spanet_official_weights_loop_equals_scan():
    path = shared("official-weights", "spanet", "latest")
    net = SPANet(irnn_impl="loop").eval()
    net.load_state_dict(spanet.convert_official_state_dict(torch.load(path, map_location="cpu", weights_only=True)))
    x = torch.rand(1, 3, 20, 28, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        loop = net(x)
        for irnn in (net.SAM1.irnn1, net.SAM1.irnn2):
            irnn.impl = "scan"
        scan = net(x)
    torch.testing.assert_close(scan, loop, rtol=1e-5, atol=1e-5)


# --- torch.export with dynamic H and W ----------------------------------------------------------

def _export_and_compare(net, example_hw, dynamic_shapes, run_sizes):
    net.eval()
    gen = torch.Generator().manual_seed(5)
    program = export(net, (torch.rand(1, 3, *example_hw, generator=gen),), dynamic_shapes=dynamic_shapes,
                     strict=False)
    exported = program.module()
    for height, width in run_sizes:
        x = torch.rand(1, 3, height, width, generator=gen)
        with torch.no_grad():
            want = net(x)
            got = exported(x)
        assert got.shape == (1, 3, height, width)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def _hw(max_side: int = 64) -> dict:
    return {"x": {2: Dim("H", min=2, max=max_side), 3: Dim("W", min=2, max=max_side)}}


@pytest.mark.parametrize("name", ["dpenet", "remaen", "sdsen", "spanet"])
def test_export_dynamic_hw(name):
    torch.manual_seed(0)
    # SPANet: under export the IRNN becomes a fixed-depth scan that covers lines up to scan_max_len;
    # the dynamic dims must promise no more than that.
    net = SPANet(scan_max_len=64) if name == "spanet" else ARCHS[name]()
    _export_and_compare(net, (24, 32), _hw(64), [(24, 32), (40, 48)])


def test_export_dynamic_hw_aimhnet():
    # One hourglass per scale: every code path of the full network (all three hourglass widths,
    # both Haar orderings, weight norm, fusion) at a fraction of the export time. Sides are
    # 128 * k; k = 1 cannot stay dynamic (torch.export specialises sizes of 1), hence 256+.
    torch.manual_seed(0)
    h, w = Dim("h", min=2, max=32), Dim("w", min=2, max=32)
    _export_and_compare(AIMHNet(hourglasses=(1, 1, 1)), (256, 256), {"x": {2: 128 * h, 3: 128 * w}},
                        [(256, 256), (256, 384)])


@pytest.mark.skipif(not os.environ.get("STREAMRAIN_SLOW_TESTS"), reason="full AIMHNet export takes ~40 s of CPU; "
                    "set STREAMRAIN_SLOW_TESTS=1")
def test_export_dynamic_hw_aimhnet_full(aimhnet_full):
    h, w = Dim("h", min=2, max=32), Dim("w", min=2, max=32)
    _export_and_compare(aimhnet_full, (256, 256), {"x": {2: 128 * h, 3: 128 * w}}, [(256, 256), (256, 384)])


# --- odd frame sizes ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["aimhnet", "remaen", "dpenet", "spanet", "sdsen"])
def test_forward_at_odd_size(name, aimhnet_full):
    torch.manual_seed(0)
    net = aimhnet_full if name == "aimhnet" else ARCHS[name]().eval()
    x = torch.rand(1, 3, 37, 29, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        if name == "aimhnet":
            padded = F.pad(x, (0, 128 - 29, 0, 128 - 37), mode="replicate")
            y = net(padded)[..., :37, :29]
        else:
            y = net(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    if name == "aimhnet":
        assert y.min() >= 0 and y.max() <= 1


def test_stage_outputs_agree_with_forward():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        net = DPENet().eval()
        x_mid, out = net.forward_stages(x)
        assert torch.equal(out, net(x)) and x_mid.shape == x.shape
        net = ReMAEN().eval()
        stages = net.forward_stages(x)
        assert len(stages) == 3 and torch.equal(stages[-1], net(x))
        net = SDSEN().eval()
        rains = net.forward_rain_layers(x)
        assert len(rains) == 8 and torch.equal(x - rains[-1], net(x))
        net = SPANet().eval()
        mask, image = net.forward_with_mask(x)
        assert mask.shape == (1, 1, 12, 10) and torch.equal(image, net(x))
        assert ((mask > 0) & (mask < 1)).all()


def test_aimhnet_rejects_sizes_off_the_multiple(aimhnet_full):
    with pytest.raises(ValueError, match="multiples of 128"):
        aimhnet_full(torch.zeros(1, 3, 128, 130))
