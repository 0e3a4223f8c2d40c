"""File sink: encodes frames with PyAV, copies the other streams, and writes atomically.

The file is written under a hidden temporary name beside the target and renamed only by
``commit()``; ``abort()`` (or leaving the context on an exception) removes it, so the target path
either holds a complete file or nothing.

What is encoded with what is settled by ``prepare()`` (streamrain.io.encoding) before the first
frame is decoded: an option the output cannot honour is refused there, with nothing created.
Every frame keeps its input pts in the input's time base (variable frame rate survives); rotation
and the colour tags are carried over; odd sizes get a pixel format without subsampled chroma, so
no pixel is cropped or added.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import av
import numpy as np

from streamrain.errors import OutputError
from streamrain.io.encoding import (IMAGE_ENCODERS, EncodeOptions, OutputPlan, StreamPlan, container_format,
                                    plan_output)
from streamrain.io.frames import SWS_MATRIX, YUV420_FORMATS, Frame, VideoInfo, YuvMatrix

__all__ = ["EncodeOptions", "VideoSink", "remove_if_stale", "temporary_path"]

log = logging.getLogger(__name__)

_PARTIAL = re.compile(r"^\..*\.streamrain-(\d+)\.partial(\.[^.]+)?$")


def temporary_path(target: Path) -> Path:
    return target.with_name(f".{target.stem}.streamrain-{os.getpid()}.partial{target.suffix}")


def remove_if_stale(path: Path) -> bool:
    """Delete a temporary output whose writer is gone (killed with -9, power cut); True if deleted."""
    m = _PARTIAL.match(path.name)
    if not m or _writer_alive(int(m.group(1))):
        return False
    path.unlink(missing_ok=True)
    return True


def _writer_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # an earlier job of this very process, which has finished with it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _CopiedStream:
    """One non-video input stream in the output: packets copied, or audio decoded and re-encoded."""

    def __init__(self, container, template, plan: StreamPlan):
        self.copy = plan.action == "copy"
        self.last_dts: int | None = None
        if self.copy:
            self.out = container.add_stream_from_template(template)
            self.decoder = None
        else:
            self.out = container.add_stream(plan.codec, rate=plan.rate, layout=plan.layout)
            self.decoder = template.codec_context

    def packets(self, packet: av.Packet):
        if self.copy:
            packet.stream = self.out
            yield packet
            return
        try:
            for frame in self.decoder.decode(packet):
                frame.pts = None  # the encoder restamps contiguously from the first sample
                yield from self.out.encode(frame)
        except av.FFmpegError as exc:
            log.warning("dropping an audio packet that does not decode: %s", exc)

    def flush(self):
        if not self.copy:
            yield from self.out.encode(None)


class VideoSink:
    """Write frames to ``target`` (a video or an image file). Call ``start`` before the first frame."""

    def __init__(self, target: Path | str, options: EncodeOptions = EncodeOptions()):
        self.target = Path(target)
        self.options = options
        self.tmp = temporary_path(self.target)
        self.container = None
        self.frames_written = 0
        self.dropped_packets = 0
        self._copied: dict[int, _CopiedStream] = {}
        self.plan: OutputPlan | None = None
        if not self.target.parent.is_dir():
            raise OutputError(f"{self.target}: folder {self.target.parent} does not exist")
        if self.target.is_dir():
            raise OutputError(f"{self.target}: is a folder")
        for leftover in self.target.parent.glob(f".{self.target.stem}.streamrain-*.partial*"):
            remove_if_stale(leftover)

    @property
    def is_image(self) -> bool:
        return self.target.suffix.lower() in IMAGE_ENCODERS

    def container_format(self) -> str:
        return "image2" if self.is_image else container_format(self.target)

    def prepare(self, info: VideoInfo, other_streams=()) -> OutputPlan:
        """Settle the encoder, pixel format and stream handling for this input; ConfigError naming
        the flag if an option cannot be honoured. Creates nothing; ``start`` calls it if not done."""
        self.plan = plan_output(self.options, container=self.container_format(), width=info.width,
                                height=info.height, time_base=info.time_base, rate=info.average_rate,
                                source_pix_fmt=info.pix_fmt, streams=other_streams,
                                image_suffix=self.target.suffix.lower() if self.is_image else None)
        self.pix_fmt = self.plan.video.pix_fmt
        return self.plan

    def start(self, info: VideoInfo, other_streams=()) -> None:
        if self.plan is None:
            self.prepare(info, other_streams)
        try:
            self.container = av.open(str(self.tmp), "w", format="image2" if self.is_image else None,
                                     options={"update": "1"} if self.is_image else None)
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise OutputError(f"{self.target}: cannot create ({exc})") from exc
        self.info = info
        try:
            self._add_video(info)
            for s in other_streams:
                self._add_copied(s)
            self.container.metadata.update({k: v for k, v in info.metadata.items()
                                            if k.lower() not in ("encoder", "major_brand", "minor_version",
                                                                 "compatible_brands")})
        except (av.FFmpegError, ValueError) as exc:
            self.abort()
            raise OutputError(f"{self.target}: cannot set up the encoder ({exc})") from exc

    def _add_video(self, info: VideoInfo) -> None:
        plan = self.plan.video
        stream = self.container.add_stream(plan.codec, rate=1 if self.is_image else plan.rate)
        stream.width, stream.height, stream.pix_fmt = info.width, info.height, plan.pix_fmt
        self._last_pts: int | None = None
        if not self.is_image:
            stream.time_base = stream.codec_context.time_base = plan.time_base or info.time_base
        stream.options = dict(plan.options)
        stream.codec_context.thread_type = "AUTO"
        if self.options.threads:
            stream.codec_context.thread_count = self.options.threads
        pix_fmt = plan.pix_fmt
        self._yuv = pix_fmt.startswith(("yuv", "nv"))
        self._full_range = pix_fmt.startswith("yuvj") or info.colour.color_range == 2
        tags = info.colour
        self._matrix_tag = tags.colorspace if tags.colorspace in SWS_MATRIX else (1 if info.height >= 720 else 6)
        if self._yuv:
            cc = stream.codec_context
            cc.colorspace = self._matrix_tag
            cc.color_range = 2 if self._full_range else 1
            cc.color_primaries = tags.color_primaries
            cc.color_trc = tags.color_trc
        if info.rotation and not self.is_image:
            stream.set_display_rotation(info.rotation)
        self.video = stream

    def _add_copied(self, template) -> None:
        plan = self.plan.stream(template.index)
        if plan is not None:  # a stream the plan leaves out (--no-audio, or one the container cannot take)
            self._copied[template.index] = _CopiedStream(self.container, template, plan)

    def write(self, frame: Frame) -> None:
        if frame.yuv420_u8 is not None:
            video_frame = self._yuv420_video_frame(frame)
        else:
            video_frame = self._to_video_frame(frame.rgb_u8)
        if not self.is_image:
            video_frame.pts, video_frame.time_base = self._stream_pts(frame), self.video.time_base
        for packet in self.video.encode(video_frame):
            self.container.mux(packet)
        self.frames_written += 1

    def _stream_pts(self, frame: Frame) -> int:
        """The frame's pts in the stream's time base: the same ticks unless the container counts in
        frames (AVI), where it is rounded to a slot after the previous frame's."""
        if frame.time_base == self.video.time_base:
            return frame.pts
        pts = round(frame.pts * frame.time_base / self.video.time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        return pts

    def _yuv420_video_frame(self, frame: Frame) -> av.VideoFrame:
        """A 4:2:0 frame goes to the encoder as it is when its size and colour are the stream's;
        otherwise through RGB, like any other frame."""
        height, width = frame.yuv420_u8.shape[0] * 2 // 3, frame.yuv420_u8.shape[1]
        same = (self._yuv and self.pix_fmt in YUV420_FORMATS
                and (width, height) == (self.info.width, self.info.height)
                and frame.yuv == YuvMatrix(SWS_MATRIX[self._matrix_tag], self._full_range))
        if not same:
            vf = av.VideoFrame.from_ndarray(frame.yuv420_u8, format="yuv420p")
            return self._to_video_frame(vf.to_ndarray(format="rgb24", **frame.yuv.rgb_reformat_args()))
        vf = av.VideoFrame.from_ndarray(frame.yuv420_u8, format=self.pix_fmt)
        vf.colorspace = self._matrix_tag
        vf.color_range = 2 if self._full_range else 1
        return vf

    def _to_video_frame(self, rgb_u8: np.ndarray) -> av.VideoFrame:
        vf = av.VideoFrame.from_ndarray(rgb_u8, format="rgb24")
        if (vf.width, vf.height) != (self.info.width, self.info.height):
            vf = vf.reformat(width=self.info.width, height=self.info.height)  # a mid-stream size change
        if self.pix_fmt == "rgb24":
            return vf
        if self._yuv:
            out = vf.reformat(format=self.pix_fmt, dst_colorspace=SWS_MATRIX[self._matrix_tag],
                              dst_color_range=2 if self._full_range else 1)
            out.colorspace = self._matrix_tag
            out.color_range = 2 if self._full_range else 1
            return out
        return vf.reformat(format=self.pix_fmt)

    def write_other(self, packet: av.Packet) -> None:
        """Mux one packet of a copied stream, dropping it if its dts would go backwards."""
        copied = self._copied.get(packet.stream.index)
        if copied is None:
            return
        for out_packet in copied.packets(packet):
            dts = out_packet.dts
            if dts is not None and copied.last_dts is not None and dts <= copied.last_dts:
                self.dropped_packets += 1  # the mp4 muxer aborts on non-monotonic dts
                continue
            copied.last_dts = dts if dts is not None else copied.last_dts
            self.container.mux(out_packet)

    def close_streams(self) -> None:
        for packet in self.video.encode(None):
            self.container.mux(packet)
        for copied in self._copied.values():
            for packet in copied.flush():
                self.container.mux(packet)

    def commit(self) -> None:
        """Finish the file and move it to its final name."""
        if self.container is None:
            raise OutputError(f"{self.target}: no frame was written")
        try:
            self.close_streams()
            self.container.close()
        except (av.FFmpegError, OSError) as exc:
            self.abort()
            raise OutputError(f"{self.target}: cannot finish writing ({exc})") from exc
        self.container = None
        os.replace(self.tmp, self.target)

    def abort(self) -> None:
        """Drop everything written so far; the target is left untouched."""
        if self.container is not None:
            try:
                self.container.close()
            except Exception:  # closing a broken muxer may fail; the file goes either way
                pass
            self.container = None
        self.discard_file()

    def discard_file(self) -> None:
        """Remove the temporary file without touching the muxer (safe from any thread)."""
        self.tmp.unlink(missing_ok=True)
