"""A resumable trainer: everything needed to continue (model, optimiser, schedule, RNG, step) is saved
every few minutes and on SIGTERM/SIGINT, and a run started again in the same folder picks it up.

The run folder holds ``checkpoint.pt`` (full state), ``log.jsonl`` (one line per validation) and,
at the end, ``model.safetensors`` (fp16 weights with arch metadata) for shipping.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from streamrain.archs import ARCHS
from streamrain.runtime.derainer import cpu_has_bf16
from streamrain.runtime.layout import to_channels_last
from streamrain.train.clips import SyntheticClips, load_clip_pool
from streamrain.train.data import MixedPairs, SyntheticPairs, load_clean_pool
from streamrain.train.paired import PairedPatches, find_pairs, load_pair
from streamrain.train.losses import clip_loss, combined_loss
from streamrain.train.recipe import Recipe, RecipeError
from streamrain.weights import build_from_weights, read_metadata, save_weights

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    step: int
    stopped_early: bool
    last_loss: float
    val_psnr: float | None


def _lr_factor(step: int, *, warmup: int, total: int, min_ratio: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _psnr_batch(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean PSNR over the images of a batch (B, 3, H, W) or over every frame of clips (B, T, 3, H, W)."""
    pred, target = pred.flatten(0, -4), target.flatten(0, -4)
    mse = ((pred.float() - target.float()) ** 2).mean(dim=(1, 2, 3)).clamp(min=1e-10)
    return (10 * torch.log10(1 / mse)).mean().item()


def _hold_out(items: list, every: int) -> tuple[list, list]:
    """(train, validation): every ``every``-th item is held out for validation only."""
    train = [x for i, x in enumerate(items) if every <= 1 or i % every != every - 1]
    val = [x for i, x in enumerate(items) if every > 1 and i % every == every - 1] or items[:1]
    return train, val


class _BatchStream(torch.utils.data.IterableDataset):
    """Endless training batches drawn in a DataLoader worker, each worker with its own generator
    (seeded by the run's seed, the worker and the step the stream started at)."""

    def __init__(self, pairs, batch: int, seed: int, start_step: int):
        self.pairs, self.batch, self.seed, self.start_step = pairs, batch, seed, start_step

    def __iter__(self):
        torch.set_num_threads(1)  # one core per worker: many workers, no oversubscription
        worker = torch.utils.data.get_worker_info()
        worker_id = worker.id if worker else 0
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.start_step * 101 + worker_id)
        while True:
            yield self.pairs.batch(self.batch, gen)


class Trainer:
    def __init__(self, recipe: Recipe, run_dir: Path, *, max_steps: int | None = None,
                 progress=None, device: str = "cpu", data_workers: int = 0,
                 max_seconds: float | None = None):
        """``data_workers`` > 0 draws batches in that many worker processes (for a GPU, which
        trains faster than one core synthesises rain); a resumed run then sees other rain than an
        uninterrupted one would. ``max_seconds`` stops (with a checkpoint) after that much time."""
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.total_steps = recipe.optim.steps if max_steps is None else max_steps
        self.progress = progress  # callable(step, total, loss, it_per_s) or None
        self.device = torch.device(device)
        # bf16 autocast only where the hardware has it: a CPU without native bf16 emulates it, at
        # several times fp32's cost (measured 7-9x per SRNet training step on an AVX2-only EPYC).
        self.bf16 = recipe.train.bf16 and (self.device.type != "cpu" or cpu_has_bf16())
        if recipe.train.bf16 and not self.bf16:
            log.info("this CPU has no native bf16: training in float32")
        self.data_workers = data_workers
        self.max_seconds = max_seconds
        if recipe.train.threads:
            torch.set_num_threads(recipe.train.threads)
        torch.manual_seed(recipe.train.seed)
        self.model = ARCHS[recipe.arch](**recipe.arch_args)
        self.clips = bool(recipe.data.frames)  # a temporal model, trained on clips
        if recipe.train.stage_loss and not hasattr(self.model, "forward_stages"):
            raise RecipeError(f"{recipe.path}: stage_loss needs a multi-stage network; {recipe.arch} has one stage")
        to_channels_last(self.model)
        self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=recipe.optim.lr, weight_decay=recipe.optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: _lr_factor(s, warmup=recipe.optim.warmup_steps, total=recipe.optim.steps,
                                 min_ratio=recipe.optim.min_lr_ratio))
        self.loss_fn = combined_loss(recipe.loss)
        self.clip_loss_fn = clip_loss(recipe.loss)
        self.gen = torch.Generator().manual_seed(recipe.train.seed)
        self.step = 0
        self._stop_requested = False
        self._load_data()
        self._resume()

    def _load_data(self) -> None:
        if self.clips:
            return self._load_clips()
        d = self.recipe.data
        sources, val_sources, shares = [], [], []
        if d.clean_dirs:
            pool = load_clean_pool(list(d.clean_dirs), max_side=d.max_side, min_side=d.min_side,
                                   clip_every=d.clip_every, exclude=d.exclude)
            train, val = _hold_out(pool, d.val_every_nth_image)
            sources.append(SyntheticPairs(train, patch=d.patch, rain=self.recipe.rain, scale=d.scale))
            val_sources.append(SyntheticPairs(val, patch=d.patch, rain=self.recipe.rain, scale=(1.0, 1.0)))
            shares.append(1.0 - d.paired_fraction if d.paired_dirs else 1.0)
            log.info("synthetic rain over %d clean images, %d held out", len(train), len(val))
        if d.paired_dirs:
            pairs = []
            for root in d.paired_dirs:
                layout, files = find_pairs(root, split="train")
                pairs += [load_pair(f, side_by_side=d.side_by_side, max_side=d.max_side) for f in files]
                log.info("%d pairs (%s layout) from %s", len(files), layout, root)
            pairs = [p for p in pairs if min(p[0].shape[1:]) >= d.patch]
            if not pairs:
                raise ValueError(f"no pair of at least {d.patch} px under {[str(r) for r in d.paired_dirs]}")
            train, val = _hold_out(pairs, d.val_every_nth_image)
            sources.append(PairedPatches(train, patch=d.patch, scale=d.scale))
            val_sources.append(PairedPatches(val, patch=d.patch, scale=(1.0, 1.0)))
            shares.append(d.paired_fraction if d.clean_dirs else 1.0)
        self.pairs = sources[0] if len(sources) == 1 else MixedPairs(sources, shares)
        val_pairs = val_sources[0] if len(val_sources) == 1 else MixedPairs(val_sources, shares)
        self._fix_validation_set(val_pairs)

    def _load_clips(self) -> None:
        """Clips for a temporal model. Validation: held-out photos moved along camera paths (the
        few real clips are all trained on)."""
        d = self.recipe.data
        photos = load_clean_pool(list(d.clean_dirs), max_side=d.max_side, min_side=d.min_side,
                                 clip_every=d.clip_every, exclude=d.exclude)
        train, val = _hold_out(photos, d.val_every_nth_image)
        clips = load_clip_pool(list(d.video_dirs), list(d.frame_dirs), max_side=d.max_side, min_frames=d.frames)
        self.pairs = SyntheticClips(clips, train, frames=d.frames, patch=d.patch, rain=self.recipe.rain,
                                    photo_share=d.photo_clip_share)
        log.info("synthetic rain over %d clean clips and %d photos (%d held out) on camera paths",
                 len(self.pairs.clips), len(train), len(val))
        self._fix_validation_set(SyntheticClips([], val, frames=d.frames, patch=d.patch, rain=self.recipe.rain))

    def _fix_validation_set(self, val_pairs) -> None:
        d = self.recipe.data
        # A fixed validation set: same held-out images, same rain, every time and every resume.
        val_gen = torch.Generator().manual_seed(12345)
        self.val_set = [val_pairs.batch(d.batch, val_gen) for _ in range(self.recipe.train.val_batches)]
        # The rainy inputs' own score: what the validation PSNR has to beat.
        self.val_input_psnr = sum(_psnr_batch(r, c) for r, c in self.val_set) / len(self.val_set)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def _resume(self) -> None:
        if not self.checkpoint_path.exists():
            if self.recipe.train.init_from:
                self._init_from(self.recipe.train.init_from)
            return
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        if state["recipe_name"] != self.recipe.name:
            raise ValueError(f"{self.checkpoint_path} belongs to recipe {state['recipe_name']!r}, "
                             f"not {self.recipe.name!r}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.step = state["step"]
        log.info("resumed %s at step %d", self.checkpoint_path, self.step)

    def _init_from(self, path: Path) -> None:
        start = build_from_weights(path)
        meta = read_metadata(path)
        same_arch = meta.get("arch") == self.recipe.arch
        theirs, mine = start.state_dict(), self.model.state_dict()
        # The same architecture with the same tensors: arguments that hold no weights may differ
        # (TRNet's global_alignment switched on for weights trained without it).
        same = same_arch and (json.loads(meta.get("arch_args", "{}")) == self.recipe.arch_args
                              or {k: v.shape for k, v in theirs.items()} == {k: v.shape for k, v in mine.items()})
        if same:
            self.model.load_state_dict({k: v.to(self.device) for k, v in theirs.items()})
        elif meta.get("arch") in getattr(self.model, "adopts", ()):
            # Other weights where this network declares how to adopt them (TRNet starts as the
            # SRNet it was split from, an SRNet with a deep stage as one without).
            self.model.adopt(start.to(self.device))
        else:
            raise ValueError(f"{path} holds {meta.get('arch')} {meta.get('arch_args')}, "
                             f"not the recipe's {self.recipe.arch} {self.recipe.arch_args}")
        self._zero_parameters(self.recipe.train.zero_after_init)
        log.info("starting from the weights in %s", path)

    def _zero_parameters(self, names: Sequence[str]) -> None:
        params = dict(self.model.named_parameters())
        for name in names:
            chosen = [k for k in params if k == name or k.startswith(name + ".")]
            if not chosen:
                raise ValueError(f"[train] zero_after_init: {self.recipe.arch} has no parameter {name!r}")
            with torch.no_grad():
                for k in chosen:
                    params[k].zero_()

    def save_checkpoint(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "recipe_name": self.recipe.name, "step": self.step,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        tmp = self.checkpoint_path.with_name("checkpoint.pt.tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint_path)  # a kill mid-save never leaves a broken checkpoint

    def forward(self, rgb: torch.Tensor, *, causal: bool = False) -> torch.Tensor:
        """The network on RGB batches, in the channel order it declares: a BGR network (the ports of
        upstream code trained on cv2 images) is trained on BGR, as ``DerainModule`` will feed it.
        Clips (B, T, 3, H, W) go to a temporal model whole and come back as (B * T, 3, H, W)."""
        if self.clips:
            return self.model.forward_clips(rgb, causal=causal).flatten(0, 1)
        if getattr(self.model, "input_order", "rgb") == "bgr":
            return self.model(rgb.flip(1)).flip(1)
        return self.model(rgb)

    def training_loss(self, rainy: torch.Tensor, clean: torch.Tensor, *, causal: bool = False) -> torch.Tensor:
        """The recipe's loss on one batch; with ``stage_loss``, its mean over every stage's output;
        for clips, over every frame of every clip."""
        bgr = getattr(self.model, "input_order", "rgb") == "bgr"
        if self.clips:
            clean = clean.flatten(0, 1)
        alignment = None
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            if self.clips and self.recipe.loss.get("alignment"):
                out, alignment = self.model.forward_clips(rainy, causal=causal,
                                                          clean=clean.unflatten(0, rainy.shape[:2]))
                outputs = [out.flatten(0, 1)]
            elif self.clips:
                outputs = [self.forward(rainy, causal=causal)]
            elif self.recipe.train.stage_loss:
                stages = self.model.forward_stages(rainy.flip(1) if bgr else rainy)
                outputs = [s.flip(1) if bgr else s for s in stages]
            else:
                outputs = [self.forward(rainy)]
        # The loss itself in float32, outside autocast (SSIM's sums lose too much in bf16).
        loss = sum(self.loss_fn(out.float(), clean) for out in outputs) / len(outputs)
        if self.clips:
            frames = rainy.shape[1]
            loss = loss + self.clip_loss_fn(outputs[0].float().unflatten(0, (-1, frames)),
                                            clean.unflatten(0, (-1, frames)))
        if alignment is not None:
            loss = loss + self.recipe.loss["alignment"] * alignment.float()
        return loss

    def validate(self) -> float:
        self.model.eval()
        with torch.inference_mode():
            scores = [_psnr_batch(self.forward(self._to_device(rainy)), self._to_device(clean))
                      for rainy, clean in self.val_set]
        self.model.train()
        return sum(scores) / len(scores)

    def _to_device(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True)
        return batch if batch.dim() != 4 else batch.contiguous(memory_format=torch.channels_last)

    def _request_stop(self, signum, frame) -> None:
        self._stop_requested = True

    def run(self) -> TrainResult:
        previous = {s: signal.signal(s, self._request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        cfg = self.recipe.train
        last_save = time.monotonic()
        loss_value, val_psnr = float("nan"), None
        window_start, window_steps = time.monotonic(), 0
        started, timed_out = time.monotonic(), False
        batches = self._batches()
        self.model.train()
        try:
            while self.step < self.total_steps and not self._stop_requested:
                if self.max_seconds is not None and time.monotonic() - started > self.max_seconds:
                    timed_out = True
                    break
                rainy, clean = next(batches)
                rainy, clean = self._to_device(rainy), clean.to(self.device, non_blocking=True)
                # Drawn from the run's generator only when used, so image recipes resume as before.
                causal = self.clips and cfg.causal_fraction > 0 and \
                    float(torch.rand(1, generator=self.gen)) < cfg.causal_fraction
                loss = self.training_loss(rainy, clean, causal=causal)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.recipe.optim.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.optim.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                self.step += 1
                window_steps += 1
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise FloatingPointError(f"loss became {loss_value} at step {self.step}")
                rate = window_steps / max(1e-9, time.monotonic() - window_start)
                if window_steps >= 50:  # iterations per second over a recent window, not since start
                    window_start, window_steps = time.monotonic(), 0
                if self.progress:
                    self.progress(self.step, self.total_steps, loss_value, rate)
                if cfg.val_every and self.step % cfg.val_every == 0:
                    val_psnr = self.validate()
                    self._log({"step": self.step, "loss": loss_value, "val_psnr": val_psnr,
                               "val_input_psnr": self.val_input_psnr,
                               "lr": self.scheduler.get_last_lr()[0], "time": time.time()})
                if time.monotonic() - last_save > cfg.checkpoint_every_s:
                    self.save_checkpoint()
                    last_save = time.monotonic()
            self.save_checkpoint()
            if self.step >= self.total_steps:
                self.export(self.run_dir / "model.safetensors")
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return TrainResult(self.step, self._stop_requested or timed_out, loss_value, val_psnr)

    def _batches_here(self):
        while True:
            yield self.pairs.batch(self.recipe.data.batch, self.gen)

    def _batches(self):
        """Training batches: drawn here from the run's generator (exactly resumable), or in workers."""
        if not self.data_workers:
            return self._batches_here()
        stream = _BatchStream(self.pairs, self.recipe.data.batch, self.recipe.train.seed, self.step)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=self.data_workers,
                                             pin_memory=self.device.type == "cuda", prefetch_factor=4)
        return iter(loader)

    def _log(self, record: dict) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def export(self, path: Path) -> None:
        save_weights(path, self.model, arch=self.recipe.arch, arch_args=self.recipe.arch_args,
                     extra={"recipe": self.recipe.name, "steps": str(self.step), **_cost_header(self.recipe)})


def export_checkpoint(recipe: Recipe, run_dir: Path, path: Path) -> int:
    """Writes the weights of the run's latest checkpoint to ``path`` (fp16 safetensors, as a finished
    run would) without loading any data, so a run still in progress or stopped early can be tried
    out; returns the checkpoint's step."""
    checkpoint = Path(run_dir) / "checkpoint.pt"
    if not checkpoint.exists():
        raise FileNotFoundError(f"{checkpoint}: no checkpoint to export (has the run saved one yet?)")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if state["recipe_name"] != recipe.name:
        raise ValueError(f"{checkpoint} belongs to recipe {state['recipe_name']!r}, not {recipe.name!r}")
    model = ARCHS[recipe.arch](**recipe.arch_args)
    model.load_state_dict(state["model"])
    save_weights(path, model, arch=recipe.arch, arch_args=recipe.arch_args,
                 extra={"recipe": recipe.name, "steps": str(state["step"]), **_cost_header(recipe)})
    return state["step"]


def _cost_header(recipe: Recipe) -> dict[str, str]:
    """The network's cost for the weight file's header, counted once here so that `models list`
    reads it instead of tracing the network (users copy only the .safetensors file)."""
    from streamrain.modelinfo import cost

    params, gmac = cost(recipe.arch, recipe.arch_args)
    return {"params": str(params), "gmac_per_megapixel": f"{gmac:.2f}"}
