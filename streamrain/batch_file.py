"""One file of a batch: derained into its mirrored place under OUT_DIR, with the result the ledger
records. Shared by the local batch (``streamrain.batch``) and the Ray workers
(``streamrain.batch_ray``), so that both run exactly the same job and neither imports the other.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from streamrain.config import RunOptions
from streamrain.errors import StreamrainError
from streamrain.pipeline.job import derain_file


@dataclass
class FileResult:
    input: str
    size: int
    mtime: float
    model: str
    settings: str
    status: str  # "ok" | "failed" | "skipped"
    frames: int = 0
    seconds: float = 0.0
    reason: str = ""
    output: str = ""


def output_for(rel: Path, out_dir: Path, suffix: str | None) -> Path:
    return out_dir / (rel.with_suffix(suffix) if suffix else rel)


def process_file(in_dir: Path, out_dir: Path, rel: Path, *, run: RunOptions, suffix: str | None, derainer,
                 model_id: str, settings: str, on_frames: Callable[[int], None] | None = None,
                 stop_event: threading.Event | None = None) -> FileResult:
    """Derain one file of the batch into its mirrored place; a failure becomes a 'failed' result."""
    src = in_dir / rel
    stat = src.stat()
    target = output_for(rel, out_dir, suffix)
    base = dict(input=rel.as_posix(), size=stat.st_size, mtime=stat.st_mtime, model=model_id, settings=settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    reported = [0]

    def progress(stats):
        if on_frames and stats.frames_out > reported[0]:
            on_frames(stats.frames_out - reported[0])
            reported[0] = stats.frames_out

    t0 = time.monotonic()
    try:
        stats = derain_file(str(src), target, options=run, derainer=derainer, progress=progress,
                            stop_event=stop_event)
    except StreamrainError as exc:
        return FileResult(**base, status="failed", reason=str(exc), seconds=round(time.monotonic() - t0, 3))
    return FileResult(**base, status="ok", frames=stats.frames_out, seconds=round(time.monotonic() - t0, 3),
                      output=target.relative_to(out_dir).as_posix())
