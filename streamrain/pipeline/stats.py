"""Per-stage busy time and throughput, and the JSON object `--stats-json` writes (design notes)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class StageStats:
    frames: int = 0
    busy_s: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.busy_s if self.busy_s > 0 else 0.0


@dataclass
class RunStats:
    model: str = ""
    device: str = ""
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    decode_errors: int = 0
    started_s: float = field(default_factory=time.monotonic)
    ended_s: float | None = None
    stages: dict[str, StageStats] = field(
        default_factory=lambda: {"decode": StageStats(), "derain": StageStats(), "encode": StageStats()})
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Live runs only (None otherwise, and then left out of the JSON so offline output is unchanged).
    latency: LatencyStats | None = None
    reconnects: int | None = None

    @property
    def wall_s(self) -> float:
        return (self.ended_s or time.monotonic()) - self.started_s

    @property
    def fps(self) -> float:
        return self.frames_out / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> dict:
        return {
            "frames_in": self.frames_in, "frames_out": self.frames_out, "dropped": self.dropped,
            "wall_s": round(self.wall_s, 4), "fps": round(self.fps, 3), "model": self.model,
            "device": self.device,
            "stages": {name: {"fps": round(s.fps, 3), "busy_s": round(s.busy_s, 4)}
                       for name, s in self.stages.items()},
            **({"latency_ms": self.latency.to_json(), "latency_until": self.latency.until}
               if self.latency is not None else {}),
            **({"reconnects": self.reconnects} if self.reconnects is not None else {}),
        }


class LatencyStats:
    """Capture-to-output latency of a live run: exact mean and max, p95 from 1 ms bins.

    Bins instead of a list of samples so that a camera left running for days keeps a constant
    footprint; latencies past the last bin count in it (p95 then reads as "at least 10 s").
    """

    _BINS_MS = 10_000

    def __init__(self, *, until: str = "output"):
        self.until = until  # where the clock stops: "shown" (window) or "output" (file/stream/nothing)
        self.n = 0
        self.sum_s = 0.0
        self.max_s = 0.0
        self.last_s = 0.0
        self._bins = [0] * (self._BINS_MS + 1)

    def add(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.n += 1
        self.sum_s += seconds
        self.max_s = max(self.max_s, seconds)
        self.last_s = seconds
        self._bins[min(int(seconds * 1000), self._BINS_MS)] += 1

    @property
    def mean_s(self) -> float:
        return self.sum_s / self.n if self.n else 0.0

    def quantile_s(self, q: float) -> float:
        """The upper edge of the 1 ms bin holding the q-quantile (0 when nothing was measured)."""
        if not self.n:
            return 0.0
        rank = q * self.n
        seen = 0
        for ms, count in enumerate(self._bins):
            seen += count
            if seen >= rank:
                return min((ms + 1) / 1000, self.max_s)
        return self.max_s

    def to_json(self) -> dict:
        return {"mean": round(self.mean_s * 1000, 1), "p95": round(self.quantile_s(0.95) * 1000, 1),
                "max": round(self.max_s * 1000, 1), "n": self.n}


class Timer:
    """Adds the time spent inside ``with`` to a stage's busy time."""

    def __init__(self, stage: StageStats):
        self.stage = stage

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.stage.busy_s += time.perf_counter() - self._t0
