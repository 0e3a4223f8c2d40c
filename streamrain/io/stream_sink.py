"""Network sink: re-streams the derained video to a URL (``udp://``, ``tcp://``, ``srt://``, ``rtmp://``,
``rtsp://``) while it is made.

Same interface as the file sink, whose encoder set-up (colour tags, odd sizes, pts) it reuses, but
nothing is renamed: a receiver sees each frame as soon as it is encoded, so there is no temporary
file, and ``abort()`` just closes the connection. Video only. The encoder is tuned for latency
(no B-frames, no look-ahead) and sends a keyframe every ``gop_s`` so a receiver that joins late
starts within that time.
"""

from __future__ import annotations

import logging
from fractions import Fraction

import av

from streamrain.errors import OutputError
from streamrain.io.frames import VideoInfo
from streamrain.io.sink import EncodeOptions, VideoSink

log = logging.getLogger(__name__)

# MPEG-TS wherever a byte stream goes (what VLC, ffplay and most receivers expect); RTMP carries FLV.
STREAM_FORMATS = {"udp": "mpegts", "tcp": "mpegts", "srt": "mpegts", "rtp": "rtp_mpegts",
                  "rtmp": "flv", "rtmps": "flv", "rtsp": "rtsp"}
# 7 TS packets of 188 bytes: the UDP payload size MPEG-TS receivers are built around.
_UDP_TS_PACKET = 1316


def stream_scheme(target: str) -> str | None:
    """The URL scheme if ``target`` names a network destination this sink writes, else None."""
    if "://" not in target:
        return None
    scheme = target.split("://", 1)[0].lower()
    return scheme if scheme in STREAM_FORMATS else None


class StreamSink(VideoSink):
    """Encode frames and send them to ``url`` as they come. Call ``start`` before the first frame."""

    def __init__(self, url: str, options: EncodeOptions = EncodeOptions(crf=23, preset="ultrafast",
                                                                        copy_audio=False),
                 *, gop_s: float = 1.0):
        # VideoSink.__init__ is not called: it checks a folder and a temporary name, which a URL has not.
        scheme = stream_scheme(url)
        if scheme is None:
            raise OutputError(f"{url}: not a stream URL; supported: "
                              f"{', '.join(s + '://' for s in STREAM_FORMATS)}")
        if scheme == "udp" and "pkt_size=" not in url:
            url += ("&" if "?" in url else "?") + f"pkt_size={_UDP_TS_PACKET}"
        self.url = url
        self.target = url  # named in error messages
        self.format = STREAM_FORMATS[scheme]
        self.options = options
        self.gop_s = gop_s
        self.container = None
        self.frames_written = 0
        self.dropped_packets = 0
        self._copied = {}
        self.plan = None

    @property
    def is_image(self) -> bool:
        return False

    def container_format(self) -> str:
        return self.format

    def start(self, info: VideoInfo, other_streams=()) -> None:
        if self.plan is None:
            self.prepare(info)  # video only; refuses what the encoder cannot honour before connecting
        try:
            # flush_packets: hand every packet to the network at once instead of filling a 32 KiB buffer.
            self.container = av.open(self.url, "w", format=self.format,
                                     container_options={"flush_packets": "1"}, timeout=10.0)
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise OutputError(f"{self.url}: cannot open the stream ({exc})") from exc
        self.info = info
        try:
            self._add_video(info)
            cc = self.video.codec_context
            rate = info.average_rate if info.average_rate and info.average_rate < 1000 else Fraction(30)
            low_latency = {"g": str(max(1, round(float(rate) * self.gop_s))), "bf": "0"}
            if cc.name == "libx264":
                low_latency["tune"] = "zerolatency"
            cc.options = {**cc.options, **low_latency}
            self.container.start_encoding()  # connect now, so a refused connection fails here
        except (av.FFmpegError, ValueError, OSError) as exc:
            self.abort()
            raise OutputError(f"{self.url}: cannot start the stream ({exc})") from exc

    def write_other(self, packet: av.Packet) -> None:
        """Video only: other streams are not carried (live frames are dropped under load)."""

    def commit(self) -> None:
        """Flush the encoder and close the stream."""
        if self.container is None:
            raise OutputError(f"{self.url}: no frame was written")
        try:
            self.close_streams()
            self.container.close()
        except (av.FFmpegError, OSError) as exc:
            self.abort()
            raise OutputError(f"{self.url}: cannot finish the stream ({exc})") from exc
        self.container = None

    def discard_file(self) -> None:
        """Nothing to discard: what was sent is gone."""
