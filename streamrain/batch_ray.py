"""Batch work spread over a Ray cluster: one actor per GPU (or per group of CPU cores), each loading
the model once and running whole files through the same per-file job as a local run
(``streamrain.batch_file``) into the shared OUT_DIR. The driver gathers the results into the same
ledger as a local run.

Ray is the optional ``cluster`` extra and is imported only here.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from streamrain.batch_file import FileResult, process_file
from streamrain.config import RunOptions
from streamrain.errors import ConfigError

CORES_PER_CPU_WORKER = 2  # the pipeline's decode/derain/encode threads keep two cores busy


class FileWorker:
    """A Ray actor: the model is loaded once, then files are processed one after another."""

    def __init__(self, run: RunOptions, threads: int):
        import torch

        from streamrain.pipeline.job import make_derainer
        if threads:
            torch.set_num_threads(threads)
        self.derainer = make_derainer(run)

    def process(self, in_dir: str, out_dir: str, rel: str, common: dict) -> dict:
        result = process_file(Path(in_dir), Path(out_dir), Path(rel), derainer=self.derainer, **common)
        return asdict(result)


def _workers(resources: dict) -> tuple[int, dict]:
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return gpus, {"num_gpus": 1, "num_cpus": 1}
    cpus = max(1, int(resources.get("CPU", 1)))
    per_worker = min(CORES_PER_CPU_WORKER, cpus)
    return max(1, cpus // per_worker), {"num_cpus": per_worker}


def process_on_ray(address: str, in_dir: Path, out_dir: Path, todo: list[Path], *, run: RunOptions,
                   **common) -> Iterator:
    """Yield a FileResult for every file in ``todo`` as the cluster finishes them."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as exc:
        raise ConfigError("--ray needs Ray: pip install 'streamrain[cluster]'") from exc

    if not todo:
        return
    started_here = not ray.is_initialized()
    if started_here:
        if address == "local":
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        count, resources = _workers(ray.cluster_resources())
        actor = ray.remote(FileWorker).options(**resources)
        threads = int(resources.get("num_cpus", 0)) if "num_gpus" not in resources else 0
        pool = ActorPool([actor.remote(run, threads) for _ in range(min(count, len(todo)))])
        in_dir, out_dir = str(Path(in_dir).resolve()), str(Path(out_dir).resolve())
        common = {**common, "run": run}
        for result in pool.map_unordered(
                lambda worker, rel: worker.process.remote(in_dir, out_dir, rel.as_posix(), common), todo):
            yield FileResult(**result)
    finally:
        if started_here:
            ray.shutdown()
