"""The precision verdict of a model: what bf16 costs against fp32 on Rain100L, scored as `streamrain
eval` scores (images through the Derainer's uint8 path); for a temporal model, on a rainy video's
frames through its stream.

benchmarks/precision_verdicts.py runs this for every shipped model and importable architecture and
writes the result into the model cards (streamrain.cards), which `--precision auto` then follows.

On a CPU with native bf16 the bf16 pass is the path users get (``--precision bf16``). Elsewhere
oneDNN falls back to reference bf16 kernels some twenty times slower than fp32 (one 3x3 conv,
64 channels, measured on the 2-core AVX2 machine: 8.4 s against 0.38 s), too slow for the big
networks, so bf16 is emulated: the network runs in fp32 with its weights and every intermediate
result rounded to bf16, which is where bf16 loses precision (native kernels also accumulate in
fp32). It rounds a little more than autocast does (autocast keeps a few ops in fp32), so an
emulated verdict errs on the side of fp32.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from streamrain.cards import precision_verdict
from streamrain.runtime.derainer import Derainer, cpu_has_bf16
from streamrain.errors import ModelError
from streamrain.runtime.temporal import TemporalDerainer
from streamrain.train.evaluate import Sequence, Streamed, evaluate, evaluate_sequences
from streamrain.zoo import load_model


def _to_bf16_values(value):
    if isinstance(value, torch.Tensor) and value.dtype == torch.float32:
        return value.to(torch.bfloat16).to(torch.float32)
    return value


def _round_in_place(value):
    if isinstance(value, torch.Tensor) and value.dtype == torch.float32:
        value.copy_(value.to(torch.bfloat16))
    return value


class _RoundEveryResultToBf16(TorchDispatchMode):
    # In place, so that in-place ops (relu_, add_) are rounded too; a view's storage holds bf16
    # values already, so rounding it again changes nothing.
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return tree_map(_round_in_place, func(*args, **(kwargs or {})))


class Bf16Emulated(nn.Module):
    """``net`` computing in fp32 kernels on bf16 values: its weights rounded once, its input and
    every op's result rounded as they come."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        with torch.no_grad():
            for tensor in [*net.parameters(), *net.buffers()]:
                if tensor.dtype == torch.float32:
                    tensor.copy_(_to_bf16_values(tensor))
        for attr in ("pad_multiple", "input_order", "clamps_output"):  # what DerainModule reads
            if hasattr(net, attr):
                setattr(self, attr, getattr(net, attr))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with _RoundEveryResultToBf16():
            return self.net(_to_bf16_values(x))


def bf16_derainer(model: str, *, emulate: bool) -> Derainer:
    module = load_model(model)
    if not emulate:
        return Derainer(module, device="cpu", precision="bf16", cpu_workers=1)
    module.net = Bf16Emulated(module.net)  # no inference form: the plain network, emulated
    return Derainer(module, device="cpu", precision="fp32", cpu_workers=1)


def measure_precision(model: str, pairs: list, *, measured_on: str, threads: int = 2,
                      emulate: bool | None = None) -> dict:
    """The ``precision`` card section for ``model`` from ``pairs`` (``pair_loaders``' list): one
    pass in fp32, then one in bf16 (emulated unless the CPU has native bf16, or as ``emulate``
    says), one after the other on ``threads`` threads."""
    emulate = not cpu_has_bf16() if emulate is None else emulate
    torch.set_num_threads(threads)
    psnr_y = {}
    for precision in ("fp32", "bf16"):
        derainer = (Derainer(load_model(model), device="cpu", precision="fp32", cpu_workers=1)
                    if precision == "fp32" else bf16_derainer(model, emulate=emulate))
        try:
            psnr_y[precision] = evaluate(derainer, pairs).psnr_y
        finally:
            derainer.close()
    return _verdict(psnr_y, measured_on, emulate)


def measure_temporal_precision(model: str, sequence: Sequence, *, measured_on: str,
                               limit: int | None = None, threads: int = 2) -> dict:
    """The same for a temporal model, on a sequence through its stream (offline window): still
    images would leave its neighbours' alignment, where bf16 went wrong once, unmeasured. Native
    bf16 only: the emulation wraps a plain network, not a stream's two parts."""
    if not cpu_has_bf16():
        raise ModelError(f"{model} is temporal: its bf16 verdict needs a CPU with native bf16")
    torch.set_num_threads(threads)
    psnr_y = {}
    for precision in ("fp32", "bf16"):
        derainer = TemporalDerainer(load_model(model), device="cpu", precision=precision)
        try:
            psnr_y[precision] = evaluate_sequences(derainer, [sequence], limit=limit,
                                                   open_stream=lambda: Streamed(derainer.stream())).psnr_y
        finally:
            derainer.close()
    return _verdict(psnr_y, measured_on, emulate=False)


def _verdict(psnr_y: dict, measured_on: str, emulate: bool) -> dict:
    verdict = precision_verdict(psnr_y, measured_on=measured_on)
    verdict["bf16"] = "emulated in fp32 kernels" if emulate else "native"
    return verdict
