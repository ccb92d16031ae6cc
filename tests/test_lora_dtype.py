"""`--lora-dtype`: LoRA adapters in fp32 (PEFT) or in the model's dtype (torchtune, litgpt), set by the stack."""

from __future__ import annotations

from gpuplan import api
from gpuplan.cli.main import main
from gpuplan.model.resolve import resolve_model
from gpuplan.train.stacks import load_stack

ARGS = dict(method="lora", lora_rank=16, batch=1, seq=512, precision="bf16")


def _lora_params():
    spec = resolve_model("llama-3.1-8b")
    # rank 16 on q, k, v, o, gate, up, down of every layer: r x (in + out) per projection
    h, kv, f, L = spec.hidden_size, spec.kv_dim, spec.ffn_size, spec.num_layers
    return 16 * L * ((h + h) * 2 + (h + kv) * 2 + (h + f) * 3)


def test_model_dtype_adapters_are_half_the_fp32_ones():
    fp32 = api.train("llama-3.1-8b", **ARGS, lora_dtype="fp32")["memory"]
    half = api.train("llama-3.1-8b", **ARGS, lora_dtype="model")["memory"]
    n = _lora_params()
    assert fp32["weights_bytes"] - half["weights_bytes"] == 2 * n
    assert fp32["gradients_bytes"] - half["gradients_bytes"] == 2 * n


def test_stacks_set_it_with_a_source_and_the_option_wins():
    for name, want in (("torchtune", "model"), ("litgpt", "model"), ("torch", "fp32")):
        d = load_stack(name).default("lora_dtype", "lora")
        assert d is not None and d.value == want and d.source.strip()
    tt = api.train("llama-3.1-8b", **ARGS, stack="torchtune", optimizer="adamw")["memory"]
    tt32 = api.train("llama-3.1-8b", **ARGS, stack="torchtune", optimizer="adamw", lora_dtype="fp32")["memory"]
    plain = api.train("llama-3.1-8b", **ARGS, lora_dtype="model")["memory"]
    assert tt["weights_bytes"] == plain["weights_bytes"] < tt32["weights_bytes"]


def test_bad_value_is_a_clear_error(capsys):
    assert main(["train", "llama-3.1-8b", "--method", "lora", "--lora-dtype", "fp8"]) == 2
    err = capsys.readouterr().err
    assert "--lora-dtype" in err and "Traceback" not in err
