"""torch.compile's saved set and backward peak (``gpuplan.train.compiled``) against CPU traces of a compiled
transformers Llama decoder layer (``gpuplan.verify.compile_trace``: Inductor, real tensors, the saved-tensor hooks
and the profiler's allocator events), and the option's path through the engine."""

from __future__ import annotations

import pytest

from gpuplan.errors import InputError
from gpuplan.model.hf_config import spec_from_config
from gpuplan.model.presets import find_preset
from gpuplan.train.activations import ActContext
from gpuplan.train.compiled import compiled_layer_per_token, eager_layer_per_token
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training
from gpuplan.train.layers import decoder_layer

LORA_TARGETS = ("q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # torchtune's Llama 3.1 LoRA
MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "input_layernorm",
           "post_attention_layernorm")
TOLERANCE_PCT = 1.0


def _spec(h: int, heads: int, kv: int, ffn: int):
    return spec_from_config({"model_type": "llama", "hidden_size": h, "intermediate_size": ffn,
                             "num_hidden_layers": 1, "num_attention_heads": heads, "num_key_value_heads": kv,
                             "vocab_size": 128, "max_position_embeddings": 4096})


def _layer(spec, batch: int, compiled: bool, lora: int):
    """gpuplan's layer model as the trace runs it: bf16, SDPA, the layer input requiring grad; LoRA adapters in
    the layer's dtype (torchtune's, and peft's ``inject_adapter_in_model``)."""
    c = ActContext(e=2, r=2, attention="sdpa", lora_rank=lora or 16, lora_bytes=2, batched=batch > 1,
                   compiled=compiled)
    flags = ({m: (False, m in LORA_TARGETS) for m in MODULES} if lora else {m: (True, False) for m in MODULES})
    return decoder_layer(spec, 0, c, flags, True)


def _grad_down(spec, lora: int) -> int:
    """down_proj's gradient (weight, or its two adapter factors), created first in backward."""
    h, f = spec.hidden_size, spec.ffn_size
    return 2 * (lora * (f + h) if lora else f * h)


def test_formula_matches_the_layer_model():
    for h, heads, kv, ffn in ((256, 8, 2, 512), (4096, 32, 8, 14336)):
        spec = _spec(h, heads, kv, ffn)
        kv_dim = kv * (h // heads)
        assert _layer(spec, 2, True, 0).saved.bytes(2, 64) == 128 * compiled_layer_per_token(h, kv_dim, ffn, heads)
        assert _layer(spec, 2, False, 0).saved.bytes(2, 64) == 128 * eager_layer_per_token(h, kv_dim, ffn, heads)
    # Llama 3.1 8B: 139,400 B a token compiled (input included) against 200,840 B eager
    assert compiled_layer_per_token(4096, 1024, 14336, 32) == 139_400
    assert eager_layer_per_token(4096, 1024, 14336, 32) == 200_840


def test_compile_lowers_the_recomputed_layer_and_the_option_flows():
    spec = find_preset("llama-3.1-8b").spec()
    # PEFT's fp32 adapters, as traced (torchtune's own are bf16: --lora-dtype model, where the compiled and eager
    # layers come within 0.1 %)
    kw = dict(batch=2, seq=2048, precision="bf16", attention="flash", stack="torchtune", method="lora", lora_rank=8,
              lora_targets=LORA_TARGETS, loss_chunk_tokens=512, lora_dtype="fp32")
    eager = estimate_training(spec, TrainConfig(**kw))
    comp = estimate_training(spec, TrainConfig(**kw, compile=True))
    assert not TrainConfig(**kw).compile  # torchtune's recipes: compile: False
    assert comp.memory.allocated_peak_bytes < eager.memory.allocated_peak_bytes
    assert any(a.startswith("torch.compile:") for a in comp.memory.assumptions)
    assert not any(a.startswith("torch.compile:") for a in eager.memory.assumptions)
    # a layout the compiled set was not traced for: eager's numbers, with a warning
    moe = find_preset("mixtral-8x7b-v0.1").spec()
    a = estimate_training(moe, TrainConfig(seq=256, compile=True))
    b = estimate_training(moe, TrainConfig(seq=256))
    assert a.memory.allocated_peak_bytes == b.memory.allocated_peak_bytes
    assert any("torch.compile is modelled" in w for w in a.memory.warnings)
    # a recompute policy the compiled set was not traced under: eager's numbers, with a warning
    a = estimate_training(spec, TrainConfig(seq=256, recompute="selective", compile=True))
    b = estimate_training(spec, TrainConfig(seq=256, recompute="selective"))
    assert a.memory.allocated_peak_bytes == b.memory.allocated_peak_bytes
    assert any("--recompute none or full" in w for w in a.memory.warnings)


def test_torchtune_recipe_compile_true_turns_it_on(tmp_path):
    """torchtune's ``compile: True`` (recipes call training.compile_model) is read as --compile on."""
    pytest.importorskip("yaml")
    from pathlib import Path

    from gpuplan.api import train

    src = Path(__file__).parent / "data" / "configs" / "torchtune_llama3_1_8B_lora_single_device.yaml"
    text = src.read_text(encoding="utf-8")
    assert "\ncompile: False" in text
    on, off = tmp_path / "on.yaml", tmp_path / "off.yaml"
    on.write_text(text.replace("\ncompile: False", "\ncompile: True"), encoding="utf-8")
    off.write_text(text, encoding="utf-8")
    r_on, r_off = train(str(on)), train(str(off))
    assert {"key": "compile", "option": "compile", "value": "on"}.items() <= next(
        m for m in r_on["config_file"]["mapped"] if m["key"] == "compile").items()
    assert any(a.startswith("torch.compile:") for a in r_on["assumptions"])
    assert not any(a.startswith("torch.compile:") for a in r_off["assumptions"])

    def recomputed(r):  # the recipe's default sequence puts the step's peak in the loss: compare the layer's forward
        return next(p["bytes"] for p in r["phases"] if p["phase"] == "forward (recomputed layer)")

    assert recomputed(r_on) < recomputed(r_off)


def test_compile_option_refuses_other_values():
    from gpuplan.api import train

    with pytest.raises(InputError):
        train("llama-3.1-8b", compile="maybe")


# (batch, seq, hidden, heads, kv_heads, ffn, lora rank): a small layer; Llama 3.1 8B's ratios (tokens = hidden,
# ffn = 3.5 hidden, head_dim 128, 4 query heads per K/V head) at 1/8 width; torchtune's LoRA targets
SHAPES = [(2, 64, 256, 8, 2, 512, 0), (1, 512, 512, 4, 1, 1792, 0), (2, 300, 256, 4, 2, 704, 8)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_compiled_layer_against_trace(shape):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from gpuplan.verify.compile_trace import compiler_available, trace_layer

    if not compiler_available():
        pytest.skip("Inductor's CPU back end needs a C++ compiler")
    b, s, h, heads, kv, ffn, lora = shape
    if lora:
        pytest.importorskip("peft")
    t = trace_layer(b, s, h, heads, kv, ffn, compiled=True, lora_rank=lora,
                    lora_targets=LORA_TARGETS if lora else ())
    spec = _spec(h, heads, kv, ffn)
    la = _layer(spec, b, True, lora)
    assert t.input_saved and "x" in dict(la.items)  # the compiled graph keeps its input
    model = la.saved.bytes(b, s) - 2 * h * b * s  # the trace counts the input apart
    err = 100.0 * (model - t.saved_bytes) / t.saved_bytes
    assert abs(err) <= TOLERANCE_PCT, f"saved: model {model:,} vs trace {t.saved_bytes:,} B ({err:+.2f} %)"
    if b * s < h:
        return  # the layer's weight gradients outweigh its activations: not what the backward point describes
    # backward high-water mark above its start (saved set, output and its gradient): the model's point
    (point,) = la.points
    model_bwd = int(point.extra.bytes(b, s)) + _grad_down(spec, lora)
    measured = t.peak_bytes - t.backward_start_bytes
    err = 100.0 * (model_bwd - measured) / measured
    assert abs(err) <= TOLERANCE_PCT, f"backward: model {model_bwd:,} vs trace {measured:,} B ({err:+.2f} %)"
