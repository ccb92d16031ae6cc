"""Gradient accumulation on one GPU: the later micro-batches of a step run with every gradient already there. The
estimate is checked against a CPU trace (fake tensors) of whole optimizer steps of 2 micro-batches."""

from __future__ import annotations

import warnings

import pytest

from gpuplan.model.hf_config import spec_from_config
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training
from gpuplan.verify.reference_configs import TRACE_CONFIGS


def traced_peak(name: str, batch: int, seq: int, grad_accum: int, precision: str, recompute: str) -> int:
    """Peak tensor bytes of the second optimizer step of ``grad_accum`` micro-batches (the first creates the states)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from torch._subclasses.fake_tensor import FakeTensorMode

    from gpuplan.verify.build import build_model, prepare_for_training
    from gpuplan.verify.patches import quiet_transformers, trace_patches
    from gpuplan.verify.setup import TrainSetup
    from gpuplan.verify.trace import _optimizer, _PeakTracker

    cfg = TRACE_CONFIGS[name]
    setup = TrainSetup(batch=batch, seq=seq, precision=precision, recompute=recompute)
    quiet_transformers()
    peaks: list[int] = []
    with warnings.catch_warnings(), trace_patches(), FakeTensorMode():
        warnings.simplefilter("ignore")
        model = prepare_for_training(build_model(cfg, dtype=setup.param_dtype, attention=setup.attention), setup)
        opt = _optimizer([p for p in model.parameters() if p.requires_grad], setup)
        ids = torch.randint(0, cfg["vocab_size"], (batch, seq))

        def step(mt=None):
            for _ in range(grad_accum):
                loss = model(input_ids=ids, labels=ids, use_cache=False).loss
                loss.backward()
                del loss
                if mt is not None:  # MemTracker keeps one running peak per module pass: read it, then reset
                    peaks.append(next(iter(mt.get_tracker_snapshot("peak").values()))["Total"])
                    mt.reset_mod_stats()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if mt is not None:
                peaks.append(next(iter(mt.get_tracker_snapshot("peak").values()))["Total"])

        step()
        mt = _PeakTracker()
        mt.track_external(model, opt, ids)
        with mt:
            step(mt)
    return int(max(peaks))


def estimate(name: str, batch: int, seq: int, grad_accum: int, precision: str, recompute: str, **kw) -> int:
    from gpuplan.versions import installed_version

    spec = spec_from_config(TRACE_CONFIGS[name])
    cfg = TrainConfig(batch=batch, seq=seq, grad_accum=grad_accum, precision=precision, recompute=recompute,
                      transformers_version=installed_version("transformers") or "5.25", **kw)
    return estimate_training(spec, cfg).memory.allocated_peak_bytes


CASES = [  # (config, batch, seq, accumulation, precision, recompute)
    ("llama-2048x4-v2048", 2, 512, 2, "bf16", "none"),  # before: -2.04 % (accumulation ignored)
    ("qwen2-1536x4-v4096-tied", 2, 512, 2, "bf16", "none"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-b{c[1]}x{c[2]}-acc{c[3]}-{c[4]}-{c[5]}")
def test_accumulation_matches_the_trace(case):
    traced = traced_peak(*case)
    est = estimate(*case)
    assert abs(est - traced) / traced < 0.002, (est, traced)


def test_later_micro_batches_hold_every_gradient():
    """More than one micro-batch never lowers the peak; with activations large beside the optimizer step's
    temporaries the later micro-batches set it (gradients + activations), one micro-batch does not."""
    one = estimate("llama-2048x4-v2048", 2, 512, 1, "bf16", "none")
    two = estimate("llama-2048x4-v2048", 2, 512, 2, "bf16", "none")
    eight = estimate("llama-2048x4-v2048", 2, 512, 8, "bf16", "none")
    assert two > one and eight == two


def test_optimizer_in_backward_has_no_accumulated_gradients():
    """Optimizer in backward frees each gradient at once; it cannot accumulate (torchtune refuses it), and the
    estimate does not add held gradients to it."""
    from gpuplan.errors import InputError

    try:
        with_acc = estimate("llama-2048x4-v2048", 2, 512, 2, "bf16", "none", optimizer_in_backward=True)
    except InputError:
        return  # refused as a contradiction: also right
    assert with_acc == estimate("llama-2048x4-v2048", 2, 512, 1, "bf16", "none", optimizer_in_backward=True)
