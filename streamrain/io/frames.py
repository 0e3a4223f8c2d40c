"""Frame and stream descriptions shared by sources, the pipeline and sinks.

Layout: ``rgb_u8`` is a numpy uint8 array ``(H, W, 3)`` in RGB order. Timestamps stay in the source
stream's own units: ``pts`` ticks of ``time_base`` seconds, so nothing is lost to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np


@dataclass
class Frame:
    rgb_u8: np.ndarray
    pts: int
    time_base: Fraction
    index: int
    captured_s: float = 0.0  # monotonic clock when decoded, for live latency

    @property
    def pts_s(self) -> float:
        return float(self.pts * self.time_base)


# FFmpeg colour-matrix tags that swscale understands, mapped to its own constants (SWS_CS_*).
SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}


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
