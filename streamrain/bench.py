"""`streamrain bench`: per-stage and end-to-end throughput of one model at one size, in one run.

Stages are timed alone on the same clip (decode only; derain only, on frames decoded beforehand;
encode only) and then together through the real pipeline. ``efficiency`` is end-to-end fps over the
slowest stage's fps alone: 1.0 means decode and encode are completely hidden behind the slowest one.

Shared machines are noisy (the same pass varies by 10 % or more from one second to the next), so the
stages and the end-to-end run are timed in ``rounds`` interleaved rounds and the medians are reported;
every round's figures are kept in ``rounds_fps``.

Each stage's CPU time per frame (the whole process's, so a codec's own threads count) is measured
too. Where the slowest stage alone already keeps every core busy (a CPU derainer does), the stages
can only share the cores, and end to end is at most ``cores / (CPU per frame of all stages)``:
``cpu_bound_efficiency`` is that ceiling over the slowest stage's fps, the efficiency a perfect
pipeline would reach on this machine (1.0 where the stages have cores to spare, as with a GPU).
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from streamrain.config import RunOptions
from streamrain.io.sink import VideoSink
from streamrain.io.source import VideoSource, parse_source
from streamrain.pipeline.job import derain_file, encode_options, takes_yuv420, usable_cores
from streamrain.pipeline.runner import layout_of
from streamrain.runtime.derainer import Derainer


@dataclass
class BenchResult:
    model: str
    device: str
    backend: str
    width: int
    height: int
    frames: int
    batch: int
    decode_fps: float
    derain_fps: float
    encode_fps: float
    end_to_end_fps: float
    efficiency: float
    stages_in_pipeline: dict = field(default_factory=dict)  # of the last end-to-end round
    rounds: int = 1
    rounds_fps: dict = field(default_factory=dict)
    frames_as: str = "rgb"  # or "yuv420": what the model was given (see RunOptions.yuv420)
    cores: int = 1
    cpu_ms_per_frame: dict = field(default_factory=dict)  # per stage alone and end to end (medians)
    cpu_bound_efficiency: float = 1.0

    def to_json(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def make_test_clip(path: Path, *, width: int, height: int, frames: int, fps: int = 25) -> Path:
    """A moving test pattern encoded fast, standing in for a camera clip of that size."""
    graph = f"testsrc2=size={width}x{height}:rate={fps}"
    with av.open(graph, format="lavfi") as src, av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for i, frame in zip(range(frames), src.decode(video=0)):
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _decode_all(clip: Path, keep_yuv420: bool = False):
    with VideoSource(parse_source(str(clip)), copy_streams=False) as source:
        t0 = time.perf_counter()
        frames = [item for item in source.items(keep_yuv420=keep_yuv420)]
        return frames, time.perf_counter() - t0, source.info


def _time_derain(derainer, decoded, batch: int) -> float:
    """The derain stage alone, fed as the pipeline feeds it: up to ``max_in_flight`` batches at once
    (a temporal derainer's through one stream, flushed at the end)."""
    batches = [(np.stack([f.pixels for f in decoded[i:i + batch]]), layout_of(decoded[i]))
               for i in range(0, len(decoded), batch)]
    runner = derainer.stream() if getattr(derainer, "temporal", False) else derainer
    in_flight: deque = deque()
    t0 = time.perf_counter()
    for frames, layout in batches:
        in_flight.append(runner.submit(frames, **layout))
        if len(in_flight) >= getattr(derainer, "max_in_flight", 1):
            runner.collect(in_flight.popleft())
    while in_flight:
        runner.collect(in_flight.popleft())
    if runner is not derainer:
        runner.flush()
    return len(decoded) / (time.perf_counter() - t0)


def _time_encode(decoded, info, path: Path, options: RunOptions, derainer) -> float:
    sink = VideoSink(path, encode_options(options, derainer))  # as the pipeline encodes beside it
    t0 = time.perf_counter()
    sink.start(info)
    for frame in decoded:
        sink.write(frame)
    sink.commit()
    return len(decoded) / (time.perf_counter() - t0)


def bench(derainer: Derainer, *, clip: Path | None = None, width: int = 640, height: int = 360,
          frames: int = 100, options: RunOptions = RunOptions(), backend: str = "eager",
          rounds: int = 3) -> BenchResult:
    with tempfile.TemporaryDirectory(prefix="streamrain-bench-") as tmp:
        tmp = Path(tmp)
        clip = clip or make_test_clip(tmp / "clip.mp4", width=width, height=height, frames=frames)
        keep_yuv420 = takes_yuv420(derainer, options)
        first = _decode_all(clip, keep_yuv420)[0][0]
        warm, layout = np.stack([first.pixels] * options.batch), layout_of(first)
        # Warm-up (kernels, caches, thread pools) on every worker and on the calling thread.
        runner = derainer.stream() if getattr(derainer, "temporal", False) else derainer
        for handle in [runner.submit(warm, **layout) for _ in range(getattr(derainer, "max_in_flight", 1))]:
            runner.collect(handle)
        derainer(warm, **layout)
        runs = {"decode": [], "derain": [], "encode": [], "end_to_end": []}
        cpu_ms = {name: [] for name in runs}
        for _ in range(rounds):
            cpu0 = _cpu_s()
            decoded, decode_s, info = _decode_all(clip, keep_yuv420)
            runs["decode"].append(len(decoded) / decode_s)
            cpu1 = _cpu_s()
            runs["derain"].append(_time_derain(derainer, decoded, options.batch))
            cpu2 = _cpu_s()
            runs["encode"].append(_time_encode(decoded, info, tmp / "encode-only.mp4", options, derainer))
            cpu3 = _cpu_s()
            stats = derain_file(str(clip), tmp / "end-to-end.mp4", options=options, derainer=derainer)
            runs["end_to_end"].append(stats.fps)
            cpu4 = _cpu_s()
            for name, (start, end) in zip(runs, ((cpu0, cpu1), (cpu1, cpu2), (cpu2, cpu3), (cpu3, cpu4))):
                cpu_ms[name].append(1000 * (end - start) / len(decoded))
    fps = {name: statistics.median(values) for name, values in runs.items()}
    cpu = {name: statistics.median(values) for name, values in cpu_ms.items()}
    slowest_fps = min(fps["decode"], fps["derain"], fps["encode"])
    cores = usable_cores()
    stages_cpu_s = (cpu["decode"] + cpu["derain"] + cpu["encode"]) / 1000
    cpu_bound_fps = cores / stages_cpu_s if stages_cpu_s > 0 else float("inf")
    return BenchResult(
        model=derainer.name, device=derainer.device_label, backend=backend, width=info.width,
        height=info.height, frames=len(decoded), batch=options.batch, decode_fps=fps["decode"],
        derain_fps=fps["derain"], encode_fps=fps["encode"], end_to_end_fps=fps["end_to_end"],
        efficiency=fps["end_to_end"] / slowest_fps,
        stages_in_pipeline=stats.to_json()["stages"], rounds=rounds,
        rounds_fps={name: [round(v, 2) for v in values] for name, values in runs.items()},
        frames_as="yuv420" if keep_yuv420 else "rgb", cores=cores,
        cpu_ms_per_frame={name: round(v, 3) for name, v in cpu.items()},
        cpu_bound_efficiency=min(1.0, cpu_bound_fps / slowest_fps),
    )
