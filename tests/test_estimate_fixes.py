"""Regression tests of estimates that were silently wrong: each names the rule it guards."""

from __future__ import annotations

import pytest

from gpuplan.model.presets import find_preset
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training

MISTRAL = find_preset("mistral-7b-v0.3").spec()


def _mem(spec, **kw):
    return estimate_training(spec, TrainConfig(**kw)).memory


# --- QLoRA keeps its 4-bit base under every parallel layout --------------------------------------------------------

@pytest.mark.parametrize("layout", [dict(dp=2), dict(gpus=2), dict(zero=1), dict(zero=2),
                                    dict(zero=2, framework="deepspeed"), dict(dp=2, zero=1, framework="deepspeed")])
def test_qlora_base_stays_nf4_without_sharding_it(layout):
    """DDP, ZeRO-1/2 and FSDP2 without resharding on one rank keep the whole base: NF4, as on one GPU (mistral-7b
    was sized as a bf16 base, 4.01 -> 13.66 GiB)."""
    single = _mem(MISTRAL, method="qlora")
    one = single.weights_bytes
    assert one < 4.1 * 2**30
    got = _mem(MISTRAL, method="qlora", **layout)
    if layout.get("framework") == "deepspeed":
        # the DeepSpeed engine casts the fp32 adapters to the 16-bit dtype; their fp32 copy is the master partition
        one -= got.master_weights_bytes * layout.get("dp", 1) // 2  # the master partitions are /dp under ZeRO
    assert got.weights_bytes == pytest.approx(one, rel=1e-3)


@pytest.mark.parametrize("layout,parts", [(dict(tp=2), 2), (dict(pp=2), 2), (dict(dp=2, zero=3), 2), (dict(dp=2, zero=2), 2),
                                          (dict(dp=4, zero=3, framework="deepspeed"), 4),
                                          (dict(tp=2, dp=2, zero=3), 4)])
def test_qlora_base_split_like_the_bf16_base(layout, parts):
    """TP/PP ranks hold their share of the NF4 base and ZeRO-3/FSDP shard it: about 1/parts of the one-GPU NF4
    weights (the unquantized head, embedding and norms split the same way or stay whole)."""
    one = _mem(MISTRAL, method="qlora").weights_bytes
    got = _mem(MISTRAL, method="qlora", **layout).weights_bytes
    lora = _mem(MISTRAL, method="lora", **layout).weights_bytes
    assert got < 0.6 * one and got < 0.4 * lora
    assert got > one / parts * 0.9


def test_qlora_zero2_one_gpu_large_model():
    """qwen2.5-72b QLoRA with --zero 2 on one GPU: the NF4 base (39.16 GiB), not bf16 (136.21 GiB), and FSDP2's
    unsharded layers are NF4 too."""
    spec = find_preset("qwen2.5-72b").spec()
    m = _mem(spec, method="qlora", zero=2)
    assert m.weights_bytes == pytest.approx(_mem(spec, method="qlora").weights_bytes, rel=1e-4)
    assert m.weights_bytes < 40 * 2**30


def test_qlora_assumption_names_the_base_format():
    a = estimate_training(MISTRAL, TrainConfig(method="qlora", dp=2, zero=3)).memory.assumptions
    assert any("QLoRA NF4 base" in x and "1/2" in x for x in a)


# --- Adafactor's factored states on every layout ---------------------------------------------------------------------

LLAMA8 = find_preset("llama-3.1-8b").spec()


@pytest.mark.parametrize("layout,shards", [(dict(dp=2, gpus=2), 1), (dict(dp=2), 1), (dict(zero=2), 1),
                                           (dict(framework="deepspeed", zero=1), 1), (dict(tp=2), 1),
                                           (dict(dp=2, zero=1), 2), (dict(dp=4, zero=3), 4),
                                           (dict(dp=2, zero=2, framework="deepspeed"), 2)])
def test_adafactor_states_stay_factored(layout, shards):
    """llama-3.1-8b Adafactor: about 6 MB of row/column accumulators on one GPU; a second GPU sized them as full
    per-element second moments (15 GiB). Each layout holds at most the one-GPU figure (in the layout's state
    dtype), split over the ranks that shard states."""
    fw = layout.get("framework", "torch")
    one = _mem(LLAMA8, optimizer="adafactor", framework=fw).optimizer_bytes
    got = _mem(LLAMA8, optimizer="adafactor", **layout).optimizer_bytes
    assert one < 16 * 2**20
    assert got <= one / shards * 1.01 + 4096


def test_adafactor_lora_states_same_on_every_layout():
    one = _mem(LLAMA8, optimizer="adafactor", method="lora").optimizer_bytes
    assert _mem(LLAMA8, optimizer="adafactor", method="lora", dp=2).optimizer_bytes == one


# --- a parameter count alone cannot size LoRA, QLoRA, freezing or Adafactor -----------------------------------------

@pytest.mark.parametrize("opts,flag", [(dict(method="lora"), "--method"), (dict(method="qlora"), "--method"),
                                       (dict(method="freeze", trainable=("*mlp*",)), "--method"),
                                       (dict(optimizer="adafactor"), "--optimizer")])
def test_params_only_refuses_what_needs_shapes(opts, flag):
    """``--params 7B --method lora`` printed a full fine-tune labelled lora."""
    from gpuplan.errors import InputError

    with pytest.raises(InputError) as err:
        estimate_training(None, TrainConfig(**opts), params_total=7_000_000_000)
    assert flag in str(err.value)


def test_params_only_full_still_sized():
    m = estimate_training(None, TrainConfig(), params_total=7_000_000_000).memory
    assert m.weights_bytes == 14_000_000_000


# --- the quantized KV cache: per sequence = per token × tokens ------------------------------------------------------

@pytest.mark.parametrize("kv_dtype", ["int8", "int4", "bf16"])
@pytest.mark.parametrize("context", [100, 1000, 4096])
def test_hf_kv_per_sequence_is_per_token_times_context(kv_dtype, context):
    """transformers' QuantizedCache quantizes the whole prompt at prefill: with the prompt the whole context nothing
    waits in the unquantized residual (llama-3.1-8b int8 at 4096 tokens: 293,076,992 B per sequence counted 128
    bf16 tokens beside 69,632 B/token × 4096 = 285,212,672 B)."""
    from gpuplan.infer.kv import kv_bytes_per_token, kv_cache_bytes

    per_token = kv_bytes_per_token(LLAMA8, kv_dtype=kv_dtype, engine="hf")
    assert kv_cache_bytes(LLAMA8, batch=1, context=context, kv_dtype=kv_dtype, engine="hf") == per_token * context


def test_hf_quantized_residual_holds_at_most_127_generated_tokens():
    from gpuplan.infer.kv import kv_bytes_per_token, kv_cache_bytes

    per_token = kv_bytes_per_token(LLAMA8, kv_dtype="int8", engine="hf")
    bf16_token = kv_bytes_per_token(LLAMA8, kv_dtype="bf16", engine="hf")
    for prompt, resid in ((4000, 96), (1000, 127), (4095, 1)):
        got = kv_cache_bytes(LLAMA8, batch=1, context=4096, prompt=prompt, kv_dtype="int8", engine="hf")
        assert got == per_token * (4096 - resid) + bf16_token * resid


# --- time: GPUs -> days -> GPUs reproduces the count -----------------------------------------------------------------

def test_time_days_to_gpus_round_trip():
    """llama-3.1-70b, 15T tokens on H100: 4,096 GPUs give D days, and D days asked for 4,097 GPUs (a plain ceil of
    4096.000000000001)."""
    from gpuplan import api

    days = api.time("llama-3.1-70b", tokens="15T", gpus=4096, gpu="h100-sxm")["days"]
    assert api.time("llama-3.1-70b", tokens="15T", days=days, gpu="h100-sxm")["gpus"] == 4096


def test_round_up_gpus_tolerance():
    from gpuplan.compute.timecost import round_up_gpus

    assert round_up_gpus(4096 * (1 + 1e-15)) == 4096
    assert round_up_gpus(4096.001) == 4097
    assert round_up_gpus(0.3) == 1
    assert round_up_gpus(8.0000000001, 8) == 8
    assert round_up_gpus(8.5, 8) == 16
