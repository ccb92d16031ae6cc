"""FLOPs per token: 6·P, the attention term and its conventions, MoE, frozen weights, LoRA, recomputation."""

import pytest

from gpuplan.compute.flops import (attention_forward_flop_per_token, keys_per_query, lora_adapter_params,
                                   training_flops, weight_flop_params)
from gpuplan.compute.published import deepseek_v3
from gpuplan.errors import InputError
from gpuplan.model.params import count_params
from gpuplan.model.resolve import spec_from_dims


def mha_70b():
    return spec_from_dims(layers=80, hidden=8192, heads=64, vocab=32000)


def test_plain_6pd_from_params_only():
    """Seed 004 §7.2.1: 6 × 70e9 × 2e12 = 8.4e23 FLOPs."""
    f = training_flops(None, params=70_000_000_000)
    assert f.model_flop_per_token == 6 * 70e9
    assert f.model_flop_per_token * 2e12 == pytest.approx(8.4e23, rel=1e-12)
    assert f.attention_flop_per_token == 0 and f.notes  # the note says the attention term needs dims


def test_attention_term_full_is_12_l_h_s():
    spec = mha_70b()
    f = training_flops(spec, seq=4096, attention="full")
    assert f.attention_flop_per_token == 12 * 80 * 8192 * 4096


def test_attention_term_causal_is_half_and_none_is_zero():
    spec = mha_70b()
    full = training_flops(spec, seq=4096, attention="full").attention_flop_per_token
    assert training_flops(spec, seq=4096, attention="causal").attention_flop_per_token == full / 2
    assert training_flops(spec, seq=4096, attention="none").attention_flop_per_token == 0


def test_gqa_does_not_change_the_attention_term():
    """K/V heads are shared, but each query head still attends over all keys: 12·L·s·n_heads·head_dim."""
    a = training_flops(spec_from_dims(layers=4, hidden=1024, heads=16, kv_heads=2), seq=2048)
    b = training_flops(spec_from_dims(layers=4, hidden=1024, heads=16), seq=2048)
    assert a.attention_flop_per_token == b.attention_flop_per_token


def test_weight_params_exclude_input_embedding_and_norms():
    spec = spec_from_dims(layers=2, hidden=256, heads=4, vocab=1000)
    c = count_params(spec)
    assert weight_flop_params(spec) == c.total - c.embedding - c.norm
    tied = spec_from_dims(layers=2, hidden=256, heads=4, vocab=1000, tie=True)
    # A tied head still multiplies every token by vocab x hidden weights.
    assert weight_flop_params(tied) == weight_flop_params(spec)


def test_moe_counts_active_parameters():
    spec = spec_from_dims(layers=4, hidden=512, heads=8, ffn=1024, experts=8, top_k=2)
    c = count_params(spec)
    assert weight_flop_params(spec) == c.active - c.embedding - c.norm
    expert = 3 * 512 * 1024
    assert c.total - c.active == 4 * 6 * expert


def test_deepseek_v3_active_and_mla_attention():
    spec = deepseek_v3()
    c = count_params(spec)
    assert c.total == pytest.approx(671e9, rel=0.005)
    assert c.active == pytest.approx(37e9, rel=0.02)
    # MLA: d_qk = 128 + 64, d_v = 128 -> 2·128·(192 + 128)·s per layer forward.
    assert attention_forward_flop_per_token(spec, 4096) == 61 * 2 * 128 * (192 + 128) * 4096


def test_sliding_window_keys():
    assert keys_per_query(4096, None, "full") == 4096
    assert keys_per_query(4096, 1024, "full") == 1024
    assert keys_per_query(4096, None, "causal") == 2048
    # query i sees min(i, w) keys: mean = (w(w+1)/2 + (s-w)w)/s ~ w - w^2/(2s)
    s, w = 4096, 1024
    exact = (sum(min(i, w) for i in range(1, s + 1))) / s
    assert keys_per_query(s, w, "causal") == pytest.approx(exact, rel=1e-3)


def test_freeze_costs_4p_frozen_6p_trainable():
    spec = mha_70b()
    p = weight_flop_params(spec)
    f = training_flops(spec, seq=4096, attention="none", method="freeze", trainable_params=p // 4)
    assert f.dense_flop_per_token == 6 * (p // 4) + 4 * (p - p // 4)


def test_lora_frozen_base_plus_adapters():
    spec = spec_from_dims(layers=4, hidden=1024, heads=16)
    adapters = lora_adapter_params(spec, 8, ("q_proj", "v_proj"))
    assert adapters == 4 * 8 * ((1024 + 1024) + (1024 + 1024))
    f = training_flops(spec, seq=1024, attention="none", method="lora", lora_rank=8, lora_targets=("q_proj", "v_proj"))
    assert f.dense_flop_per_token == 4 * weight_flop_params(spec) + 6 * adapters
    assert f.trainable_params == adapters


def test_lora_all_linear_excludes_head():
    spec = spec_from_dims(layers=2, hidden=256, heads=4, ffn=512, vocab=1000)
    per_layer = 4 * (256 + 256) + 2 * (256 + 512) + (512 + 256)  # q,k,v,o + gate,up + down (rank 1)
    assert lora_adapter_params(spec, 1) == 2 * per_layer


def test_lora_bad_target_is_input_error():
    with pytest.raises(InputError, match="--lora-targets"):
        lora_adapter_params(spec_from_dims(layers=2, hidden=256, heads=4), 8, ("nope_proj",))


def test_recompute_reported_apart_from_model_flops():
    spec = mha_70b()
    none = training_flops(spec, seq=4096)
    full = training_flops(spec, seq=4096, recompute="full")
    sel = training_flops(spec, seq=4096, recompute="selective")
    assert full.model_flop_per_token == none.model_flop_per_token == sel.model_flop_per_token
    p = weight_flop_params(spec)
    assert full.recompute_flop_per_token == 2 * p + none.attention_flop_per_token / 3
    assert sel.recompute_flop_per_token == none.attention_flop_per_token / 3
    # Full recomputation: hardware FLOPs = 8·P + 4/3 of the attention term (one extra forward).
    assert full.hardware_flop_per_token == pytest.approx(8 * p + 4 / 3 * none.attention_flop_per_token)


@pytest.mark.parametrize("kwargs, field", [
    ({"attention": "half"}, "--attention-flops"),
    ({"recompute": "some"}, "--recompute"),
    ({"method": "dora"}, "--method"),
])
def test_bad_options_raise_input_error(kwargs, field):
    with pytest.raises(InputError, match=field):
        training_flops(mha_70b(), seq=4096, **kwargs)


def test_model_needs_seq_and_lora_needs_model():
    with pytest.raises(InputError, match="--seq"):
        training_flops(mha_70b())
    with pytest.raises(InputError, match="--method"):
        training_flops(None, params=7_000_000_000, method="lora")
