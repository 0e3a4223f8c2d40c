"""Folder batches: mirrored outputs, isolated failures, resume without rework, kill -9 safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import make_clip, probe
from streamrain.batch import LEDGER_NAME, BatchOptions, run_batch
from streamrain.cli import main
from streamrain.config import RunOptions
from streamrain.pipeline.job import make_derainer


class CountingDerainer:
    """The real default model, counting the frames it is asked to derain."""

    def __init__(self):
        self.inner = make_derainer(RunOptions())
        self.name, self.device_label = self.inner.name, self.inner.device_label
        self.frames = 0

    def __call__(self, frames):
        self.frames += len(frames)
        return self.inner(frames)


def ledger_lines(out_dir):
    return [json.loads(line) for line in (out_dir / LEDGER_NAME).read_text().splitlines()]


@pytest.fixture
def dashcam(tmp_path):
    card = tmp_path / "card"
    (card / "2026" / "day1").mkdir(parents=True)
    (card / "2026" / "day2").mkdir(parents=True)
    make_clip(card / "2026" / "day1" / "A001.MP4", frames=8)
    make_clip(card / "2026" / "day1" / "A002.mp4", frames=6, audio=False)
    make_clip(card / "2026" / "day2" / "B001.mov", frames=5)
    whole = make_clip(tmp_path / "whole.mp4", frames=20)
    (card / "2026" / "day2" / "B002.mp4").write_bytes(whole.read_bytes()[:3000])  # power cut mid-write
    (card / "2026" / "day2" / "index.avi").write_text("not a video at all\n")
    (card / "notes.txt").write_text("ignored: not a video extension\n")
    return card


def test_batch_mirrors_the_tree_and_isolates_failures(dashcam, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["batch", str(dashcam), str(out), "--no-progress"])
    assert code == 1
    for rel, frames in (("2026/day1/A001.MP4", 8), ("2026/day1/A002.mp4", 6), ("2026/day2/B001.mov", 5)):
        assert len(probe(out / rel)["video"]["pts_s"]) == frames
    assert not (out / "notes.txt").exists()
    records = {r["input"]: r for r in ledger_lines(out)}
    assert {k for k, r in records.items() if r["status"] == "failed"} == {"2026/day2/B002.mp4",
                                                                         "2026/day2/index.avi"}
    assert all(records[k]["reason"] for k in ("2026/day2/B002.mp4", "2026/day2/index.avi"))
    assert not (out / "2026/day2/B002.mp4").exists()
    assert records["2026/day1/A001.MP4"]["frames"] == 8


def test_rerun_skips_finished_files_without_inference(dashcam, tmp_path):
    out = tmp_path / "out"
    first = CountingDerainer()
    summary = run_batch(dashcam, out, derainer=first)
    assert (summary.count("ok"), summary.count("failed")) == (3, 2) and first.frames == 19
    again = CountingDerainer()
    summary = run_batch(dashcam, out, derainer=again)
    assert (summary.count("skipped"), summary.count("failed"), again.frames) == (3, 2, 0)
    # A changed input is done again; so is everything when the settings change.
    make_clip(dashcam / "2026" / "day1" / "A002.mp4", frames=7, audio=False)
    third = CountingDerainer()
    run_batch(dashcam, out, derainer=third)
    assert third.frames == 7
    fourth = CountingDerainer()
    run_batch(dashcam, out, derainer=fourth, run=RunOptions(crf=30))
    assert fourth.frames == 20


def test_new_weights_under_the_same_name_redo_the_files(tmp_path, monkeypatch):
    import shutil

    from streamrain.zoo import BUNDLED_DIR
    models = tmp_path / "home" / "models"
    models.mkdir(parents=True)
    monkeypatch.setenv("STREAMRAIN_HOME", str(tmp_path / "home"))
    clips, out = tmp_path / "in", tmp_path / "out"
    clips.mkdir()
    make_clip(clips / "a.mp4", frames=4, audio=False)
    run = RunOptions(model="mine")
    shutil.copy(BUNDLED_DIR / "srnet-v1.safetensors", models / "mine.safetensors")
    assert run_batch(clips, out, run=run).count("ok") == 1
    assert run_batch(clips, out, run=run).count("skipped") == 1
    shutil.copy(BUNDLED_DIR / "srnet-v2.safetensors", models / "mine.safetensors")  # retrained
    assert run_batch(clips, out, run=run).count("ok") == 1
    assert ledger_lines(out)[-1]["model"].startswith("mine@")


def test_jobs_and_suffix(dashcam, tmp_path):
    out = tmp_path / "out"
    summary = run_batch(dashcam, out, options=BatchOptions(jobs=2, suffix=".mkv", exclude=("B002*",)))
    assert summary.count("ok") == 3 and summary.count("failed") == 1
    assert (out / "2026/day1/A001.mkv").is_file() and probe(out / "2026/day2/B001.mkv")["video"]


def test_kill_9_then_restart_completes_without_redoing(tmp_path):
    card = tmp_path / "card"
    card.mkdir()
    for i in range(6):
        make_clip(card / f"clip{i}.mp4", width=160, height=96, frames=40)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "streamrain.cli", "batch", str(card), str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not ((out / LEDGER_NAME).exists() and ledger_lines(out)):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {r["input"] for r in ledger_lines(out)}
    assert 1 <= len(done_before) < 6
    assert subprocess.run(cmd, stderr=subprocess.DEVNULL).returncode == 0
    records = ledger_lines(out)
    oks = [r["input"] for r in records if r["status"] == "ok"]
    assert sorted(oks) == [f"clip{i}.mp4" for i in range(6)]  # each exactly once: none done twice
    for i in range(6):
        assert len(probe(out / f"clip{i}.mp4")["video"]["pts_s"]) == 40
    assert [p.name for p in out.iterdir() if ".partial" in p.name] == []


def test_streamrain_in_dir_out_dir_is_a_batch(dashcam, tmp_path):
    out = tmp_path / "o"
    assert main([str(dashcam), str(out), "--no-progress", "--exclude", "B002*", "--exclude", "*.avi"]) == 0
    assert (out / "2026/day2/B001.mov").is_file()


def test_ray_local_gives_the_same_outputs_and_ledger(dashcam, tmp_path):
    pytest.importorskip("ray", reason="Ray is the optional 'cluster' extra")
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    run_batch(dashcam, local)
    summary = run_batch(dashcam, on_ray, ray_address="local")
    assert (summary.count("ok"), summary.count("failed")) == (3, 2)

    def essence(out):
        return sorted((r["input"], r["status"], r["frames"], r["output"], r["settings"]) for r in ledger_lines(out))

    assert essence(on_ray) == essence(local)
    for record in ledger_lines(local):
        if record["status"] == "ok":
            assert probe(on_ray / record["output"])["video"]["pts_s"] == probe(local / record["output"])["video"]["pts_s"]
