"""File sink: encodes RGB frames with PyAV, copies the other streams, and writes atomically.

The file is written under a hidden temporary name beside the target and renamed only by
``commit()``; ``abort()`` (or leaving the context on an exception) removes it, so the target path
either holds a complete file or nothing.

Every frame keeps its input pts in the input's time base (variable frame rate survives); rotation
and the colour tags are carried over; odd sizes use 4:4:4 chroma so no pixel is cropped or added.
Audio packets are copied when the container takes the codec, re-encoded to AAC otherwise.
"""

from __future__ import annotations

import io
import logging
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streamrain.errors import OutputError
from streamrain.io.frames import SWS_MATRIX, YUV420_FORMATS, Frame, VideoInfo, YuvMatrix

log = logging.getLogger(__name__)

_IMAGE_CODECS = {".png": ("png", "rgb24"), ".jpg": ("mjpeg", "yuvj444p"), ".jpeg": ("mjpeg", "yuvj444p"),
                 ".bmp": ("bmp", "bgr24"), ".tif": ("tiff", "rgb24"), ".tiff": ("tiff", "rgb24"),
                 ".webp": ("libwebp", "yuv420p")}
_CHROMA_SUBSAMPLED = {"yuv420p", "yuv422p", "nv12", "yuv420p10le", "yuv422p10le"}


@dataclass(frozen=True)
class EncodeOptions:
    codec: str = "libx264"
    crf: int | None = 18
    preset: str | None = "veryfast"
    pix_fmt: str = "yuv420p"
    copy_audio: bool = True
    threads: int | None = None  # the encoder's threads; None: the codec's own choice (one per core)


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


# MP4-family muxers accept some codecs in the header and then fail at the trailer (PCM with an
# unnamed channel layout, for one), so for them only codecs known to work are copied.
_MP4_FAMILY = {"mp4", "mov", "ipod", "3gp", "3g2", "psp", "ismv", "f4v"}
_MP4_AUDIO_COPY = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}


def audio_copy_works(container_format: str, stream: av.stream.Stream) -> bool:
    """Whether ``container_format`` takes ``stream``'s codec as is (checked by writing a header)."""
    if container_format in _MP4_FAMILY and stream.type == "audio" \
            and stream.codec_context.name not in _MP4_AUDIO_COPY:
        return False
    buffer = io.BytesIO()
    try:
        with av.open(buffer, "w", format=container_format) as probe:
            probe.add_stream_from_template(stream)
            probe.start_encoding()
        return True
    except (av.FFmpegError, ValueError, NotImplementedError) as exc:
        log.info("%s cannot carry %s as is (%s): re-encoding to AAC",
                 container_format, stream.codec_context.name, exc)
        return False


_NATIVE_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}


def _aac_layout(layout) -> str:
    """A layout the AAC encoder accepts: 'N channels' (no channel mask, e.g. PCM in MKV) is not one."""
    if layout.name.endswith("channels"):
        return _NATIVE_LAYOUTS.get(layout.nb_channels, "stereo")
    return layout.name


class _CopiedStream:
    """One non-video input stream in the output: packets copied, or audio decoded and re-encoded."""

    def __init__(self, container, template, *, copy: bool):
        self.copy = copy
        self.last_dts: int | None = None
        if copy:
            self.out = container.add_stream_from_template(template)
            self.decoder = None
        else:
            cc = template.codec_context
            self.out = container.add_stream("aac", rate=cc.sample_rate or 48000, layout=_aac_layout(cc.layout))
            self.decoder = cc

    def packets(self, packet: av.Packet):
        if self.copy:
            packet.stream = self.out
            yield packet
            return
        try:
            for frame in self.decoder.decode(packet):
                frame.pts = None  # the AAC encoder restamps contiguously from the first sample
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
        if not self.target.parent.is_dir():
            raise OutputError(f"{self.target}: folder {self.target.parent} does not exist")
        if self.target.is_dir():
            raise OutputError(f"{self.target}: is a folder")
        for leftover in self.target.parent.glob(f".{self.target.stem}.streamrain-*.partial*"):
            remove_if_stale(leftover)

    @property
    def is_image(self) -> bool:
        return self.target.suffix.lower() in _IMAGE_CODECS

    def start(self, info: VideoInfo, other_streams=()) -> None:
        try:
            self.container = av.open(str(self.tmp), "w", format="image2" if self.is_image else None,
                                     options={"update": "1"} if self.is_image else None)
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise OutputError(f"{self.target}: cannot create ({exc})") from exc
        self.info = info
        try:
            self._add_video(info)
            if not self.is_image and self.options.copy_audio:
                for s in other_streams:
                    self._add_copied(s)
            self.container.metadata.update({k: v for k, v in info.metadata.items()
                                            if k.lower() not in ("encoder", "major_brand", "minor_version",
                                                                 "compatible_brands")})
        except (av.FFmpegError, ValueError) as exc:
            self.abort()
            raise OutputError(f"{self.target}: cannot set up the encoder ({exc})") from exc

    def _add_video(self, info: VideoInfo) -> None:
        o = self.options
        if self.is_image:
            codec, pix_fmt = _IMAGE_CODECS[self.target.suffix.lower()]
            stream = self.container.add_stream(codec, rate=1)
            crf = None
        else:
            codec, pix_fmt, crf = o.codec, o.pix_fmt, o.crf
            rate = info.average_rate if info.average_rate and info.average_rate < 1000 else Fraction(30)
            stream = self.container.add_stream(codec, rate=rate)
        if pix_fmt in _CHROMA_SUBSAMPLED and (info.width % 2 or info.height % 2):
            pix_fmt = "yuv444p"  # 4:2:0 needs even sizes; 4:4:4 keeps the picture exactly as it is
            log.info("odd frame size %dx%d: encoding 4:4:4 to keep every pixel", info.width, info.height)
        stream.width, stream.height, stream.pix_fmt = info.width, info.height, pix_fmt
        if not self.is_image:
            stream.time_base = info.time_base
            stream.codec_context.time_base = info.time_base
        options = {}
        if crf is not None and codec in ("libx264", "libx265", "libsvtav1", "libvpx-vp9", "libvpx"):
            options["crf"] = str(crf)
            if codec.startswith("libvpx"):
                options["b"] = "0"
        if o.preset and codec in ("libx264", "libx265") and not self.is_image:
            options["preset"] = o.preset
        stream.options = options
        stream.codec_context.thread_type = "AUTO"
        if o.threads:
            stream.codec_context.thread_count = o.threads
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
        self.pix_fmt = pix_fmt

    def _add_copied(self, template) -> None:
        copy = audio_copy_works(self.container.format.name.split(",")[0], template)
        if not copy and template.type != "audio":
            log.warning("dropping %s stream %d: the output container cannot carry it",
                        template.type, template.index)
            return
        self._copied[template.index] = _CopiedStream(self.container, template, copy=copy)

    def write(self, frame: Frame) -> None:
        if frame.yuv420_u8 is not None:
            video_frame = self._yuv420_video_frame(frame)
        else:
            video_frame = self._to_video_frame(frame.rgb_u8)
        if not self.is_image:
            video_frame.pts = frame.pts
            video_frame.time_base = frame.time_base
        for packet in self.video.encode(video_frame):
            self.container.mux(packet)
        self.frames_written += 1

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
