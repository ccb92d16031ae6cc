"""Sliding-window attention with a window shorter than the sequence, against CPU traces (``gpuplan.verify``) and
the parallel rules that go with it.

transformers gives SDPA the materialised window mask; with a mask it repeats K and V to every query head
(``repeat_kv``), a copy with several KV heads and a stride-0 view with one (``gpuplan.train.activations
.sdpa_repeats_kv``). The boolean mask is built once for the batch and, under gradient checkpointing, held through
backward as an input of every checkpointed layer (``gpuplan.train.model_acts.attention_masks``).
"""

from __future__ import annotations

import pytest

from gpuplan.model.hf_config import spec_from_config
from gpuplan.train.activations import Act, ActContext, _Saved, attention_core
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training
from gpuplan.train.peak import PhaseInputs, forward_peak
from gpuplan.train.rank_acts import _sharded

MISTRAL = {"model_type": "mistral", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
           "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 4096,
           "sliding_window": 128}


def _kv_bytes_per_token(cfg: dict, seq: int) -> float:
    spec = spec_from_config(cfg)
    sv = _Saved()
    attention_core(sv, ActContext(e=2, r=2, window_mask=seq > spec.sliding_window), spec, True, True,
                   spec.sliding_window)
    return sv.items["attn.k"].tok + sv.items["attn.v"].tok


def test_masked_sdpa_keeps_k_and_v_repeated_to_every_query_head():
    """Several KV heads: k and v at the query width once the window is shorter than the sequence; within the
    window (no mask, ``enable_gqa``) and with one KV head (a view) at the KV width."""
    spec = spec_from_config(MISTRAL)
    assert _kv_bytes_per_token(MISTRAL, 512) == 2 * 2 * spec.q_dim
    assert _kv_bytes_per_token(MISTRAL, 128) == 2 * 2 * spec.kv_dim
    one_kv = {**MISTRAL, "num_key_value_heads": 1}
    assert _kv_bytes_per_token(one_kv, 512) == 2 * 2 * spec_from_config(one_kv).kv_dim


def test_window_mask_is_replicated_under_tp_with_the_feed_forward_norms():
    for key in ("attn.mask", "pre_feedforward_layernorm.x32", "post_feedforward_layernorm.normed",
                "post_attention_layernorm.rstd"):
        assert not _sharded(key), key
    assert _sharded("attn.k") and _sharded("mlp.gate_out")


def test_checkpointed_window_mask_is_one_copy_for_the_batch():
    """Under full recompute the boolean window mask (s² bytes, whatever the batch) is held through backward."""
    spec = spec_from_config(MISTRAL)

    def acts(seq: int, batch: int) -> int:
        cfg = TrainConfig(batch=batch, seq=seq, precision="bf16", recompute="full")
        return estimate_training(spec, cfg).memory.activations_bytes

    no_mask = spec_from_config({**MISTRAL, "sliding_window": 4096})
    for batch in (1, 4):
        cfg = TrainConfig(batch=batch, seq=512, precision="bf16", recompute="full")
        assert acts(512, batch) - estimate_training(no_mask, cfg).memory.activations_bytes == 512 * 512


def test_first_layer_pre_forward_is_a_forward_moment():
    """FSDP2's root all-gather result beside the first layer's buffer: base − Σkept + first input + buffers."""
    p = PhaseInputs(static_bytes=0, kept_bytes=(100, 100), rebuilt_extra_bytes=(0, 0), full_bytes=(100, 100),
                    bwd_extra_bytes=(0, 0), layer_grad_bytes=(0, 0), shared_bytes=0, head_bytes=0,
                    head_norm_bytes=0, head_grad_bytes=0, embed_grad_bytes=0, tied_extra_bytes=0,
                    loss_forward_bytes=0, loss_backward_bytes=0, residual_grad_bytes=0, norm_bwd_bytes=0,
                    step_temp_bytes=0, recompute_full=False, has_head=False, first_in_bytes=10,
                    first_pre_buf_bytes=1000)
    assert forward_peak(p, 200) == 200 - 200 + 10 + 1000
    assert Act(seq_sq=1.0).bytes(4, 512) == 512 * 512


torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from gpuplan.verify import TrainSetup, measure_training  # noqa: E402
from gpuplan.verify.compare import error_pct  # noqa: E402
from gpuplan.verify.estimate import training_estimate  # noqa: E402


@pytest.mark.parametrize("kv_heads,batch,recompute", [(2, 1, "none"), (1, 1, "none"), (2, 1, "full")],
                         ids=["gqa", "one-kv-head", "gqa-checkpointed"])
def test_window_shorter_than_sequence_matches_trace(kv_heads, batch, recompute):
    """Traced at seq 1024 with a 128-token window: without the repeated K/V the GQA row's activations are 5.7 %
    low, without the held mask the checkpointed row's 24 % low; one KV head repeats nothing."""
    cfg = {**MISTRAL, "num_key_value_heads": kv_heads}
    setup = TrainSetup(batch=batch, seq=1024, recompute=recompute)
    m = measure_training(cfg, setup)
    est = training_estimate(spec_from_config(cfg), TrainSetup(**{**setup.__dict__, "attention": m.extra["attention"]}))
    measured = m.memory_dict()
    for key in ("activations_bytes", "allocated_peak_bytes"):
        err = error_pct(est[key], measured[key])
        assert err is not None and abs(err) <= 0.5, f"{key}: {est[key]:,} vs {measured[key]:,} ({err:+.2f} %)"
