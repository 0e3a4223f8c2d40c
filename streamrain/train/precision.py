"""The precision verdict of a model: what bf16 costs against fp32 on Rain100L, through the CPU path
users get (the Derainer, with each network's own inference form), scored as `streamrain eval` scores.

benchmarks/precision_verdicts.py runs this for every shipped model and importable architecture and
writes the result into the model cards (streamrain.cards), which `--precision auto` then follows.
"""

from __future__ import annotations

import torch

from streamrain.cards import precision_verdict
from streamrain.runtime.derainer import Derainer, cpu_has_bf16
from streamrain.train.evaluate import evaluate
from streamrain.zoo import load_model


def measure_precision(model: str, pairs: list, *, measured_on: str, threads: int = 2) -> dict:
    """The ``precision`` card section for ``model`` from ``pairs`` (``pair_loaders``' list): one
    pass in fp32, then one in bf16, one after the other on ``threads`` threads. On a CPU without
    native bf16 oneDNN emulates it: weights and activations are still rounded to bf16 between
    operations, the source of the loss measured here, only slower; the card records which it was."""
    torch.set_num_threads(threads)
    psnr_y = {}
    for precision in ("fp32", "bf16"):
        derainer = Derainer(load_model(model), device="cpu", precision=precision, cpu_workers=1)
        try:
            psnr_y[precision] = evaluate(derainer, pairs).psnr_y
        finally:
            derainer.close()
    verdict = precision_verdict(psnr_y, measured_on=measured_on)
    verdict["native_bf16"] = cpu_has_bf16()
    return verdict
