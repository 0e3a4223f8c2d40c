"""A prepared check of streamrain's CUDA path, for the few minutes a GPU machine is lent.

    python3 benchmarks/gpu_check.py --out DIR            # on the GPU machine, from the repo root
    python3 benchmarks/gpu_check.py --out DIR --dry-run  # the same steps on the CPU, tiny inputs, seconds

Needs only what that machine has (torch with CUDA, numpy): no install step, no PyAV, no TensorRT.
Frames are generated in memory (1920x1080), rain is the project's own synthetic rain. For the
default model and one large model it measures the derainer's own CUDA path
(streamrain.runtime.derainer / cuda): per-batch upload, compute and download time from CUDA events
on the runner's streams and whether one batch's transfers overlap another's compute; three streams
against one; fp16 against fp32 (PSNR between their outputs on 20 rainy frames); batch sizes and
peak GPU memory; tiled against untiled 4K frames; eager against torch.compile; torch-tensorrt where
importable. Where PyAV is importable it also runs the whole pipeline on a generated clip.

Every step records its own result or failure (and its time) in DIR/gpu_check.json, rewritten after
each step, so a step that fails or a run that is cut short keeps what was measured before it;
DIR/gpu_check.txt is a short summary of the same. Steps are skipped, saying so, once the time
budget (--budget-s, default 450 s) would be exceeded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout, no install step
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

LARGE_MODEL = "aimhnet-v1"


@dataclass(frozen=True)
class Settings:
    """What the check runs on; ``dry_run`` shrinks everything to CPU-sized inputs."""

    device: str
    width: int
    height: int
    batch: int  # the pipeline's default batch, for the per-batch timings
    batch_sizes: tuple[int, ...]
    timed_batches: int  # per measurement, after warm-up batches
    rain_frames: int
    tile_frame_hw: tuple[int, int]
    tile_side: int
    clip_frames: int
    low_precision: str  # compared against fp32
    budget_s: float
    step_limit_s: float
    dry_run: bool
    models: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def for_run(cls, *, dry_run: bool, budget_s: float | None, models: tuple[str, ...]) -> "Settings":
        if dry_run:
            return cls(device="cpu", width=64, height=48, batch=2, batch_sizes=(1, 2), timed_batches=2,
                       rain_frames=2, tile_frame_hw=(256, 320), tile_side=128, clip_frames=6,
                       low_precision="bf16", budget_s=budget_s or 120.0, step_limit_s=60.0, dry_run=True,
                       models=models)
        return cls(device="cuda", width=1920, height=1080, batch=4, batch_sizes=(1, 2, 4, 8), timed_batches=8,
                   rain_frames=20, tile_frame_hw=(2160, 3840), tile_side=1024, clip_frames=48,
                   low_precision="fp16", budget_s=budget_s or 450.0, step_limit_s=180.0, dry_run=False,
                   models=models)


class StepTimeout(Exception):
    """A step ran past its share of the time budget."""


class Skipped(Exception):
    """A step that cannot run here; the message says why."""


# -- inputs ---------------------------------------------------------------------------------------

def scene_u8(count: int, height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """``count`` generated RGB frames ``(N, H, W, 3)`` uint8: smooth multi-scale texture with sharp
    edged shapes (what a network sees in real footage: flat areas, gradients, edges), no PyAV."""
    gen = torch.Generator().manual_seed(seed)
    frames = []
    for _ in range(count):
        img = torch.zeros(1, 3, height, width)
        for octave in range(1, 6):
            cells = (max(2, height >> (7 - octave)), max(2, width >> (7 - octave)))
            noise = torch.rand(1, 3, *cells, generator=gen)
            img += torch.nn.functional.interpolate(noise, size=(height, width), mode="bicubic",
                                                   align_corners=False) / octave
        img = (img - img.amin()) / (img.amax() - img.amin() + 1e-6)
        for _ in range(6):  # flat shapes with hard edges
            y0, x0 = (int(torch.randint(0, max(1, s - 8), (1,), generator=gen)) for s in (height, width))
            h, w = (int(torch.randint(4, max(5, s // 3), (1,), generator=gen)) for s in (height, width))
            img[..., y0:y0 + h, x0:x0 + w] = torch.rand(3, 1, 1, generator=gen)
        frames.append((img.clamp(0.05, 0.95) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy())
    return np.stack(frames)


def rainy_u8(clean_u8: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, str]:
    """The project's synthetic rain (streamrain.train.synth, default RainParams) over ``clean_u8``;
    returns the frames and where the rain came from."""
    from streamrain.train.synth import RainParams, add_rain

    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, len(clean_u8), 4):  # a few frames at a time: 1080p rain layers are large
        clean = torch.from_numpy(clean_u8[start:start + 4]).permute(0, 3, 1, 2).float() / 255.0
        rainy = add_rain(clean, RainParams(), gen)
        out.append((rainy.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out), "streamrain.train.synth.add_rain(RainParams())"


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def finite(x: float) -> float | None:
    """JSON has no infinity: identical outputs are reported as PSNR null with ``identical`` true."""
    return round(x, 3) if math.isfinite(x) else None


# -- measuring ------------------------------------------------------------------------------------

def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_mib(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else None


def run_batches(derainer, batches: list[np.ndarray], *, pipelined: bool) -> tuple[list[np.ndarray], float]:
    """Derains ``batches`` as the pipeline does (``pipelined``: the next batch submitted before the
    oldest is collected, up to ``max_in_flight``) or one at a time; returns outputs and seconds."""
    outputs, in_flight = [], []
    limit = max(1, derainer.max_in_flight) if pipelined else 1
    started = time.perf_counter()
    for batch in batches:
        in_flight.append(derainer.submit(batch))
        if len(in_flight) >= limit:
            outputs.append(derainer.collect(in_flight.pop(0)))
    outputs.extend(derainer.collect(h) for h in in_flight)
    return outputs, time.perf_counter() - started


def make_derainer(model: str, settings: Settings, **kwargs):
    from streamrain.runtime.derainer import Derainer
    from streamrain.zoo import load_model

    kwargs.setdefault("device", settings.device)
    return Derainer(load_model(model), **kwargs)


def frame_batches(settings: Settings, batch: int, count: int, *, seed: int = 1) -> list[np.ndarray]:
    frames = scene_u8(batch, settings.height, settings.width, seed=seed)
    return [frames] * count  # the same pixels each time: what is measured is the path, not content


# -- steps ----------------------------------------------------------------------------------------
# Each returns a dict of JSON-able results, or raises (recorded as the step's failure) or Skipped.

def step_environment(settings: Settings) -> dict:
    import streamrain.runtime.cuda  # noqa: F401 - imported to prove they import without PyAV
    import streamrain.runtime.derainer  # noqa: F401
    import streamrain.zoo

    info = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
            "cpu_count": os.cpu_count(), "default_model": streamrain.zoo.DEFAULT_MODEL,
            "av_imported_by_streamrain": "av" in sys.modules, "dry_run": settings.dry_run}
    try:
        import av
        info["av"] = av.__version__
    except ImportError as exc:
        info["av"] = f"not importable: {exc}"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info()
        info.update(gpu=props.name, capability=f"{props.major}.{props.minor}", gpu_total_mib=total >> 20,
                    gpu_free_mib=free >> 20, cudnn=torch.backends.cudnn.version(),
                    # "fp32" convolutions run in TF32 where this is on (torch's default for cuDNN)
                    cudnn_allow_tf32=torch.backends.cudnn.allow_tf32)
    elif not settings.dry_run:
        raise RuntimeError("torch sees no CUDA GPU; run with --dry-run on a CPU machine")
    return info


def step_load(model: str, settings: Settings) -> dict:
    started = time.perf_counter()
    derainer = make_derainer(model, settings)
    seconds = time.perf_counter() - started
    params = sum(p.numel() for p in derainer.module.parameters())
    return {"device_label": derainer.device_label, "params": params, "load_s": round(seconds, 3),
            "accepts_yuv420": derainer.accepts_yuv420}


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 3) if values else None


def step_phases(model: str, settings: Settings) -> dict:
    """Per-batch phase times from the CUDA runner's own events, pipelined as the pipeline runs it."""
    derainer = make_derainer(model, settings)
    warm = frame_batches(settings, settings.batch, 2)
    run_batches(derainer, warm, pipelined=True)
    runner = derainer.cuda_runner
    batches = frame_batches(settings, settings.batch, settings.timed_batches)
    reset_peak(settings.device)
    if runner is None:  # CPU (dry run): no transfers, the derainer's wall time per batch
        _, seconds = run_batches(derainer, batches, pipelined=True)
        return {"batch": settings.batch, "frames_per_s": round(len(batches) * settings.batch / seconds, 2),
                "note": "CPU: no upload or download; compute is the wall time per batch",
                "compute_ms": round(1000 * seconds / len(batches), 3), "upload_ms": None, "download_ms": None,
                "transfers_overlap_compute": None}
    runner.timing = True
    timelines, in_flight = [], []
    host_in_ms, host_out_ms = [], []
    started = time.perf_counter()
    for batch in batches:
        t0 = time.perf_counter()
        in_flight.append(derainer.submit(batch))
        host_in_ms.append(1000 * (time.perf_counter() - t0))
        if len(in_flight) >= derainer.max_in_flight:
            handle = in_flight.pop(0)
            t0 = time.perf_counter()
            derainer.collect(handle)
            host_out_ms.append(1000 * (time.perf_counter() - t0))
            timelines.append(runner.timeline(handle))
    for handle in in_flight:
        derainer.collect(handle)
        timelines.append(runner.timeline(handle))
    seconds = time.perf_counter() - started
    runner.timing = False

    def length(phase):
        return [tl[phase][1] - tl[phase][0] for tl in timelines]

    def overlaps(a, b):
        return a[0] < b[1] and b[0] < a[1]

    # Does a batch's upload or download run while a neighbouring batch computes?
    overlapping = sum(
        1 for prev, nxt in zip(timelines, timelines[1:])
        if overlaps(nxt["upload"], prev["compute"]) or overlaps(prev["download"], nxt["compute"]))
    return {"batch": settings.batch, "batches": len(batches),
            "frames_per_s": round(len(batches) * settings.batch / seconds, 2),
            "upload_ms": _median(length("upload")), "compute_ms": _median(length("compute")),
            "download_ms": _median(length("download")),
            "host_submit_ms": _median(host_in_ms), "host_collect_ms": _median(host_out_ms),
            "pairs_overlapping": overlapping, "pairs": len(timelines) - 1,
            "transfers_overlap_compute": overlapping > 0, "peak_mib": peak_mib(settings.device),
            "timelines_ms": [{k: [round(v, 3) for v in span] for k, span in tl.items()} for tl in timelines]}


def step_streams(model: str, settings: Settings) -> dict:
    """Throughput one batch at a time against pipelined, and pipelined with the runner's three
    streams against one stream for everything (no overlap possible)."""
    derainer = make_derainer(model, settings)
    batches = frame_batches(settings, settings.batch, settings.timed_batches)
    run_batches(derainer, batches[:2], pipelined=True)
    frames = len(batches) * settings.batch
    result = {"batch": settings.batch}
    for name, pipelined in (("serial", False), ("pipelined", True)):
        _, seconds = run_batches(derainer, batches, pipelined=pipelined)
        result[f"{name}_fps"] = round(frames / seconds, 2)
    runner = derainer.cuda_runner
    if runner is None:
        result["one_stream_fps"] = None
        result["note"] = "CPU: no streams; serial vs pipelined is over the CPU workers"
        return result
    streams = runner.upload_stream, runner.compute_stream, runner.download_stream
    sync(settings.device)
    runner.upload_stream = runner.download_stream = runner.compute_stream
    try:
        _, seconds = run_batches(derainer, batches, pipelined=True)
        result["one_stream_fps"] = round(frames / seconds, 2)
    finally:
        sync(settings.device)
        runner.upload_stream, runner.compute_stream, runner.download_stream = streams
    result["three_streams_gain"] = round(result["pipelined_fps"] / result["one_stream_fps"], 3)
    return result


def step_precision(model: str, settings: Settings) -> dict:
    """Low precision against fp32 on the project's synthetic rain: PSNR between the two outputs."""
    clean = scene_u8(settings.rain_frames, settings.height, settings.width, seed=7)
    rainy, rain_source = rainy_u8(clean, seed=7)
    outputs, fps = {}, {}
    for precision in (settings.low_precision, "fp32"):
        derainer = make_derainer(model, settings, precision=precision)
        batches = [rainy[i:i + settings.batch] for i in range(0, len(rainy), settings.batch)]
        run_batches(derainer, batches[:1], pipelined=True)
        out, seconds = run_batches(derainer, batches, pipelined=True)
        outputs[precision], fps[precision] = np.concatenate(out), round(len(rainy) / seconds, 2)
        del derainer
    low, full = outputs[settings.low_precision], outputs["fp32"]
    between = [psnr_db(a, b) for a, b in zip(low, full)]
    return {"frames": len(rainy), "rain": rain_source, "low_precision": settings.low_precision,
            "psnr_low_vs_fp32_mean_db": finite(float(np.mean(between))),
            "psnr_low_vs_fp32_min_db": finite(min(between)), "identical": all(math.isinf(p) for p in between),
            "psnr_vs_clean_low_db": finite(float(np.mean([psnr_db(a, c) for a, c in zip(low, clean)]))),
            "psnr_vs_clean_fp32_db": finite(float(np.mean([psnr_db(a, c) for a, c in zip(full, clean)]))),
            "psnr_rainy_vs_clean_db": finite(float(np.mean([psnr_db(a, c) for a, c in zip(rainy, clean)]))),
            "fps_low": fps[settings.low_precision], "fps_fp32": fps["fp32"]}


def step_batch_sizes(model: str, settings: Settings) -> dict:
    derainer = make_derainer(model, settings)
    rows = []
    for size in settings.batch_sizes:
        try:
            batches = frame_batches(settings, size, settings.timed_batches)
            run_batches(derainer, batches[:2], pipelined=True)
            reset_peak(settings.device)
            _, seconds = run_batches(derainer, batches, pipelined=True)
            rows.append({"batch": size, "fps": round(len(batches) * size / seconds, 2),
                         "ms_per_batch": round(1000 * seconds / len(batches), 3),
                         "peak_mib": peak_mib(settings.device)})
        except torch.cuda.OutOfMemoryError as exc:  # a size that does not fit ends the list, not the step
            rows.append({"batch": size, "error": f"out of memory: {str(exc).splitlines()[0]}"})
            break
    return {"sizes": rows}


def step_tiling(model: str, settings: Settings) -> dict:
    """A 4K frame whole and in tiles: peak memory, time, and how far apart the outputs are."""
    height, width = settings.tile_frame_hw
    frame = scene_u8(1, height, width, seed=3)
    result, outputs = {"frame": f"{width}x{height}", "tile": settings.tile_side}, {}
    for name, tile in (("whole", "off"), ("tiled", settings.tile_side)):
        derainer = make_derainer(model, settings, tile=tile)
        derainer(frame)  # warm-up (and the plan)
        reset_peak(settings.device)
        started = time.perf_counter()
        outputs[name] = derainer(frame)
        sync(settings.device)
        plan = derainer.tile_plan(frame.shape)
        result[name] = {"ms": round(1000 * (time.perf_counter() - started), 2), "peak_mib": peak_mib(settings.device),
                        "tiles": plan.count if plan else 1}
        del derainer
    result["psnr_tiled_vs_whole_db"] = finite(psnr_db(outputs["tiled"], outputs["whole"]))
    return result


def step_compile(model: str, settings: Settings) -> dict:
    """torch.compile through the derainer's own backend option, against eager."""
    batches = frame_batches(settings, settings.batch, settings.timed_batches)
    eager = make_derainer(model, settings)
    run_batches(eager, batches[:2], pipelined=True)
    eager_out, eager_s = run_batches(eager, batches, pipelined=True)
    del eager
    dynamo = torch._dynamo.config
    disabled_before = dynamo.disable
    if settings.dry_run:
        dynamo.disable = True  # inductor takes minutes on a CPU; the dry run checks the path only
    try:
        compiled = make_derainer(model, settings, backend="compile")
        started = time.perf_counter()
        run_batches(compiled, batches[:1], pipelined=False)
        first_s = time.perf_counter() - started
        run_batches(compiled, batches[:1], pipelined=True)
        compiled_out, compiled_s = run_batches(compiled, batches, pipelined=True)
    finally:
        dynamo.disable = disabled_before
    frames = len(batches) * settings.batch
    return {"eager_fps": round(frames / eager_s, 2), "compiled_fps": round(frames / compiled_s, 2),
            "first_batch_s": round(first_s, 2), "speedup": round(eager_s / compiled_s, 3),
            "psnr_compiled_vs_eager_db": finite(psnr_db(np.concatenate(compiled_out), np.concatenate(eager_out))),
            "compiled_really": not settings.dry_run}


def step_tensorrt(model: str, settings: Settings) -> dict:
    try:
        import torch_tensorrt  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - it raises a plain Exception when libnvinfer is missing
        raise Skipped(f"torch_tensorrt not importable: {type(exc).__name__}: {exc}") from None
    if settings.device != "cuda":
        raise Skipped("TensorRT needs CUDA")
    batches = frame_batches(settings, settings.batch, settings.timed_batches)
    eager = make_derainer(model, settings)
    run_batches(eager, batches[:2], pipelined=True)
    eager_out, eager_s = run_batches(eager, batches, pipelined=True)
    del eager
    started = time.perf_counter()
    engine = make_derainer(model, settings, backend="tensorrt")
    build_s = time.perf_counter() - started
    if engine.backend != "tensorrt":
        raise RuntimeError("the engine build fell back to eager CUDA (see the log for the reason)")
    run_batches(engine, batches[:2], pipelined=True)
    trt_out, trt_s = run_batches(engine, batches, pipelined=True)
    frames = len(batches) * settings.batch
    return {"build_or_load_s": round(build_s, 2), "eager_fps": round(frames / eager_s, 2),
            "tensorrt_fps": round(frames / trt_s, 2),
            "psnr_tensorrt_vs_eager_db": finite(psnr_db(np.concatenate(trt_out), np.concatenate(eager_out)))}


def step_pipeline(settings: Settings, out_dir: Path) -> dict:
    """The whole offline pipeline (decode, derain, encode) on a generated clip, where PyAV is here."""
    try:
        import av
    except ImportError as exc:
        raise Skipped(f"PyAV not importable ({exc}): the pipeline needs it; the derainer steps do not") from None
    from streamrain.config import RunOptions
    from streamrain.pipeline.job import derain_file

    src, dst = out_dir / "gpu_check_clip.mp4", out_dir / "gpu_check_derained.mp4"
    frames = scene_u8(8, settings.height, settings.width, seed=11)
    with av.open(str(src), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = settings.width, settings.height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for i in range(settings.clip_frames):
            shifted = np.roll(frames[i % len(frames)], 4 * i, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(shifted, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    try:
        stats = derain_file(str(src), dst, options=RunOptions(device=settings.device))
        return {"clip": f"{settings.width}x{settings.height}, {settings.clip_frames} frames", **stats.to_json()}
    finally:
        for path in (src, dst):
            path.unlink(missing_ok=True)


# -- running and recording ------------------------------------------------------------------------

class Recorder:
    """Holds the results and rewrites DIR/gpu_check.json and .txt after every step (atomically)."""

    def __init__(self, out_dir: Path, settings: Settings):
        self.out_dir = out_dir
        self.results = {"check": "streamrain gpu_check", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        "settings": asdict(settings), "complete": False, "steps": {}}
        self.write()

    def record(self, name: str, entry: dict) -> None:
        self.results["steps"][name] = entry
        self.write()

    def finish(self) -> None:
        self.results["complete"] = True
        self.write()

    def write(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, text in (("gpu_check.json", json.dumps(self.results, indent=2, default=str) + "\n"),
                           ("gpu_check.txt", summary(self.results))):
            tmp = self.out_dir / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.out_dir / name)


def _scalars(values: dict, prefix: str = "") -> list[str]:
    """``key=value`` for the numbers and words of a step's result (nested dicts one level deep)."""
    parts = []
    for key, value in values.items():
        if key in ("timelines_ms", "note", "rain"):
            continue
        if isinstance(value, dict) and not prefix:
            parts += _scalars(value, f"{key}.")
        elif isinstance(value, list) and value and isinstance(value[0], dict) and not prefix:
            parts += [" ".join(_scalars(row, f"{key}.")) for row in value]
        elif isinstance(value, (int, float, str, bool)) or value is None:
            parts.append(f"{prefix}{key}={value}")
    return parts


def summary(results: dict) -> str:
    lines = [f"streamrain gpu_check, started {results['started']}"
             f"{'' if results['complete'] else ' (incomplete: still running or cut short)'}"]
    for name, entry in results["steps"].items():
        head = f"{name}: {entry['status']} ({entry.get('seconds', 0):.1f} s)"
        if entry["status"] == "ok":
            lines.append(head + ": " + ", ".join(_scalars(entry["result"])))
        else:
            lines.append(f"{head}: {entry.get('reason') or entry.get('error')}")
    return "\n".join(lines) + "\n"


def _alarm(seconds: float) -> Callable[[], None]:
    """Raise StepTimeout in this (main) thread after ``seconds``; returns the cancel function."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        return lambda: None

    def on_alarm(signum, frame):
        raise StepTimeout(f"step ran past its {seconds:.0f} s limit")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(1.0, seconds))

    def cancel():
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return cancel


def run_step(recorder: Recorder, name: str, fn: Callable[[], dict], *, deadline: float, limit_s: float,
             min_s: float = 5.0) -> None:
    left = deadline - time.monotonic()
    if left < min_s:
        recorder.record(name, {"status": "skipped", "reason": f"time budget: {max(0.0, left):.0f} s left"})
        return
    started = time.monotonic()
    cancel = _alarm(min(limit_s, left))
    try:
        entry = {"status": "ok", "result": fn()}
    except Skipped as exc:
        entry = {"status": "skipped", "reason": str(exc)}
    except BaseException as exc:  # noqa: BLE001 - one failing step must not lose the others
        if isinstance(exc, KeyboardInterrupt):
            raise
        entry = {"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:500],
                 "traceback": traceback.format_exc().splitlines()[-12:]}
    finally:
        cancel()
    entry["seconds"] = round(time.monotonic() - started, 2)
    recorder.record(name, entry)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def plan_steps(settings: Settings, out_dir: Path) -> list[tuple[str, Callable[[], dict], float, float]]:
    """(name, step, limit_s, min_s) in the order they run: what matters most first, slow builds last."""
    steps = [("environment", lambda: step_environment(settings), 30.0, 1.0)]
    for model in settings.models:
        for short, fn in (("load", step_load), ("phases", step_phases), ("streams", step_streams),
                          ("precision", step_precision), ("batch_sizes", step_batch_sizes),
                          ("tiling", step_tiling)):
            steps.append((f"{model}/{short}", lambda fn=fn, model=model: fn(model, settings), settings.step_limit_s, 5.0))
    steps.append(("pipeline", lambda: step_pipeline(settings, out_dir), settings.step_limit_s, 10.0))
    for model in settings.models:
        steps.append((f"{model}/compile", lambda model=model: step_compile(model, settings), settings.step_limit_s, 30.0))
    for model in settings.models:
        steps.append((f"{model}/tensorrt", lambda model=model: step_tensorrt(model, settings), settings.step_limit_s, 30.0))
    if settings.dry_run:  # nothing needs a budget on tiny inputs: every step runs
        steps = [(name, fn, limit, 0.0) for name, fn, limit, _ in steps]
    return steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.txt")
    p.add_argument("--dry-run", action="store_true", help="the same steps on the CPU, tiny inputs, seconds")
    p.add_argument("--budget-s", type=float, help="stop starting steps after this (default 450; dry run 120)")
    p.add_argument("--models", help="comma-separated model names (default: the default model and "
                                    f"{LARGE_MODEL})")
    args = p.parse_args(argv)
    from streamrain.zoo import DEFAULT_MODEL

    models = tuple(args.models.split(",")) if args.models else (DEFAULT_MODEL, LARGE_MODEL)
    settings = Settings.for_run(dry_run=args.dry_run, budget_s=args.budget_s, models=models)
    if args.dry_run:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    recorder = Recorder(args.out, settings)
    deadline = time.monotonic() + settings.budget_s
    for name, fn, limit_s, min_s in plan_steps(settings, args.out):
        run_step(recorder, name, fn, deadline=deadline, limit_s=limit_s, min_s=min_s)
        if name == "environment" and recorder.results["steps"][name]["status"] != "ok":
            break  # no GPU, or streamrain does not import: nothing else can run
    recorder.finish()
    sys.stdout.write(summary(recorder.results))
    failed = [n for n, e in recorder.results["steps"].items() if e["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
