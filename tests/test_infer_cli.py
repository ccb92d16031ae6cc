"""`gpuplan infer`: JSON per INTERFACE.md, exit codes, and the source documents' inference examples."""

import json

import pytest

from gpuplan.cli.main import main
from gpuplan.infer.kv import kv_bytes_per_token
from gpuplan.infer.quant import parse_weights, weight_bytes
from gpuplan.model.hf_config import spec_from_config
from gpuplan.model.resolve import spec_from_dims
from gpuplan.report import MEMORY_KEYS

# Qwen/Qwen2.5-7B-Instruct config.json (the model of source document 002, section 7)
QWEN25_7B_INSTRUCT = {
    "architectures": ["Qwen2ForCausalLM"], "hidden_act": "silu", "hidden_size": 3584, "intermediate_size": 18944,
    "max_position_embeddings": 32768, "max_window_layers": 28, "model_type": "qwen2", "num_attention_heads": 28,
    "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "sliding_window": 131072, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_sliding_window": False,
    "vocab_size": 152064,
}


@pytest.fixture
def qwen(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(QWEN25_7B_INSTRUCT))
    return str(path)


def run_json(argv, capsys):
    rc = main(argv + ["--json"])
    out = capsys.readouterr().out
    return rc, json.loads(out)


def test_json_keys(qwen, capsys):
    rc, data = run_json(["infer", qwen, "--batch", "16", "--context", "32768", "--gpu", "h100-sxm"], capsys)
    assert rc == 0
    assert set(data["memory"]) == set(MEMORY_KEYS)
    assert all(isinstance(v, int) for v in data["memory"].values())
    assert data["kv_cache_bytes_per_token"] == 57344
    assert isinstance(data["max_batch"], int) and data["fits"] in (True, False)
    assert data["params"]["trainable"] == 0
    assert isinstance(data["assumptions"], list) and isinstance(data["warnings"], list)


def test_no_gpu_means_fits_null_and_no_max_batch(qwen, capsys):
    rc, data = run_json(["infer", qwen], capsys)
    assert rc == 0 and data["fits"] is None and "max_batch" not in data


def test_check_exit_3_when_it_does_not_fit(qwen, capsys):
    assert main(["infer", qwen, "--batch", "64", "--context", "32768", "--gpu", "h100-sxm", "--check"]) == 3
    assert main(["infer", qwen, "--batch", "1", "--context", "4096", "--gpu", "h100-sxm", "--check"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("argv,needle", [
    (["--context", "40000"], "max_position_embeddings=32768"),
    (["--tp", "3"], "must divide the number of attention heads"),
    (["--weights", "q3_k_x"], "unknown weight format"),
    (["--kv-dtype", "int4", "--engine", "vllm", "--gpu", "h100-sxm"], "fp8"),
    (["--engine", "tgi"], "must be one of hf, vllm, sglang, trtllm"),
])
def test_bad_input_exit_2(qwen, capsys, argv, needle):
    assert main(["infer", qwen, *argv]) == 2
    assert needle in capsys.readouterr().err


def test_rope_scaling_option_allows_longer_context(qwen, capsys):
    rc, data = run_json(["infer", qwen, "--context", "131072", "--rope-scaling", "4"], capsys)
    assert rc == 0 and data["kv_cache_bytes_per_sequence"] == 131072 * 57344


def test_quantization_config_read_from_config(tmp_path, capsys):
    cfg = dict(QWEN25_7B_INSTRUCT, quantization_config={"quant_method": "awq", "bits": 4, "group_size": 128,
                                                        "zero_point": True, "version": "gemm"})
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    rc, data = run_json(["infer", str(tmp_path)], capsys)
    assert rc == 0 and data["weights"]["format"] == "awq" and data["weights"]["group_size"] == 128


def test_vllm_text_output(qwen, capsys):
    assert main(["infer", qwen, "--engine", "vllm", "--gpu", "h100-sxm", "--context", "32768", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "KV blocks of 16 tokens" in out and "num_gpu_blocks" in out


# --- Source documents' examples (docs/inference.md reproduces them with the commands) ---

def test_seed_002_qwen_kv_formula_with_the_documents_dimensions():
    """002 section 7 uses 32 layers and 8 KV heads: 2 x 16 x 32768 x 8 x 128 x 32 x 2 bytes. That product is
    68.7 GB (64 GiB); the document prints 32.8 GB, half of its own formula."""
    seed_dims = spec_from_dims(layers=32, hidden=4096, heads=32, kv_heads=8, ffn=11008, vocab=152000)
    per_token = kv_bytes_per_token(seed_dims, kv_dtype="fp16")
    assert 16 * 32768 * per_token == 2 * 16 * 32768 * 8 * 128 * 32 * 2 == 68_719_476_736 == 64 * 2**30


def test_seed_002_qwen_real_config():
    """The real Qwen2.5-7B has 28 layers and 4 KV heads: 57344 bytes per token, 28 GiB at B=16 x 32768; the
    weights are 7.62B parameters x 2 = 15.23 GB (the document's 15.2 GB)."""
    spec = spec_from_config(QWEN25_7B_INSTRUCT)
    assert kv_bytes_per_token(spec, kv_dtype="bf16") == 57344
    assert 16 * 32768 * 57344 == 28 * 2**30
    assert weight_bytes(spec, parse_weights("bf16")).total == pytest.approx(15.2e9, rel=0.005)


def test_seed_003_70b_rule_of_thumb():
    """003: inference needs parameters x precision, 70B x 2 bytes = 140 GB. Llama-2-70B in bf16 is 68.98B
    parameters -> 137.9 GB of weights (1.5 % under the rule), and the KV formula of 003 (2 x B x S x L x H x b,
    i.e. multi-head attention) overstates its GQA cache 8x."""
    spec = spec_from_config(dict(model_type="llama", hidden_size=8192, intermediate_size=28672,
                                 num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8,
                                 vocab_size=32000))
    assert weight_bytes(spec, parse_weights("bf16")).total == pytest.approx(140e9, rel=0.02)
    doc_formula = 2 * 1 * 1 * 80 * 8192 * 2
    assert doc_formula == 8 * kv_bytes_per_token(spec, kv_dtype="bf16")


def test_eager_module_loading_sizes_the_default_context(qwen, capsys):
    """Older PyTorch loads every kernel with the context (1343 MiB against 512 MiB lazily); an explicit
    --cuda-context-gib still wins."""
    lazy = run_json(["infer", qwen, "--context", "64"], capsys)[1]["memory"]
    eager = run_json(["infer", qwen, "--context", "64", "--cuda-module-loading", "eager"], capsys)[1]["memory"]
    given = run_json(["infer", qwen, "--context", "64", "--cuda-module-loading", "eager", "--cuda-context-gib",
                      "0.5"], capsys)[1]["memory"]
    assert eager["total_bytes"] - lazy["total_bytes"] == (1343 - 512) * 2**20
    assert given["total_bytes"] == lazy["total_bytes"]
    assert eager["allocated_peak_bytes"] == lazy["allocated_peak_bytes"]
