"""``--model-impl litgpt|torchtitan``: the saved sets of litgpt 0.5.3's own decoder block (gpuplan.train.litgpt_acts)
and of torchtitan's own Llama block, their formulas, their traces, and how the stack profiles and the option select
them."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
import os
from pathlib import Path

import pytest

from gpuplan.cli.main import main
from gpuplan.errors import InputError
from gpuplan.model.resolve import resolve_model, spec_from_dims
from gpuplan.train.config import TrainConfig
from gpuplan.train.context import activation_context
from gpuplan.train.engine import estimate_training
from gpuplan.train.layers import decoder_layer
from gpuplan.train.peft import layer_flags, trainability
from gpuplan.train.precision import recipe_for

ROOT = Path(__file__).resolve().parent.parent
TINY = spec_from_dims(layers=2, hidden=2048, heads=32, kv_heads=4, ffn=5632, vocab=32000)  # TinyLlama (GQA)
MHA = spec_from_dims(layers=2, hidden=4096, heads=32, ffn=11008, vocab=32000)  # Llama-2-7B (MHA)


def _layer(spec, **kw):
    cfg = TrainConfig(seq=512, **kw)
    c = activation_context(cfg, recipe_for(cfg.precision, cfg.framework), spec)
    return decoder_layer(spec, 0, c, dict(layer_flags(spec, trainability(spec, cfg))[0]), True)


def test_full_layer_follows_litgpts_block_tensor_by_tensor():
    """bf16, full training: two norms (fp32 copy, rsqrt, fp32 normed), the fused QKV input, SDPA's q, k and v at all
    heads (k and the rope'd q are new tensors; v a copy under GQA, the whole qkv output under MHA), its output and
    logsumexp, the output copy proj reads, and the gated MLP; the norms' fp32 weight copies are fixed bytes."""
    e = 2
    for spec in (TINY, MHA):
        h, qd, kvd, f, heads = spec.hidden_size, spec.q_dim, spec.kv_dim, spec.ffn_size, spec.num_heads
        norms = 2 * (4 * h + 4 + 4 * h)
        v = e * qd if 1 < spec.num_kv_heads < heads else e * (qd + 2 * kvd)
        attn = e * h + 2 * e * qd + v + e * qd + 4 * heads + e * qd
        mlp = e * h + 4 * e * f
        la = _layer(spec, stack="litgpt")
        assert la.saved.tok == norms + attn + mlp
        assert la.saved.fixed == 2 * 4 * h


def test_litgpt_keeps_more_than_the_transformers_layer_by_the_expanded_kv_the_copy_and_fp32_norms():
    hf, lit = _layer(TINY), _layer(TINY, stack="litgpt")
    e, h, qd, kvd = 2, TINY.hidden_size, TINY.q_dim, TINY.kv_dim
    assert lit.saved.tok - hf.saved.tok == 2 * e * (qd - kvd) + e * qd + 2 * (4 - e) * h
    assert _layer(TINY, stack="litgpt", model_impl="hf").saved == hf.saved  # the option wins over the stack


def test_lora_layer_keeps_litgpts_adapter_tensors_in_the_model_dtype():
    """LoRA on query and value (LoRAQKVLinear): the norm output (shared with nothing else: the frozen projections
    keep nothing), after_A (e·2r) and zero_pad's source after_B (e·(q_dim + kv_dim)); frozen norms keep no
    normalised tensor."""
    e, r = 2, 32
    for spec in (TINY, MHA):
        h, qd, kvd, f, heads = spec.hidden_size, spec.q_dim, spec.kv_dim, spec.ffn_size, spec.num_heads
        v = e * qd if 1 < spec.num_kv_heads < heads else e * (qd + 2 * kvd)
        expected = 2 * (4 * h + 4) + e * h + e * 2 * r + e * (qd + kvd) + 2 * e * qd + v + e * qd + 4 * heads \
            + 3 * e * f
        la = _layer(spec, stack="litgpt", method="lora", lora_rank=r, lora_targets=("q_proj", "v_proj"),
                    lora_dropout=0.0)
        assert la.saved.tok == expected
        # litgpt's default dropout (0.05, the stack's): the adapters read a dropped copy of the norm output (e·h)
        # and its mask (h) instead of the norm output itself
        dropped = _layer(spec, stack="litgpt", method="lora", lora_rank=r, lora_targets=("q_proj", "v_proj"))
        assert dropped.saved.tok == expected + h


def test_litgpt_lora_adapters_and_their_states_are_in_the_model_dtype():
    spec = resolve_model("llama-2-7b-hf")
    kw = dict(method="lora", lora_rank=32, lora_targets=("q_proj", "v_proj"), seq=512)
    peft = estimate_training(spec, TrainConfig(**kw)).memory
    lit = estimate_training(spec, TrainConfig(**kw, stack="litgpt")).memory
    adapters = 32 * 2 * (4096 + 4096) * 32  # r·(in + out) per adapted projection, 2 per layer, 32 layers
    assert peft.gradients_bytes == 4 * adapters and lit.gradients_bytes == 2 * adapters
    assert peft.weights_bytes - lit.weights_bytes == 2 * adapters
    assert any("litgpt 0.5.3 modelling code" in a for a in lit.assumptions)
    assert not any("litgpt 0.5.3 modelling code" in a for a in peft.assumptions)


def test_litgpt_impl_is_refused_where_its_module_is_not_modelled():
    gpt2 = resolve_model("gpt2")
    with pytest.raises(InputError) as err:
        estimate_training(gpt2, TrainConfig(seq=256, model_impl="litgpt"))
    assert "--model-impl" in str(err.value) and "llama" in str(err.value).lower()
    # the stack's default falls back to transformers' layers, and says so; litgpt's GPT still holds its own
    # output head beside the embedding (it never ties them), whatever code runs the layers
    m = estimate_training(gpt2, TrainConfig(seq=256, stack="litgpt")).memory
    untied = replace(gpt2, tie_embeddings=False)
    assert m.allocated_peak_bytes == estimate_training(untied, TrainConfig(seq=256, stack="litgpt",
                                                                             model_impl="hf")).memory.allocated_peak_bytes
    assert any("Llama layout only" in w for w in m.warnings)
    assert any("output head untied" in a for a in m.assumptions)
    with pytest.raises(InputError):
        TrainConfig(stack="litgpt", recompute="selective")
    with pytest.raises(InputError):
        TrainConfig(model_impl="megatron")


def test_model_impl_option_on_the_command_line(capsys):
    base = ["train", "--layers", "2", "--hidden", "512", "--heads", "8", "--kv-heads", "2", "--seq", "128", "--json"]
    assert main([*base, "--stack", "litgpt"]) == 0
    lit = capsys.readouterr().out
    assert main([*base, "--stack", "litgpt", "--model-impl", "hf"]) == 0
    hf = capsys.readouterr().out
    assert "litgpt 0.5.3 modelling code" in lit and "litgpt 0.5.3 modelling code" not in hf
    assert main([*base, "--model-impl", "bogus"]) == 2
    assert "--model-impl" in capsys.readouterr().err


def _litgpt_dir() -> Path | None:
    d = Path(os.environ.get("GPUPLAN_LITGPT", "/tmp/litgpt"))
    return d if (d / "litgpt" / "model.py").is_file() else None


def _trace_litgpt():
    """benchmarks/trace_litgpt.py and the unpacked litgpt it reads (skips without them)."""
    pytest.importorskip("torch")
    d = _litgpt_dir()
    if d is None:
        pytest.skip("litgpt 0.5.3 is not unpacked (pip download litgpt==0.5.3 --no-deps -d /tmp/litgpt and unzip; "
                    "or set GPUPLAN_LITGPT)")
    spec = importlib.util.spec_from_file_location("trace_litgpt", ROOT / "benchmarks" / "trace_litgpt.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, d


@pytest.mark.parametrize("name, lora_r, over", [
    ("tiny-llama-1.1b", 0, {}),  # GQA, 32 heads over 4 groups
    ("tiny-llama-1.1b", 8, {}),
    ("Llama-2-7b-hf", 0, dict(n_embd=512, n_head=8, n_query_groups=8, intermediate_size=1376)),  # MHA
    ("Llama-2-7b-hf", 16, dict(n_embd=512, n_head=8, n_query_groups=8, intermediate_size=1376)),
    # sliding-window configs: the additive [T, T] mask every layer builds; Phi-3 runs litgpt's Llama block
    ("Mistral-7B-v0.1", 16, dict(n_embd=512, n_head=8, n_query_groups=2, intermediate_size=1376)),
    ("Phi-3-mini-4k-instruct", 16, dict(n_embd=768, n_head=8, n_query_groups=8, intermediate_size=2048)),
])
@pytest.mark.parametrize("lora_dropout", [0.0, 0.05])
def test_litgpt_layer_matches_a_trace_of_litgpts_own_block(name, lora_r, over, lora_dropout):
    """Saved-tensor hooks on litgpt 0.5.3's own ``Block`` (its unpacked wheel: benchmarks/trace_litgpt.py), real
    CPU tensors in bf16, against gpuplan's --model-impl litgpt layer for the same config."""
    mod, d = _trace_litgpt()
    traced, cfg = mod.layer_saved(str(d), name, 2, 32, lora_r, lora_dropout, **over)
    est = mod.gpuplan_layer(cfg, 2, 32, lora_r, lora_dropout)
    assert est == pytest.approx(traced, rel=0.01)


@pytest.mark.parametrize("name, preset, batch, lora_r", [
    ("tiny-llama-1.1b", None, 4, 0),  # full.py: the unchunked head, chunked cross-entropy
    ("Llama-3.2-1B", "llama-3.2-1b", 1, 32),  # lora.py: the 128-token chunked head
])
def test_litgpt_whole_step_matches_a_trace_of_litgpts_own_loop(name, preset, batch, lora_r):
    """The whole step of litgpt's fine-tuning loop (benchmarks/trace_litgpt.py: its GPT on fake tensors, AdamW,
    two accumulated micro-batches, ``chunked_cross_entropy`` over logits the loop holds) against gpuplan's
    ``--stack litgpt`` estimate (the ``chunked-held`` loss): within 1 %."""
    from gpuplan.model.presets import find_preset
    from gpuplan.train.engine import estimate_training

    mod, d = _trace_litgpt()
    traced = mod.trace(str(d), name, batch, 512, grad_accum=2, lora_r=lora_r)["Total"]
    model = find_preset(preset).spec() if preset else spec_from_dims(
        layers=22, hidden=2048, heads=32, kv_heads=4, ffn=5632, vocab=32000)
    kw = dict(method="lora", lora_rank=lora_r, lora_targets=("q_proj", "v_proj"), lora_dropout=0.0) if lora_r else {}
    est = estimate_training(model, TrainConfig(stack="litgpt", batch=batch, seq=512, grad_accum=2, **kw))
    assert est.memory.allocated_peak_bytes == pytest.approx(traced, rel=0.01)


# ---------------------------------------------------------------- torchtitan's own Llama module

def test_torchtitan_layer_keeps_k_and_v_repeated_to_every_head():
    """``repeat_kv`` before SDPA (models/llama/model.py): under grouped-query attention SDPA keeps K and V at all
    heads, e·(q_dim - kv_dim) more each than the transformers layer; the rest of the saved set is the same."""
    spec = resolve_model("llama-3.1-8b")
    hf, tt = _layer(spec), _layer(spec, stack="torchtitan", recompute="none")
    assert tt.saved.tok - hf.saved.tok == 2 * 2 * (spec.q_dim - spec.kv_dim)
    assert _layer(spec, stack="torchtitan", recompute="none", model_impl="hf").saved == hf.saved
    mha = spec_from_dims(layers=2, hidden=1024, heads=8, vocab=1000)
    assert _layer(mha, stack="torchtitan", recompute="none").saved == _layer(mha).saved


def test_torchtitan_impl_keeps_no_rotary_tables_or_embedding_output():
    """freqs_cis is a module buffer and ``h = layer(h, ...)`` drops the embedding output: per token the shared
    tensors are gone; the assumption names the modelling code."""
    spec = resolve_model("llama-3.1-8b")
    kw = dict(seq=1024, recompute="none", precision="bf16")
    hf = estimate_training(spec, TrainConfig(**kw, stack="torchtitan", model_impl="hf"))
    tt = estimate_training(spec, TrainConfig(**kw, stack="torchtitan"))
    assert any("torchtitan modelling code" in a for a in tt.memory.assumptions)
    assert not any("torchtitan modelling code" in a for a in hf.memory.assumptions)
    from gpuplan.train.model_acts import model_acts
    from gpuplan.train.peft import trainability as tr_of
    cfg = TrainConfig(**kw, stack="torchtitan")
    c = activation_context(cfg, recipe_for(cfg.precision, cfg.framework), spec)
    acts = model_acts(spec, tr_of(spec, cfg), c, cfg.act_mode)
    assert acts.shared.tok == 0 and acts.stack_held.tok == 0


def _torchtitan_dir() -> Path | None:
    d = Path(os.environ.get("GPUPLAN_TORCHTITAN", "/tmp/torchtitan"))
    return d if (d / "torchtitan" / "models" / "llama3" / "model" / "model.py").is_file() else None


@pytest.mark.parametrize("dim, heads, kv_heads", [(512, 8, 2), (512, 8, 8), (512, 8, 1)])
def test_torchtitan_layer_matches_a_trace_of_torchtitans_own_block(dim, heads, kv_heads):
    """Saved-tensor hooks on torchtitan's own ``TransformerBlock`` (benchmarks/trace_torchtitan.py: its 0.1.0 wheel,
    the December 2024 RMSNorm), GQA, MHA and MQA, against gpuplan's --model-impl torchtitan layer."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    d = _torchtitan_dir()
    if d is None:
        pytest.skip("torchtitan 0.1.0 is not unpacked (pip download torchtitan==0.1.0 --no-deps -d /tmp/torchtitan "
                    "and unzip; or set GPUPLAN_TORCHTITAN)")
    spec = importlib.util.spec_from_file_location("trace_torchtitan", ROOT / "benchmarks" / "trace_torchtitan.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    traced, block = mod.layer_saved(str(d), 2, 32, dim=dim, n_heads=heads, n_kv_heads=kv_heads, multiple_of=256)
    assert mod.gpuplan_layer(block, 2, 32) == pytest.approx(traced, rel=0.01)


def test_torchtitan_repeat_kv_copies_only_with_several_kv_heads_per_tensor_parallel_rank():
    """Under TP each rank's wk/wv shard holds kv_heads/tp heads: with one left, repeat_kv is a stride-0 view."""
    spec = resolve_model("llama-3.1-70b")  # 8 KV heads
    for tp, copies in ((1, True), (2, True), (4, True), (8, False)):
        cfg = TrainConfig(seq=1024, stack="torchtitan", gpus=tp, tp=tp)
        assert activation_context(cfg, recipe_for(cfg.precision, cfg.framework), spec).repeat_kv is copies


def test_torchtitan_op_level_checkpointing_keeps_the_same_with_its_own_module():
    """torchtitan's op-level policy around its own block (benchmarks/trace_torchtitan.py --op-sac): the matmul and
    attention kernel outputs it saves are what ``op_sac_kept`` counts; the repeated K/V are recomputed."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    d = _torchtitan_dir()
    if d is None:
        pytest.skip("torchtitan 0.1.0 is not unpacked (see benchmarks/trace_torchtitan.py)")
    spec = importlib.util.spec_from_file_location("trace_torchtitan", ROOT / "benchmarks" / "trace_torchtitan.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    traced, block = mod.op_sac_saved(str(d), 2, 32, dim=512, n_heads=8, n_kv_heads=2, multiple_of=256)
    assert mod.gpuplan_op_sac(block, 2, 32) == pytest.approx(traced, rel=0.01)


def test_the_stacks_own_modules_have_no_eager_attention():
    for stack in ("litgpt", "torchtitan"):
        with pytest.raises(InputError) as err:
            TrainConfig(stack=stack, attention="eager", recompute="none")
        assert err.value.field == "--attention"
    assert TrainConfig(stack="torchtitan", attention="eager", model_impl="hf").attention == "eager"


def test_model_impl_errors_in_chinese(capsys):
    argv = ["train", "llama-3.1-8b", "--stack", "litgpt", "--lang", "zh"]
    for extra in (["--attention", "eager"], ["--recompute", "selective"]):
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert "自带的模块" in err and "请用" in err and "own module" not in err
    assert main(["train", "gpt2", "--model-impl", "litgpt", "--lang", "zh"]) == 2
    err = capsys.readouterr().err
    assert "只对 Llama 结构建模" in err and "请用 --model-impl hf" in err
