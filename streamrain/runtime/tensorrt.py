"""TensorRT engines through torch-tensorrt's dynamo path, with an on-disk cache of built engines.

The network (inside the DerainModule's padding and channel handling, which stay in eager PyTorch) is
exported with ``torch.export`` — dynamic batch, height and width, the height and width declared as
multiples of the network's padding multiple so that export's guards hold — then compiled in fp16 by
casting the model and its inputs (torch-tensorrt >= 2.13 takes the engine's precision from the
model's dtype; ``enabled_precisions`` is gone). A static-shape engine per resolution is the other
option: simpler and faster where sizes are known (dashcams record at two or three).

Built engines are saved under ``$STREAMRAIN_HOME/engines/KEY.ep``; the key covers everything that
makes an engine unusable elsewhere: weights, shapes, dtype, GPU, TensorRT and torch-tensorrt versions.
When torch-tensorrt is missing or a build fails, a warning says so and eager CUDA runs instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from streamrain.runtime.wrapper import DerainModule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShapeRange:
    """Frame sizes an engine accepts (after padding), and the size it is tuned for."""

    min_hw: tuple[int, int] = (128, 128)
    opt_hw: tuple[int, int] = (720, 1280)
    max_hw: tuple[int, int] = (2176, 3840)
    max_batch: int = 8
    static: bool = False  # True: exactly opt_hw and max_batch


def export_program(net: torch.nn.Module, *, multiple: int, shapes: ShapeRange,
                   dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """``torch.export`` of ``net`` with dynamic batch, H and W (H, W multiples of ``multiple``)."""
    m = max(1, multiple)
    h, w = (-(-s // m) * m for s in shapes.opt_hw)
    example = torch.rand(min(2, shapes.max_batch), 3, h, w, dtype=dtype, device=device)
    if shapes.static:
        return torch.export.export(net, (example,), strict=False)
    dim = torch.export.Dim
    lo_h, lo_w = (max(1, -(-s // m)) for s in shapes.min_hw)
    hi_h, hi_w = (max(2, s // m) for s in shapes.max_hw)
    dynamic = {"x": {0: dim("batch", min=1, max=shapes.max_batch),
                     2: dim("h_blocks", min=lo_h, max=hi_h) * m,
                     3: dim("w_blocks", min=lo_w, max=hi_w) * m}}
    return torch.export.export(net, (example,), dynamic_shapes=_named(net, dynamic), strict=False)


def _named(net: torch.nn.Module, dynamic: dict) -> dict:
    """Key the dynamic-shape spec by the name of forward's first argument, whatever it is called."""
    import inspect
    first = next(iter(inspect.signature(net.forward).parameters))
    return {first: dynamic["x"]}


def engine_key(*, weights_id: str, shapes: ShapeRange, dtype: torch.dtype, gpu_name: str,
               trt_version: str, torch_trt_version: str) -> str:
    """A name for an engine that changes whenever the engine would not be valid any more."""
    material = {"weights": weights_id, "shapes": asdict(shapes), "dtype": str(dtype), "gpu": gpu_name,
                "tensorrt": trt_version, "torch_tensorrt": torch_trt_version, "torch": torch.__version__}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:24]


def weights_id(net: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


def build_or_load(module: DerainModule, *, device: torch.device, dtype: torch.dtype, shapes: ShapeRange,
                  cache_dir: Path) -> DerainModule | None:
    """A DerainModule whose network is a TensorRT engine, or None (with a warning) if that fails."""
    try:
        import tensorrt
        import torch_tensorrt
    except Exception as exc:  # noqa: BLE001 - it raises a plain Exception when libnvinfer is missing
        log.warning("TensorRT unavailable (%s); running eager CUDA instead. "
                    "Install it with: pip install 'streamrain[tensorrt]'", exc)
        return None
    key = engine_key(weights_id=weights_id(module.net), shapes=shapes, dtype=dtype,
                     gpu_name=torch.cuda.get_device_name(device), trt_version=tensorrt.__version__,
                     torch_trt_version=torch_tensorrt.__version__)
    path = Path(cache_dir) / f"{module.arch}-{key}.ep"
    try:
        if path.exists():
            engine = torch_tensorrt.load(str(path)).module()
            log.info("loaded TensorRT engine %s", path)
        else:
            net = module.net.to(device=device, dtype=dtype).eval()
            program = export_program(net, multiple=module.multiple, shapes=shapes, dtype=dtype, device=device)
            spec = _trt_input(torch_tensorrt, module.multiple, shapes, dtype)
            engine = torch_tensorrt.dynamo.compile(program, arg_inputs=[spec], min_block_size=1,
                                                   optimization_level=3, use_fp32_acc=dtype != torch.float32)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch_tensorrt.save(engine, str(path), arg_inputs=[spec])
            log.info("built TensorRT engine %s", path)
    except Exception as exc:  # noqa: BLE001 - any build failure falls back, with the reason
        log.warning("TensorRT engine build failed (%s); running eager CUDA instead", exc)
        return None
    return DerainModule(engine, name=module.name, arch=module.arch).eval()


def _trt_input(torch_tensorrt, multiple: int, shapes: ShapeRange, dtype: torch.dtype):
    def padded(hw):
        return [-(-s // multiple) * multiple for s in hw]
    if shapes.static:
        return torch_tensorrt.Input(shape=[shapes.max_batch, 3, *padded(shapes.opt_hw)], dtype=dtype, name="x")
    return torch_tensorrt.Input(min_shape=[1, 3, *padded(shapes.min_hw)],
                                opt_shape=[shapes.max_batch, 3, *padded(shapes.opt_hw)],
                                max_shape=[shapes.max_batch, 3, *padded(shapes.max_hw)], dtype=dtype, name="x")
