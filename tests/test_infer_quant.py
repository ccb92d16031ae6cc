"""Weight formats: real bits per weight from the storage layouts, which tensors stay unquantized, GGUF mixes as
llama.cpp writes them, and pre-quantized configs."""

import pytest

from gpuplan.errors import InputError
from gpuplan.infer import gguf
from gpuplan.infer.quant import (format_from_quantization_config, parse_weights, quantized_matrix_bytes,
                                 weight_bytes)
from gpuplan.model.hf_config import spec_from_config
from gpuplan.model.params import count_params

MISTRAL_7B = dict(model_type="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, vocab_size=32000, max_position_embeddings=32768)
MIXTRAL = dict(model_type="mixtral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=8, vocab_size=32000, num_local_experts=8,
               num_experts_per_tok=2)


@pytest.mark.parametrize("ggml_type,bpw", [
    # sizeof(block_*) / weights per block, ggml/src/ggml-common.h
    ("Q8_0", 8.5), ("Q4_0", 4.5), ("Q5_0", 5.5), ("Q4_1", 5.0), ("Q2_K", 2.625), ("Q3_K", 3.4375),
    ("Q4_K", 4.5), ("Q5_K", 5.5), ("Q6_K", 6.5625), ("IQ4_XS", 4.25), ("MXFP4", 4.25),
])
def test_ggml_bits_per_weight(ggml_type, bpw):
    assert gguf.bits_per_weight(ggml_type) == bpw


def test_mistral_q4_k_m_matches_llama_cpp_log():
    """llama.cpp loading mistral-7b-instruct-v0.1.Q4_K_M.gguf (ipex-llm docs/mddocs/Quickstart/
    llama_cpp_quickstart.zh-CN.md, example output): 'type f32: 65, q4_K: 193, q6_K: 33 tensors', 'file size =
    4.07 GiB (4.83 BPW)', model buffers 4095.05 MiB (GPU) + 70.31 MiB (token_embd, CPU) = 4165.36 MiB."""
    spec = spec_from_config(MISTRAL_7B)
    wb = weight_bytes(spec, parse_weights("q4_k_m"))
    assert wb.gguf_types == {"F32": 65, "Q4_K": 193, "Q6_K": 33}
    assert wb.total / 2**20 == pytest.approx(4095.05 + 70.31, abs=0.02)
    assert 8 * wb.total / count_params(spec).total == pytest.approx(4.83, abs=0.005)
    assert wb.per_tensor["model.embed_tokens.weight"] / 2**20 == pytest.approx(70.31, abs=0.01)


def test_gguf_fallback_for_rows_not_divisible_by_256():
    """Qwen2.5-0.5B's hidden size 896 is not a multiple of QK_K=256: llama.cpp writes Q5_0 instead of Q4_K."""
    assert gguf.fallback_type("Q4_K", 896) == "Q5_0"
    assert gguf.fallback_type("Q6_K", 896) == "Q8_0"
    assert gguf.fallback_type("Q4_K", 4096) == "Q4_K"


def test_gguf_mixtral_attn_v_goes_q8_0():
    """llama-quant.cpp: 'for the 8-expert model, bumping this to Q8_0 trades just ~128MB'."""
    spec = spec_from_config(MIXTRAL)
    ctx = gguf.MixContext("Q4_K_M", 32, 32, 8, 4, False, False)
    assert gguf.choose_type(ctx, "attn_v", 10, 4096, False) == "Q8_0"
    assert gguf.choose_type(ctx, "attn_output", 10, 4096, False) == "Q5_K"
    assert weight_bytes(spec, parse_weights("Q4_K_M")).gguf_types["Q8_0"] == 64  # attn_k and attn_v x 32


def test_gptq_layout_one_matrix():
    """AutoGPTQ 4-bit, group 128, [out=4096, in=11008]: qweight int32 [11008/8, 4096], qzeros int32
    [86, 4096/8], scales fp16 [86, 4096], g_idx int32 [11008]."""
    fmt = parse_weights("gptq")
    expected = (11008 // 8) * 4096 * 4 + 86 * (4096 // 8) * 4 + 86 * 4096 * 2 + 11008 * 4
    assert quantized_matrix_bytes(fmt, 4096, 11008) == expected
    awq = parse_weights("awq")
    assert quantized_matrix_bytes(awq, 4096, 11008) == expected - 11008 * 4


def test_nf4_double_quant_saves_about_0_37_bits():
    """QLoRA (arXiv:2305.14314) section 3: double quantization cuts the constants from 32/64 = 0.5 to
    8/64 + 32/(64*256) = 0.127 bits per parameter."""
    n_out, n_in = 4096, 4096
    single = quantized_matrix_bytes(parse_weights("nf4"), n_out, n_in)
    double = quantized_matrix_bytes(parse_weights("nf4-dq"), n_out, n_in)
    bits = lambda b: 8 * b / (n_out * n_in)  # noqa: E731
    assert bits(single) == pytest.approx(4.5, abs=0.001)
    assert bits(double) == pytest.approx(4 + 8 / 64 + 32 / (64 * 256), abs=0.001)


@pytest.mark.parametrize("fmt", ["fp8", "gptq", "awq", "nf4", "bnb-int8", "int8", "w8a8", "nvfp4", "mxfp4"])
def test_embeddings_head_norms_router_stay_unquantized(fmt):
    spec = spec_from_config(MIXTRAL)
    wb = weight_bytes(spec, parse_weights(fmt))
    assert wb.per_tensor["model.embed_tokens.weight"] == 32000 * 4096 * 2
    assert wb.per_tensor["lm_head.weight"] == 32000 * 4096 * 2
    assert wb.per_tensor["model.layers.0.block_sparse_moe.gate.weight"] == 8 * 4096 * 2
    assert wb.per_tensor["model.norm.weight"] == 4096 * 2
    assert wb.per_tensor["model.layers.0.self_attn.q_proj.weight"] < 4096 * 4096 * 2


def test_hf_bitsandbytes_leaves_fused_moe_experts_in_bf16():
    """transformers 5 replaces only nn.Linear (integrations/bitsandbytes.py); MoE experts are 3-D parameters."""
    spec = spec_from_config(MIXTRAL)
    name = "model.layers.0.block_sparse_moe.experts.0.w1.weight"
    assert weight_bytes(spec, parse_weights("nf4"), engine="hf").per_tensor[name] == 14336 * 4096 * 2
    assert weight_bytes(spec, parse_weights("nf4"), engine="vllm").per_tensor[name] < 14336 * 4096


def test_quantization_config_is_read():
    gptq = format_from_quantization_config({"quant_method": "gptq", "bits": 4, "group_size": 32})
    assert (gptq.family, gptq.bits, gptq.group_size) == ("gptq", 4, 32)
    # DeepSeek-V3 config.json
    ds = format_from_quantization_config({"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                          "weight_block_size": [128, 128]})
    assert (ds.family, ds.block) == ("fp8-block", (128, 128))
    # gpt-oss: MXFP4 experts, everything listed in modules_to_not_convert kept in bf16
    oss = format_from_quantization_config({"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]})
    assert oss.family == "mxfp4" and "lm_head" in oss.skip
    ct = format_from_quantization_config({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "weights": {"num_bits": 8, "type": "float", "strategy": "tensor"},
        "input_activations": {"num_bits": 8, "type": "float", "dynamic": True}}}, "ignore": ["lm_head"]})
    assert ct.family == "fp8"
    with pytest.raises(InputError, match="quant_method"):
        format_from_quantization_config({"quant_method": "exl2"})


def test_skip_modules_from_config_keep_attention_unquantized():
    spec = spec_from_config(MISTRAL_7B)
    fmt = format_from_quantization_config({"quant_method": "mxfp4",
                                           "modules_to_not_convert": ["model.layers.*.self_attn"]})
    wb = weight_bytes(spec, fmt)
    assert wb.per_tensor["model.layers.3.self_attn.q_proj.weight"] == 4096 * 4096 * 2
    assert wb.per_tensor["model.layers.3.mlp.down_proj.weight"] < 4096 * 14336


def test_unknown_format_is_input_error():
    with pytest.raises(InputError, match="unknown weight format") as exc:
        parse_weights("q9_k")
    assert "q4_k_m" in str(exc.value)
    with pytest.raises(InputError, match="group-size"):
        parse_weights("gptq", group_size=0)
