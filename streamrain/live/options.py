"""What a live session is told: `streamrain preview`'s options (the ``[live]`` table of a preset)
and the RunOptions it starts from."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from streamrain.config import RunOptions, load_preset
from streamrain.errors import ConfigError

# The RunOptions a live session starts from (pipelines/webcam.toml holds the same values): one frame
# per model call, since a batch would wait for frames that do not exist yet; an encoder that keeps
# up on a CPU the model already loads (whichever encoder the recording's container picks: x264's
# ultrafast, VP9's cpu-used 8, ...); no audio, which dropped frames would put out of sync.
LIVE_RUN_DEFAULTS = {"batch": 1, "queue_frames": 1, "preset": "fastest", "copy_audio": False}


@dataclass(frozen=True)
class LiveOptions:
    """Options of `streamrain preview` (the ``[live]`` table of a preset)."""

    duration_s: float | None = None  # stop after this long (from the first frame); None: until quit
    video_size: str | None = None  # camera capture size, "1280x720"
    framerate: float | None = None  # camera frame rate
    input_format: str | None = None  # camera format, "mjpeg" for HD on most UVC cameras
    reconnect: bool = True  # reopen network streams and cameras after a loss
    reconnect_delay_s: float = 0.5  # wait before the first attempt; doubles after each failure
    reconnect_max_delay_s: float = 10.0
    reconnect_attempts: int = 0  # failed attempts in a row before giving up; 0: never give up
    open_timeout_s: float = 10.0  # connecting and reading the stream's first packets
    stall_timeout_s: float = 5.0  # a stream silent this long counts as lost
    record_dir: str = "."  # where r recordings and s snapshots go

    def __post_init__(self):
        for name in ("reconnect_delay_s", "reconnect_max_delay_s", "open_timeout_s", "stall_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"{name} must be a positive number of seconds; got {value!r}")
        if self.duration_s is not None and (not isinstance(self.duration_s, (int, float)) or self.duration_s <= 0):
            raise ConfigError(f"duration_s must be a positive number of seconds; got {self.duration_s!r}")
        if not isinstance(self.reconnect_attempts, int) or self.reconnect_attempts < 0:
            raise ConfigError(f"reconnect_attempts must be 0 (no limit) or more; got {self.reconnect_attempts!r}")
        if self.video_size is not None and not _is_size(self.video_size):
            raise ConfigError(f"video_size must look like 1280x720; got {self.video_size!r}")
        if self.framerate is not None and (not isinstance(self.framerate, (int, float)) or self.framerate <= 0):
            raise ConfigError(f"framerate must be a positive number; got {self.framerate!r}")


def _is_size(text) -> bool:
    parts = str(text).lower().split("x")
    return len(parts) == 2 and all(p.isdigit() and int(p) > 0 for p in parts)


def build_live_options(preset_file: Path | None = None, *, run: dict | None = None,
                       live: dict | None = None) -> tuple[RunOptions, LiveOptions]:
    """RunOptions and LiveOptions from live defaults, a preset (its ``[live]`` table for the latter),
    and overrides that are not None."""
    run_values = dict(LIVE_RUN_DEFAULTS)
    live_values: dict = {}
    if preset_file:
        run_values.update(load_preset(preset_file))
        table = tomllib.loads(Path(preset_file).read_text()).get("live", {})
        if not isinstance(table, dict):
            raise ConfigError(f"preset {preset_file}: live must be a table ([live])")
        allowed = [f.name for f in fields(LiveOptions)]
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise ConfigError(f"preset {preset_file}: unknown key(s) in [live]: {', '.join(unknown)}; "
                              f"allowed: {', '.join(allowed)}")
        live_values.update(table)
    run_values.update({k: v for k, v in (run or {}).items() if v is not None})
    live_values.update({k: v for k, v in (live or {}).items() if v is not None})
    try:
        return replace(RunOptions(), **run_values), LiveOptions(**live_values)
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc
