"""Tiling: frames too large for memory are derained in overlapping tiles, blended with feathering.

A ``TilePlan`` cuts a frame into a grid of rows and columns (``Span`` = start, end), neighbours
overlapping by at least ``overlap`` pixels. Every start is a multiple of ``align`` (the network's
padding multiple, 4 for 4:2:0 pictures), so each tile sees the pixel grid of the frame exactly
as the untiled network does (space-to-depth and strided layers stay in phase); only the last tile
of a row or column may be shorter, and the network pads it as it would pad the whole frame.

Blending: each tile's weight falls linearly to zero towards an edge it shares with a neighbour
(not at the frame's own edges), the weights of the tiles covering a pixel are normalised to sum to
one, and the weighted tiles are added in float32. Pixels near a tile's inner edge, where its
padding differs from the real neighbourhood, thus count little. A plan of one tile skips all of
this: the frame is derained whole, one frame at a time (what a batch that does not fit needs).

Frames are tiled one at a time, so the float accumulator is one frame, not one batch.
Layouts: ``tiled_rgb`` takes uint8 ``(B, H, W, 3)``; ``tiled_i420`` uint8 I420 ``(B, H * 3 // 2, W)``
(planes blended separately, chroma on its half-resolution grid). Tensors stay on their device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from streamrain.config import MIN_TILE, TileOption, parse_tile  # noqa: F401 - re-exported

Span = tuple[int, int]
# Measured with srnet-v3 on a 1080p Rain100L image in 512-pixel tiles: tiled against untiled
# 56.7 dB PSNR without overlap, 76 dB at 16 pixels, 78 dB at 32, 78.8 dB at 64.
DEFAULT_OVERLAP = 32


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def spans(length: int, *, tile: int, overlap: int, align: int = 1) -> tuple[Span, ...]:
    """Windows of at most ``tile`` covering ``[0, length)``: starts multiples of ``align``, each
    overlapping the next by at least ``overlap``; the fewest windows, of equal size (but the last,
    by alignment), spread evenly, so that no sliver of a tile is left at the end."""
    if length <= tile:
        return ((0, length),)
    tile = max(align, tile // align * align)
    if tile - overlap < align:
        raise ValueError(f"tile {tile} leaves no stride after an overlap of {overlap} (align {align})")
    count = 1 + math.ceil((length - tile) / (tile - overlap))
    # As many tiles as needed, each no larger than needed: overlaps near the minimum, least compute.
    tile = min(tile, _round_up(math.ceil((length + (count - 1) * overlap) / count), align))
    while True:
        last = _round_up(length - tile, align)
        starts = [min(last, i * last // (count - 1) // align * align) for i in range(count)]
        windows = tuple((s, min(s + tile, length)) for s in starts)
        if all(a[1] - b[0] >= overlap for a, b in zip(windows, windows[1:])):
            return windows
        count += 1  # alignment rounding shrank an overlap: one more tile


@dataclass(frozen=True)
class TilePlan:
    """How frames of one size are cut: row spans (along H) times column spans (along W)."""

    rows: tuple[Span, ...]
    cols: tuple[Span, ...]

    @property
    def count(self) -> int:
        return len(self.rows) * len(self.cols)

    @property
    def tile_hw(self) -> tuple[int, int]:
        return max(e - s for s, e in self.rows), max(e - s for s, e in self.cols)

    @classmethod
    def whole(cls, height: int, width: int) -> "TilePlan":
        return cls(((0, height),), ((0, width),))

    @classmethod
    def grid(cls, height: int, width: int, *, tile_h: int, tile_w: int, overlap: int,
             align: int = 1) -> "TilePlan":
        return cls(spans(height, tile=tile_h, overlap=overlap, align=align),
                   spans(width, tile=tile_w, overlap=overlap, align=align))


def plan_for_budget(height: int, width: int, *, batch: int, bytes_per_pixel: float, budget_bytes: float,
                    overlap: int, align: int = 1) -> TilePlan | None:
    """None where the whole batch fits in ``budget_bytes``; else the plan with the fewest tiles
    (then the fewest pixels computed) whose tile fits, one frame at a time."""
    if batch * height * width * bytes_per_pixel <= budget_bytes:
        return None
    max_pixels = budget_bytes / bytes_per_pixel
    if height * width <= max_pixels:
        return TilePlan.whole(height, width)
    smallest = max(_round_up(MIN_TILE, align), _round_up(2 * overlap + align, align))
    best: tuple[tuple[int, int], TilePlan] | None = None
    for n_rows in range(1, math.ceil(height / (smallest - overlap)) + 2):
        tile_h = min(height, _round_up(math.ceil((height + (n_rows - 1) * overlap) / n_rows), align))
        tile_w = int(max_pixels // tile_h) // align * align
        if tile_w < smallest or tile_h < smallest and tile_h < height:
            continue
        plan = TilePlan.grid(height, width, tile_h=tile_h, tile_w=min(tile_w, _round_up(width, align)),
                             overlap=overlap, align=align)
        h, w = plan.tile_hw
        if h * w > max_pixels:
            continue  # rounding made the tile too big for the budget
        cost = (plan.count, sum(e - s for s, e in plan.rows) * sum(e - s for s, e in plan.cols))
        if best is None or cost < best[0]:
            best = cost, plan
    if best is None:  # even the smallest tile is over budget: take it, smaller would be worse
        return TilePlan.grid(height, width, tile_h=smallest, tile_w=smallest, overlap=overlap, align=align)
    return best[1]


def feather(windows: tuple[Span, ...], length: int, *, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Per window, its float32 weights over ``[start, end)``: linear ramps across the overlaps with
    its neighbours (none at the frame's edges), normalised so that every pixel's weights sum to 1."""
    raw = []
    for i, (start, end) in enumerate(windows):
        x = torch.arange(start, end, dtype=torch.float64) + 0.5
        w = torch.ones(end - start, dtype=torch.float64)
        if i > 0:
            w = torch.minimum(w, (x - start) / (windows[i - 1][1] - start))
        if i + 1 < len(windows):
            w = torch.minimum(w, (end - x) / (end - windows[i + 1][0]))
        raw.append(w)
    total = torch.zeros(length, dtype=torch.float64)
    for (start, end), w in zip(windows, raw):
        total[start:end] += w
    return [(w / total[s:e]).to(device=device, dtype=torch.float32) for (s, e), w in zip(windows, raw)]


def _halved(windows: tuple[Span, ...]) -> tuple[Span, ...]:
    return tuple((s // 2, e // 2) for s, e in windows)


class _Blender:
    """Accumulates weighted tiles of one plane ``(H, W, C)`` of one frame, in float32."""

    def __init__(self, plan: TilePlan, height: int, width: int, channels: int, device):
        self.plan = plan
        self.acc = torch.zeros(height, width, channels, dtype=torch.float32, device=device)
        self.row_w = feather(plan.rows, height, device=device)
        self.col_w = feather(plan.cols, width, device=device)

    def add(self, i: int, j: int, tile_hwc: torch.Tensor) -> None:
        (y0, y1), (x0, x1) = self.plan.rows[i], self.plan.cols[j]
        weight = (self.row_w[i][:, None] * self.col_w[j][None, :])[..., None]
        self.acc[y0:y1, x0:x1].addcmul_(tile_hwc.float(), weight)

    def result_u8(self, scale: float = 1.0) -> torch.Tensor:
        return self.acc.mul_(scale).round_().clamp_(0, 255).to(torch.uint8)


def tiled_rgb(frames_bhwc_u8: torch.Tensor, run: Callable[[torch.Tensor], torch.Tensor],
              plan: TilePlan) -> torch.Tensor:
    """Derains a uint8 ``(B, H, W, 3)`` batch tile by tile: ``run`` maps a uint8 ``(1, 3, h, w)``
    channels_last tile to float ``(1, 3, h, w)`` in [0, 1]. Returns uint8 ``(B, H, W, 3)``."""
    batch, height, width, _ = frames_bhwc_u8.shape
    out = torch.empty_like(frames_bhwc_u8)
    for b in range(batch):
        if plan.count == 1:
            y = run(frames_bhwc_u8[b:b + 1].permute(0, 3, 1, 2))
            out[b] = y.float().mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)[0].permute(1, 2, 0)
            continue
        blender = _Blender(plan, height, width, 3, frames_bhwc_u8.device)
        for i, (y0, y1) in enumerate(plan.rows):
            for j, (x0, x1) in enumerate(plan.cols):
                # A dense copy, so that the tile is a true channels_last tensor for the network.
                tile = frames_bhwc_u8[b:b + 1, y0:y1, x0:x1].contiguous().permute(0, 3, 1, 2)
                blender.add(i, j, run(tile)[0].permute(1, 2, 0))
        out[b] = blender.result_u8(255.0)
    return out


def _i420_planes(picture: torch.Tensor, height: int, width: int) -> list[torch.Tensor]:
    """Views of one I420 picture ``(H * 3 // 2, W)`` as its Y, U and V planes ``(h, w, 1)``."""
    flat = picture.reshape(-1)
    luma, chroma = height * width, (height // 2) * (width // 2)
    return [flat[:luma].view(height, width, 1),
            flat[luma:luma + chroma].view(height // 2, width // 2, 1),
            flat[luma + chroma:].view(height // 2, width // 2, 1)]


def tiled_i420(i420_u8: torch.Tensor, run: Callable[[torch.Tensor], torch.Tensor], plan: TilePlan) -> torch.Tensor:
    """Derains uint8 I420 pictures ``(B, H * 3 // 2, W)`` tile by tile: ``run`` maps I420 ``(1, h * 3 // 2,
    w)`` to the same. Every span's start and end must be even (``align`` a multiple of 2; the 4:2:0
    network needs 4)."""
    batch, rows, width = i420_u8.shape
    height = rows * 2 // 3
    if plan.count == 1:
        return torch.cat([run(i420_u8[b:b + 1]) for b in range(batch)])
    if any(v % 2 for span in plan.rows + plan.cols for v in span):
        raise ValueError(f"4:2:0 tiles need even spans; got rows {plan.rows}, columns {plan.cols}")
    chroma_plan = TilePlan(_halved(plan.rows), _halved(plan.cols))
    out = torch.empty_like(i420_u8)
    for b in range(batch):
        planes_in = _i420_planes(i420_u8[b], height, width)
        blenders = [_Blender(plan, height, width, 1, i420_u8.device)] + [
            _Blender(chroma_plan, height // 2, width // 2, 1, i420_u8.device) for _ in range(2)]
        for i, (y0, y1) in enumerate(plan.rows):
            for j, (x0, x1) in enumerate(plan.cols):
                h, w = y1 - y0, x1 - x0
                tile = i420_u8.new_empty(1, h * 3 // 2, w)
                tile_planes = _i420_planes(tile[0], h, w)
                for plane, source, step in zip(tile_planes, planes_in, (1, 2, 2)):
                    plane.copy_(source[y0 // step:y1 // step, x0 // step:x1 // step])
                derained = _i420_planes(run(tile)[0], h, w)
                for blender, plane in zip(blenders, derained):
                    blender.add(i, j, plane)
        for plane, blender in zip(_i420_planes(out[b], height, width), blenders):
            plane.copy_(blender.result_u8())
    return out
