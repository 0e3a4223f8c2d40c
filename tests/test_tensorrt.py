"""What of the TensorRT path can be checked without a GPU: export with dynamic shapes, cache keys,
and the fallback when torch-tensorrt is missing. The engine build itself needs CUDA."""

from __future__ import annotations

import builtins
from dataclasses import replace

import pytest
import torch

import streamrain
from streamrain.runtime.tensorrt import ShapeRange, build_or_load, engine_key, export_program, weights_id


def test_default_model_exports_with_dynamic_batch_height_and_width():
    module = streamrain.load_model()
    shapes = ShapeRange(min_hw=(32, 32), opt_hw=(64, 96), max_hw=(512, 512), max_batch=4)
    program = export_program(module.net, multiple=module.multiple, shapes=shapes)
    for size in ((1, 3, 48, 80), (3, 3, 124, 36)):
        x = torch.rand(*size)
        with torch.inference_mode():
            assert torch.allclose(program.module()(x), module.net(x), atol=1e-5)


def test_engine_key_changes_with_everything_that_invalidates_an_engine():
    base = dict(weights_id="w", shapes=ShapeRange(), dtype=torch.float16, gpu_name="H100",
                trt_version="10.12", torch_trt_version="2.13.0")
    key = engine_key(**base)
    assert key == engine_key(**base)
    for change in ({"weights_id": "w2"}, {"shapes": ShapeRange(static=True)}, {"dtype": torch.float32},
                   {"gpu_name": "L4"}, {"trt_version": "10.13"}, {"torch_trt_version": "2.14.0"},
                   {"shapes": replace(ShapeRange(), max_batch=2)}):
        assert engine_key(**{**base, **change}) != key, change


def test_weights_id_follows_the_weights():
    module = streamrain.load_model()
    before = weights_id(module.net)
    with torch.no_grad():
        next(module.net.parameters()).add_(1e-3)
    assert weights_id(module.net) != before


def test_missing_tensorrt_falls_back_with_a_warning(monkeypatch, caplog, tmp_path):
    real_import = builtins.__import__

    def no_tensorrt(name, *args, **kwargs):
        if name in ("tensorrt", "torch_tensorrt"):
            raise Exception("libnvinfer.so.10: cannot open shared object file")  # what TRT raises
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorrt)
    result = build_or_load(streamrain.load_model(), device=torch.device("cpu"), dtype=torch.float16,
                           shapes=ShapeRange(), cache_dir=tmp_path)
    assert result is None
    assert "TensorRT unavailable" in caplog.text and "streamrain[tensorrt]" in caplog.text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="building a TensorRT engine needs a CUDA GPU")
def test_tensorrt_engine_matches_eager(tmp_path):
    pytest.importorskip("torch_tensorrt", reason="the optional 'tensorrt' extra")
    module = streamrain.load_model().cuda()
    shapes = ShapeRange(min_hw=(64, 64), opt_hw=(96, 128), max_hw=(256, 256), max_batch=2)
    engine = build_or_load(module, device=torch.device("cuda"), dtype=torch.float16, shapes=shapes,
                           cache_dir=tmp_path)
    assert engine is not None and list(tmp_path.glob("*.ep"))
    x = torch.rand(2, 3, 90, 120, device="cuda")
    with torch.inference_mode():
        assert (engine(x.half()).float() - module(x)).abs().max() < 0.02
