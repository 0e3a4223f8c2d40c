"""Training recipes: TOML files in models/ that say everything a training run needs."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from streamrain.archs import ARCHS
from streamrain.train.losses import CLIP_LOSSES, LOSSES, NETWORK_CLIP_LOSSES
from streamrain.train.synth import RainMix, RainParams, rain_from_dict


class RecipeError(ValueError):
    pass


@dataclass(frozen=True)
class DataSection:
    clean_dirs: tuple[Path, ...] = ()  # clean images and clips that get synthetic rain
    paired_dirs: tuple[Path, ...] = ()  # rainy/clean pairs (layouts in streamrain.train.paired)
    paired_fraction: float = 0.5  # share of each batch from paired_dirs when both kinds are given
    side_by_side: str = "rainy-left"  # which half of a side-by-side pair image is rainy
    exclude: tuple[str, ...] = ()
    max_side: int = 1024
    min_side: int = 160
    patch: int = 128
    batch: int = 16
    scale: tuple[float, float] = (0.5, 1.0)
    clip_every: int = 25
    val_every_nth_image: int = 20  # held out from training, used only for validation
    # Temporal models (streamrain.train.clips): each sample is a clip of ``frames`` consecutive
    # frames, from the clean videos under ``video_dirs``, the frame sequences under ``frame_dirs``,
    # and (a share ``photo_clip_share``) photos of clean_dirs moved along a camera path.
    frames: int = 0  # 0: single images
    video_dirs: tuple[Path, ...] = ()
    frame_dirs: tuple[Path, ...] = ()
    photo_clip_share: float = 0.5


@dataclass(frozen=True)
class OptimSection:
    lr: float = 2e-3
    steps: int = 20_000
    warmup_steps: int = 300
    min_lr_ratio: float = 0.02
    weight_decay: float = 0.0
    grad_clip: float = 1.0


@dataclass(frozen=True)
class TrainSection:
    seed: int = 0
    checkpoint_every_s: float = 120.0
    val_every: int = 1000
    val_batches: int = 4
    bf16: bool = True
    threads: int = 0  # 0: torch's default
    init_from: Path | None = None  # weights (.safetensors) to start from: fine-tuning a shipped model
    # Parameters (names or module prefixes, e.g. "flow2") zeroed after ``init_from``: a part the
    # start left unused or trained for another job begins by contributing nothing.
    zero_after_init: tuple[str, ...] = ()
    # Temporal models: the share of batches trained in causal mode (no look-ahead, as live sources
    # run), so that one checkpoint serves offline and live use.
    causal_fraction: float = 0.0
    # Supervise every stage of a multi-stage network (one with ``forward_stages``), as RESCAN-style
    # recurrent networks (SDSEN) are trained upstream; the loss is the mean over the stages.
    stage_loss: bool = False


@dataclass(frozen=True)
class Recipe:
    name: str
    arch: str
    arch_args: dict
    data: DataSection
    rain: RainParams | RainMix
    optim: OptimSection
    loss: dict[str, float]
    train: TrainSection
    path: Path | None = field(default=None, compare=False)


def _section(cls, values: dict, where: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def load_recipe(path: Path) -> Recipe:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RecipeError(f"{path}: {exc}") from exc
    allowed = {"name", "arch", "arch_args", "data", "rain", "optim", "loss", "train"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise RecipeError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    for key in ("name", "arch", "data"):
        if key not in raw:
            raise RecipeError(f"{path}: missing required key {key!r}")
    if raw["arch"] not in ARCHS:
        raise RecipeError(f"{path}: unknown arch {raw['arch']!r}; known: {sorted(ARCHS)}")
    data = dict(raw["data"])
    # Relative data folders are relative to the recipe file, so a recipe works from any directory.
    for key in ("clean_dirs", "paired_dirs", "video_dirs", "frame_dirs"):
        data[key] = [(path.parent / d).resolve() for d in data.get(key, [])]
    data_section = _section(DataSection, data, f"{path} [data]")
    if not data_section.clean_dirs and not data_section.paired_dirs:
        raise RecipeError(f"{path}: [data] needs clean_dirs or paired_dirs")
    if data_section.frames:
        if data_section.frames < 2:
            raise RecipeError(f"{path}: [data] frames must be 0 (images) or at least 2; got {data_section.frames}")
        if not getattr(ARCHS[raw["arch"]], "temporal", False):
            raise RecipeError(f"{path}: [data] frames is for temporal models; {raw['arch']} sees one frame")
        if data_section.paired_dirs:
            raise RecipeError(f"{path}: [data] paired_dirs are image pairs; a clip recipe cannot use them")
    train = dict(raw.get("train", {}))
    if "init_from" in train:
        train["init_from"] = (path.parent / train["init_from"]).resolve()
    loss = dict(raw.get("loss", {"charbonnier": 1.0}))
    clip_terms = (*CLIP_LOSSES, *NETWORK_CLIP_LOSSES)
    allowed_loss = set(LOSSES) | (set(clip_terms) if data_section.frames else set())
    unknown_loss = sorted(set(loss) - allowed_loss)
    if unknown_loss:
        raise RecipeError(f"{path}: unknown loss term(s) {unknown_loss}; allowed: {sorted(allowed_loss)}"
                          + ("" if data_section.frames else f" ({', '.join(clip_terms)}: clip recipes only)"))
    if train.get("zero_after_init") and "init_from" not in train:
        raise RecipeError(f"{path}: [train] zero_after_init needs init_from (it zeroes parts of those weights)")
    try:
        rain = rain_from_dict(raw.get("rain", {}))
    except ValueError as exc:
        raise RecipeError(f"{path}: [rain] {exc}") from exc
    return Recipe(
        name=raw["name"], arch=raw["arch"], arch_args=dict(raw.get("arch_args", {})),
        data=data_section, rain=rain,
        optim=_section(OptimSection, raw.get("optim", {}), f"{path} [optim]"),
        loss=loss, train=_section(TrainSection, train, f"{path} [train]"), path=path,
    )
