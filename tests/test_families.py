"""Model families with their own structure: Llama 4 (MoE with a shared expert on interleaved layers, dense layers
of intermediate_size_mlp, chunked attention on the RoPE layers).

Counts are compared with transformers built on the meta device; activations with CPU traces of a training step
(``gpuplan.verify``); KV cache and attention FLOPs with the formulas written out here.
"""

from __future__ import annotations

import json
import math

import pytest

from gpuplan.cli.main import main
from gpuplan.compute.flops import attention_forward_flop_per_token, keys_per_query
from gpuplan.errors import InputError
from gpuplan.infer.kv import kv_cache_bytes
from gpuplan.model.hf_config import spec_from_config
from gpuplan.model.params import count_params
from gpuplan.model.tensors import tensor_table

LLAMA4_TEXT = {"model_type": "llama4_text", "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
               "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 1024, "max_position_embeddings": 1024,
               "intermediate_size": 128, "intermediate_size_mlp": 512, "num_local_experts": 4,
               "num_experts_per_tok": 1, "interleave_moe_layer_step": 2, "attention_chunk_size": 128,
               "use_qk_norm": True}
LLAMA4 = {"model_type": "llama4", "text_config": {**LLAMA4_TEXT, "model_type": "llama4_text"},
          "vision_config": {"model_type": "llama4_vision_model", "num_hidden_layers": 2, "hidden_size": 64}}


def _hf_count(config: dict) -> dict:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from hf_reference import hf_named_shapes

    return hf_named_shapes(config)


def test_llama4_defaults_layer_kinds_and_tensors():
    """Llama4TextConfig: every fourth layer NoPE with full attention, the others chunked; interleave step 2 puts
    MoE on the odd layers; dense layers use intermediate_size_mlp; each MoE layer has a router, per-expert SwiGLU
    and one shared expert of intermediate_size."""
    s = spec_from_config(LLAMA4)
    assert s.layer_types == ("chunked", "chunked", "chunked", "full") and s.sliding_window == 128
    assert s.moe.moe_layers == (False, True, False, True) and s.ffn_size == 512
    assert s.l2_qk_norm_layers == (True, True, True, False)
    names = {t.name: t.shape for t in tensor_table(s)}
    assert names["model.layers.0.feed_forward.gate_proj.weight"] == (512, 256)
    assert names["model.layers.1.feed_forward.router.weight"] == (4, 256)
    assert names["model.layers.1.feed_forward.experts.3.down_proj.weight"] == (256, 128)
    assert names["model.layers.1.feed_forward.shared_expert.up_proj.weight"] == (128, 256)
    assert s.notes and "vision_config" in s.notes[0]
    c = count_params(s)
    assert c.total - c.active == 2 * (4 - 1) * 3 * 256 * 128


@pytest.mark.parametrize("change", [{}, {"interleave_moe_layer_step": 1, "num_experts_per_tok": 2},
                                    {"moe_layers": [0, 2], "no_rope_layers": [1, 0, 1, 1]},
                                    {"attention_chunk_size": None}])
def test_llama4_matches_transformers(change):
    cfg = {**LLAMA4, "text_config": {**LLAMA4["text_config"], **change}}
    theirs = _hf_count(cfg)
    ours = {t.name: t.shape for t in tensor_table(spec_from_config(cfg))}
    assert ours == theirs
    assert count_params(spec_from_config(cfg)).total == sum(math.prod(v) for v in theirs.values())


def test_llama4_text_config_saved_by_transformers_loads_the_same():
    """A config written by transformers 5 (every default filled in, layer_types and moe_layers listed)."""
    pytest.importorskip("transformers")
    from transformers import AutoConfig

    saved = AutoConfig.for_model("llama4_text", **{k: v for k, v in LLAMA4_TEXT.items() if k != "model_type"})
    loaded = spec_from_config(json.loads(saved.to_json_string()))
    assert loaded == spec_from_config(LLAMA4_TEXT)


@pytest.mark.parametrize("key,value,rule", [
    ("moe_layers", [0, 9], "layer index"),
    ("no_rope_layers", [1, 2, 1, 1], r"0 \(NoPE\) or 1"),
    ("layer_types", ["chunked_attention", "sliding_attention", "full_attention", "full_attention"],
     "chunked_attention or full_attention"),
    ("attention_chunk_size", 0, ">= 1"),
    ("interleave_moe_layer_step", 0, ">= 1"),
])
def test_llama4_bad_keys_are_named(key, value, rule, tmp_path, capsys):
    cfg = {**LLAMA4_TEXT, key: value}
    with pytest.raises(InputError, match=rule) as exc:
        spec_from_config(cfg)
    assert key in str(exc.value)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert main(["params", str(tmp_path)]) == 2
    assert key in capsys.readouterr().err


def test_chunked_kv_cache_is_capped_at_the_chunk():
    """vLLM frees the blocks before the current chunk: a chunked layer holds min(context, chunk) tokens, a full
    layer the context; transformers caches a chunked layer like a sliding one (the chunk as window)."""
    s = spec_from_config(LLAMA4_TEXT)
    per_token_layer = 2 * 2 * 64 * 2  # K and V, 2 KV heads, head_dim 64, bf16
    got = kv_cache_bytes(s, batch=3, context=1000, kv_dtype="bf16", engine="vllm")
    assert got == 3 * per_token_layer * (3 * 128 + 1 * 1000)
    hf = kv_cache_bytes(s, batch=1, context=1000, prompt=900, kv_dtype="bf16", engine="hf", phase="decode")
    assert hf == per_token_layer * (3 * 128 + 1000)


def test_chunked_attention_flops():
    """Query i of a chunked layer sees i mod c + 1 keys: the causal mean of each chunk, (q·c² + r²) / (2s)."""
    assert keys_per_query(1000, 128, "causal", chunked=True) == pytest.approx((7 * 128**2 + 104**2) / 2000)
    assert keys_per_query(100, 128, "causal", chunked=True) == 50
    s = spec_from_config(LLAMA4_TEXT)
    per_layer = 2 * 4 * (64 + 64)
    expected = per_layer * (3 * keys_per_query(1000, 128, "causal", True) + 1000 / 2)
    assert attention_forward_flop_per_token(s, 1000, "causal") == pytest.approx(expected)


def test_llama4_commands_and_warning(capsys):
    assert main(["params", "llama-4-scout", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"] == 107_769_861_120 and "vision_config" in data["warnings"][0]
    assert main(["params", "llama-4-maverick", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 400_711_848_960
    assert main(["infer", "llama-4-scout", "--tp", "8", "--context", "131072", "--engine", "vllm", "--gpu", "h100-sxm",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # 12 NoPE layers cache the context, 36 chunked layers 8,192 tokens; one KV head per rank at tp 8
    assert out["kv_cache_bytes_per_sequence"] == 2 * 128 * 2 * (12 * 131072 + 36 * 8192)
    assert main(["train", "llama-4-maverick", "--gpus", "64", "--ep", "8"]) == 0
    assert "Llama 4: activations" in capsys.readouterr().out


@pytest.mark.parametrize("change,setup,act_tol", [
    ({}, {}, 1.0),
    ({"num_local_experts": 8, "num_experts_per_tok": 2, "use_qk_norm": False}, {}, 1.0),
    ({}, {"recompute": "full"}, 3.0),
], ids=["bf16", "8-experts-top2-no-qk-norm", "recompute"])
def test_llama4_training_activations_traced(change, setup, act_tol):
    """The MoE runs every token through all experts (repeat, scale, dense bmm), the RoPE layers keep fp32
    copies for the L2 q/k norm and the chunked layers always get a materialised mask: the estimate is within 1 %
    of the traced activations and -1..+3 % of the peak. Under full recompute the kept layer inputs and mask are
    small, so the activation bound is 3 % (+1.8 % at 2 x 128)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from gpuplan.verify import TrainSetup, measure_training
    from gpuplan.verify.compare import error_pct
    from gpuplan.verify.estimate import training_estimate

    cfg = {**LLAMA4_TEXT, "num_hidden_layers": 2, "no_rope_layers": [1, 0], **change}
    ts = TrainSetup(batch=2, seq=128, **setup)
    m = measure_training(cfg, ts)
    measured = m.memory_dict()
    est = training_estimate(spec_from_config(cfg), TrainSetup(**{**ts.__dict__, "attention": m.extra["attention"]}))
    act = error_pct(est["activations_bytes"], measured["activations_bytes"])
    peak = error_pct(est["allocated_peak_bytes"], measured["allocated_peak_bytes"])
    assert abs(act) <= act_tol and -1.0 <= peak <= 3.0, (act, peak)
