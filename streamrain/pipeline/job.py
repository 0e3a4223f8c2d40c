"""One offline job: an input (file, URL, lavfi) derained into an output file, nothing half-written."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

from streamrain.config import RunOptions
from streamrain.errors import OutputError
from streamrain.io.encoding import IMAGE_ENCODERS
from streamrain.io.frames import YUV420_FORMATS
from streamrain.io.sink import EncodeOptions, VideoSink
from streamrain.io.source import VideoSource, parse_source
from streamrain.pipeline.runner import Pipeline
from streamrain.pipeline.stats import RunStats
from streamrain.runtime.derainer import Derainer
from streamrain.runtime.temporal import TemporalDerainer, is_temporal
from streamrain.zoo import load_model


# Measured on the 2-core development machine (streamrain bench): two single-threaded CPU workers
# derain as fast as one two-threaded batch and leave decode and encode more room.
DEFAULT_CPU_WORKERS = 2


def make_derainer(options: RunOptions, *, live: bool = False, video: bool = True) -> Derainer | TemporalDerainer:
    """The derainer for ``options`` (without ``--model``: the default for video, or with ``video``
    False the one for still images). Live runs take one batch at a time on every core (latency),
    and a temporal model runs causal there (no look-ahead)."""
    workers = 1 if live else (options.cpu_workers or DEFAULT_CPU_WORKERS)
    module = load_model(options.model, video=video or live)
    if is_temporal(module):
        return TemporalDerainer(module, device=options.device, precision=options.precision,
                                backend=options.backend, cpu_workers=workers, causal=live or options.causal)
    return Derainer(module, device=options.device, precision=options.precision,
                    backend=options.backend, cpu_workers=workers, tile=options.tile)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def encoder_threads(derainer) -> int | None:
    """One encoder thread beside a CPU derainer on a machine of up to 4 cores, else the codec's
    choice. Why: the model already keeps every core busy, so x264's frame threads only add their
    own overhead (measured on 2 cores at 640x360: ~0.4 ms less CPU per frame, ~3 % more end-to-end
    fps over four paired runs); with more cores one thread could fall behind (x264 veryfast does
    ~30 fps of 1080p on one core), so they keep it."""
    on_cpu = getattr(getattr(derainer, "device", None), "type", None) == "cpu"
    return 1 if on_cpu and usable_cores() <= 4 else None


def encode_options(options: RunOptions, derainer) -> EncodeOptions:
    return EncodeOptions(codec=options.codec, crf=options.crf, preset=options.preset, pix_fmt=options.pix_fmt,
                         copy_audio=options.copy_audio, audio_codec=options.audio_codec,
                         threads=encoder_threads(derainer))


def takes_yuv420(derainer, options: RunOptions, *, image_output: bool = False,
                 pix_fmt: str | None = None) -> bool:
    """Whether decoded 4:2:0 frames can go to the model and on to the encoder as they are.
    ``pix_fmt``: the encoder's, as planned (an RGB encoder such as libx264rgb gets RGB frames);
    without it, ``options.pix_fmt``, "auto" counting as the 4:2:0 a 4:2:0 input is encoded in."""
    pix_fmt = pix_fmt or ("yuv420p" if options.pix_fmt == "auto" else options.pix_fmt)
    return (options.yuv420 and getattr(derainer, "accepts_yuv420", False) and not image_output
            and pix_fmt in YUV420_FORMATS)


def derain_file(input_spec: str, output: Path | str, *, options: RunOptions = RunOptions(),
                derainer: Derainer | None = None, progress: Callable[[RunStats], None] | None = None,
                on_open: Callable[[VideoSource], None] | None = None,
                stop_event: threading.Event | None = None) -> RunStats:
    """Derain ``input_spec`` into ``output``; on any failure nothing is left at ``output``.
    The encoder options are checked against the input before a frame is decoded (ConfigError)."""
    output = Path(output)
    spec = parse_source(input_spec)
    if Path(spec.url).exists() and output.exists() and output.resolve() == Path(spec.url).resolve():
        raise OutputError(f"{output}: output would overwrite the input")
    if derainer is None:
        # A still picture out (one frame): the still-image default, which beats the video one there.
        derainer = make_derainer(options, video=output.suffix.lower() not in IMAGE_ENCODERS)
        try:  # a derainer made here is closed here: its worker threads would outlive the run
            return derain_file(input_spec, output, options=options, derainer=derainer, progress=progress,
                               on_open=on_open, stop_event=stop_event)
        finally:
            derainer.close()
    sink = VideoSink(output, encode_options(options, derainer))
    with VideoSource(spec, copy_streams=not sink.is_image) as source:
        sink.prepare(source.info, source.other_streams)
        if on_open:
            on_open(source)
        pipeline = Pipeline(source, derainer, sink, batch=options.batch, policy="offline",
                            queue_frames=options.queue_frames or None, progress=progress,
                            model_name=derainer.name, device_label=derainer.device_label,
                            stop_event=stop_event,
                            keep_yuv420=takes_yuv420(derainer, options, image_output=sink.is_image,
                                                     pix_fmt=sink.pix_fmt))
        return pipeline.run()
