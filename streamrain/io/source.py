"""Sources: files, URLs (http, rtsp, udp, tcp, ...), ``lavfi:GRAPH`` and capture devices.

A source yields decoded video frames as RGB (``Frame``) and, for sinks that copy them, the packets of
the other streams (audio, subtitles, data) in demux order, interleaved with the frames.
A packet that fails to decode is counted and skipped; opening fails with InputError when the input
cannot be opened or has no video stream, and iteration fails when nothing at all decodes.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av

from streamrain.errors import InputError
from streamrain.io.frames import (YUV420_FORMATS, ColourTags, Frame, VideoInfo, YuvMatrix,
                                  default_sws_matrix)

log = logging.getLogger(__name__)

URL_SCHEMES = ("http", "https", "rtsp", "rtsps", "rtmp", "udp", "tcp", "srt", "rtp", "file")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class SourceSpec:
    """Where to read from, as PyAV's ``av.open`` needs it."""

    url: str
    format: str | None = None
    options: dict | None = None
    is_live: bool = False


def capture_format() -> str:
    return {"darwin": "avfoundation", "win32": "dshow"}.get(sys.platform, "v4l2")


def parse_source(spec: str, *, camera_options: dict | None = None) -> SourceSpec:
    """Turn what a user typed into a SourceSpec.

    ``lavfi:GRAPH``; a camera index (``0``) or device (``/dev/video0``, ``video=Name``); a URL; a path.
    """
    options = {k: str(v) for k, v in (camera_options or {}).items()}
    if spec.startswith("lavfi:"):
        graph = spec[len("lavfi:"):]
        return SourceSpec(graph, "lavfi", None, is_live="realtime" in graph)
    fmt = capture_format()
    if re.fullmatch(r"\d+", spec):
        url = f"/dev/video{spec}" if fmt == "v4l2" else (spec if fmt == "avfoundation" else f"video={spec}")
        return SourceSpec(url, fmt, options or None, is_live=True)
    if spec.startswith("/dev/video") or spec.startswith("video="):
        return SourceSpec(spec, "v4l2" if spec.startswith("/dev/") else "dshow", options or None, is_live=True)
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    if scheme in URL_SCHEMES:
        live = scheme in ("rtsp", "rtsps", "rtmp", "udp", "tcp", "srt", "rtp")
        net = {"rtsp_transport": "tcp"} if scheme.startswith("rtsp") else {}
        return SourceSpec(spec, None, {**net, **options} or None, is_live=live)
    if scheme:
        raise InputError(f"unsupported URL scheme {scheme!r}; supported: {', '.join(URL_SCHEMES)}")
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{spec}: no such file")
    if path.is_dir():
        raise InputError(f"{spec}: is a folder (use `streamrain batch` for folders)")
    if path.stat().st_size == 0:
        raise InputError(f"{spec}: file is empty")
    return SourceSpec(str(path))


def _colour_tags(stream: av.video.stream.VideoStream) -> ColourTags:
    cc = stream.codec_context
    return ColourTags(int(cc.colorspace or 2), int(cc.color_range or 0),
                      int(cc.color_primaries or 2), int(cc.color_trc or 2))


class VideoSource:
    """An opened input. Use as a context manager; iterate ``items()`` once."""

    def __init__(self, spec: SourceSpec, *, timeout_s: float | tuple[float, float] | None = 10.0,
                 copy_streams: bool = True):
        self.spec = spec
        self.decode_errors = 0
        try:
            kwargs = {"timeout": timeout_s} if not Path(spec.url).exists() else {}
            self.container = av.open(spec.url, format=spec.format, options=spec.options, **kwargs)
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{spec.url}: cannot open ({_reason(exc)})") from exc
        if not self.container.streams.video:
            self.container.close()
            raise InputError(f"{spec.url}: has no video stream")
        self.video = self.container.streams.video[0]
        self.video.thread_type = "AUTO"
        self.other_streams = [
            s for s in self.container.streams
            if copy_streams and s.type in ("audio", "subtitle", "data") and s is not self.video
        ]
        self.info = self._describe()

    def _describe(self) -> VideoInfo:
        v = self.video
        cc = v.codec_context
        time_base = v.time_base or Fraction(1, 1_000_000)
        duration = float(v.duration * time_base) if v.duration else (
            self.container.duration / 1e6 if self.container.duration else None)
        is_image = Path(self.spec.url).suffix.lower() in IMAGE_SUFFIXES or \
            (self.container.format.name or "").startswith(("image2", "png_pipe", "jpeg_pipe"))
        meta = {k: v for k, v in (self.container.metadata or {}).items()}
        return VideoInfo(
            width=cc.width, height=cc.height, time_base=Fraction(time_base),
            average_rate=Fraction(v.average_rate) if v.average_rate else None,
            rotation=0, colour=_colour_tags(v), codec=cc.name, frames=int(v.frames or 0),
            duration_s=duration, is_image=is_image, is_live=self.spec.is_live, metadata=meta,
            pix_fmt=cc.pix_fmt,
        )

    def rgb_conversion(self, frame: av.VideoFrame) -> dict:
        """reformat() arguments that decode this frame's YUV with its own matrix and range."""
        return self.yuv_matrix(frame).rgb_reformat_args()

    @staticmethod
    def yuv_matrix(frame: av.VideoFrame) -> YuvMatrix:
        full = int(frame.color_range or 0) == 2 or frame.format.name.startswith("yuvj")
        return YuvMatrix(default_sws_matrix(frame.colorspace, frame.height), full)

    def items(self, *, keep_yuv420: bool = False) -> Iterator[Frame | av.Packet]:
        """Decoded frames (as RGB) and, in demux order, the packets of the other streams.

        ``keep_yuv420``: frames decoded as 4:2:0 whose width and height are multiples of 4 come as
        they are (``Frame.yuv420_u8``), for a model that takes them so; the rest still as RGB.
        """
        index = 0
        last_pts: int | None = None
        fallback_step = self._fallback_pts_step()
        try:
            for packet in self.container.demux(self.video, *self.other_streams):
                if packet.stream is not self.video:
                    if packet.size:  # the empty packet at the end only flushes a decoder
                        yield packet
                    continue
                try:
                    decoded = packet.decode()
                except (av.InvalidDataError, av.PatchWelcomeError) as exc:
                    self.decode_errors += 1
                    log.warning("skipping a video packet that does not decode: %s", _reason(exc))
                    continue
                for frame in decoded:
                    pts = frame.pts
                    if pts is None:
                        pts = 0 if last_pts is None else last_pts + fallback_step
                    elif last_pts is not None and pts <= last_pts:
                        pts = last_pts + 1  # keep timestamps strictly increasing for the muxer
                    last_pts = pts
                    if index == 0 and frame.rotation:
                        self.info = replace(self.info, rotation=int(frame.rotation) % 360)
                    if keep_yuv420 and frame.format.name in YUV420_FORMATS \
                            and frame.width % 4 == 0 and frame.height % 4 == 0:
                        yield Frame(None, pts, self.info.time_base, index, time.monotonic(),
                                    yuv420_u8=frame.to_ndarray(), yuv=self.yuv_matrix(frame))
                    else:
                        rgb = frame.to_ndarray(format="rgb24", **self.rgb_conversion(frame)) \
                            if frame.format.name not in ("rgb24",) else frame.to_ndarray()
                        yield Frame(rgb, pts, self.info.time_base, index, time.monotonic())
                    index += 1
        except (av.FFmpegError, OSError) as exc:
            if index == 0:
                raise InputError(f"{self.spec.url}: cannot read ({_reason(exc)})") from exc
            # A stream cut short (a dashcam losing power): keep what decoded, say so.
            self.decode_errors += 1
            log.warning("%s: input ends early (%s) after %d frames", self.spec.url, _reason(exc), index)
        if index == 0:
            raise InputError(f"{self.spec.url}: no video frame could be decoded")
        self.frames_decoded = index

    def _fallback_pts_step(self) -> int:
        rate = self.video.average_rate or self.video.guessed_rate or 25
        return max(1, round(1 / (Fraction(rate) * self.info.time_base)))

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '")[0].strip() or type(exc).__name__
