"""TRNet: streamrain's temporal deraining network (a window of frames in, frame t out).

Not a port: SRNet (``srnet.py``) split so that a video costs about one SRNet pass per frame, not one
per window. Rain moves and the scene mostly does not, so a neighbouring frame shows what is behind
a streak on frame t once it is aligned onto t; dashcams move, so the neighbours are aligned first.

Three parts, all at quarter resolution after SRNet's 2x2 space-to-depth head:

1. Per-frame features (``features``), computed once per frame and reused by every window that needs
   it: head at half resolution, 1x1 down to quarter resolution, ``feat_blocks`` residual blocks,
   then two 1x1 projections: a ``key`` (to estimate motion from) and a ``value`` (what the
   neighbours contribute), and the first motion layer's two halves (below).
2. Alignment: each neighbour n's value is moved onto frame t. With ``global_alignment``, by the
   translation the phase correlation of the two frames' coarse luma finds (``global_shift``; each
   frame's Fourier transform, ``coarse_spectrum``, computed once). With ``learned_flow`` (the
   default; trnet-v1), a 2-layer convolution on concat(key_t, key_n) predicts a 2-channel offset in
   quarter-resolution pixels on top (its first layer is split into a convolution over key_t plus
   one over key_n, each computed once per frame, so a pair costs an add, a ReLU and the 2-channel
   layer), and n's value is sampled at (position + offset) with ``grid_sample`` (bilinear,
   border); the offset starts at zero (the last layer is zero-initialised). Without it
   (trnet-v2), a pair costs the translation alone (``translate``: four shifted views blended).
   Why both: trnet-v1's learned flow alone moved NTURain's neighbours by under 0.6 quarter pixels
   where the camera pans ~1 a frame (zeroing it changed the output by 0.04 dB); the same weights
   aligned by the translation gain 1.3 dB there, and the learned flow on top of the translation
   adds nothing measurable (32.41 dB with it, 32.45 without) for the cost of its warps.
3. Fusion: the window's values [t - past .. t + future] concatenated, a 1x1 convolution added to
   frame t's own quarter-resolution features, ``fuse_blocks`` residual blocks, SRNet's up and tail
   with frame t's half-resolution skip: the rain layer, subtracted from frame t.

With ``luma_median`` (trnet-v5), the fusion also gets each frame's **luma residual** at full
detail (``luma_residuals``): frame t's luma less the median of it and the luma of its two nearest
other frames, each moved onto t by the global shift rounded to whole pixels (a copy: no
interpolation to blur texture). Why: the values give the fusion 24 numbers per 4x4 block of a
neighbour, too coarse for streaks a pixel or two wide, while rain brightens a pixel on one frame
and has moved on by the next: where the scene is aligned, the residual is the rain itself.
Measured before any training on NTURain a1 (a hand-set threshold on it, for orientation only):
taking the median where the residual exceeds 0.02 gives 33.75 dB PSNR-Y (34.12 with the shift's
fraction, 32.55 with shifts rounded to even pixels) against trnet-v3's 32.75. Two convolutions
take the residual in, one into the fusion's input and one into the tail's, both starting at
zero, so a TRNet without them is adopted exactly (``adopt``). Trained (trnet-v5, 10,000 steps
from trnet-v3): NTURain a1 through the product 33.45 dB / temporal error 3.82 (trnet-v3 32.75 /
4.04). Cost: +0.26 GMAC per megapixel and ~7 % of the end-to-end speed (51 fps against 55).
The same network fine-tuned with daylight rain in the mix (trnet-v6: streaks that jump 3-8 lengths
a frame, gone from the neighbours, where trnet-v5's rain often is not and its median is a poor
guess): 33.82 / 3.68, causal 32.71 / 4.00. Then with the global shift found on a finer grid in
small pictures (``spectrum_pool``: the 128-pixel training patches had been correlated over 16 x 16
samples, so the median was far noisier in training than on whole frames; trnet-v8): 34.73 / 3.44,
causal 33.86 / 3.70.

With ``wide_median``, a second residual against the median of the whole 5-frame window (offline
only: zero in causal mode), for rain dense or slow enough to cover a pixel on t - 1 or t + 1 too
(trnet-v9, trnet-v8 fine-tuned with it): 34.97 / 3.37, causal 33.75 / 3.72, ~9 % slower.

Window edges are replicated: at the first frame of a shot, slot t-1 holds frame t itself, and so on.
A slot that holds frame t itself takes t's value unaligned (no offset to estimate), so edges and
causal mode cost less. **Causal mode** is the same weights with every future slot holding frame t,
exactly what the last frame of a shot sees, so one checkpoint serves offline (look-ahead ``future``
frames) and live use (no look-ahead).

Cost with the default arguments, per output frame with the per-frame features counted once
(``streamrain.modelinfo.cost``): 10.5 GMAC per megapixel (SRNet-v3: 9.65), plus four ``grid_sample``
of 24 channels at quarter resolution, which the counter leaves out; without the learned flow 10.1,
plus four translations. Why values of 24 channels rather than the 48 features: moving them costs
per channel. ``TRNet.yuv420_form`` (``Yuv420TRNet``) takes decoded 4:2:0 pictures as they are, as
SRNet's does: the network starts and ends in space-to-depth form, at the chroma planes' resolution,
so the colour conversions fold into its head and tail. Measured at 640x360 end to end on a 2-core
AVX-512/bf16 CPU in bf16 (``streamrain bench``, one session, 2026-12-04): trnet-v5 (as trnet-v6)
51 fps as decoded, 43 through RGB, causal 56; trnet-v3 (as trnet-v2) 55-56 fps as decoded, 46-47
through RGB (``--rgb``), causal 58-59; trnet-v1 47; srnet-v3 71-73.

Tensor contract: frames float32 RGB ``(N, 3, H, W)`` in [0, 1], H and W multiples of 4. Windows are
rows of ``past + 1 + future`` indices into the N frames, the centre (frame t) at position ``past``.
``forward(x)`` treats its batch as one clip of consecutive frames (the ARCHS contract: same shape out).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from streamrain.archs.frozen_conv import FrozenConv
from streamrain.archs.srnet import (_ResBlock, _fold_space_to_depth, _frozen, _frozen_residual_blocks,
                                    bordered_codes, yuv420_head_and_tail)
from streamrain.io.frames import YuvMatrix


class FrameFeatures(NamedTuple):
    """Per-frame features, N frames: ``half`` (N, half_channels, H/2, W/2), the skip to the tail;
    ``quarter`` (N, quarter_channels, H/4, W/4); ``value`` (N, value_channels, H/4, W/4), what the
    frame gives its neighbours; ``motion_as_centre`` and ``motion_as_neighbour`` (N, flow_channels,
    H/4, W/4), the two halves of the first motion layer (see ``TRNet.features``); ``spectrum``
    (N, H/p, W/(2p) + 1) complex, the frame's ``coarse_spectrum`` for the global alignment, or
    (N, 0) where the network has none; ``luma``, the frame's luma at full resolution for
    ``luma_residuals`` held as its 2x2 space-to-depth, (N, 4, H/2, W/2), channel 2i + j the
    sample at (2y + i, 2x + j) as ``pixel_unshuffle`` orders them and the 4:2:0 codes hold Y'
    (``Yuv420TRNet`` keeps those codes), or (N, 0) where the network has no ``luma_median``."""

    half: torch.Tensor
    quarter: torch.Tensor
    value: torch.Tensor
    motion_as_centre: torch.Tensor
    motion_as_neighbour: torch.Tensor
    spectrum: torch.Tensor
    luma: torch.Tensor

    def select(self, index: Sequence[int]) -> "FrameFeatures":
        return FrameFeatures(*(rows(t, index) for t in self))


def rows(t: torch.Tensor, index: Sequence[int]) -> torch.Tensor:
    """``t[index]`` along dim 0: a view for a run of consecutive indices, else a concatenation of
    slices (measured ~4x faster than ``index_select`` on channels_last tensors here)."""
    index = [int(i) for i in index]
    if index == list(range(index[0], index[0] + len(index))):
        return t[index[0]:index[0] + len(index)]
    return torch.cat([t[i:i + 1] for i in index])


def spectrum_pool(height: int, width: int) -> int:
    """Pixels per sample (8, 4 or 2) of the coarse luma the global alignment correlates: 8 where
    the picture's short side still has 64 samples (720p and up), finer below, so that small
    pictures keep enough samples to place the correlation's peak. Why: at 8 a 128-pixel training
    patch is correlated over 16 x 16 samples, and its aligned median of clean frames scored 29 dB
    on photo clips (33 at 2, as 256-pixel patches at 8): training taught the network to distrust
    a median that is reliable on whole video frames. On 352-pixel patches 4 beat 8 too (0.7-1.2 dB
    of the median under light rain; ``benchmarks/temporal_median_by_kind.py``). NTURain a1
    (640x480, now 4) with trnet-v6's weights: 33.83 dB as at 8 (33.82)."""
    short = min(height, width)
    return 8 if short >= 8 * 64 else 4 if short >= 4 * 64 else 2


def coarse_spectrum(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) frames -> (N, H/p, W/(2p) + 1), p = ``spectrum_pool(H, W)``: the 2-D Fourier
    transform of each frame's luma at 1/p resolution, mean removed and tapered by a Hann window (so
    the frame's edges do not read as a motion of their own). Computed in float32 whatever the
    network computes in. Frames under 32 pixels on a side give (N, 0): too small to tell a motion
    from."""
    if min(x.shape[-2:]) < 32:
        return x.new_zeros(len(x), 0, dtype=torch.complex64)
    pool = spectrum_pool(*x.shape[-2:])
    small = F.avg_pool2d(x.float(), pool)  # (pooled first: luma is linear, and this is p^2 fewer pixels)
    return _luma_spectrum(0.299 * small[:, 0] + 0.587 * small[:, 1] + 0.114 * small[:, 2])


def coarse_spectrum_of_codes(codes: torch.Tensor) -> torch.Tensor:
    """``coarse_spectrum`` of 4:2:0 pictures as ``Yuv420TRNet`` holds them: uint8 (N, 6, H/2, W/2),
    the four luma codes of each 2x2 block first. Their luma is Y' itself; its offset and scale do
    not move the phase correlation's peak, so the codes are used as they are."""
    if 2 * min(codes.shape[-2:]) < 32:
        return codes.new_zeros(len(codes), 0, dtype=torch.complex64)
    pool = spectrum_pool(2 * codes.shape[-2], 2 * codes.shape[-1]) // 2  # (the codes are 2x2 blocks)
    return _luma_spectrum(F.avg_pool2d(codes[:, :4].float().mean(1, keepdim=True), pool)[:, 0])


def _luma_spectrum(luma: torch.Tensor) -> torch.Tensor:
    luma = luma - luma.mean((1, 2), keepdim=True)
    height, width = luma.shape[1:]
    taper = (torch.hann_window(height, periodic=False, device=luma.device)[:, None]
             * torch.hann_window(width, periodic=False, device=luma.device)[None])
    return torch.fft.rfft2(luma * taper)


def global_shift(spectrum_t: torch.Tensor, spectrum_n: torch.Tensor, frame_height: int,
                 frame_width: int) -> torch.Tensor:
    """(P, 2): how far, in quarter-resolution pixels (x, y), frame n's picture has moved from frame
    t's, as one translation: the peak of their phase correlation at the coarse resolution of their
    ``coarse_spectrum``, refined to a fraction of a sample from its neighbours. ``frame_height``
    and ``frame_width``: the frames' full size. Shifts beyond a quarter of the picture are not
    searched (they alias with the opposite direction)."""
    pool = spectrum_pool(frame_height, frame_width)
    height, width = frame_height // pool, frame_width // pool
    cross = spectrum_n * spectrum_t.conj()
    surface = torch.fft.irfft2(cross / cross.abs().clamp_min(1e-8), s=(height, width))
    # Centred: shift (0, 0) at (height // 2, width // 2); outside the searched range never wins.
    surface = torch.roll(surface, (height // 2, width // 2), (1, 2))
    ys = torch.arange(height, device=surface.device)[:, None] - height // 2
    xs = torch.arange(width, device=surface.device)[None] - width // 2
    outside = (ys.abs() > height // 4) | (xs.abs() > width // 4)
    surface = surface.masked_fill(outside, float("-inf"))
    peak = surface.flatten(1).argmax(1)
    py, px = peak // width, peak % width
    index = torch.arange(len(surface), device=surface.device)

    def refined(minus: torch.Tensor, centre: torch.Tensor, plus: torch.Tensor) -> torch.Tensor:
        # A shifted picture's correlation peak is a sampled sinc, not a parabola: the fraction is
        # the larger neighbour's share of it and the peak's (Foroosh et al., 2002).
        minus, plus = minus.nan_to_num(neginf=0.0).clamp_min(0), plus.nan_to_num(neginf=0.0).clamp_min(0)
        side = torch.where(plus > minus, 1.0, -1.0)
        larger = torch.maximum(plus, minus)
        return side * larger / (larger + centre).clamp_min(1e-9)

    centre = surface[index, py, px]
    dy = refined(surface[index, (py - 1) % height, px], centre, surface[index, (py + 1) % height, px])
    dx = refined(surface[index, py, (px - 1) % width], centre, surface[index, py, (px + 1) % width])
    shift = torch.stack([px - width // 2 + dx, py - height // 2 + dy], 1)
    return shift * (pool / 4)  # coarse to quarter-resolution pixels


def translate(value: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """``value`` (P, C, h, w) with picture p sampled at every position plus ``shifts[p]`` (x, y),
    bilinear, edges extended: what ``warp`` computes for offsets constant over the picture, as
    four shifted views blended, ~10x cheaper than grid_sample's gather. In ``value``'s dtype."""
    if value.is_meta:  # the MAC counter's dry run (streamrain.modelinfo): no values to shift
        return value.clone()
    height, width = value.shape[-2:]
    out = []
    for picture, (sx, sy) in zip(value.split(1), shifts.tolist()):
        sx, sy = min(max(sx, -width), width), min(max(sy, -height), height)
        ix, iy = math.floor(sx), math.floor(sy)
        fx, fy = sx - ix, sy - iy
        left, right, top, bottom = max(0, -ix), max(0, ix + 1), max(0, -iy), max(0, iy + 1)
        padded = F.pad(picture, (left, right, top, bottom), mode="replicate")
        x0, y0 = ix + left, iy + top

        def at(dy: int, dx: int) -> torch.Tensor:
            return padded[..., y0 + dy:y0 + dy + height, x0 + dx:x0 + dx + width]

        upper = at(0, 0) * (1 - fx) + at(0, 1) * fx
        lower = at(1, 0) * (1 - fx) + at(1, 1) * fx
        out.append(upper * (1 - fy) + lower * fy)
    return out[0] if len(out) == 1 else torch.cat(out)


def luma_of(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) BT.601 luma, in ``x``'s dtype."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def moved_by_whole_pixels(planes: torch.Tensor, sx: int, sy: int) -> torch.Tensor:
    """A picture held as its 2x2 space-to-depth, (1, 4, h, w), sampled at every position plus
    (sx, sy) whole full-resolution pixels: a copy, no interpolation to blur fine texture. An odd
    shift moves each sample into the other phase of its block, so output plane (i, j) is input
    plane ((i + sy) mod 2, (j + sx) mod 2) moved by ((j + sx) // 2, (i + sy) // 2) half-resolution
    pixels; edges are extended plane by plane (within a row or column of the picture's edge)."""
    height, width = planes.shape[-2:]
    sx, sy = min(max(sx, -2 * width), 2 * width), min(max(sy, -2 * height), 2 * height)
    left, right = max(0, -(sx // 2)), max(0, (sx + 1) // 2)
    top, bottom = max(0, -(sy // 2)), max(0, (sy + 1) // 2)
    padded = F.pad(planes, (left, right, top, bottom), mode="replicate")
    out = []
    for i in (0, 1):
        for j in (0, 1):
            y0, x0 = top + (i + sy) // 2, left + (j + sx) // 2
            plane = 2 * ((i + sy) % 2) + (j + sx) % 2
            out.append(padded[:, plane:plane + 1, y0:y0 + height, x0:x0 + width])
    return torch.cat(out, 1)


def median_of_three(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return torch.maximum(torch.minimum(a, b), torch.minimum(torch.maximum(a, b), c))


def median_of_five(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor,
                   e: torch.Tensor) -> torch.Tensor:
    """Elementwise, by comparisons (no sort). Of the pairs (a, b) and (c, d), the smaller of the
    two minima has three values at or above it and the larger of the two maxima three at or below
    it: dropping one value from each side of the median leaves it the median of the other three
    (e, the larger minimum, the smaller maximum)."""
    low, high = torch.minimum(a, b), torch.maximum(a, b)
    low2, high2 = torch.minimum(c, d), torch.maximum(c, d)
    return median_of_three(e, torch.maximum(low, low2), torch.minimum(high, high2))


def window(t: int, *, first: int, last: int, past: int, future: int, causal: bool = False) -> list[int]:
    """Frame indices of t's window, ``past + 1 + future`` of them: neighbours outside the shot
    [first, last] replaced by its edge frame, and in causal mode every future one by t itself."""
    return [t if causal and d > 0 else min(max(t + d, first), last) for d in range(-past, future + 1)]


# The luma residuals are small numbers (a streak 0.05-0.3) entering convolutions that start at
# zero: scaled up, Adam's steps (a fixed size per weight) grow their effect ~8x faster. Folded
# into the weights of the inference forms.
RESIDUAL_GAIN = 8.0


class _Alignment(nn.Module):
    """The window's values aligned onto their centre frames: shared by TRNet and its inference
    form, which differ in how ``flow`` computes the offsets. Needs ``past``, ``flow`` and ``_grids``."""

    def _aligned_pairs(self, feats: FrameFeatures, windows: Sequence[Sequence[int]],
                       centre: list[int]) -> dict[tuple[int, int], torch.Tensor]:
        """{(window m, slot s): (1, value_channels, H/4, W/4)} for every slot holding another frame
        than its centre: that frame's value aligned onto the centre."""
        pairs = [(m, s) for m, w in enumerate(windows) for s, n in enumerate(w) if n != centre[m]]
        if not pairs:
            return {}
        neighbours = [windows[m][s] for m, s in pairs]
        centres = [centre[m] for m, _ in pairs]
        if not self.learned_flow:
            # Translated pair by pair in the values' own dtype and layout: no gather, no conversion.
            shifts = self.global_shifts(feats, centres, neighbours)
            return {pair: translate(feats.value[n:n + 1], shifts[i:i + 1])
                    for i, (pair, n) in enumerate(zip(pairs, neighbours))}
        # Sampled in float32 (see ``warp``): each frame's value converted once, not once per pair.
        warped = self.warp(rows(feats.value.float(), neighbours), self.offsets(feats, centres, neighbours))
        # Back in the values' dtype and layout in one pass (grid_sample writes NCHW).
        layout = (torch.channels_last if feats.value.is_contiguous(memory_format=torch.channels_last)
                  else torch.contiguous_format)
        warped = warped.to(feats.value.dtype, memory_format=layout)
        return {pair: warped[i:i + 1] for i, pair in enumerate(pairs)}

    def _aligned_values(self, feats: FrameFeatures, windows: Sequence[Sequence[int]],
                        centre: list[int]) -> torch.Tensor:
        """(M, slots * value_channels, H/4, W/4): each slot's value aligned onto its centre frame."""
        aligned = self._aligned_pairs(feats, windows, centre)
        # Slot-major: the fusion's input channel slot * value_channels + c. Written in place, in
        # the values' memory layout (channels_last on the CPU), so the 1x1 fusion reads it as is.
        value = feats.value
        channels = value.shape[1]
        layout = (torch.channels_last if value.is_contiguous(memory_format=torch.channels_last)
                  and not value.is_contiguous() else torch.contiguous_format)
        out = torch.empty((len(windows), len(windows[0]) * channels, *value.shape[2:]),
                          dtype=value.dtype, device=value.device, memory_format=layout)
        for m, w in enumerate(windows):
            for s, n in enumerate(w):
                out[m:m + 1, s * channels:(s + 1) * channels] = aligned.get((m, s), value[n:n + 1])
        return out

    def luma_residuals(self, feats: FrameFeatures, windows: Sequence[Sequence[int]],
                       centre: list[int]) -> torch.Tensor:
        """(M, 4, H/2, W/2), held as ``FrameFeatures.luma``: each centre frame's luma less the
        median of it and the luma of the two other frames of its window nearest in time, each
        moved onto the centre by the global shift rounded to whole full-resolution pixels. Rain
        brightens a pixel on one frame and has moved on by the next, so where the scene is
        aligned this is the rain, at full resolution; where it is not (parallax, motion the
        translation misses) it is edges, which the network learns to tell apart. A window with
        fewer than two other frames (the first frames of a 1- or 2-frame shot) gets zero: the
        median is the centre itself.

        With ``wide_median``, (M, 8, H/2, W/2): those four channels, then the centre's luma less
        the median of the whole window's (a slot holding the centre counts as the centre). Why:
        where rain is dense or falls slowly, a pixel under a streak on t is often under one on
        t - 1 or t + 1 too, and the median of three is the rain; of five it takes three frames
        to be. In causal mode, and wherever the window holds the centre three times, it is zero."""
        luma = feats.luma
        near = [self._nearest_two(w, t) for w, t in zip(windows, centre)]
        # The frames each centre needs moved onto it: the nearest two for the median of three (none
        # where there are fewer), and with the wide median every other frame of its window.
        if self.wide_median:
            others = [sorted(set(w) - {t}) for w, t in zip(windows, centre)]
        else:
            others = [two if len(two) == 2 else [] for two in near]
        pairs = [(t, n) for t, moved in zip(centre, others) for n in moved]
        channels = 8 if self.wide_median else 4
        if not pairs or luma.is_meta:  # (the MAC counter's dry run: nothing to move)
            return luma.new_zeros(len(windows), channels, *luma.shape[2:])
        shifts = self.global_shifts(feats, [t for t, _ in pairs], [n for _, n in pairs])
        whole = iter((4.0 * shifts).round().to(torch.int64).tolist())  # quarter- to full-res pixels
        out = []
        for w, t, two, moved in zip(windows, centre, near, others):
            own = luma[t:t + 1]
            aligned = {n: moved_by_whole_pixels(luma[n:n + 1], *next(whole)) for n in moved}
            parts = [own - median_of_three(own, *(aligned[n] for n in two)) if len(two) == 2
                     else torch.zeros_like(own)]
            if self.wide_median:
                parts.append(own - median_of_five(*(aligned.get(n, own) for n in w)))
            out.append(torch.cat(parts, 1))
        return torch.cat(out)

    def _nearest_two(self, w: Sequence[int], t: int) -> list[int]:
        """The two frames of window ``w`` nearest to its centre ``t`` in time, other than t
        (t - 1 and t + 1 offline, t - 1 and t - 2 in causal mode); fewer where it has fewer."""
        chosen: list[int] = []
        for k in range(1, max(self.past, self.future) + 1):
            for slot in (self.past - k, self.past + k):
                if 0 <= slot < len(w) and w[slot] != t and w[slot] not in chosen and len(chosen) < 2:
                    chosen.append(w[slot])
        return chosen

    def offsets(self, feats: FrameFeatures, centres: list[int], neighbours: list[int]) -> torch.Tensor:
        """(P, 2, H/4, W/4) float32: where each position of centre frame t is on neighbour n, in
        quarter-resolution pixels (x, y): the learned flow, plus the frames' global shift where
        the network aligns globally."""
        if not self.learned_flow:
            shifts = self.global_shifts(feats, centres, neighbours)
            return shifts[:, :, None, None].expand(-1, -1, *feats.value.shape[-2:])
        flow = self.flow(rows(feats.motion_as_centre, centres), rows(feats.motion_as_neighbour, neighbours)).float()
        return flow + self.global_shifts(feats, centres, neighbours)[:, :, None, None]

    def global_shifts(self, feats: FrameFeatures, centres: list[int], neighbours: list[int]) -> torch.Tensor:
        """(P, 2) float32: each pair's ``global_shift`` in quarter-resolution pixels; zero where the
        network does not align globally or the frames are too small for it."""
        if not self.global_alignment or feats.spectrum.shape[-1] == 0:
            return torch.zeros(len(centres), 2, device=feats.value.device)
        height, width = (4 * size for size in feats.value.shape[-2:])
        return global_shift(rows(feats.spectrum, centres), rows(feats.spectrum, neighbours), height, width)

    def warp(self, value: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """``value`` (float32) sampled at each position plus its offset (bilinear, edges extended).

        Float32 whatever the network computes in: a bfloat16 grid cannot say where a point is
        (8 bits of mantissa over [-1, 1] is a pixel or more at quarter resolution), and torch
        2.13's CPU grid_sample on a channels_last bfloat16 input returns garbage (values of 1e16
        from inputs in [0, 1]). The float32 kernel is also faster here (~1.4x)."""
        height, width = value.shape[-2:]
        offsets = offsets.float()
        scale = torch.tensor([2.0 / width, 2.0 / height], dtype=offsets.dtype, device=offsets.device)
        grid = self._base_grid(height, width, offsets) + offsets.permute(0, 2, 3, 1) * scale
        return F.grid_sample(value, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _base_grid(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """(1, h, w, 2): every position's own sampling point, normalised as grid_sample wants
        (align_corners=False: pixel centres at (2i + 1) / size - 1); cached per size."""
        key = (height, width, like.dtype, like.device)
        grid = self._grids.get(key)
        if grid is None:
            if len(self._grids) >= 8:  # a folder of many sizes: keep memory bounded
                self._grids.clear()
            ys = (torch.arange(height, dtype=like.dtype, device=like.device) * 2 + 1) / height - 1
            xs = (torch.arange(width, dtype=like.dtype, device=like.device) * 2 + 1) / width - 1
            grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)[None]
            if not like.device.type == "meta":
                self._grids[key] = grid
        return grid


class TRNet(_Alignment):
    input_order = "rgb"
    pad_multiple = 4
    clamps_output = True
    temporal = True  # the runtime keeps a window of per-frame features (streamrain.runtime.temporal)
    adopts = ("srnet", "trnet")  # weights it can start from (``adopt``)

    def __init__(self, *, half_channels: int = 24, quarter_channels: int = 48, key_channels: int = 16,
                 value_channels: int = 24, flow_channels: int = 16, feat_blocks: int = 1,
                 fuse_blocks: int = 2, past: int = 2, future: int = 2, global_alignment: bool = False,
                 learned_flow: bool = True, luma_median: bool = False, wide_median: bool = False):
        super().__init__()
        if past < 0 or future < 0:
            raise ValueError(f"past and future must be >= 0; got past={past}, future={future}")
        self.past, self.future = past, future
        self.global_alignment, self.learned_flow = bool(global_alignment), bool(learned_flow)
        if wide_median and not (luma_median and past == future == 2):
            raise ValueError("wide_median needs luma_median and a window of 5 frames (past = future = 2)")
        self.luma_median, self.wide_median = bool(luma_median), bool(wide_median)
        self.head = nn.Conv2d(12, half_channels, 3, padding=1)
        self.down = nn.Conv2d(4 * half_channels, quarter_channels, 1)
        self.feat_body = nn.Sequential(*[_ResBlock(quarter_channels) for _ in range(feat_blocks)])
        self.key = nn.Conv2d(quarter_channels, key_channels, 1)
        self.value = nn.Conv2d(quarter_channels, value_channels, 1)
        self.flow1 = nn.Conv2d(2 * key_channels, flow_channels, 3, padding=1)
        self.flow2 = nn.Conv2d(flow_channels, 2, 3, padding=1)
        nn.init.zeros_(self.flow2.weight)
        nn.init.zeros_(self.flow2.bias)
        self.fuse = nn.Conv2d((past + 1 + future) * value_channels, quarter_channels, 1)
        self.fuse_body = nn.Sequential(*[_ResBlock(quarter_channels) for _ in range(fuse_blocks)])
        self.up = nn.Conv2d(quarter_channels, 4 * half_channels, 1)
        self.tail = nn.Conv2d(half_channels, 12, 3, padding=1)
        if self.luma_median:
            # ``luma_residuals`` (held at half resolution) into the fusion's input (a 2x2 stride-2
            # convolution to quarter resolution) and into the tail's input (3x3): both start at zero.
            residual_channels = 8 if self.wide_median else 4
            self.residual_quarter = nn.Conv2d(residual_channels, quarter_channels, 2, stride=2)
            self.residual_half = nn.Conv2d(residual_channels, half_channels, 3, padding=1)
            for conv in (self.residual_quarter, self.residual_half):
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
        self._grids: dict[tuple, torch.Tensor] = {}

    # -- the ARCHS contract and training --------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The batch as one clip of consecutive frames, each derained from its window."""
        return self.forward_clips(x[None])[0]

    def forward_clips(self, clips: torch.Tensor, *, causal: bool = False,
                      clean: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(N, T, 3, H, W) clips of consecutive frames -> every frame derained, (N, T, 3, H, W);
        each clip is its own shot (edges replicated at both ends). With the ``clean`` clips
        (training), also ``alignment_error``'s scalar for the same windows."""
        n, frames = clips.shape[:2]
        flat = clips.flatten(0, 1)
        windows = [[c * frames + i for i in window(t, first=0, last=frames - 1, past=self.past,
                                                   future=self.future, causal=causal)]
                   for c in range(n) for t in range(frames)]
        feats = self.features(flat)
        out = self.fuse_windows(flat, feats, windows).unflatten(0, (n, frames))
        if clean is None:
            return out
        return out, self.alignment_error(feats, clean.flatten(0, 1), windows)

    def alignment_error(self, feats: FrameFeatures, clean: torch.Tensor,
                        windows: Sequence[Sequence[int]]) -> torch.Tensor:
        """How far the predicted offsets are from aligning the scene: each neighbour's clean frame,
        at quarter resolution, warped by the offsets estimated from the rainy frames, against the
        centre's (Charbonnier, mean over every pair). Why: through the fusion alone the motion
        layers learn next to nothing (trnet-v1: offsets under 0.6 quarter pixels on NTURain,
        whose camera pans ~1 quarter pixel a frame; zeroing them changed its output by 0.04 dB),
        so they get this direct signal. ``clean``: (N, 3, H, W), the frames of ``feats``."""
        pairs = [(w[self.past], n) for w in windows for n in w if n != w[self.past]]
        if not pairs:
            return clean.new_zeros(())
        centres, neighbours = [t for t, _ in pairs], [n for _, n in pairs]
        offsets = self.offsets(feats, centres, neighbours)
        small = F.avg_pool2d(clean.float(), 4)
        warped = self.warp(rows(small, neighbours), offsets)
        return torch.sqrt((warped - rows(small, centres)) ** 2 + 1e-6).mean()

    def adopt(self, srnet: nn.Module) -> None:
        """Start from an SRNet of the same widths with ``feat_blocks + fuse_blocks`` blocks: its
        head, down, up and tail, its first blocks as the per-frame ones and the rest after the
        fusion. The fusion's 1x1 convolution is zeroed, so the network computes exactly the
        SRNet's output on every frame until training teaches it to use the neighbours.

        Or from a TRNet without the ``luma_median`` path: every tensor it has, the path's
        convolutions at zero, so the network computes exactly that TRNet's output."""
        if isinstance(srnet, TRNet):
            self._adopt_trnet(srnet)
            return
        blocks = list(self.feat_body) + list(self.fuse_body)
        if getattr(srnet, "deep_blocks", 0):
            raise ValueError("cannot adopt an SRNet with a deep stage: TRNet has none")
        if (srnet.head.out_channels, srnet.down.out_channels, len(srnet.body)) != \
                (self.head.out_channels, self.down.out_channels, len(blocks)):
            raise ValueError(f"cannot adopt an SRNet of {srnet.head.out_channels}/{srnet.down.out_channels} "
                             f"channels and {len(srnet.body)} blocks: this TRNet has "
                             f"{self.head.out_channels}/{self.down.out_channels} and {len(blocks)}")
        with torch.no_grad():
            for name in ("head", "down", "up", "tail"):
                getattr(self, name).load_state_dict(getattr(srnet, name).state_dict())
            for mine, theirs in zip(blocks, srnet.body):
                mine.load_state_dict(theirs.state_dict())
            self.fuse.weight.zero_()
            self.fuse.bias.zero_()

    def _adopt_trnet(self, other: "TRNet") -> None:
        mine, theirs = self.state_dict(), other.state_dict()
        new = {k for k in mine if k.startswith(("residual_quarter.", "residual_half."))}
        widened = {k for k in theirs if k in new and k.endswith(".weight") and self.wide_median
                   and not other.wide_median}
        if set(theirs) - set(mine) or set(mine) - set(theirs) - new or \
                any(theirs[k].shape != mine[k].shape for k in set(theirs) - widened):
            raise ValueError("cannot adopt a TRNet of other widths or window: only one without the "
                             "luma_median path, or without the wide_median, that is otherwise this one")
        for k in widened:  # the wide residual's input channels start at zero
            weight = torch.zeros_like(mine[k])
            weight[:, :theirs[k].shape[1]] = theirs[k]
            theirs = {**theirs, k: weight}
        self.load_state_dict(theirs, strict=False)

    # -- the two parts the streaming runtime calls ----------------------------------------------

    def features(self, x: torch.Tensor) -> FrameFeatures:
        """Everything frame by frame: (N, 3, H, W) -> FrameFeatures of the N frames.

        The first motion layer is a convolution over concat(key_t, key_n); it is the sum of one
        convolution over key_t and one over key_n, so each frame computes both halves once, as
        centre and as neighbour, and a pair costs an add (``flow``)."""
        half = F.relu(self.head(F.pixel_unshuffle(x, 2)))
        quarter = self.feat_body(F.relu(self.down(F.pixel_unshuffle(half, 2))))
        if self.learned_flow:
            key = self.key(quarter)
            # (the weight halves in the key's layout: a strided weight takes a slow convolution path)
            centre_w, neighbour_w = (w.contiguous(memory_format=torch.channels_last)
                                     for w in self.flow1.weight.split(self.key.out_channels, 1))
            as_centre = F.conv2d(key, centre_w, self.flow1.bias, padding=1)
            as_neighbour = F.conv2d(key, neighbour_w, padding=1)
        else:  # the motion layers' weights are kept (loadable either way) but never run
            as_centre = as_neighbour = quarter.new_zeros(len(x), 0)
        spectrum = coarse_spectrum(x) if self.global_alignment else x.new_zeros(len(x), 0, dtype=torch.complex64)
        luma = F.pixel_unshuffle(luma_of(x), 2) if self.luma_median else x.new_zeros(len(x), 0)
        return FrameFeatures(half, quarter, self.value(quarter), as_centre, as_neighbour, spectrum, luma)

    def fuse_windows(self, frames: torch.Tensor, feats: FrameFeatures,
                     windows: Sequence[Sequence[int]]) -> torch.Tensor:
        """Derain the centre frame of each window: ``frames`` (N, 3, H, W) and their ``feats``,
        ``windows`` M rows of indices into N -> (M, 3, H, W). ``frames`` and ``feats.half`` are
        read at the centres only (a caller may pass just those rows if the centres are 0..M-1)."""
        centre = [w[self.past] for w in windows]
        values = self._aligned_values(feats, windows, centre)
        quarter = rows(feats.quarter, centre) + self.fuse(values)
        if self.luma_median:
            residuals = self.luma_residuals(feats, windows, centre) * RESIDUAL_GAIN
            quarter = quarter + self.residual_quarter(residuals)
        half = rows(feats.half, centre) + F.pixel_shuffle(self.up(self.fuse_body(quarter)), 2)
        if self.luma_median:
            half = half + self.residual_half(residuals)
        rain = F.pixel_shuffle(self.tail(F.relu(half)), 2)
        return (rows(frames, centre) - rain).clamp(0.0, 1.0)

    def flow(self, motion_t: torch.Tensor, motion_n: torch.Tensor) -> torch.Tensor:
        """(P, 2, h, w): where, in quarter-resolution pixels (x, y), each position of t is on n
        (``motion_*``: the two halves of the first layer, from ``features``)."""
        return self.flow2(F.relu(motion_t + motion_n))

    def inference_form(self, dtype: torch.dtype) -> "FoldedTRNet":
        return FoldedTRNet(self, dtype)

    def yuv420_form(self, dtype: torch.dtype, yuv: YuvMatrix) -> "Yuv420TRNet":
        return Yuv420TRNet(self, dtype, yuv)


class FoldedTRNet(_Alignment):
    """TRNet for CPU inference, as ``FoldedSRNet`` is for SRNet: the same ``features`` and
    ``fuse_windows`` (exactly so in fp32), with the space-to-depth steps folded into stride-2
    convolutions and ``up`` into a transposed one, weights cast to ``dtype`` and packed once, and
    ReLUs and residual adds done inside the convolutions (``FrozenConv``). Measured on a 2-core
    CPU (fp32, 640x360, one thread): ~15 % less time per frame than the training form. Takes and
    returns float32; computes in ``dtype``. A frozen copy: build it again after training."""

    temporal = True
    input_order, pad_multiple, clamps_output = TRNet.input_order, TRNet.pad_multiple, TRNet.clamps_output

    def __init__(self, net: TRNet, dtype: torch.dtype):
        super().__init__()
        self.dtype, self.past, self.future = dtype, net.past, net.future
        self.global_alignment, self.learned_flow = net.global_alignment, net.learned_flow
        self.luma_median, self.wide_median = net.luma_median, net.wide_median
        conv = lambda c, **kw: FrozenConv(c.weight, c.bias, dtype, **kw)  # noqa: E731
        self.head = FrozenConv(_fold_space_to_depth(net.head.weight), net.head.bias, dtype, stride=2, padding=2)
        self.down = FrozenConv(_fold_space_to_depth(net.down.weight), net.down.bias, dtype, stride=2)
        self.feat_body = nn.ModuleList(conv(c, padding=1) for b in net.feat_body for c in (b.conv1, b.conv2))
        self.key, self.value = conv(net.key), conv(net.value)
        centre_w, neighbour_w = net.flow1.weight.split(net.key.out_channels, 1)
        self.motion_as_centre = FrozenConv(centre_w, net.flow1.bias, dtype, padding=1)
        self.motion_as_neighbour = FrozenConv(neighbour_w, torch.zeros_like(net.flow1.bias), dtype, padding=1)
        self.flow2 = conv(net.flow2, padding=1)
        value_channels = net.value.out_channels
        self.fuse_slots = nn.ModuleList(
            FrozenConv(w, net.fuse.bias if s == 0 else torch.zeros_like(net.fuse.bias), dtype)
            for s, w in enumerate(net.fuse.weight.split(value_channels, 1)))
        self.fuse_body = nn.ModuleList(conv(c, padding=1) for b in net.fuse_body for c in (b.conv1, b.conv2))
        # ``up`` then depth-to-space is one transposed convolution (2x2 kernel, stride 2); its bias
        # depends on the tap, so it is added as a picture (cached per size), as in FoldedSRNet.
        quarter_channels, half_channels = net.up.in_channels, net.up.out_channels // 4
        self.up_w = _frozen(net.up.weight.reshape(half_channels, 2, 2, quarter_channels).permute(3, 0, 1, 2), dtype)
        self.register_buffer("up_bias_taps", net.up.bias.detach().reshape(half_channels, 2, 2).to(dtype),
                             persistent=False)
        self.tail = conv(net.tail, padding=1)
        if self.luma_median:
            self.residual_quarter = FrozenConv(net.residual_quarter.weight * RESIDUAL_GAIN,
                                               net.residual_quarter.bias, dtype, stride=2)
            self.residual_half = FrozenConv(net.residual_half.weight * RESIDUAL_GAIN, net.residual_half.bias,
                                            dtype, padding=1)
        self._grids: dict[tuple, torch.Tensor] = {}
        self._up_bias_pictures: dict[tuple, torch.Tensor] = {}

    def features(self, x: torch.Tensor) -> FrameFeatures:
        spectrum = coarse_spectrum(x) if self.global_alignment else x.new_zeros(len(x), 0, dtype=torch.complex64)
        luma = (F.pixel_unshuffle(luma_of(x), 2).to(self.dtype) if self.luma_median
                else x.new_zeros(len(x), 0))
        return self._features(self.head(x.to(self.dtype), relu=True), spectrum, luma)

    def _features(self, half: torch.Tensor, spectrum: torch.Tensor, luma: torch.Tensor) -> FrameFeatures:
        """Everything after the head (the part both input forms share)."""
        quarter = _frozen_residual_blocks(self.feat_body, self.down(half, relu=True))
        if not self.learned_flow:
            no_motion = quarter.new_zeros(len(half), 0)
            return FrameFeatures(half, quarter, self.value(quarter), no_motion, no_motion, spectrum, luma)
        key = self.key(quarter)
        return FrameFeatures(half, quarter, self.value(quarter), self.motion_as_centre(key),
                             self.motion_as_neighbour(key), spectrum, luma)

    def flow(self, motion_t: torch.Tensor, motion_n: torch.Tensor) -> torch.Tensor:
        return self.flow2(torch.add(motion_t, motion_n).relu_()).float()

    def fuse_windows(self, frames: torch.Tensor, feats: FrameFeatures,
                     windows: Sequence[Sequence[int]]) -> torch.Tensor:
        centre = [w[self.past] for w in windows]
        rain = F.pixel_shuffle(self.tail(self._fused_half(feats, windows, centre)), 2)
        return (rows(frames, centre) - rain.float()).clamp_(0.0, 1.0)

    def _fused_half(self, feats: FrameFeatures, windows: Sequence[Sequence[int]],
                    centre: list[int]) -> torch.Tensor:
        """The fusion up to the tail's input (the part both input forms share): (M, half, H/2, W/2)."""
        # The fusion's 1x1 convolution over the slots' concatenated values is the sum of one
        # convolution per slot, each over that slot's values for all M windows: gathering those
        # is a copy of whole rows, where writing each into its channels of one concatenated
        # tensor was a strided copy that cost more than the warps (measured at 640x360).
        aligned = self._aligned_pairs(feats, windows, centre)
        value = feats.value
        quarter = None  # (the cached features are never written: every in-place op is on a new tensor)
        for s, conv in enumerate(self.fuse_slots):
            parts = [aligned.get((m, s), value[w[s]:w[s] + 1]) for m, w in enumerate(windows)]
            slot = torch.cat(parts).contiguous(memory_format=torch.channels_last)
            quarter = conv(slot) if quarter is None else conv.add_to_(quarter, slot)
        if self.luma_median:
            residuals = self.luma_residuals(feats, windows, centre).contiguous(memory_format=torch.channels_last)
            self.residual_quarter.add_to_(quarter, residuals)
        quarter = _frozen_residual_blocks(self.fuse_body, quarter.add_(rows(feats.quarter, centre)))
        half = F.conv_transpose2d(quarter, self.up_w, stride=2)
        half = half.add_(rows(feats.half, centre)).add_(self._up_bias_picture(*half.shape[2:]))
        if self.luma_median:
            self.residual_half.add_to_(half, residuals)
        return half.relu_()

    def _up_bias_picture(self, height: int, width: int) -> torch.Tensor:
        picture = self._up_bias_pictures.get((height, width))
        if picture is None:
            if len(self._up_bias_pictures) >= 8:
                self._up_bias_pictures.clear()
            picture = self.up_bias_taps.repeat(1, height // 2, width // 2)[None]
            picture = self._up_bias_pictures[height, width] = picture.contiguous(memory_format=torch.channels_last)
        return picture


class Yuv420TRNet(FoldedTRNet):
    """TRNet on decoded 4:2:0 pictures, as ``Yuv420SRNet`` is for SRNet: its head and tail refolded
    for code values (``yuv420_head_and_tail``), so that frames go from the decoder to the encoder
    without swscale's two conversions. The same function as converting to RGB (chroma repeated
    over its 2x2 block), running ``FoldedTRNet`` and converting back (chroma averaged), except
    that the output is clamped in Y'CbCr and the global alignment reads Y' itself, not the luma of
    the converted RGB (the same where the matrix is BT.601's).

    Its two parts take what ``codes`` makes of a batch of I420 pictures: ``features`` the bordered
    codes, uint8 (N, 6, H/2 + 2, W/2 + 2); ``fuse_windows`` the frames' codes without the border
    (read at the centres), and returns theirs derained, uint8 (M, 6, H/2, W/2) (``i420_from_codes``
    makes pictures of them)."""

    def __init__(self, net: TRNet, dtype: torch.dtype, yuv: YuvMatrix):
        super().__init__(net, dtype)
        head, head_bias, tail, tail_bias, offset_codes = yuv420_head_and_tail(net.head, net.tail, yuv)
        self.register_buffer("offset_codes", offset_codes, persistent=False)
        self.head = FrozenConv(head, head_bias, dtype)
        self.tail = FrozenConv(tail, tail_bias, dtype, padding=1)
        if self.luma_median:  # the residuals come in Y' code units: scale the weights back
            gain = RESIDUAL_GAIN / (255.0 if yuv.full_range else 219.0)
            self.residual_quarter = FrozenConv(net.residual_quarter.weight * gain,
                                               net.residual_quarter.bias, dtype, stride=2)
            self.residual_half = FrozenConv(net.residual_half.weight * gain, net.residual_half.bias,
                                            dtype, padding=1)

    def codes(self, i420_u8: torch.Tensor) -> torch.Tensor:
        """uint8 I420 (N, H * 3 // 2, W), H and W multiples of 4 -> the bordered codes, a
        channels_last uint8 (N, 6, H/2 + 2, W/2 + 2)."""
        return bordered_codes(i420_u8, self.offset_codes).permute(0, 3, 1, 2)

    def features(self, bordered: torch.Tensor) -> FrameFeatures:
        codes = bordered[..., 1:-1, 1:-1]
        spectrum = (coarse_spectrum_of_codes(codes) if self.global_alignment
                    else codes.new_zeros(len(codes), 0, dtype=torch.complex64))
        # Y' is the codes' first four channels (whole numbers: exact in bf16 too).
        luma = codes[:, :4].to(self.dtype).contiguous() if self.luma_median else codes.new_zeros(len(codes), 0)
        return self._features(self.head(bordered.to(self.dtype), relu=True), spectrum, luma)

    def fuse_windows(self, codes: torch.Tensor, feats: FrameFeatures,
                     windows: Sequence[Sequence[int]]) -> torch.Tensor:
        centre = [w[self.past] for w in windows]
        rain = self.tail(self._fused_half(feats, windows, centre))  # in code units, less 0.5
        return torch.sub(rows(codes, centre), rain.float()).clamp_(0, 255).to(torch.uint8)
