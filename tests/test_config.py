"""Presets: every file in pipelines/ loads; flags beat presets; unknown keys are named."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from streamrain.config import RunOptions, build_options, load_preset
from streamrain.errors import ConfigError

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


@pytest.mark.parametrize("preset", sorted(PIPELINES.glob("*.toml")), ids=lambda p: p.name)
def test_every_preset_loads(preset):
    options = build_options(preset)
    assert isinstance(options, RunOptions)


def test_file_preset_holds_the_defaults():
    values = tomllib.loads((PIPELINES / "file.toml").read_text())
    defaults = RunOptions()
    assert values and all(getattr(defaults, k) == v for k, v in values.items())


def test_flags_override_the_preset(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text('batch = 8\ncrf = 23\n')
    options = build_options(preset, crf=30, batch=None)
    assert (options.batch, options.crf) == (8, 30)


def test_unknown_preset_key_is_named(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text('batch = 2\nbatchsize = 8\n')
    with pytest.raises(ConfigError, match="unknown key\\(s\\) batchsize"):
        load_preset(preset)


@pytest.mark.parametrize("values, message", [({"device": "tpu"}, "device must be one of"),
                                             ({"batch": 0}, "batch must be a positive integer"),
                                             ({"crf": 99}, "crf must be an integer")])
def test_bad_values_say_what_is_allowed(values, message):
    with pytest.raises(ConfigError, match=message):
        build_options(**values)
