"""The `streamrain` command: the only module that prints or exits.

    streamrain INPUT OUTPUT [options]        derain a video, a stream or an image into OUTPUT
    streamrain models list [--json]          the models and whether their weights are here
    streamrain eval --model M --rainy D --clean D [--sequence] [--json P]   (or two videos, or --sequences D)
    streamrain train RECIPE.toml [--run-dir D] [--steps N]
    streamrain synth RECIPE.toml [--out sheet.png] [--real DIR]
    streamrain bench [--model M] [--size WxH] [--frames N] [--json P]
    streamrain preview SOURCE [--no-window] [--output TARGET] [--duration S]   (camera, stream, lavfi)
    streamrain batch IN_DIR OUT_DIR [--jobs N] [--include G] [--exclude G]   (or: streamrain IN_DIR OUT_DIR)

Every failure ends with one line on stderr and a non-zero exit status; nothing is left at OUTPUT.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from contextlib import closing
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from streamrain.errors import ConfigError, StreamrainError

EXIT_FAILURE, EXIT_SIGINT, EXIT_SIGTERM = 1, 130, 143
err = Console(stderr=True)
out = Console()


class _Terminated(KeyboardInterrupt):
    """SIGTERM, delivered to the main thread like Ctrl-C so the same clean-up runs."""


def _on_sigterm(signum, frame):
    raise _Terminated


def _on_sigint(signum, frame):
    # Installed explicitly: a process started in the background by a non-interactive shell inherits
    # SIGINT as *ignored*, and Python then never raises KeyboardInterrupt.
    raise KeyboardInterrupt


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(console=err, show_path=False)])
    logging.getLogger("libav").setLevel(logging.ERROR)


# -- streamrain INPUT OUTPUT ----------------------------------------------------------------------

def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamrain", description="Remove rain from a video, stream or image.",
        epilog="Other commands: streamrain models list | eval | train (each with --help).")
    p.add_argument("input", help="file, URL (http/rtsp/udp/tcp), lavfi:GRAPH, or camera")
    p.add_argument("output", help="output file (.mp4, .mkv, .mov, .webm, .avi, .png, .jpg, ...)")
    p.add_argument("--model", help="model name (see `streamrain models list`); default: the bundled one")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--backend", choices=("eager", "compile", "tensorrt"),
                   help="eager (default), torch.compile, or a TensorRT engine (CUDA)")
    p.add_argument("--batch", type=int, help="frames per model call")
    p.add_argument("--cpu-workers", type=int, help="CPU batches derained at once (default 2)")
    p.add_argument("--tile", metavar="auto|N|off",
                   help="large frames: auto (default) tiles a frame that would not fit in memory; "
                        "N: tiles of N x N pixels; off: never tile")
    p.add_argument("--codec", help="video encoder (default: libx264, or libvpx-vp9 for .webm)")
    p.add_argument("--crf", type=int, help="constant rate factor, lower is better; 0: lossless (default: "
                   "the encoder's, 18 for libx264)")
    p.add_argument("--preset", help="encoder speed preset (default: veryfast for x264/x265, 4 for VP9's "
                   "cpu-used, 8 for SVT-AV1)")
    p.add_argument("--pix-fmt", dest="pix_fmt", help="output pixel format (default: the input's if the "
                   "encoder takes it, else yuv420p)")
    p.add_argument("--audio-codec", dest="audio_codec", help="auto (default: copy when the container takes "
                   "the codec, else re-encode to its usual one), copy (or refuse), or an audio encoder")
    p.add_argument("--no-audio", dest="copy_audio", action="store_const", const=False,
                   help="leave the audio out")
    p.add_argument("--rgb", dest="yuv420", action="store_const", const=False,
                   help="convert every frame to RGB for the model (by default a model that can, "
                        "the bundled one does, derains 4:2:0 video as decoded)")
    p.add_argument("--causal", action="store_const", const=True,
                   help="a temporal model without look-ahead: each frame from itself and earlier ones only")
    p.add_argument("--pipeline", type=Path, help="TOML preset of these options (see pipelines/)")
    p.add_argument("--stats-json", type=Path, help="write run statistics as JSON to this path")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def _progress_bar(enabled: bool):
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[fps]:>6.1f} fps"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=err, disable=not enabled, transient=False)


def _print_summary(stats) -> None:
    table = Table(title=f"{stats.frames_out} frames in {stats.wall_s:.1f} s: {stats.fps:.1f} fps end to end")
    for col in ("stage", "frames", "busy s", "fps"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for name, s in stats.stages.items():
        table.add_row(name, str(s.frames), f"{s.busy_s:.2f}", f"{s.fps:.1f}")
    err.print(table)
    if stats.decode_errors:
        err.print(f"[yellow]{stats.decode_errors} damaged packet(s) skipped[/]")


def _cmd_run(argv: list[str]) -> int:
    positional = [a for a in argv if not a.startswith("-")]
    if positional and Path(positional[0]).is_dir():
        return _cmd_batch(argv)  # `streamrain IN_DIR OUT_DIR` is a batch
    args = _run_parser().parse_args(argv)
    _setup_logging(args.verbose)
    from streamrain.config import build_options
    from streamrain.pipeline.job import derain_file

    options = build_options(args.pipeline, model=args.model, device=args.device, precision=args.precision,
                            backend=args.backend, batch=args.batch, cpu_workers=args.cpu_workers, codec=args.codec,
                            crf=args.crf, preset=args.preset, pix_fmt=args.pix_fmt, copy_audio=args.copy_audio,
                            audio_codec=args.audio_codec, yuv420=args.yuv420, tile=args.tile,
                            causal=args.causal)
    with _progress_bar(not args.no_progress) as bar:
        task = bar.add_task(Path(args.input).name[:40], total=None, fps=0.0)

        def on_open(source):
            bar.update(task, total=source.info.frames or None)

        def progress(stats):
            bar.update(task, completed=stats.frames_out, fps=stats.fps)

        stats = derain_file(args.input, args.output, options=options, progress=progress, on_open=on_open)
        bar.update(task, completed=stats.frames_out, total=stats.frames_out, fps=stats.fps)
    if args.stats_json:
        args.stats_json.write_text(json.dumps(stats.to_json(), indent=2) + "\n")
    if not args.no_progress:
        _print_summary(stats)
    return 0


# -- streamrain models ----------------------------------------------------------------------------

def _cmd_models(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="streamrain models", description="Models and their weights.")
    sub = p.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="list the models")
    ls.add_argument("--json", action="store_true", help="print a JSON array")
    imp = sub.add_parser("import", help="convert an authors' checkpoint (dpenet, spanet)")
    imp.add_argument("arch", choices=("dpenet", "spanet"))
    imp.add_argument("path", type=Path)
    imp.add_argument("--name", required=True, help="the model name to install it under")
    args = p.parse_args(argv)
    if args.action == "import":
        from streamrain.importer import import_checkpoint

        target = import_checkpoint(args.arch, args.path, name=args.name)
        err.print(f"installed {args.name} ({args.arch}) at {target}")
        return 0
    from streamrain.modelinfo import describe_models

    rows = describe_models()
    if args.json:
        out.print_json(json.dumps(rows))
        return 0
    header = ("name", "arch", "params", "GMAC/MP", "fps 640x360", "weights", "default", "precision", "temporal",
              "Rain100L PSNR-Y", "Rain100H-dev PSNR-Y", "alias of")
    lines = [_model_row(r) for r in rows]
    if not out.is_terminal:
        # Piped or redirected: plain columns as wide as their widest cell, one model per line, so
        # that nothing is cut or wrapped for the reader (a terminal gets rich's table).
        widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]
        for cells in (header, *lines):
            sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip() + "\n")
        return 0
    table = Table()
    for col in header:
        table.add_column(col, no_wrap=True)
    for cells in lines:
        table.add_row(*cells)
    out.print(table)
    return 0


def _default_label(row: dict) -> str:
    """Which default a model is: for still images ("images"), for video ("video"), or none."""
    return ", ".join(label for label, key in (("images", "default"), ("video", "video_default")) if row.get(key))


def _model_row(row: dict) -> tuple[str, ...]:
    def figure(value, spec: str) -> str:
        return format(value, spec) if value else "-"

    precision = row["precision"] or "-"
    if row["precision"] and not row["precision_measured"]:
        precision += " (not measured)"
    alias = ""
    if row["alias_of"]:
        alias = row["alias_of"] + (f" on {row['self_ensemble']} flipped copies" if row["self_ensemble"] > 1 else "")
    return (row["name"], row["arch"], f"{row['params']:,}", f"{row['gmac_per_mp']:.1f}", figure(row["fps_640x360"], ".0f"),
            "yes" if row["weights"] else "no", _default_label(row), precision,
            "yes" if row["temporal"] else "", figure(row["metrics"].get("rain100l_psnr_y"), ".2f"),
            figure(row["metrics"].get("rain100h_dev_psnr_y"), ".2f"), alias)


# -- streamrain eval ------------------------------------------------------------------------------

def _cmd_eval(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="streamrain eval", description="Score a model on paired rainy/clean images or sequences.",
        epilog="Sequences (two videos, --sequence folders, --sequences) also report the temporal error: the "
               "mean over t >= 1 of mean |(out_t - out_t-1) - (clean_t - clean_t-1)| on BT.601 Y (16-235); "
               "lower is steadier, 0 is perfect; input_temporal_error is the rainy input's own. Image "
               "pairs (Rain100L) have no time order, so they get none.")
    p.add_argument("--model", help="model name; default: the bundled default")
    p.add_argument("--rainy", type=Path, help="folder of rainy images (with --clean; paired by file name), "
                   "or a rainy video (with a clean video: a sequence, frames paired by index)")
    p.add_argument("--clean", type=Path, help="folder of clean images of the same names, or the clean video")
    p.add_argument("--sequence", action="store_true",
                   help="the --rainy/--clean folders hold consecutive frames of one video (sorted by name "
                        "= time order): every frame must be in both; adds the temporal error")
    p.add_argument("--sequences", type=Path, metavar="DIR",
                   help="several sequences: each subfolder DIR/NAME holds rainy/ and clean/ folders of "
                        "consecutive frames; reported per sequence and as the mean over sequences")
    p.add_argument("--pairs", type=Path, help="instead of --rainy/--clean: a dataset folder in any paired "
                   "layout (trainA/testA..., rain/norain..., side-by-side images); its test split is used")
    p.add_argument("--side-by-side", choices=("rainy-left", "clean-left"), default="rainy-left",
                   help="which half of a side-by-side pair image is rainy")
    p.add_argument("--json", type=Path, help="write the result as JSON here")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    p.add_argument("--limit", type=int, help="only the first N pairs (of each sequence: its first N frames)")
    p.add_argument("--causal", action="store_true",
                   help="a temporal model without look-ahead, as the live preview runs it")
    p.add_argument("-v", "--verbose", action="count", default=0)
    args = p.parse_args(argv)
    given = [args.rainy is not None and args.clean is not None, args.pairs is not None,
             args.sequences is not None]
    if sum(given) != 1 or (args.rainy is None) != (args.clean is None):
        p.error("give either --rainy and --clean, or --pairs, or --sequences DIR")
    if args.sequence and not given[0]:
        p.error("--sequence applies to --rainy/--clean folders")
    _setup_logging(args.verbose)
    from streamrain.runtime.derainer import Derainer
    from streamrain.runtime.temporal import TemporalDerainer, is_temporal
    from streamrain.train import evaluate as ev
    from streamrain.zoo import load_model

    # Sequences (consecutive frames) are video: without --model, the video default scores them.
    video = args.sequences is not None or args.sequence or (
        given[0] and (args.rainy.is_file() or args.clean.is_file()))
    module = load_model(args.model, video=bool(video))
    open_stream = None
    if is_temporal(module):
        # A sequence goes through the model's stream as a video would (window kept across frames,
        # look-ahead flushed at the end); an image pair is a clip of one frame.
        derainer = TemporalDerainer(module, device=args.device, precision=args.precision, causal=args.causal)
        open_stream = lambda: ev.Streamed(derainer.stream())  # noqa: E731
    elif args.causal:
        raise ConfigError(f"--causal: model {module.name} is not temporal (it sees one frame at a time)")
    else:
        derainer = Derainer(module, device=args.device, precision=args.precision)
    sequences = pairs = None
    if args.sequences is not None:
        sequences = ev.sequences_in(args.sequences)
    elif given[0] and (args.rainy.is_file() or args.clean.is_file()):
        for flag, path in (("--rainy", args.rainy), ("--clean", args.clean)):
            if not path.is_file():
                raise ConfigError(f"{flag} {path}: not a video; give two videos or two folders")
        sequences = [ev.video_sequence(args.rainy, args.clean)]
    elif args.sequence:
        sequences = [ev.folder_sequence(args.rainy, args.clean)]
    else:
        pairs = ev.pair_loaders(args.rainy, args.clean, pairs_dir=args.pairs, side_by_side=args.side_by_side)
    with closing(derainer), _progress_bar(True) as bar:
        task = bar.add_task("eval", total=None, fps=0.0)
        started = time.monotonic()

        def on_image(name):
            done = bar.tasks[0].completed + 1
            bar.update(task, description=f"eval {name}"[:40], completed=done,
                       fps=done / max(1e-9, time.monotonic() - started))

        if sequences is None:
            result = ev.evaluate(derainer, pairs, limit=args.limit, on_image=on_image)
        else:
            result = ev.evaluate_sequences(derainer, sequences, limit=args.limit, on_frame=on_image,
                                           open_stream=open_stream)
    out.print(_eval_table(result, derainer.device_label, n_sequences=None if sequences is None
                          else len(sequences)))
    if args.json:
        args.json.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return 0


def _eval_table(result, device_label: str, *, n_sequences: int | None) -> Table:
    temporal = result.temporal_error is not None
    what = f"{result.n} pairs" if n_sequences is None else \
        f"{n_sequences} sequence{'s' if n_sequences > 1 else ''}, {result.n} frames"
    table = Table(title=f"{result.model} on {what} ({device_label})")
    columns = ["", "PSNR-Y", "SSIM-Y", "PSNR-RGB", "SSIM-RGB"] + (["temporal error"] if temporal else [])
    for col in columns:
        table.add_column(col)

    def cell(value, spec: str) -> str:
        return "" if value is None else format(value, spec)

    def row(label: str, scores: dict, prefix: str = "") -> None:
        specs = [("psnr_y", ".2f"), ("ssim_y", ".4f"), ("psnr_rgb", ".2f"), ("ssim_rgb", ".4f")] + \
            ([("temporal_error", ".3f")] if temporal else [])
        table.add_row(label, *[cell(scores.get(prefix + key), spec) for key, spec in specs])

    # Overall first, then each sequence when there are several; the input row is the baseline.
    for name, scores in [("", result.__dict__)] + [(s["name"] + " ", s) for s in result.sequences or []]:
        row(f"{name}derained", scores)
        row(f"{name}input", scores, "input_")
    return table


# -- streamrain train -----------------------------------------------------------------------------

def _cmd_train(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="streamrain train", description="Train (or resume) from a recipe.")
    p.add_argument("recipe", type=Path)
    p.add_argument("--run-dir", type=Path, help="checkpoints and logs (default runs/NAME)")
    p.add_argument("--steps", type=int, help="stop after this many steps in total (default: the recipe's)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch threads (default: the recipe's); 1 shares a busy machine far better")
    p.add_argument("--data-workers", type=int, default=0, metavar="N",
                   help="synthesise batches in N processes beside the training (default 0: in turn with "
                        "it, exactly resumable); 1 with --threads 1 keeps both cores of a 2-core machine busy "
                        "when synthesis is slow (clips)")
    p.add_argument("--export", type=Path, metavar="PATH",
                   help="write the latest checkpoint's weights to PATH (.safetensors) and exit; no training")
    p.add_argument("-v", "--verbose", action="count", default=1)
    args = p.parse_args(argv)
    _setup_logging(args.verbose)
    from streamrain.train.recipe import load_recipe
    from streamrain.train.trainer import Trainer, export_checkpoint

    recipe = load_recipe(args.recipe)
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        recipe = replace(recipe, train=replace(recipe.train, threads=args.threads))
    if args.data_workers < 0:
        raise ConfigError(f"--data-workers must be >= 0, got {args.data_workers}")
    run_dir = args.run_dir or Path("runs") / recipe.name
    if args.export:
        try:
            step = export_checkpoint(recipe, run_dir, args.export)
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
        err.print(f"wrote {args.export}: {recipe.name} at step {step}")
        return 0
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.2f} it/s"),
                  TimeRemainingColumn(), console=err) as bar:
        task = bar.add_task(recipe.name, total=args.steps or recipe.optim.steps, loss=0.0, rate=0.0)
        trainer = Trainer(recipe, run_dir, max_steps=args.steps, data_workers=args.data_workers,
                          progress=lambda step, total, loss, rate: bar.update(
                              task, completed=step, loss=loss, rate=rate))
        bar.update(task, completed=trainer.step)
        result = trainer.run()
    err.print(f"step {result.step}: loss {result.last_loss:.4f}"
              + (f", validation PSNR {result.val_psnr:.2f} dB" if result.val_psnr else "")
              + (" (stopped; run again to resume)" if result.stopped_early else ""))
    return EXIT_SIGTERM if result.stopped_early else 0


# -- streamrain batch -----------------------------------------------------------------------------

def _cmd_batch(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="streamrain batch",
                                description="Derain every video under IN_DIR into a mirrored OUT_DIR.")
    p.add_argument("in_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--include", action="append", help="glob of files to take (repeatable); "
                   "default: common video extensions, any case")
    p.add_argument("--exclude", action="append", default=[], help="glob of files to leave out (repeatable)")
    p.add_argument("--suffix", help="output container, e.g. .mkv (default: keep each input's)")
    p.add_argument("--jobs", type=int, help="files processed at once (default 2, measured fastest here)")
    p.add_argument("--resume", action="store_true", help="accepted for clarity: reruns always resume")
    p.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster (ADDRESS, or 'local')")
    for flag in ("--model", "--codec", "--preset", "--pix-fmt"):
        p.add_argument(flag, dest=flag[2:].replace("-", "_"))
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--batch", type=int)
    p.add_argument("--crf", type=int)
    p.add_argument("--pipeline", type=Path, help="TOML preset (e.g. pipelines/dashcam.toml)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("-v", "--verbose", action="count", default=0)
    args = p.parse_args(argv)
    _setup_logging(args.verbose)
    from streamrain.batch import BatchOptions, VIDEO_GLOBS, run_batch
    from streamrain.config import build_options

    run = build_options(args.pipeline, model=args.model, device=args.device, precision=args.precision,
                        batch=args.batch, codec=args.codec, crf=args.crf, preset=args.preset,
                        pix_fmt=args.pix_fmt)
    suffix = args.suffix if not args.suffix or args.suffix.startswith(".") else "." + args.suffix
    options = BatchOptions(include=tuple(args.include or VIDEO_GLOBS), exclude=tuple(args.exclude),
                           suffix=suffix, jobs=args.jobs or BatchOptions.jobs)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, disable=args.no_progress) as bar:
        files_task = bar.add_task("files", total=None)
        frames_task = bar.add_task("frames", total=None)

        def on_file_done(result):
            bar.advance(files_task)
            if result.status == "failed":
                bar.console.print(f"[red]failed[/] {result.input}: {result.reason}", markup=True,
                                  highlight=False)

        summary = run_batch(args.in_dir, args.out_dir, run=run, options=options, ray_address=args.ray,
                            on_frames=lambda n: bar.advance(frames_task, n), on_file_done=on_file_done)
    table = Table(title=f"{len(summary.results)} files")
    for col in ("ok", "skipped", "failed", "frames", "fps"):
        table.add_column(col, justify="right")
    fps = summary.frames / summary.seconds if summary.seconds else 0.0
    table.add_row(str(summary.count("ok")), str(summary.count("skipped")), str(summary.count("failed")),
                  str(summary.frames), f"{fps:.1f}")
    err.print(table)
    return 0 if summary.all_ok else EXIT_FAILURE


# -- streamrain synth -----------------------------------------------------------------------------

def _cmd_synth(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="streamrain synth",
                                description="Contact sheet of a recipe's synthetic rain, beside real rain.")
    p.add_argument("recipe", type=Path, help="training recipe whose [rain] and [data] to use")
    p.add_argument("--out", type=Path, default=Path("rain-contact-sheet.png"))
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--real", type=Path, help="folder of real rainy photos: a crop of one beside each row")
    p.add_argument("--frames", type=int, metavar="N",
                   help="instead: a strip of N consecutive frames of rain over clips per row (video rain)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from streamrain.train.contact import contact_sheet, save_png, sequence_strip
    from streamrain.train.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    if args.frames is not None and args.frames < 2:
        raise ConfigError(f"--frames must be >= 2, got {args.frames}")
    try:
        if args.frames:
            sheet = sequence_strip(list(recipe.data.clean_dirs), recipe.rain, frames=args.frames,
                                   count=args.count, seed=args.seed)
        else:
            sheet = contact_sheet(list(recipe.data.clean_dirs), recipe.rain, count=args.count,
                                  real_dir=args.real, seed=args.seed)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    save_png(sheet, args.out)
    err.print(f"wrote {args.out} ({sheet.shape[2]}x{sheet.shape[1]})")
    return 0


# -- streamrain bench -----------------------------------------------------------------------------

def _cmd_bench(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="streamrain bench", description="Per-stage and end-to-end fps.")
    p.add_argument("--model", help="model name; default: the bundled default")
    p.add_argument("--size", default="640x360", help="WxH of the generated test clip")
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--input", type=Path, help="time this clip instead of a generated one")
    p.add_argument("--batch", type=int)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    p.add_argument("--backend", choices=("eager", "compile", "tensorrt"), default="eager")
    p.add_argument("--cpu-workers", type=int, help="CPU batches derained at once (default 2)")
    p.add_argument("--rgb", dest="yuv420", action="store_const", const=False,
                   help="convert frames to RGB for the model, as `streamrain --rgb` does")
    p.add_argument("--causal", action="store_const", const=True,
                   help="a temporal model in causal mode (no look-ahead)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds; medians are reported")
    p.add_argument("--json", type=Path, help="write the result as JSON here")
    p.add_argument("-v", "--verbose", action="count", default=0)
    args = p.parse_args(argv)
    _setup_logging(args.verbose)
    if args.rounds < 1:
        raise ConfigError(f"--rounds must be at least 1; got {args.rounds}")
    from streamrain.bench import bench
    from streamrain.config import build_options
    from streamrain.pipeline.job import make_derainer

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size must look like 640x360; got {args.size!r}") from None
    options = build_options(model=args.model, batch=args.batch, device=args.device, precision=args.precision,
                            backend=args.backend, cpu_workers=args.cpu_workers, yuv420=args.yuv420,
                            causal=args.causal)
    with closing(make_derainer(options)) as derainer, err.status("benchmarking..."):
        result = bench(derainer, clip=args.input, width=width, height=height, frames=args.frames,
                       options=options, backend=args.backend, rounds=args.rounds)
    table = Table(title=f"{result.model} at {result.width}x{result.height}, {result.frames} frames, "
                        f"batch {result.batch}, {result.device}, median of {result.rounds} rounds")
    table.add_column("stage")
    table.add_column("fps", justify="right")
    table.add_column("CPU ms/frame", justify="right")
    for name in ("decode", "derain", "encode", "end_to_end"):
        table.add_row(name.replace("_", " ") + (" (alone)" if name != "end_to_end" else ""),
                      f"{getattr(result, name + '_fps'):.1f}", f"{result.cpu_ms_per_frame[name]:.2f}")
    table.add_row("pipeline efficiency", f"{result.efficiency:.2f}", "")
    table.add_row(f"  ceiling on {result.cores} cores", f"{result.cpu_bound_efficiency:.2f}", "")
    out.print(table)
    if args.json:
        args.json.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return 0


# -- streamrain preview ---------------------------------------------------------------------------

def _cmd_preview(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="streamrain preview",
        description="Derain a camera or a live stream as it happens: in a window (rainy | derained), "
                    "to a file, or re-streamed. Latency stays bounded: stale frames are dropped.",
        epilog="Window keys: q or Esc quit, space side by side / split (drag the split with the mouse), "
               "s PNG snapshot, r start/stop recording. Ctrl-C finishes and keeps the output; twice aborts.")
    p.add_argument("source", help="camera index or device (0, /dev/video0, video=NAME), URL "
                                  "(rtsp/http/udp/tcp), lavfi:GRAPH, or a file (played in real time)")
    p.add_argument("--no-window", action="store_true", help="no window (headless boxes); see --output")
    p.add_argument("--output", help="write the derained stream to a file, or re-stream it to a URL "
                                    "(udp://HOST:PORT or tcp://HOST:PORT as MPEG-TS, srt, rtmp, rtsp)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (the output is kept)")
    p.add_argument("--size", help="camera capture size, e.g. 1280x720")
    p.add_argument("--fps", type=float, help="camera frame rate")
    p.add_argument("--input-format", help="camera input format, e.g. mjpeg (HD on most UVC cameras)")
    p.add_argument("--no-reconnect", dest="reconnect", action="store_const", const=False,
                   help="end when a network stream or camera is lost instead of reconnecting")
    p.add_argument("--reconnect-delay", type=float, help="seconds before the first reconnection attempt; "
                   "doubles after each failure (default 0.5)")
    p.add_argument("--reconnect-max-delay", type=float, help="longest wait between attempts (default 10)")
    p.add_argument("--reconnect-attempts", type=int, help="give up after N failed attempts in a row "
                   "(default 0: never)")
    p.add_argument("--stall-timeout", type=float, help="seconds without data before a stream counts as "
                   "lost (default 5)")
    p.add_argument("--record-dir", help="folder for r recordings and s snapshots (default: here)")
    p.add_argument("--model", help="model name; default: the bundled one")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--batch", type=int, help="frames per model call (default 1: lowest latency)")
    for flag in ("--codec", "--preset"):
        p.add_argument(flag, help="encoder settings of --output and recordings")
    p.add_argument("--crf", type=int)
    p.add_argument("--pipeline", type=Path, help="TOML preset (e.g. pipelines/webcam.toml)")
    p.add_argument("--stats-json", type=Path, help="write run statistics (with latency_ms) as JSON here")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("-v", "--verbose", action="count", default=0)
    args = p.parse_args(argv)
    _setup_logging(args.verbose)
    from streamrain.pipeline.job import make_derainer
    from streamrain.live.options import build_live_options
    from streamrain.live.session import LiveSession

    run, live = build_live_options(
        args.pipeline,
        run=dict(model=args.model, device=args.device, precision=args.precision, batch=args.batch,
                 codec=args.codec, crf=args.crf, preset=args.preset),
        live=dict(duration_s=args.duration, video_size=args.size, framerate=args.fps,
                  input_format=args.input_format, reconnect=args.reconnect,
                  reconnect_delay_s=args.reconnect_delay, reconnect_max_delay_s=args.reconnect_max_delay,
                  reconnect_attempts=args.reconnect_attempts, stall_timeout_s=args.stall_timeout,
                  record_dir=args.record_dir))
    if args.no_window and args.output is None:
        err.print("[yellow]--no-window without --output: frames are derained and measured, not kept[/]")
    with closing(make_derainer(run, live=True)) as derainer, Progress(TextColumn("[bold]{task.description}"),
                  TextColumn("{task.fields[frames]} frames {task.fields[fps]:4.1f} fps, latency "
                             "{task.fields[latency]:4.0f} ms, dropped {task.fields[dropped]}, "
                             "reconnects {task.fields[reconnects]}"),
                  TimeElapsedColumn(), console=err, disable=args.no_progress) as bar:
        task = bar.add_task(args.source[:24], total=None, frames=0, fps=0.0, latency=0.0, dropped=0,
                            reconnects=0)

        def progress(stats):
            bar.update(task, frames=stats.frames_out, fps=stats.fps, dropped=stats.dropped,
                       latency=stats.latency.last_s * 1000 if stats.latency else 0.0,
                       reconnects=stats.reconnects or 0)

        session = LiveSession(args.source, derainer=derainer, options=live, run=run, output=args.output,
                              window=not args.no_window, progress=progress)
        stats = session.run()
        progress(stats)
    if args.stats_json:
        args.stats_json.write_text(json.dumps(stats.to_json(), indent=2) + "\n")
    lat = stats.latency.to_json()
    err.print(f"{stats.frames_out} frames in {stats.wall_s:.1f} s ({stats.fps:.1f} fps), {stats.dropped} dropped, "
              f"{stats.reconnects or 0} reconnection(s); latency capture -> {stats.latency.until}: "
              f"mean {lat['mean']:.0f} ms, p95 {lat['p95']:.0f} ms, max {lat['max']:.0f} ms",
              highlight=False, soft_wrap=True)
    for path in session.recordings:
        err.print(f"recorded {path}", highlight=False, soft_wrap=True)
    if args.output:
        err.print(f"written to {args.output}", highlight=False, soft_wrap=True)
    return 0


_COMMANDS = {"models": _cmd_models, "eval": _cmd_eval, "train": _cmd_train, "bench": _cmd_bench,
             "batch": _cmd_batch, "synth": _cmd_synth, "preview": _cmd_preview}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        if argv and argv[0] in _COMMANDS:
            return _COMMANDS[argv[0]](argv[1:])
        return _cmd_run(argv)
    except StreamrainError as exc:
        _fail(f"error: {exc}")
        return EXIT_FAILURE
    except _Terminated:
        _fail("terminated; nothing was written")
        return EXIT_SIGTERM
    except KeyboardInterrupt:
        _fail("interrupted; nothing was written")
        return EXIT_SIGINT


def _fail(message: str) -> None:
    """One line on stderr, never wrapped or styled, so scripts can read it."""
    sys.stderr.write("streamrain: " + " ".join(message.split()) + "\n")
    sys.stderr.flush()


def console() -> None:
    """The console-script entry point."""
    code = main()
    if code in (EXIT_SIGINT, EXIT_SIGTERM):
        # Everything is cleaned up by now; skip interpreter finalisation, which can abort in native
        # thread pools (torch, FFmpeg) when a stage was stopped mid-call.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    console()
