"""`streamrain batch IN_DIR OUT_DIR`: every video under a folder, derained into a mirrored tree.

Resumable: a JSON-lines ledger in OUT_DIR gets one line per finished file (ok or failed), written
after the output has been renamed into place. A rerun skips files whose input (size, mtime) and
settings are unchanged since they succeeded. Outputs are written under temporary names and renamed
at the end, so a kill -9 costs only the files in progress; their leftovers are swept at the next start.
One bad file is recorded as failed with its reason and the batch goes on.
"""

from __future__ import annotations

import concurrent.futures
import fnmatch
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from streamrain.config import RunOptions
from streamrain.batch_file import FileResult, output_for, process_file
from streamrain.errors import ConfigError, ModelError
from streamrain.io.sink import remove_if_stale

log = logging.getLogger(__name__)

LEDGER_NAME = "streamrain-ledger.jsonl"
VIDEO_GLOBS = ("*.mp4", "*.mov", "*.mkv", "*.avi", "*.ts", "*.mts", "*.m2ts", "*.m4v", "*.webm",
               "*.3gp", "*.flv", "*.wmv", "*.mpg", "*.mpeg")


@dataclass(frozen=True)
class BatchOptions:
    include: tuple[str, ...] = VIDEO_GLOBS
    exclude: tuple[str, ...] = ()
    suffix: str | None = None  # output container, e.g. ".mkv"; None keeps each input's
    # Measured (benchmarks/batch_throughput.py, 20 clips of 2 s at 640x360, 2-core CPU): 1 job
    # 1,775 files/h, 2 jobs 2,241 files/h: a second file hides the first's open/flush/close gaps.
    jobs: int = 2


@dataclass
class BatchSummary:
    results: list[FileResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self.results if r.status == "ok")

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.results if r.status == "ok")

    @property
    def all_ok(self) -> bool:
        return self.count("failed") == 0


def _matches(rel: str, patterns: tuple[str, ...]) -> bool:
    name = rel.rsplit("/", 1)[-1].lower()
    return any(fnmatch.fnmatch(name, p.lower()) or fnmatch.fnmatch(rel.lower(), p.lower()) for p in patterns)


def discover(in_dir: Path, options: BatchOptions, *, skip: Path | None = None) -> list[Path]:
    """Input files under ``in_dir`` (recursive, sorted), relative to it."""
    found = []
    for path in sorted(Path(in_dir).rglob("*")):
        if not path.is_file() or (skip and skip in path.parents):
            continue
        rel = path.relative_to(in_dir).as_posix()
        if _matches(rel, options.include) and not _matches(rel, options.exclude):
            found.append(Path(rel))
    return found


def weights_id(derainer, run: RunOptions) -> str:
    """``NAME@DIGEST`` of the model's weight file: new weights under an old name (a training run
    resumed to its end, an import over an old one) re-do the files done with the old weights."""
    from streamrain.zoo import resolve
    try:
        entry = resolve(derainer.name if derainer is not None else run.model, video=True)
    except ModelError:
        if derainer is None:
            raise
        return derainer.name  # a derainer that is no catalogued model (custom code, tests)
    return f"{entry.name}@{hashlib.sha256(entry.weights.read_bytes()).hexdigest()[:12]}"


def settings_hash(model_id: str, run: RunOptions, batch: BatchOptions) -> str:
    """What decides an output's content: a change re-does the files done under the old settings."""
    relevant = {"model": model_id, "codec": run.codec, "crf": run.crf, "preset": run.preset,
                "pix_fmt": run.pix_fmt, "copy_audio": run.copy_audio, "audio_codec": run.audio_codec,
                "precision": run.precision,
                "suffix": batch.suffix}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


class Ledger:
    """Append-only JSON lines; the last line about an input is the one that counts."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self.latest: dict[str, dict] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                    self.latest[record["input"]] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line torn by a crash mid-write

    def is_done(self, rel: str, size: int, mtime: float, settings: str, out_dir: Path) -> bool:
        r = self.latest.get(rel)
        return bool(r and r.get("status") == "ok" and r.get("size") == size
                    and r.get("mtime") == mtime and r.get("settings") == settings
                    and (out_dir / r.get("output", "")).is_file())

    def append(self, result: FileResult) -> None:
        line = json.dumps({**asdict(result), "finished_at": time.time()}) + "\n"
        with self._lock:
            with open(self.path, "a") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self.latest[result.input] = asdict(result)


def sweep_partials(out_dir: Path) -> int:
    """Remove temporary outputs under ``out_dir`` left by runs that were killed."""
    return sum(remove_if_stale(path) for path in out_dir.rglob(".*.partial*"))


def run_batch(in_dir: Path, out_dir: Path, *, run: RunOptions = RunOptions(),
              options: BatchOptions = BatchOptions(), derainer=None, ray_address: str | None = None,
              on_frames: Callable[[int], None] | None = None,
              on_file_done: Callable[[FileResult], None] | None = None,
              stop_event: threading.Event | None = None) -> BatchSummary:
    """Derain every matching file under ``in_dir`` into ``out_dir``, here or on a Ray cluster."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise ConfigError(f"{in_dir}: not a folder")
    if options.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1; got {options.jobs}")
    out_dir.mkdir(parents=True, exist_ok=True)
    swept = sweep_partials(out_dir)
    if swept:
        log.info("removed %d temporary file(s) left by an interrupted run", swept)
    if derainer is None and ray_address is None:
        from streamrain.pipeline.job import make_derainer
        derainer = make_derainer(run)  # loaded once for every file
    model_id = weights_id(derainer, run)
    settings = settings_hash(model_id, run, options)
    ledger = Ledger(out_dir / LEDGER_NAME)
    inside = out_dir.resolve() if in_dir.resolve() in out_dir.resolve().parents else None
    summary = BatchSummary()

    def finish(result: FileResult) -> None:
        if result.status != "skipped":
            ledger.append(result)  # only after the output is in place: a kill before this redoes the file
        summary.results.append(result)
        if on_file_done:
            on_file_done(result)

    todo = []
    for rel in discover(in_dir, options, skip=inside):
        stat = (in_dir / rel).stat()
        if ledger.is_done(rel.as_posix(), stat.st_size, stat.st_mtime, settings, out_dir):
            finish(FileResult(input=rel.as_posix(), size=stat.st_size, mtime=stat.st_mtime, model=model_id,
                              settings=settings, status="skipped",
                              output=output_for(rel, out_dir, options.suffix).relative_to(out_dir).as_posix()))
        else:
            todo.append(rel)

    common = dict(run=run, suffix=options.suffix, model_id=model_id, settings=settings)
    if ray_address is not None:
        from streamrain.batch_ray import process_on_ray
        for result in process_on_ray(ray_address, in_dir, out_dir, todo, **common):
            finish(result)
    elif options.jobs == 1:
        for rel in todo:
            finish(process_file(in_dir, out_dir, rel, derainer=derainer, on_frames=on_frames,
                                stop_event=stop_event, **common))
    else:
        with concurrent.futures.ThreadPoolExecutor(options.jobs, thread_name_prefix="streamrain-job") as pool:
            jobs = [pool.submit(process_file, in_dir, out_dir, rel, derainer=derainer, on_frames=on_frames,
                                stop_event=stop_event, **common) for rel in todo]
            for job in concurrent.futures.as_completed(jobs):
                finish(job.result())
    return summary
