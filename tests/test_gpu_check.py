"""benchmarks/gpu_check.py: its dry run on the CPU, without PyAV, and its step-by-step recording."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

from conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"

# Runs in a fresh interpreter where `import av` fails, as on the GPU machine (no PyAV there).
BLOCK_AV_AND_RUN = textwrap.dedent("""
    import importlib.abc, runpy, sys

    class NoAv(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "av" or name.startswith("av."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, NoAv())
    import streamrain, streamrain.zoo, streamrain.archs, streamrain.config, streamrain.train.synth
    import streamrain.runtime.derainer, streamrain.runtime.cuda, streamrain.runtime.tiling
    import streamrain.runtime.memory, streamrain.runtime.tensorrt
    assert "av" not in sys.modules, "a module the GPU check needs imported av"
    sys.argv = [sys.argv[1], *sys.argv[2:]]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        assert "av" not in sys.modules
""")


def load_check(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_dry_run_needs_no_pyav_and_writes_every_step(tmp_path):
    out = tmp_path / "check"
    proc = subprocess.run([sys.executable, "-c", BLOCK_AV_AND_RUN, str(SCRIPT), "--out", str(out), "--dry-run",
                           "--models", "srnet-v3"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    results = json.loads((out / "gpu_check.json").read_text())
    steps = results["steps"]
    assert results["complete"] and steps["environment"]["result"]["av"].startswith("not importable")
    assert steps["pipeline"]["status"] == "skipped" and "PyAV" in steps["pipeline"]["reason"]
    assert steps["srnet-v3/tensorrt"]["status"] == "skipped"
    for name in ("load", "phases", "streams", "precision", "batch_sizes", "tiling", "compile"):
        assert steps[f"srnet-v3/{name}"]["status"] == "ok", steps[f"srnet-v3/{name}"]
    precision = steps["srnet-v3/precision"]["result"]
    assert precision["frames"] == 2 and precision["psnr_low_vs_fp32_mean_db"] > 30
    assert steps["srnet-v3/tiling"]["result"]["tiled"]["tiles"] > 1
    assert "srnet-v3/precision: ok" in (out / "gpu_check.txt").read_text()


def test_a_failing_step_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    check = load_check(monkeypatch)
    out = tmp_path / "check"
    seen_before = {}

    def broken(model, settings):
        # The results so far are already on disk when a later step runs (a timeout keeps them).
        seen_before.update(json.loads((out / "gpu_check.json").read_text())["steps"])
        raise RuntimeError("synthetic failure")

    monkeypatch.setattr(check, "step_precision", broken)
    code = check.main(["--out", str(out), "--dry-run", "--models", "srnet-v3"])
    steps = json.loads((out / "gpu_check.json").read_text())["steps"]
    assert code == 1
    assert steps["srnet-v3/precision"]["status"] == "failed"
    assert steps["srnet-v3/precision"]["error"] == "RuntimeError: synthetic failure"
    assert seen_before["srnet-v3/phases"]["status"] == "ok"
    assert steps["srnet-v3/batch_sizes"]["status"] == "ok" and steps["srnet-v3/compile"]["status"] == "ok"
    # PyAV is here: the whole pipeline runs on a generated clip.
    assert steps["pipeline"]["status"] == "ok" and steps["pipeline"]["result"]["frames_out"] == 6
