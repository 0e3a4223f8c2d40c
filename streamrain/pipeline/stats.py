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
        }


class Timer:
    """Adds the time spent inside ``with`` to a stage's busy time."""

    def __init__(self, stage: StageStats):
        self.stage = stage

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.stage.busy_s += time.perf_counter() - self._t0
