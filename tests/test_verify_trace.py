"""The CPU trace back end: what it measures must equal what can be counted by hand on a tiny model."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from gpuplan.errors import InputError  # noqa: E402
from gpuplan.model.hf_config import spec_from_config  # noqa: E402
from gpuplan.model.tensors import tensor_table  # noqa: E402
from gpuplan.verify import PrefillSetup, TrainSetup, measure_prefill, measure_training  # noqa: E402
from gpuplan.verify.compare import compare_memory, error_pct  # noqa: E402
from gpuplan.verify.patches import cuda_block_bytes, trace_patches  # noqa: E402

TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 256}


def _weights(config: dict, bytes_per_param: int) -> int:
    """Per-tensor 512-byte-rounded bytes from gpuplan's own tensor table (independent of torch)."""
    return sum(cuda_block_bytes(t.numel * bytes_per_param) for t in tensor_table(spec_from_config(config)))


@pytest.fixture(scope="module")
def bf16_step():
    return measure_training(TINY, TrainSetup(batch=2, seq=64))


def test_states_are_counted_tensor_by_tensor(bf16_step):
    w = _weights(TINY, 2)
    mem = bf16_step.memory_dict()
    assert mem["weights_bytes"] == w
    assert mem["gradients_bytes"] == w
    assert mem["optimizer_bytes"] == 2 * w  # AdamW exp_avg + exp_avg_sq in bf16; CPU step counters excluded
    assert bf16_step.params_total == sum(t.numel for t in tensor_table(spec_from_config(TINY)))


def test_foreach_adamw_step_adds_one_parameter_sized_temporary(bf16_step):
    w = _weights(TINY, 2)
    assert bf16_step.phases["optimizer_peak"].optimizer_bytes - bf16_step.phases["optimizer_end"].optimizer_bytes == w
    assert bf16_step.peak_phase in ("backward", "optimizer")
    assert bf16_step.allocated_peak_bytes == max(
        v.total_bytes for k, v in bf16_step.phases.items() if k in ("forward_peak", "backward_peak", "optimizer_peak"))


def test_logits_region_matches_hf_loss(bf16_step):
    """transformers' ForCausalLMLoss: fp32 upcast; log_softmax output (4 B/elem) is saved for backward, plus the
    shifted int64 labels and a few scalars."""
    tv = 2 * 64 * TINY["vocab_size"]
    saved = bf16_step.phases["forward_end"].activations_bytes - bf16_step.phases["before_lm_head"].activations_bytes
    assert 0 <= saved - cuda_block_bytes(4 * tv) <= cuda_block_bytes(8 * 2 * 64) + 4 * 512
    assert bf16_step.memory_dict()["logits_bytes"] >= cuda_block_bytes(2 * tv) + 2 * cuda_block_bytes(4 * tv)


def test_fused_optimizer_has_no_step_temporary_and_recompute_saves_activations():
    fused = measure_training(TINY, TrainSetup(batch=2, seq=64, optimizer_impl="fused"))
    assert fused.phases["optimizer_peak"].optimizer_bytes == fused.phases["optimizer_end"].optimizer_bytes
    full = measure_training(TINY, TrainSetup(batch=2, seq=64, recompute="full"))
    plain = measure_training(TINY, TrainSetup(batch=2, seq=64))
    assert full.memory_dict()["activations_bytes"] < plain.memory_dict()["activations_bytes"] / 2


def test_freeze_trains_only_matching_parameters():
    m = measure_training(TINY, TrainSetup(batch=1, seq=32, method="freeze", trainable=("lm_head.weight",)))
    lm_head = cuda_block_bytes(TINY["vocab_size"] * TINY["hidden_size"] * 2)
    assert m.params_trainable == TINY["vocab_size"] * TINY["hidden_size"]
    assert m.memory_dict()["gradients_bytes"] == lm_head
    assert m.memory_dict()["optimizer_bytes"] == 2 * lm_head


def test_lora_adapters_are_fp32_and_only_they_train():
    pytest.importorskip("peft")
    m = measure_training(TINY, TrainSetup(batch=1, seq=32, method="lora", lora_rank=4, lora_targets=("q_proj",)))
    h, q = TINY["hidden_size"], TINY["hidden_size"]  # q_proj: 64 -> 4 heads x 16
    per_layer = cuda_block_bytes(4 * h * 4) + cuda_block_bytes(q * 4 * 4)
    assert m.params_trainable == 2 * (4 * h + q * 4)
    assert m.memory_dict()["gradients_bytes"] == 2 * per_layer
    assert m.memory_dict()["weights_bytes"] == _weights(TINY, 2) + 2 * per_layer


def test_prefill_and_decode_kv_cache_is_exact():
    m = measure_prefill(TINY, PrefillSetup(batch=3, context=40))
    head_dim = TINY["hidden_size"] // TINY["num_attention_heads"]
    per = cuda_block_bytes(3 * TINY["num_key_value_heads"] * 41 * head_dim * 2)  # prompt + one decoded token
    assert m.memory_dict()["kv_cache_bytes"] == 2 * TINY["num_hidden_layers"] * per
    # last-position logits in bf16 and generate's fp32 copy
    assert m.memory_dict()["logits_bytes"] == cuda_block_bytes(3 * TINY["vocab_size"] * 2) + cuda_block_bytes(
        3 * TINY["vocab_size"] * 4)
    assert m.allocated_peak_bytes > m.memory_dict()["weights_bytes"] + m.memory_dict()["kv_cache_bytes"]


def test_patches_are_undone():
    from transformers import masking_utils

    original = masking_utils.find_packed_sequence_indices
    with trace_patches():
        assert masking_utils.find_packed_sequence_indices is not original
    assert masking_utils.find_packed_sequence_indices is original


def test_bad_options_raise_input_error():
    with pytest.raises(InputError):
        TrainSetup(precision="fp64")
    with pytest.raises(InputError):
        TrainSetup(method="freeze")
    with pytest.raises(InputError):
        measure_training(TINY, TrainSetup(batch=1, seq=8, method="freeze", trainable=("nothing.*",)))


def test_error_sign_and_rows():
    assert error_pct(99, 100) == pytest.approx(-1.0)
    assert error_pct(1, 0) is None
    rows = compare_memory({"weights_bytes": 10, "allocated_peak_bytes": 103}, {"weights_bytes": 10,
                                                                                "allocated_peak_bytes": 100})
    assert [r.key for r in rows] == ["weights_bytes", "allocated_peak_bytes"]
    assert rows[-1].error_pct == pytest.approx(3.0)


def test_help_does_not_import_torch():
    code = ("import sys; from gpuplan.cli.main import build_parser; build_parser().format_help(); "
            "import gpuplan.cli.cmd_verify, gpuplan.verify; sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
