"""Where a shot ends: the discontinuities after which a temporal model's window must restart.

A frame starts a new shot when the source says so (a reconnect), when its size differs from the
previous frame's, when its timestamp is more than ``max_gap_s`` after the previous one or not after
it at all (a pts gap, a stream that restarted or looped), or when its picture differs from the
previous one as a scene cut does.

The scene-cut test is cheap (about 1/16 of the rows and columns, luma only): both the mean absolute
difference of two coarse luma thumbnails and the distance between their luma histograms must be
large. Why both: camera motion and rain change the thumbnail but hardly the histogram; a change of
lighting (a lightning flash, auto exposure) moves the histogram but, together with the thumbnail,
rarely as far as a cut does. Thresholds measured on the project's clips (``SCENE_CUT_*`` below).
A missed cut costs little (the fusion sees a misaligned neighbour for ``past`` frames); a false one
costs a frame or two of single-frame quality.
"""

from __future__ import annotations

import numpy as np

from streamrain.io.frames import YuvMatrix

# Measured with benchmarks/temporal_cuts.py on ../shared/data (12 sequences: NTURain a1 rainy and
# clean, the driving and OpenCV clips, Vid4, Aspen; up to 120 frames each): consecutive frames score
# at most 0.068 (thumbnail difference) and 0.120 (histogram distance), both in OpenCV's tree.avi;
# the 130 cuts between two of those sequences at least 0.129 and 0.175. These thresholds catch every
# cut and flag no consecutive pair (except Megamind.avi's fade in from a black first frame, a cut).
SCENE_CUT_DIFFERENCE = 0.10  # mean |delta luma| of the thumbnails, 0-1 scale
SCENE_CUT_HISTOGRAM = 0.15  # half the L1 distance of 16-bin luma histograms, 0-1
_BINS = 16


def luma_thumbnail(rgb_u8: np.ndarray, yuv: YuvMatrix | None = None) -> np.ndarray:
    """Coarse float32 luma (0-1) from every 4th row and column, averaged over 4x4 of those samples:
    about 1/16 of the frame per side, for frames of any size. ``yuv`` given: the frame is an I420
    picture (H * 3 // 2, W) in that matrix and range, and its Y' plane is the luma."""
    if yuv is not None:
        black, white = (0.0, 255.0) if yuv.full_range else (16.0, 235.0)
        sampled = rgb_u8[:rgb_u8.shape[0] * 2 // 3:4, ::4].astype(np.float32)
        luma = np.clip((sampled - black) / (white - black), 0.0, 1.0)
    else:
        sampled = rgb_u8[::4, ::4].astype(np.float32)
        luma = (sampled[..., 0] * 0.299 + sampled[..., 1] * 0.587 + sampled[..., 2] * 0.114) / 255.0
    height, width = (luma.shape[0] // 4) * 4 or luma.shape[0], (luma.shape[1] // 4) * 4 or luma.shape[1]
    luma = luma[:height, :width]
    if height % 4 == 0 and width % 4 == 0:
        luma = luma.reshape(height // 4, 4, width // 4, 4).mean(axis=(1, 3))
    return luma


def scene_change(previous: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """(thumbnail difference, histogram distance) between two ``luma_thumbnail``s, each 0-1."""
    difference = float(np.abs(current - previous).mean())
    h_prev = np.histogram(previous, bins=_BINS, range=(0.0, 1.0))[0] / previous.size
    h_cur = np.histogram(current, bins=_BINS, range=(0.0, 1.0))[0] / current.size
    return difference, float(np.abs(h_cur - h_prev).sum() / 2)


class ShotBoundaries:
    """Feed frames in order to ``starts_shot``; it returns why a frame starts a new shot, or None."""

    def __init__(self, *, max_gap_s: float = 0.5, scene_cuts: bool = True):
        if not max_gap_s > 0:
            raise ValueError(f"max_gap_s must be a positive number of seconds; got {max_gap_s!r}")
        self.max_gap_s = max_gap_s
        self.scene_cuts = scene_cuts
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame: the next one starts a shot."""
        self._shape: tuple | None = None
        self._time_s: float | None = None
        self._thumbnail: np.ndarray | None = None

    def starts_shot(self, rgb_u8: np.ndarray, time_s: float | None = None, *,
                    discontinuous: bool = False, yuv: YuvMatrix | None = None) -> str | None:
        """``time_s``: the frame's timestamp (None: not checked); ``discontinuous``: the source
        knows this frame does not follow the previous one (a reconnect); ``yuv``: the frame is an
        I420 picture in that matrix (a change of layout or matrix reads as a change of size)."""
        shape, previous_time_s, previous_thumbnail = self._shape, self._time_s, self._thumbnail
        self._shape, self._time_s = (rgb_u8.shape, yuv), time_s
        self._thumbnail = luma_thumbnail(rgb_u8, yuv) if self.scene_cuts else None
        if shape is None:
            return "first frame"
        if discontinuous:
            return "source discontinuity"
        if shape != self._shape:
            return "size change"
        if time_s is not None and previous_time_s is not None:
            gap_s = time_s - previous_time_s
            if gap_s <= 0 or gap_s > self.max_gap_s:
                return f"timestamp gap of {gap_s:.3f} s"
        if self.scene_cuts:
            difference, histogram = scene_change(previous_thumbnail, self._thumbnail)
            if difference > SCENE_CUT_DIFFERENCE and histogram > SCENE_CUT_HISTOGRAM:
                return "scene cut"
        return None
