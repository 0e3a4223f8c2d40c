"""How much memory a network's activations take per pixel (measured), and how much a device offers.

``bytes_per_pixel`` runs the frame function once on a small input and records the peak of the
memory it allocated, divided by the input's pixels. On CUDA that is the caching allocator's own
peak counter (everything, cuDNN workspaces included). The CPU has no such counter, so a dispatch
mode follows every tensor an operator returns and its storage's lifetime: the peak of the bytes
alive at once between operators (scratch memory inside one operator, e.g. oneDNN's, is not seen).
The first dispatch mode of a process imports much of torch (dynamo, sympy: ~3 s on an idle 2-core
machine), so ``remembered`` keeps each measured figure in a small JSON file in the user's cache:
each model is measured once per machine and torch version, not once per run.
The fixed costs of a call (weights cast under autocast, bias pictures) are included, so on a small
input the figure is an upper bound of the per-pixel cost on a large one. Measured here (fp32) at
64x64, 256x256 for AIMHNet, against the slope between two larger sizes: equal for SRNet (96 bytes
a pixel) and ReMAEN (3,132), 4 % above for SDSEN (1,958), under 1 % for AIMHNet (301).

``budget_bytes`` is what a derainer may give one batch's activations: on CUDA a fraction of the
memory free on the card, on the CPU a fraction of the RAM available, capped (see CPU_BUDGET_CAP).
"""

from __future__ import annotations

import json
import os
import weakref
from pathlib import Path
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

# The CPU budget per process: at most half of the RAM available, and no more than this, so that
# a 4K frame through a large network is tiled instead of taking gigabytes beside the rest of the
# machine's work. SRNet at 1080p with the default batch stays under it (no tiling).
CPU_BUDGET_CAP = 2 << 30
CPU_RAM_FRACTION = 0.5
# CUDA: some of the free memory stays free for the allocator's fragmentation and cuDNN's choices.
CUDA_FREE_FRACTION = 0.7


class _LiveBytes(TorchDispatchMode):
    """Peak bytes of the storages that operators return while it is active, less ``known`` ones."""

    def __init__(self, known: set[int]):
        super().__init__()
        self.known = known
        self.refs: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.now = self.peak = 0

    def _release(self, key: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.now -= self.sizes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0 or key in self.known:
                continue
            if key not in self.refs:  # a new storage; views and in-place results share one
                self.refs[key] = 0
                self.sizes[key] = storage.nbytes()
                self.now += storage.nbytes()
                self.peak = max(self.peak, self.now)
            self.refs[key] += 1
            weakref.finalize(t, self._release, key)
        return out


def _storages(tensors) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in tensors}


def bytes_per_pixel(run: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor, *,
                    pixels: int | None = None, module: torch.nn.Module | None = None) -> float:
    """Peak memory allocated by ``run(example)`` (its result included) per pixel of the frame
    ``example`` holds (default: its last two dimensions, ``(..., H, W)``); ``module``'s parameters
    and buffers are not counted on the CPU."""
    pixels = pixels or example.shape[-2] * example.shape[-1]
    if example.device.type == "cuda":
        device = example.device
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        with torch.inference_mode():
            result = run(example)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        del result
        return peak / pixels
    known = _storages([example])
    if module is not None:
        known |= _storages(list(module.parameters()) + list(module.buffers()))
    with torch.inference_mode(), _LiveBytes(known) as counter:
        result = run(example)
        del result
    return counter.peak / pixels


def remembered(key: dict, measure: Callable[[], float], cache_file: Path) -> float:
    """``measure()``'s figure for ``key`` from ``cache_file``, measured and stored there when absent.
    A cache that cannot be read or written only costs a new measurement."""
    name = json.dumps({**key, "torch": torch.__version__}, sort_keys=True, default=str)
    try:
        known = json.loads(Path(cache_file).read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(name), (int, float)):
        return float(known[name])
    value = measure()
    known = known if isinstance(known, dict) else {}
    known[name] = value
    try:
        Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(cache_file).with_name(f".{Path(cache_file).name}.{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=1) + "\n")
        os.replace(tmp, cache_file)
    except OSError:
        pass
    return value


def available_ram_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux), else the physical memory; what can be given out
    without swapping."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return CPU_BUDGET_CAP


def budget_bytes(device: torch.device, *, share: int = 1) -> int:
    """Memory one batch's activations may take on ``device``, when ``share`` batches run at once."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(CUDA_FREE_FRACTION * (free + cached))
    return int(min(CPU_BUDGET_CAP, CPU_RAM_FRACTION * available_ram_bytes()) // max(1, share))
