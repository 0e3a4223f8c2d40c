"""`streamrain bench`: per-stage and end-to-end throughput of one model at one size, in one run.

Stages are timed alone on the same clip (decode only; derain only, on frames decoded beforehand;
encode only) and then together through the real pipeline. ``efficiency`` is end-to-end fps over the
slowest stage's fps alone: 1.0 means decode and encode are completely hidden behind the slowest one.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import av

from streamrain.config import RunOptions
from streamrain.io.sink import EncodeOptions, VideoSink
from streamrain.io.source import VideoSource, parse_source
from streamrain.pipeline.job import derain_file
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
    stages_in_pipeline: dict = field(default_factory=dict)

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


def _decode_all(clip: Path):
    with VideoSource(parse_source(str(clip)), copy_streams=False) as source:
        t0 = time.perf_counter()
        frames = [item for item in source.items()]
        return frames, time.perf_counter() - t0, source.info


def bench(derainer: Derainer, *, clip: Path | None = None, width: int = 640, height: int = 360,
          frames: int = 100, options: RunOptions = RunOptions(), backend: str = "eager") -> BenchResult:
    with tempfile.TemporaryDirectory(prefix="streamrain-bench-") as tmp:
        tmp = Path(tmp)
        clip = clip or make_test_clip(tmp / "clip.mp4", width=width, height=height, frames=frames)
        decoded, decode_s, info = _decode_all(clip)
        n = len(decoded)

        batches = [decoded[i:i + options.batch] for i in range(0, n, options.batch)]
        import numpy as np
        derainer(np.stack([f.rgb_u8 for f in batches[0]]))  # warm-up: kernels, caches, compilation
        t0 = time.perf_counter()
        for batch in batches:
            derainer(np.stack([f.rgb_u8 for f in batch]))
        derain_s = time.perf_counter() - t0

        sink = VideoSink(tmp / "encode-only.mp4", EncodeOptions(codec=options.codec, crf=options.crf,
                                                               preset=options.preset, pix_fmt=options.pix_fmt))
        t0 = time.perf_counter()
        sink.start(info)
        for frame in decoded:
            sink.write(frame)
        sink.commit()
        encode_s = time.perf_counter() - t0

        stats = derain_file(str(clip), tmp / "end-to-end.mp4", options=options, derainer=derainer)
    fps = {"decode": n / decode_s, "derain": n / derain_s, "encode": n / encode_s}
    return BenchResult(
        model=derainer.name, device=derainer.device_label, backend=backend, width=info.width,
        height=info.height, frames=n, batch=options.batch, decode_fps=fps["decode"],
        derain_fps=fps["derain"], encode_fps=fps["encode"], end_to_end_fps=stats.fps,
        efficiency=stats.fps / min(fps.values()), stages_in_pipeline=stats.to_json()["stages"],
    )
