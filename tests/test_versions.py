"""Release-keyed rules (gpuplan.versions): parsing, the warning for untraced releases, and the Falcon rule that
transformers 5.25 moved, as the estimate and its assumptions show it. Pure Python; the traces of the probes are in
tests/test_train_accuracy_fixes.py and benchmarks/drift.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuplan.errors import InputError
from gpuplan.model.presets import find_preset
from gpuplan.model.hf_config import spec_from_config
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training
from gpuplan.versions import (DEFAULT_TRANSFORMERS, FALCON_SDPA_MATH, FALCON_SHARED_SDPA, TRACED_TRANSFORMERS,
                              parse_version, transformers_release, version_warnings)

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("text,expected", [("5.25", (5, 25)), ("5.25.0", (5, 25)), ("v5.23.1", (5, 23)),
                                           ("5.26.0.dev0", (5, 26)), ("6", (6, 0))])
def test_release_numbers(text, expected):
    assert parse_version("--transformers-version", text) == expected


@pytest.mark.parametrize("text", ["", "banana", "five", "5..2", "-1"])
def test_bad_release_numbers_name_the_option(text):
    with pytest.raises(InputError) as err:
        TrainConfig(transformers_version=text or " ")
    assert err.value.field == "--transformers-version"


def test_default_is_the_newest_traced_release():
    assert transformers_release(None) == TRACED_TRANSFORMERS[-1] == parse_version("x", DEFAULT_TRANSFORMERS)


def test_untraced_releases_warn_and_traced_ones_do_not():
    assert version_warnings((5, 23)) == [] and version_warnings((5, 24)) == []
    assert "newer than the newest release" in version_warnings((5, 30))[0]
    assert "older than the oldest release" in version_warnings((4, 57))[0]


def test_the_falcon_rules_split_at_5_25():
    for release, math in (((5, 23), True), ((5, 24), True), ((5, 25), False), ((6, 0), False)):
        assert FALCON_SDPA_MATH.holds(release) is math
        assert FALCON_SHARED_SDPA.holds(release) is not math


def _falcon_7b():
    return spec_from_config(dict(find_preset("falcon-7b").config))


def test_falcon_estimate_follows_the_release_and_says_which():
    spec = _falcon_7b()
    old = estimate_training(spec, TrainConfig(seq=2048, transformers_version="5.23.0"))
    new = estimate_training(spec, TrainConfig(seq=2048, transformers_version="5.25"))
    # up to 5.24: fp32 probabilities of 71 heads x 2048² per layer (math kernel); from 5.25: a bf16 [1, 1, s, s]
    # mask per layer instead
    heads, layers, s = spec.num_heads, spec.num_layers, 2048
    diff = old.memory.activations_bytes - new.memory.activations_bytes
    assert diff > layers * (4 * heads - 2) * s * s * 0.9
    assert any("transformers 5.23" in a for a in old.memory.assumptions)
    assert any("math kernel" in w for w in old.memory.warnings)
    assert any("shared sdpa_attention_forward" in w for w in new.memory.warnings)
    assert not any("math kernel" in w for w in new.memory.warnings)


def test_other_families_do_not_depend_on_the_release():
    spec = spec_from_config(dict(find_preset("llama-3.2-1b").config))
    a = estimate_training(spec, TrainConfig(seq=1024, transformers_version="5.23"))
    b = estimate_training(spec, TrainConfig(seq=1024, transformers_version="5.25"))
    assert a.memory.allocated_peak_bytes == b.memory.allocated_peak_bytes


def test_constraints_pin_every_library_the_tables_name():
    """constraints.txt pins the releases docs/accuracy.md says its table was made with."""
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    env = (ROOT / "docs" / "accuracy.md").read_text().split("Environment: ", 1)[1].split(";", 1)[0]
    for part in env.split(", "):
        name, version = part.split(" ")
        assert pins[name].split("+")[0] == version.split("+")[0], name
    assert parse_version("x", pins["transformers"]) in TRACED_TRANSFORMERS
