"""``--bitsandbytes-version``: before 0.43.2 bitsandbytes' MatMul4Bit kept its input for backward
(gpuplan.versions.BNB_MATMUL4BIT_KEEPS_INPUT), so a QLoRA step keeps the inputs of its frozen 4-bit linears that a
plain frozen ``F.linear`` would not."""

from __future__ import annotations

import pytest

from gpuplan.cli.main import main
from gpuplan.errors import InputError
from gpuplan.model.hf_config import spec_from_config
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training
from gpuplan.versions import BNB_MATMUL4BIT_KEEPS_INPUT, bitsandbytes_release

LLAMA = dict(model_type="llama", hidden_size=512, intermediate_size=1376, num_hidden_layers=4,
             num_attention_heads=8, num_key_value_heads=8, vocab_size=8000, max_position_embeddings=4096,
             tie_word_embeddings=False)


def _acts(version: str | None, recompute: str = "none") -> int:
    cfg = TrainConfig(batch=2, seq=256, precision="bf16", method="qlora", lora_rank=8,
                      lora_targets=("q_proj", "v_proj"), recompute=recompute, bitsandbytes_version=version)
    return estimate_training(spec_from_config(dict(LLAMA)), cfg).memory.activations_bytes


@pytest.mark.parametrize(("text", "keeps"), [("0.41.1", True), ("0.43.1", True), ("0.43.2", False),
                                             ("0.45.0", False), ("1.0", False)])
def test_the_rule_holds_before_0_43_2(text, keeps):
    assert BNB_MATMUL4BIT_KEEPS_INPUT.holds(bitsandbytes_release(text)) is keeps


def test_old_releases_keep_the_inputs_of_the_frozen_quantized_linears():
    """LoRA on q and v (fp32 adapters keep their own fp32 copy of the input): the bf16 input of q/k/v, the
    post-attention norm output (gate/up) and the SwiGLU product (down) are kept in addition, per layer; o_proj
    reads the attention output SDPA keeps anyway. The first layer's q/k/v input needs no gradient (the frozen
    embedding's output), so MatMul4Bit keeps nothing there (``any(ctx.needs_input_grad[:2])`` is false)."""
    tokens, h, f, layers = 2 * 256, 512, 1376, 4
    extra = _acts("0.41.1") - _acts("0.45.0")
    assert extra == layers * tokens * 2 * (h + h + f) - tokens * 2 * h
    assert _acts(None) == _acts("0.45.0")


def test_under_full_recompute_only_the_rebuilt_layer_keeps_them():
    full_old, full_new = _acts("0.41.1", "full"), _acts("0.45.0", "full")
    assert full_old == full_new  # the kept set is the layer inputs in both
    cfg = dict(batch=2, seq=256, precision="bf16", method="qlora", lora_rank=8, lora_targets=("q_proj", "v_proj"),
               recompute="full")
    phases = {}
    for v in ("0.41.1", "0.45.0"):
        report = estimate_training(spec_from_config(dict(LLAMA)), TrainConfig(bitsandbytes_version=v, **cfg))
        phases[v] = {p.name: p.bytes for p in report.phases}
    rebuilt = "forward (recomputed layer)"
    assert phases["0.41.1"][rebuilt] - phases["0.45.0"][rebuilt] == 512 * 2 * (512 + 512 + 1376)


@pytest.mark.parametrize("argv", [
    ["train", "llama-2-7b-hf", "--method", "lora", "--bitsandbytes-version", "0.41.1"],
    ["train", "llama-2-7b-hf", "--method", "qlora", "--qlora-base", "gptq", "--bitsandbytes-version", "0.41.1"],
    ["train", "llama-3.1-8b", "--method", "qlora", "--stack", "torchtune", "--bitsandbytes-version", "0.41.1"],
    ["train", "llama-2-7b-hf", "--method", "qlora", "--bitsandbytes-version", "latest"],
])
def test_refused_where_it_does_not_apply(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--bitsandbytes-version" in err and "Traceback" not in err


def test_named_in_the_assumptions(capsys):
    assert main(["train", "llama-2-7b-hf", "--method", "qlora", "--bitsandbytes-version", "0.41.1"]) == 0
    assert "MatMul4Bit before 0.43.2" in capsys.readouterr().out
    with pytest.raises(InputError):
        bitsandbytes_release("x.y")
