"""Behaviours of real training stacks beyond the model's own tensors: DeepSpeed ZeRO's communication buffers,
QLoRA over a GPTQ base, and Unsloth's offloaded gradient checkpointing (sources in gpuplan.parallel.deepspeed,
gpuplan.train.quantbase and gpuplan.train.checkpointing)."""

from __future__ import annotations

import pytest

from gpuplan.errors import InputError
from gpuplan.model.resolve import resolve_model
from gpuplan.parallel.deepspeed import zero3_prefetch_bytes, zero_buckets
from gpuplan.train.activations import Act, ActContext, _Saved, linear
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training
from gpuplan.train.quantbase import base_weight_bytes

SPEC = resolve_model("qwen2.5-0.5b")
DS2 = dict(framework="deepspeed", zero=2, dp=2, precision="mixed-bf16", seq=512)


def _phases(report) -> dict[str, int]:
    return {p.name.split(": ")[-1]: p.bytes for p in report.phases}


def test_zero12_ipg_buffer_is_the_bucket_doubled_by_overlap_comm():
    assert zero_buckets(2, 2, 200_000_000, "on", True, 0, 0).backward_bytes == 2 * 200_000_000 * 2
    assert zero_buckets(2, 2, 200_000_000, "off", True, 0, 0).backward_bytes == 200_000_000 * 2
    # DeepSpeed's default overlap_comm is on for stage 3 only
    assert zero_buckets(1, 2, 500_000_000, "auto", True, 0, 0).backward_bytes == 500_000_000 * 2
    assert zero_buckets(2, 2, 500_000_000, "on", False, 0, 0).backward_bytes == 0
    z3 = zero_buckets(3, 2, 500_000_000, "auto", True, 0, 0)
    assert (z3.persistent_bytes, z3.backward_bytes, z3.overlap_comm) == (10**9, 0, True)


def test_zero3_prefetch_is_capped_by_bucket_and_live_parameters():
    assert zero3_prefetch_bytes(400, 300, prefetch_bucket=1000, max_live_params=1000, elem_bytes=2) == 400
    assert zero3_prefetch_bytes(400, 300, prefetch_bucket=100, max_live_params=1000, elem_bytes=2) == 200
    assert zero3_prefetch_bytes(400, 1900, prefetch_bucket=1000, max_live_params=1000, elem_bytes=2) == 100
    assert zero3_prefetch_bytes(400, 2100, prefetch_bucket=1000, max_live_params=1000, elem_bytes=2) == 0


def test_zero2_buffers_live_through_backward_not_the_optimizer_step():
    small = _phases(estimate_training(SPEC, TrainConfig(**DS2, ds_reduce_bucket=1_000_000, ds_overlap_comm="off")))
    big = _phases(estimate_training(SPEC, TrainConfig(**DS2, ds_reduce_bucket=101_000_000, ds_overlap_comm="off")))
    grow = 100_000_000 * 2
    assert big["end of backward"] - small["end of backward"] == grow
    assert big["optimizer step"] == small["optimizer step"]
    doubled = _phases(estimate_training(SPEC, TrainConfig(**DS2, ds_reduce_bucket=101_000_000,
                                                          ds_overlap_comm="on")))
    assert doubled["end of backward"] - big["end of backward"] == 101_000_000 * 2


def test_ds_defaults_come_from_the_stack_and_are_reported():
    cfg = TrainConfig(**DS2)
    assert (cfg.ds_reduce_bucket, cfg.ds_overlap_comm, cfg.ds_contiguous_gradients) == (500_000_000, "auto", True)
    notes = estimate_training(SPEC, cfg).memory.assumptions
    assert any("reduce (ipg) buffer 5e+08 elements" in a and "through backward" in a for a in notes)
    with pytest.raises(InputError):
        TrainConfig(**DS2, ds_overlap_comm="sometimes")


def test_gptq_base_bytes_follow_autogptq_buffers():
    # qweight int32 [in/8, out] + qzeros int32 [in/g, out/8] + fp16 scales [in/g, out] + g_idx int32 [in]
    out_f, in_f, g = 4096, 11008, 128
    expected = in_f // 8 * out_f * 4 + in_f // g * out_f // 8 * 4 + in_f // g * out_f * 2 + in_f * 4
    assert base_weight_bytes("gptq", out_f * in_f, (out_f, in_f), group_size=g) == expected
    assert base_weight_bytes("gptq", out_f * in_f // 4, (out_f, in_f), group_size=g) == -(-expected // 4)


def test_gptq_qlora_keeps_the_recomputed_layers_dequantized_weights():
    kw = dict(method="qlora", precision="fp16", seq=256, recompute="full")
    nf4 = estimate_training(SPEC, TrainConfig(**kw))
    gptq = estimate_training(SPEC, TrainConfig(**kw, qlora_base="gptq"))
    h, f, q, kv = SPEC.hidden_size, SPEC.ffn_size, SPEC.q_dim, SPEC.kv_dim
    layer_fp16 = 2 * (h * q + 2 * h * kv + q * h + 3 * h * f)
    nf4_p, gptq_p = _phases(nf4), _phases(gptq)
    top = "forward (recomputed layer)"  # the rebuilt layer's saved set, dequantized weights included
    weights_diff = gptq.memory.weights_bytes - nf4.memory.weights_bytes
    assert gptq_p[top] - nf4_p[top] == layer_fp16 + weights_diff
    assert any("GPTQ int4 base" in a for a in gptq.memory.assumptions)


def test_gptq_matmul_trace_saves_the_fp16_weight_only():
    """CPU trace: a frozen int4-packed weight unpacked with tensor ops and multiplied by an input that needs a
    gradient (AutoGPTQ's dequantize path) saves the fp16 weight and not the input; the activation model's linear
    under dequant_kept saves the same bytes."""
    torch = pytest.importorskip("torch")
    in_f, out_f, tokens = 256, 128, 16
    packed = torch.randint(0, 2**31 - 1, (in_f // 8, out_f), dtype=torch.int32)
    scales = torch.rand(in_f // 128, 1, out_f, dtype=torch.float16)
    shifts = torch.arange(0, 32, 4, dtype=torch.int32).view(1, 8, 1)
    saved: list[int] = []

    def pack(t):
        if isinstance(t, torch.Tensor) and t.dtype != torch.int32:
            saved.append(t.numel() * t.element_size())
        return t

    x = torch.randn(tokens, in_f, dtype=torch.float16, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        codes = torch.bitwise_and(torch.bitwise_right_shift(packed.unsqueeze(1).expand(-1, 8, -1), shifts), 15)
        w = (scales * (codes.reshape(-1, 128, out_f).to(torch.int8) - 8)).reshape(in_f, out_f)
        y = torch.matmul(x, w)
    y.sum().backward()
    assert sum(saved) == 2 * in_f * out_f
    sv = _Saved()
    linear(sv, ActContext(e=2, r=2, dequant_kept=True), "q_proj", "x", 2 * in_f, True, in_f, out_f, False, False)
    assert sv.total() == Act(fixed=2 * in_f * out_f)


def test_unsloth_offloads_checkpointed_layer_inputs_to_host():
    kw = dict(method="qlora", seq=1024, recompute="full")
    on = estimate_training(SPEC, TrainConfig(**kw, stack="unsloth"))
    off = estimate_training(SPEC, TrainConfig(**kw, stack="unsloth", recompute_offload=False))
    per_layer = 2 * SPEC.hidden_size * 1024
    assert on.host_bytes == SPEC.num_layers * per_layer and off.host_bytes == 0
    assert on.memory.allocated_peak_bytes < off.memory.allocated_peak_bytes
    assert any("host memory" in a for a in on.memory.assumptions)
    with pytest.raises(InputError):
        TrainConfig(recompute="none", recompute_offload=True)
