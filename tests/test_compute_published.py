"""Published GPU-hours reproduced within 10 % from each run's own published throughput (docs/time-model.md)."""

import pytest

from gpuplan.compute.published import RUNS, estimate_gpu_hours


@pytest.mark.parametrize("run", RUNS, ids=lambda r: r.name)
def test_published_gpu_hours_within_10_percent(run):
    hours, mfu = estimate_gpu_hours(run)
    assert abs(hours / run.published_gpu_hours - 1) <= 0.10
    assert 0.3 < mfu < 0.6  # a plausible BF16 MFU: the FLOP count and the throughput agree


def test_llama_31_405b_published_flops():
    """Llama 3 paper: 3.8e25 FLOPs for 405B on 15.6T tokens (6·P·D with P = 405B)."""
    assert 6 * 405e9 * 15.6e12 == pytest.approx(3.8e25, rel=0.01)


def test_attention_convention_changes_the_answer_in_the_expected_direction():
    run = next(r for r in RUNS if r.name == "Llama 3.1 405B")
    full, _ = estimate_gpu_hours(run, "full")
    causal, _ = estimate_gpu_hours(run, "causal")
    none, _ = estimate_gpu_hours(run, "none")
    assert full > causal > none  # at a fixed TFLOP/s, counting more FLOPs means more hours
