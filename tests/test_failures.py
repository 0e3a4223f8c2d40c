"""Bad inputs, failing stages and interruptions: one clear line, non-zero exit, nothing at OUTPUT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from streamrain.cli import main
from streamrain.errors import PipelineError
from streamrain.io.sink import EncodeOptions, VideoSink
from streamrain.io.source import VideoSource, parse_source
from streamrain.pipeline.runner import Pipeline


def run_cli(capsys, *args) -> tuple[int, list[str]]:
    code = main([*map(str, args), "--no-progress"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, lines


def assert_nothing_written(folder, output):
    assert not output.exists()
    assert [p.name for p in folder.iterdir() if ".partial" in p.name] == []


@pytest.fixture
def bad_inputs(tmp_path, clip):
    zero = tmp_path / "zero.mp4"
    zero.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    whole = clip("whole.mp4", frames=30)
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # the moov index is written last: it is gone
    audio_only = clip("audio.m4a", video=False, frames=10)
    return {"empty": zero, "not a video": text, "cut before its index": cut, "no video": audio_only,
            "missing": tmp_path / "does-not-exist.mp4"}


@pytest.mark.parametrize("case", ["empty", "not a video", "cut before its index", "no video", "missing"])
def test_bad_input_gives_one_line_and_no_output(bad_inputs, tmp_path, capsys, case):
    output = tmp_path / "out.mp4"
    code, lines = run_cli(capsys, bad_inputs[case], output)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("streamrain: error: "), lines
    assert str(bad_inputs[case]) in lines[0]
    assert_nothing_written(tmp_path, output)


def test_output_folder_missing(clip, tmp_path, capsys):
    code, lines = run_cli(capsys, clip("a.mp4", frames=3), tmp_path / "nope" / "out.mp4")
    assert code == 1 and "does not exist" in lines[0]


def test_unknown_model_is_one_line(clip, tmp_path, capsys):
    code, lines = run_cli(capsys, clip("a.mp4", frames=3), tmp_path / "o.mp4", "--model", "nonesuch")
    assert code == 1 and len(lines) == 1 and "unknown model 'nonesuch'" in lines[0]
    assert_nothing_written(tmp_path, tmp_path / "o.mp4")


class ExplodingDerainer:
    """Fails on its second batch, after output has started."""

    def __init__(self):
        self.calls = 0
        self.raised_at = None

    def __call__(self, frames):
        self.calls += 1
        if self.calls == 2:
            self.raised_at = time.monotonic()
            raise RuntimeError("boom in the model")
        return frames


def test_exception_in_derain_stage_stops_the_run_quickly(clip, tmp_path):
    src = clip("long.mp4", frames=300, audio=True)
    output = tmp_path / "out.mp4"
    derain = ExplodingDerainer()
    with VideoSource(parse_source(str(src))) as source:
        pipeline = Pipeline(source, derain, VideoSink(output, EncodeOptions()), batch=2)
        with pytest.raises(PipelineError, match="derain stage failed: RuntimeError: boom in the model"):
            pipeline.run()
    assert time.monotonic() - derain.raised_at < 3.0
    assert_nothing_written(tmp_path, output)


def test_exception_while_decoding_stops_the_run(clip, tmp_path):
    class BrokenSource:
        info = None
        other_streams = ()

        def items(self):
            raise OSError("disk went away")
            yield  # pragma: no cover - makes this a generator

    output = tmp_path / "out.mp4"
    with pytest.raises(PipelineError, match="decode stage failed: OSError: disk went away"):
        Pipeline(BrokenSource(), lambda f: f, VideoSink(output, EncodeOptions())).run()
    assert_nothing_written(tmp_path, output)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupted_run_leaves_nothing(clip, tmp_path, sig, code):
    src = clip("long.mp4", width=320, height=240, frames=600, fps=30)
    output = tmp_path / "out.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "streamrain.cli", str(src), str(output), "--no-progress"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(".partial" in p.name for p in tmp_path.iterdir()):  # encoding has begun
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
        time.sleep(0.05)
    os.kill(proc.pid, sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, stderr
    assert "nothing was written" in stderr
    assert_nothing_written(tmp_path, output)


def test_leftovers_of_a_killed_run_are_swept(clip, tmp_path):
    from streamrain.pipeline.job import derain_file
    output = tmp_path / "out.mp4"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".out.streamrain-{dead}.partial.mp4"
    stale.write_bytes(b"half a video")
    derain_file(str(clip("a.mp4", frames=3, audio=False)), output)
    assert output.exists() and not stale.exists()
