"""Capture policy: how a live source is opened. Cameras get their size, rate and input format in
the capture device's own option names; network streams get FFmpeg's low-latency input flags."""

from __future__ import annotations

import logging
from dataclasses import replace

from streamrain.io.source import SourceSpec, parse_source
from streamrain.live.options import LiveOptions

log = logging.getLogger(__name__)

CAPTURE_FORMATS = ("v4l2", "dshow", "avfoundation")
# Read what arrives now instead of buffering ahead (FFmpeg's low-latency input flags).
_LOW_DELAY = {"fflags": "nobuffer", "flags": "low_delay"}


def live_spec(source: str, options: LiveOptions) -> SourceSpec:
    """What to open for ``source``: camera options for devices, low-delay flags for network streams."""
    spec = parse_source(source)
    if spec.format in CAPTURE_FORMATS:
        return parse_source(source, camera_options=camera_options(spec.format, options))
    if spec.is_live and spec.format is None:
        return replace(spec, options={**_LOW_DELAY, **(spec.options or {})})
    return spec


def camera_options(capture_format: str, options: LiveOptions) -> dict:
    """The capture device's own names for size, rate and input format."""
    values = {}
    if options.video_size:
        values["video_size"] = options.video_size.lower()
    if options.framerate:
        values["framerate"] = f"{options.framerate:g}"
    if options.input_format:
        key = {"v4l2": "input_format", "dshow": "vcodec", "avfoundation": "pixel_format"}[capture_format]
        if capture_format == "avfoundation" and options.input_format.lower() == "mjpeg":
            log.info("avfoundation cameras deliver raw frames; input_format mjpeg ignored")
        else:
            values[key] = options.input_format
    return values
