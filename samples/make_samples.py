"""Make the bundled rainy sample clips: synthetic rain (streamrain.train.synth) over clean footage,
with a rain-like audio track, re-encoded small.

    python samples/make_samples.py ../shared/data/clean/driving/solidWhiteRight.mp4 samples/rainy-highway.mp4

Provenance of the bundled clip is in samples/README.md.
"""

from __future__ import annotations

import argparse
import fractions
from pathlib import Path

import av
import numpy as np
import torch

from streamrain.train.synth import RainParams, falling_rain

SAMPLE_RAIN = RainParams(layers=(2, 2), density=(0.0012, 0.0018), angle_deg=(-12.0, -12.0),
                         length_px=(14.0, 24.0), width_sigma_px=(0.4, 0.7), brightness=(0.3, 0.45))


def rain_noise(seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Stereo rain hiss: white noise, gently low-passed, with random droplet clicks. (2, N) float32."""
    n = int(seconds * rate)
    noise = rng.standard_normal((2, n)).astype(np.float32)
    kernel = np.ones(8, np.float32) / 8
    hiss = np.stack([np.convolve(ch, kernel, mode="same") for ch in noise]) * 0.15
    clicks = (rng.random((2, n)) < 0.002) * rng.standard_normal((2, n)) * 0.3
    return np.clip(hiss + clicks.astype(np.float32), -1, 1)


def make_sample(src: Path, dst: Path, *, seconds: float, width: int, height: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        rate = stream.average_rate or fractions.Fraction(25)
        frames = [f.reformat(width=width, height=height, format="rgb24").to_ndarray()
                  for _, f in zip(range(int(seconds * rate)), inp.decode(stream))]
    rain = falling_rain(len(frames), height, width, SAMPLE_RAIN, gen, speed_px=30.0)
    with av.open(str(dst), "w") as out:
        v = out.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        v.options = {"crf": "26", "preset": "slow"}
        a = out.add_stream("aac", rate=48000, layout="stereo")
        a.bit_rate = 64000
        for i, rgb in enumerate(frames):
            clean = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
            rainy = (clean + rain[i]).clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
            frame = av.VideoFrame.from_ndarray(rainy, format="rgb24")
            frame.pts = i
            frame.time_base = 1 / fractions.Fraction(rate)
            for packet in v.encode(frame.reformat(format="yuv420p", dst_colorspace=5, dst_color_range=1)):
                out.mux(packet)
        for packet in v.encode(None):
            out.mux(packet)
        audio = rain_noise(len(frames) / float(rate), 48000, np.random.default_rng(seed))
        for start in range(0, audio.shape[1] - 1024 + 1, 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, start:start + 1024]),
                                            format="fltp", layout="stereo")
            af.sample_rate, af.pts = 48000, start
            for packet in a.encode(af):
                out.mux(packet)
        for packet in a.encode(None):
            out.mux(packet)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--size", default="640x360")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    width, height = map(int, args.size.split("x"))
    make_sample(args.source, args.output, seconds=args.seconds, width=width, height=height, seed=args.seed)


if __name__ == "__main__":
    main()
