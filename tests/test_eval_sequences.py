"""`streamrain eval` on sequences: the temporal error against a hand-computed value, frame folders and
lossless videos giving the same numbers, frames fed in order (also through a delaying stream), clear errors."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from conftest import needs_shared
from streamrain.cli import main
from streamrain.errors import InputError, ModelError
from streamrain.train.evaluate import (PerFrame, evaluate_sequences, folder_sequence, sequences_in,
                                       video_sequence)

WIDTH, HEIGHT, FRAMES = 64, 48, 6
# Greys 0, 85 and 170 have whole-number BT.601 luma (16 + 219 * g / 255: 16, 89, 162), so rainy and clean
# differ by exactly 73 luma steps wherever 85 is added, with nothing lost to rounding.
LUMA_STEP_OF_85 = 73


def clean_frame(t: int) -> np.ndarray:
    frame = np.full((HEIGHT, WIDTH, 3), 85, np.uint8)
    frame[:, 4 + 5 * t:10 + 5 * t] = 0  # a dark bar moving 5 px per frame: the scene changes
    return frame


def streak_mask(period: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[:, 2::period] = True
    return mask


def rainy_frame(t: int, mask: np.ndarray) -> np.ndarray:
    """Clean plus grey 85 on the streaks in odd frames only: rain that flickers on and off."""
    frame = clean_frame(t).astype(np.int16)
    frame[mask] += 85 * (t % 2)
    return frame.astype(np.uint8)


def expected_temporal_error(mask: np.ndarray) -> float:
    # Each step t >= 1 turns the streaks on or off: (rainy_t - rainy_t-1) - (clean_t - clean_t-1) is
    # +-73 on the streak pixels and 0 elsewhere.
    return LUMA_STEP_OF_85 * mask.mean()


def _save_png(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    av.VideoFrame.from_ndarray(rgb, format="rgb24").save(str(path))


def _save_lossless_video(path, frames):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=30)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "bgr0"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="bgr0")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.fixture
def sequence_files(tmp_path):
    """Two sequences (streaks every 9th and every 4th column) as frame folders, the first also as videos."""
    masks = {"a": streak_mask(9), "b": streak_mask(4)}
    for name, mask in masks.items():
        for t in range(FRAMES):
            _save_png(tmp_path / "seqs" / name / "rainy" / f"{t:05d}.png", rainy_frame(t, mask))
            _save_png(tmp_path / "seqs" / name / "clean" / f"{t:05d}.png", clean_frame(t))
    mask = masks["a"]
    _save_lossless_video(tmp_path / "rainy.mkv", [rainy_frame(t, mask) for t in range(FRAMES)])
    _save_lossless_video(tmp_path / "clean.mkv", [clean_frame(t) for t in range(FRAMES)])
    _save_lossless_video(tmp_path / "clean_short.mkv", [clean_frame(t) for t in range(FRAMES - 1)])
    return tmp_path, masks


class Identity:
    """A "model" that returns its input and records what it was given, in order."""

    name = "identity"

    def __init__(self):
        self.seen: list[np.ndarray] = []

    def __call__(self, rgb_u8_bhwc):
        self.seen.extend(rgb_u8_bhwc.copy())
        return rgb_u8_bhwc


class DelayedIdentity:
    """A FrameStream with two frames of look-ahead, like a temporal derainer: frame t comes back at push t + 2."""

    def __init__(self, *, drop_last: bool = False):
        self.held: list[np.ndarray] = []
        self.drop_last = drop_last

    def push(self, rgb_u8_hwc):
        self.held.append(rgb_u8_hwc.copy())
        return [self.held.pop(0)] if len(self.held) > 2 else []

    def flush(self):
        rest, self.held = self.held[:-1] if self.drop_last else self.held, []
        return rest


def test_temporal_error_of_flickering_rain_matches_the_hand_computed_value(sequence_files):
    root, masks = sequence_files
    identity = Identity()
    result = evaluate_sequences(identity, [folder_sequence(root / "seqs/a/rainy", root / "seqs/a/clean")])
    assert result.temporal_error == pytest.approx(expected_temporal_error(masks["a"]), abs=1e-9)
    assert result.input_temporal_error == pytest.approx(result.temporal_error, abs=1e-9)
    assert result.n == FRAMES and result.sequences is None
    # The frames reached the model one at a time, in time order.
    assert len(identity.seen) == FRAMES
    assert all(np.array_equal(seen, rainy_frame(t, masks["a"])) for t, seen in enumerate(identity.seen))


def test_a_perfect_result_has_zero_temporal_error(sequence_files):
    root, _ = sequence_files
    clean = root / "seqs/a/clean"
    result = evaluate_sequences(Identity(), [folder_sequence(clean, clean)])
    assert result.temporal_error == 0 and result.input_temporal_error == 0


def test_outputs_that_come_back_late_are_paired_with_their_own_frames(sequence_files):
    root, _ = sequence_files
    sequence = folder_sequence(root / "seqs/a/rainy", root / "seqs/a/clean")
    at_once = evaluate_sequences(Identity(), [sequence]).to_json()
    delayed = evaluate_sequences(Identity(), [sequence], open_stream=DelayedIdentity).to_json()
    assert {k: v for k, v in delayed.items() if k != "seconds"} == \
        {k: v for k, v in at_once.items() if k != "seconds"}
    with pytest.raises(ModelError, match="returned 5 frames for 6"):
        evaluate_sequences(Identity(), [sequence], open_stream=lambda: DelayedIdentity(drop_last=True))


def test_video_pair_gives_the_same_numbers_as_its_frame_folders(sequence_files):
    root, _ = sequence_files
    from_folders = evaluate_sequences(Identity(), [folder_sequence(root / "seqs/a/rainy", root / "seqs/a/clean")])
    from_videos = evaluate_sequences(Identity(), [video_sequence(root / "rainy.mkv", root / "clean.mkv")])
    for key in ("n", "psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "input_psnr_y", "input_ssim_y",
                "temporal_error", "input_temporal_error"):
        assert getattr(from_videos, key) == getattr(from_folders, key), key


def test_cli_sequence_json_from_folders_and_videos(sequence_files, tmp_path):
    root, masks = sequence_files
    runs = {"folders": ["--rainy", str(root / "seqs/a/rainy"), "--clean", str(root / "seqs/a/clean"), "--sequence"],
            "videos": ["--rainy", str(root / "rainy.mkv"), "--clean", str(root / "clean.mkv")]}
    results = {}
    for kind, args in runs.items():
        out = tmp_path / f"{kind}.json"
        assert main(["eval", *args, "--precision", "fp32", "--json", str(out)]) == 0
        results[kind] = json.loads(out.read_text())
    folders, videos = results["folders"], results["videos"]
    assert set(folders) == {"model", "n", "psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "input_psnr_y", "seconds",
                            "input_ssim_y", "temporal_error", "input_temporal_error"}
    assert folders["input_temporal_error"] == pytest.approx(expected_temporal_error(masks["a"]), abs=1e-4)
    assert folders["temporal_error"] >= 0
    folders.pop("seconds"), videos.pop("seconds")
    assert videos == folders


def test_cli_image_folders_without_sequence_report_no_temporal_error(sequence_files, tmp_path):
    root, _ = sequence_files
    out = tmp_path / "r.json"
    assert main(["eval", "--rainy", str(root / "seqs/a/rainy"), "--clean", str(root / "seqs/a/clean"),
                 "--precision", "fp32", "--json", str(out)]) == 0
    assert "temporal_error" not in json.loads(out.read_text())


def test_cli_several_sequences_are_reported_each_and_averaged(sequence_files, tmp_path):
    root, masks = sequence_files
    out = tmp_path / "r.json"
    assert main(["eval", "--sequences", str(root / "seqs"), "--precision", "fp32", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [s["name"] for s in result["sequences"]] == ["a", "b"]
    assert result["n"] == 2 * FRAMES and all(s["n"] == FRAMES for s in result["sequences"])
    for s in result["sequences"]:
        assert s["input_temporal_error"] == pytest.approx(expected_temporal_error(masks[s["name"]]), abs=1e-4)
    for key in ("psnr_y", "temporal_error", "input_temporal_error"):
        assert result[key] == pytest.approx(np.mean([s[key] for s in result["sequences"]]), abs=1e-3)


def _one_line_error(capsys) -> str:
    """The failure's report: one line (besides the progress bar, which eval always shows), no traceback."""
    lines = capsys.readouterr().err.splitlines()
    errors = [line for line in lines if line.startswith("streamrain: error: ")]
    assert len(errors) == 1 and not any("Traceback" in line for line in lines), lines
    return errors[0]


def test_videos_of_different_lengths_are_one_clear_error(sequence_files, capsys):
    root, _ = sequence_files
    assert main(["eval", "--rainy", str(root / "rainy.mkv"), "--clean", str(root / "clean_short.mkv")]) == 1
    err = _one_line_error(capsys)
    assert "has 6 frames" in err and "has 5" in err and "clean_short.mkv" in err


def test_sequence_folders_with_a_missing_frame_are_one_clear_error(sequence_files, capsys):
    root, _ = sequence_files
    (root / "seqs/a/clean/00003.png").unlink()
    assert main(["eval", "--rainy", str(root / "seqs/a/rainy"), "--clean", str(root / "seqs/a/clean"),
                 "--sequence"]) == 1
    assert "00003.png: no frame of that name" in _one_line_error(capsys)


def test_bad_sequence_inputs_are_rejected_before_any_work(sequence_files, capsys):
    root, _ = sequence_files
    assert main(["eval", "--rainy", str(root / "rainy.mkv"), "--clean", str(root / "seqs/a/clean")]) == 1
    assert "--clean" in _one_line_error(capsys)
    (root / "seqs/stray").mkdir()
    with pytest.raises(InputError, match="stray/ has no rainy/ and clean/"):
        sequences_in(root / "seqs")
    with pytest.raises(SystemExit):
        main(["eval", "--pairs", str(root / "seqs"), "--sequence"])
    with pytest.raises(InputError, match="at least 2 frames"):
        evaluate_sequences(Identity(), [video_sequence(root / "rainy.mkv", root / "clean.mkv")], limit=1)


def test_per_frame_stream_derains_each_frame_at_once():
    identity = Identity()
    stream = PerFrame(identity)
    frame = clean_frame(0)
    assert np.array_equal(stream.push(frame)[0], frame) and stream.flush() == []


def test_default_model_on_nturain_a1_keeps_its_gain(tmp_path):
    nturain = needs_shared("nturain-a1")
    out = tmp_path / "r.json"
    assert main(["eval", "--rainy", str(nturain / "rainy"), "--clean", str(nturain / "clean"), "--sequence",
                 "--limit", "4", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    # Measured on all 168 frames: PSNR-Y 30.84 vs the input's 29.70, temporal error 4.66 vs 4.88.
    assert result["n"] == 4 and result["psnr_y"] > result["input_psnr_y"] + 0.5
    assert result["temporal_error"] < result["input_temporal_error"]
