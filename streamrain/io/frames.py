"""Frame and stream descriptions shared by sources, the pipeline and sinks.

Layout: ``rgb_u8`` is a numpy uint8 array ``(H, W, 3)`` in RGB order. A frame may instead carry its
decoded picture untouched as ``yuv420_u8``, a uint8 ``(H * 3 // 2, W)`` array in I420 layout (the Y
plane's rows, then U's and V's, each ``W // 2`` wide, packed row after row), with the ``yuv``
matrix and range that turn it into RGB; exactly one of the two is set. Timestamps stay in the
source stream's own units: ``pts`` ticks of ``time_base`` seconds, so nothing is lost to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np


# FFmpeg colour-matrix tags that swscale understands, mapped to its own constants (SWS_CS_*).
SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}
# Pixel formats whose planes are exactly I420 (yuvj420p: the same, full range).
YUV420_FORMATS = ("yuv420p", "yuvj420p")
# Luma weights (Kr, Kb) of each swscale matrix: BT.709, FCC, BT.601, SMPTE 240M, BT.2020.
LUMA_WEIGHTS = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 7: (0.212, 0.087),
                9: (0.2627, 0.0593)}


def default_sws_matrix(colorspace_tag: int | None, height: int) -> int:
    """The swscale matrix for a stream's colour tag: untagged streams get BT.709 from 720 lines up
    and BT.601 below, like most players."""
    return SWS_MATRIX.get(int(colorspace_tag or 2), 1 if height >= 720 else 5)


@dataclass(frozen=True)
class YuvMatrix:
    """How a frame's Y'CbCr maps to R'G'B': a swscale matrix (``SWS_MATRIX`` value) and the range."""

    sws_matrix: int
    full_range: bool

    @property
    def luma_weights(self) -> tuple[float, float]:
        return LUMA_WEIGHTS[self.sws_matrix]

    def rgb_reformat_args(self) -> dict:
        """``to_ndarray``/``reformat`` arguments that decode a frame in this matrix and range to RGB."""
        return {"src_colorspace": self.sws_matrix, "src_color_range": 2 if self.full_range else 1}


@dataclass
class Frame:
    rgb_u8: np.ndarray | None
    pts: int
    time_base: Fraction
    index: int
    captured_s: float = 0.0  # monotonic clock when decoded, for live latency
    yuv420_u8: np.ndarray | None = None
    yuv: YuvMatrix | None = None
    discontinuity: bool = False  # the source knows this frame does not follow the last (a reconnect)

    @property
    def pts_s(self) -> float:
        return float(self.pts * self.time_base)

    @property
    def pixels(self) -> np.ndarray:
        return self.rgb_u8 if self.rgb_u8 is not None else self.yuv420_u8

    @property
    def layout_key(self) -> tuple:
        """Frames batched together must agree on this: size, layout and colour matrix."""
        return self.pixels.shape, self.yuv


@dataclass(frozen=True)
class ColourTags:
    """The four colour tags that decide how YUV maps to RGB (FFmpeg's enum values)."""

    colorspace: int  # matrix: 1 BT.709, 5/6 BT.601, 9 BT.2020
    color_range: int  # 1 limited (tv), 2 full (pc)
    color_primaries: int
    color_trc: int


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    time_base: Fraction
    average_rate: Fraction | None
    rotation: int  # counter-clockwise degrees from the display matrix
    colour: ColourTags
    codec: str
    frames: int  # 0 when the container does not say
    duration_s: float | None
    is_image: bool = False
    is_live: bool = False
    metadata: dict = field(default_factory=dict)
    pix_fmt: str | None = None  # as decoded, when the container says
