"""SRNet's inference form computes the training form's function, and the CPU runtime uses it."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streamrain.archs.srnet import FoldedSRNet, SRNet
from streamrain.runtime.derainer import Derainer
from streamrain.runtime.malloc import keep_freed_memory
from streamrain.runtime.wrapper import DerainModule, pad_to_multiple


DEEP = dict(deep_channels=24, deep_blocks=1)


@pytest.fixture(params=[{}, DEEP], ids=["plain", "deep"])
def net(request):
    torch.manual_seed(0)
    net = SRNet(half_channels=8, quarter_channels=16, blocks=2, **request.param).eval()
    for p in net.parameters():  # weights large enough that every path changes the output
        p.data.normal_(0, 0.1)
    return net


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("shape", [(2, 3, 16, 24), (1, 3, 36, 68)])  # (quarter: 9x17, odd)
def test_folded_form_is_exact_in_fp32(net, shape, layout):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1)).contiguous(memory_format=layout)
    with torch.inference_mode():
        reference, folded = net(x), net.inference_form(torch.float32)(x)
    assert (reference - x).abs().max() > 0.05  # the net really does something to these pixels
    assert torch.allclose(folded, reference, atol=1e-5)


def test_folded_form_in_bf16_stays_close_and_returns_float32(net):
    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(2)).contiguous(
        memory_format=torch.channels_last)
    with torch.inference_mode():
        out = net.inference_form(torch.bfloat16)(x)
        reference = net(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert (out - reference).abs().mean() < 2e-3 and out.min() >= 0 and out.max() <= 1


def test_cpu_derainer_runs_the_folded_form_with_the_same_result(net):
    frames = np.random.default_rng(3).integers(0, 256, (2, 20, 28, 3), dtype=np.uint8)
    derainer = Derainer(DerainModule(net, name="t", arch="srnet"), device="cpu", precision="fp32")
    assert isinstance(derainer.module.net, FoldedSRNet)
    with torch.inference_mode():
        # (20x28 is no multiple of 8: the runtime pads a deep SRNet's frames first, as here)
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
        expected = net(pad_to_multiple(x, net.pad_multiple))[..., :20, :28]
    expected_u8 = (expected * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.abs(derainer(frames).astype(int) - expected_u8).max() <= 1


GLIBC = hasattr(os, "confstr") and "glibc" in (os.confstr("CS_GNU_LIBC_VERSION") or "")


@pytest.mark.skipif(not GLIBC, reason="the malloc tuning applies to glibc only")
def test_malloc_tuning_is_accepted_by_glibc():
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # once per process; a second call is harmless


def test_compile_backend_runs_one_cpu_batch_at_a_time(net):
    # Concurrent first compiles in two worker threads stalled; the compiled path keeps one worker.
    derainer = Derainer(DerainModule(net, name="t", arch="srnet"), device="cpu", backend="compile",
                        cpu_workers=2)
    assert derainer.max_in_flight == 1 and not isinstance(derainer.module.net, FoldedSRNet)


def test_cpu_derainer_leaves_the_callers_module_alone(net):
    module = DerainModule(net, name="t", arch="srnet")
    Derainer(module, device="cpu", precision="bf16")
    assert module.net is net and next(net.parameters()).dtype == torch.float32


@pytest.mark.parametrize("onednn", [True, False])
@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 0), (2, 2)])
def test_frozen_conv_is_conv2d_with_relu_or_a_residual_add(monkeypatch, onednn, stride, padding):
    from streamrain.archs import frozen_conv
    monkeypatch.setattr(frozen_conv, "_onednn_takes", lambda dtype: onednn)
    g = torch.Generator().manual_seed(4)
    weight, bias = torch.randn(16, 8, 3, 3, generator=g), torch.randn(16, generator=g)
    conv = frozen_conv.FrozenConv(weight, bias, torch.float32, stride=stride, padding=padding)
    assert (conv._packed is not None) == onednn
    for shape in [(2, 8, 20, 28), (1, 8, 37, 64)]:  # other sizes than the one the weights were packed for
        x = torch.randn(*shape, generator=g).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            expected = F.conv2d(x, weight, bias, stride=stride, padding=padding)
            acc = torch.randn(expected.shape, generator=g).contiguous(memory_format=torch.channels_last)
            summed = acc + expected
            assert torch.allclose(conv(x), expected, atol=1e-4)
            assert torch.allclose(conv(x, relu=True), expected.relu(), atol=1e-4)
            result = conv.add_to_(acc, x)
            assert result.data_ptr() == acc.data_ptr() and torch.allclose(acc, summed, atol=1e-4)


def test_a_deep_stage_starts_at_zero_so_adopting_an_srnet_keeps_its_output(net):
    deep = SRNet(half_channels=8, quarter_channels=16, blocks=2, **DEEP).eval()
    deep.adopt(net)
    x = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        if net.deep_blocks:  # the same widths: the deep stage comes along
            assert torch.equal(deep.deep_body[0].conv1.weight, net.deep_body[0].conv1.weight)
        else:
            assert torch.allclose(deep(x), net(x), atol=1e-6)
    assert deep.pad_multiple == 8 and SRNet().pad_multiple == 4
    with pytest.raises(ValueError, match="cannot adopt"):
        deep.adopt(SRNet(half_channels=8, quarter_channels=24))
