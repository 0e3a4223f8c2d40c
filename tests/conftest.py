"""Fixtures: real media files made with PyAV, and paths to the shared data when it is present."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streamrain.io.frames import YuvMatrix

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def needs_shared(*parts: str) -> Path:
    """The path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the project's shared data, present in CI but not in a user's clone)")
    return path


def pattern(index: int, width: int, height: int) -> np.ndarray:
    """A moving frame with flat colour areas (for colour checks) and edges (for motion)."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (x * 255 // max(1, width - 1)).astype(np.uint8)
    img[..., 1] = (y * 255 // max(1, height - 1)).astype(np.uint8)
    img[..., 2] = 96
    bar = (index * 3) % max(1, width - 4)
    img[:, bar:bar + 4] = (230, 40, 40)
    return img


def make_clip(path: Path, *, width: int = 64, height: int = 48, pts_ms: list[int] | None = None,
              frames: int = 20, fps: int = 25, audio: bool = True, audio_codec: str = "aac",
              rotation: int = 0, colour: dict | None = None, video: bool = True,
              pix_fmt: str = "yuv420p") -> Path:
    """Write a real clip with PyAV. ``pts_ms`` gives variable frame timing in milliseconds."""
    if pts_ms is None:
        pts_ms = [round(i * 1000 / fps) for i in range(frames)]
    tb = fractions.Fraction(1, 1000)
    with av.open(str(path), "w") as out:
        if video:
            v = out.add_stream("libx264", rate=fps)
            v.width, v.height, v.pix_fmt = width, height, pix_fmt
            v.time_base = v.codec_context.time_base = tb
            v.options = {"preset": "ultrafast", "crf": "10"}
            if colour:
                for k, val in colour.items():
                    setattr(v.codec_context, k, val)
            if rotation:
                v.set_display_rotation(rotation)
        if audio:
            a = out.add_stream(audio_codec, rate=48000)
            a.layout = "stereo"
        if video:
            for i, pts in enumerate(pts_ms):
                frame = av.VideoFrame.from_ndarray(pattern(i, width, height), format="rgb24")
                # Untagged clips are encoded the way players will read them (player_matrix).
                tags = colour or {}
                frame = frame.reformat(format=pix_fmt,
                                       dst_colorspace=tags.get("colorspace", player_matrix(2, height)),
                                       dst_color_range=tags.get("color_range", 1))
                if colour:
                    frame.colorspace = colour.get("colorspace", 2)
                    frame.color_range = colour.get("color_range", 0)
                frame.pts, frame.time_base = pts, tb
                for packet in v.encode(frame):
                    out.mux(packet)
            for packet in v.encode(None):
                out.mux(packet)
        if audio:
            duration_s = (pts_ms[-1] + 1000 / fps) / 1000
            samples = 1024 if audio_codec == "aac" else 960
            fmt = "fltp" if audio_codec == "aac" else "s16"
            for i in range(int(duration_s * 48000) // samples):
                t = (np.arange(samples) + i * samples) / 48000
                wave = 0.3 * np.sin(2 * np.pi * 440 * t)
                if fmt == "fltp":
                    data = np.stack([wave, wave]).astype(np.float32)
                else:
                    data = (np.stack([wave, wave]).T.reshape(1, -1) * 32767).astype(np.int16)
                af = av.AudioFrame.from_ndarray(data, format=fmt, layout="stereo")
                af.sample_rate, af.pts = 48000, i * samples
                for packet in a.encode(af):
                    out.mux(packet)
            for packet in a.encode(None):
                out.mux(packet)
    return path


def player_matrix(colorspace_tag: int, height: int) -> int:
    """The YUV matrix a player (ffmpeg, mpv, browsers) uses: the tag, or for untagged video BT.709
    from 720 lines up and BT.601 below. Returned as swscale's constant."""
    known = {1: 1, 5: 5, 6: 5, 9: 9}
    return known.get(colorspace_tag, 1 if height >= 720 else 5)


def player_rgb(frame: av.VideoFrame) -> np.ndarray:
    if frame.format.name.startswith("rgb"):
        return frame.to_ndarray(format="rgb24")
    full = int(frame.color_range) == 2 or frame.format.name.startswith("yuvj")
    return frame.to_ndarray(format="rgb24", src_colorspace=player_matrix(int(frame.colorspace), frame.height),
                            src_color_range=2 if full else 1)


def probe(path: Path) -> dict:
    """What a test needs to know about a media file."""
    with av.open(str(path)) as c:
        v = c.streams.video[0] if c.streams.video else None
        info = {"audio": [], "video": None}
        for s in c.streams.audio:
            info["audio"].append({"codec": s.codec_context.name,
                                  "duration_s": float(s.duration * s.time_base) if s.duration else None})
        if v is not None:
            cc = v.codec_context
            frames = list(c.decode(video=0))
            info["video"] = {
                "width": cc.width, "height": cc.height, "codec": cc.name,
                "pts_s": [float(f.pts * f.time_base) for f in frames],
                "rotation": frames[0].rotation if frames else 0,
                "colorspace": int(frames[0].colorspace), "color_range": int(frames[0].color_range),
                "color_primaries": int(cc.color_primaries), "color_trc": int(cc.color_trc),
                "rgb": [player_rgb(f) for f in frames[:3]],
            }
    return info


@pytest.fixture
def clip(tmp_path):
    """Factory: clip(name, **make_clip options) -> path."""
    def factory(name: str = "in.mp4", **kwargs) -> Path:
        return make_clip(tmp_path / name, **kwargs)
    return factory


# -- 4:2:0 references: what the Y'CbCr forms must equal ------------------------------------------

def _code_scales(yuv: YuvMatrix) -> tuple[float, float, float]:
    return (255.0, 255.0, 0.0) if yuv.full_range else (219.0, 224.0, 16.0)


def rgb_of_i420(i420: torch.Tensor, yuv: YuvMatrix) -> torch.Tensor:
    """float64 RGB (B, 3, H, W) of I420 codes, each chroma sample over its 2x2 block, unclamped."""
    batch, rows, width = i420.shape
    height = rows * 2 // 3
    kr, kb = yuv.luma_weights
    kg = 1 - kr - kb
    y_scale, c_scale, y_off = _code_scales(yuv)
    flat = i420.reshape(batch, -1).double()
    y = (flat[:, :height * width].view(batch, 1, height, width) - y_off) / y_scale
    chroma = (flat[:, height * width:].view(batch, 2, height // 2, width // 2) - 128) / c_scale
    cb, cr = F.interpolate(chroma, scale_factor=2, mode="nearest").split(1, 1)
    return torch.cat([y + 2 * (1 - kr) * cr, y - 2 * kb * (1 - kb) / kg * cb - 2 * kr * (1 - kr) / kg * cr,
                      y + 2 * (1 - kb) * cb], 1)


def i420_of_rgb(rgb: torch.Tensor, yuv: YuvMatrix) -> torch.Tensor:
    """The inverse of ``rgb_of_i420``: chroma averaged over each 2x2 block, rounded and clamped."""
    batch, _, height, width = rgb.shape
    kr, kb = yuv.luma_weights
    kg = 1 - kr - kb
    y_scale, c_scale, y_off = _code_scales(yuv)
    luma = kr * rgb[:, :1] + kg * rgb[:, 1:2] + kb * rgb[:, 2:]
    cb = F.avg_pool2d((rgb[:, 2:] - luma) / (2 * (1 - kb)), 2)
    cr = F.avg_pool2d((rgb[:, :1] - luma) / (2 * (1 - kr)), 2)
    planes = [luma * y_scale + y_off, cb * c_scale + 128, cr * c_scale + 128]
    codes = torch.cat([p.reshape(batch, -1) for p in planes], 1).round().clamp(0, 255)
    return codes.to(torch.uint8).view(batch, height * 3 // 2, width)
