"""Run options as a frozen dataclass, and TOML presets (``--pipeline FILE.toml``) that set them.

Precedence: the defaults here (the same as pipelines/file.toml), then a preset, then command-line flags.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Literal, Union

from streamrain.errors import ConfigError

_CHOICES = {
    "device": ("auto", "cpu", "cuda"),
    "precision": ("auto", "fp32", "bf16", "fp16"),
    "backend": ("eager", "compile", "tensorrt"),
}

TileOption = Union[Literal["auto", "off"], int]
# Tiles narrower than this cost more in overlap than they save.
MIN_TILE = 64


def parse_tile(value) -> TileOption:
    """``"auto"``, ``"off"`` or a tile side in pixels (>= MIN_TILE), from an option or a flag's text."""
    if isinstance(value, str) and value.strip().lower() in ("auto", "off"):
        return value.strip().lower()
    try:
        side = int(value, 10) if isinstance(value, str) else value
    except ValueError:
        side = None
    if isinstance(side, bool) or not isinstance(side, int) or side < MIN_TILE:
        raise ConfigError(f"tile must be auto, off or a tile size in pixels of at least {MIN_TILE}; "
                          f"got {value!r}")
    return side


@dataclass(frozen=True)
class RunOptions:
    model: str | None = None  # None: the default model
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    backend: Literal["eager", "compile", "tensorrt"] = "eager"
    batch: int = 4
    cpu_workers: int = 0  # CPU batches derained at once, each on its share of the cores; 0: 2
    queue_frames: int = 0  # 0: sized from the batch
    # Encoder choices: "auto" (and crf None) leave them to streamrain.io.encoding, which picks what
    # fits the container and refuses, before the run starts, what cannot be honoured.
    codec: str = "auto"
    crf: int | None = None  # None: the encoder's default quality (x264: 18); 0: lossless
    preset: str = "auto"
    pix_fmt: str = "auto"
    copy_audio: bool = True
    audio_codec: str = "auto"  # auto: copy when the container takes it, else its usual codec; copy; a name
    # Derain 4:2:0 video as decoded, without converting to RGB and back, where the model can.
    yuv420: bool = True
    # Large frames: "auto" tiles a frame whose activations would not fit the device's memory
    # budget; an integer is a tile side in pixels; "off" never tiles.
    tile: TileOption = "auto"
    # A temporal model without look-ahead (as live previews always run it): no output waits for later frames.
    causal: bool = False

    def __post_init__(self):
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if not isinstance(self.batch, int) or self.batch < 1:
            raise ConfigError(f"batch must be a positive integer; got {self.batch!r}")
        if not isinstance(self.cpu_workers, int) or self.cpu_workers < 0:
            raise ConfigError(f"cpu_workers must be 0 (automatic) or more; got {self.cpu_workers!r}")
        if self.crf is not None and (not isinstance(self.crf, int) or not 0 <= self.crf <= 63):
            raise ConfigError(f"crf must be an integer from 0 to 63; got {self.crf!r}")
        for name in ("codec", "preset", "pix_fmt", "audio_codec"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"{name} must be a name or \"auto\"; got {getattr(self, name)!r}")
        object.__setattr__(self, "tile", parse_tile(self.tile))


# Tables that one command reads for itself and RunOptions skips: [live] is `streamrain preview`'s
# (streamrain.live), so one preset file can hold both.
COMMAND_TABLES = ("live",)


def option_names() -> list[str]:
    return [f.name for f in fields(RunOptions)]


def load_preset(path: Path) -> dict:
    """The options a preset sets, checked against RunOptions; unknown keys are an error naming them."""
    path = Path(path)
    try:
        values = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"preset {path}: no such file") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"preset {path}: {exc}") from exc
    unknown = sorted(set(values) - set(option_names()) - set(COMMAND_TABLES))
    if unknown:
        raise ConfigError(f"preset {path}: unknown key(s) {', '.join(unknown)}; "
                          f"allowed: {', '.join(option_names())}")
    return {k: v for k, v in values.items() if k not in COMMAND_TABLES}


def build_options(preset_file: Path | None = None, **overrides) -> RunOptions:
    """RunOptions from the defaults, an optional preset, and the overrides that are not None."""
    values = load_preset(preset_file) if preset_file else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return replace(RunOptions(), **values)
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc
