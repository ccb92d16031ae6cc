"""FSDP2 and tensor-parallel per-rank traces count exactly the shards PyTorch allocates.

The expected bytes come from gpuplan's own tensor table (torch-free) and FSDP2's documented layout: each
parameter is split on dim 0 into ``world`` chunks of ``ceil(dim0 / world)`` rows (the last ones padded,
torch/distributed/fsdp/_fully_shard/_fsdp_param.py), every chunk is its own storage, and the CUDA allocator
rounds each storage up to 512 bytes.
"""

import math

import pytest

from gpuplan.errors import InputError
from gpuplan.model.hf_config import spec_from_config
from gpuplan.model.tensors import tensor_table

pytest.importorskip("torch")
pytest.importorskip("transformers")

from gpuplan.verify.distributed import measure_fsdp2_step, measure_tp_step  # noqa: E402

# Dimensions chosen so that FSDP2 must pad and the padding shows after 512-byte rounding: vocab 1001 and
# ffn 170 are not multiples of 4, and a bf16 row of 512 elements is two allocator blocks.
CONFIG = dict(model_type="llama", hidden_size=512, intermediate_size=170, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, vocab_size=1001, max_position_embeddings=256)
WORLD = 4
BF16_BYTES = 2


def _block(nbytes: int) -> int:
    return math.ceil(nbytes / 512) * 512


def _shard_numel(shape: tuple[int, ...], world: int) -> int:
    return math.ceil(shape[0] / world) * math.prod(shape[1:])


@pytest.fixture(scope="module")
def fsdp_rank0() -> dict:
    return measure_fsdp2_step(CONFIG, world_size=WORLD, rank=0, batch=2, seq=16)


def test_sharded_params_are_padded_quarters(fsdp_rank0):
    tensors = tensor_table(spec_from_config(CONFIG))
    expected = sum(_block(_shard_numel(t.shape, WORLD) * BF16_BYTES) for t in tensors)
    unpadded = sum(_block(math.ceil(t.numel * BF16_BYTES / WORLD)) for t in tensors)
    assert expected > unpadded  # the config really exercises the padding
    assert fsdp_rank0["start"]["sharded_params_bytes"] == expected
    assert fsdp_rank0["at_peak"]["sharded_params_bytes"] == expected
    assert fsdp_rank0["param_numel"] == sum(t.numel for t in tensors)
    assert fsdp_rank0["sharded_param_numel"] == sum(_shard_numel(t.shape, WORLD) for t in tensors)


def test_last_rank_keeps_padded_storage(fsdp_rank0):
    """The last rank holds fewer real rows (1001 = 3 x 251 + 248) but the same padded storage."""
    last = measure_fsdp2_step(CONFIG, world_size=WORLD, rank=WORLD - 1, batch=2, seq=16)
    assert last["sharded_param_numel"] < fsdp_rank0["sharded_param_numel"]
    assert last["start"]["sharded_params_bytes"] == fsdp_rank0["start"]["sharded_params_bytes"]
    # AdamW states are zeros_like(the unpadded local shard): the last rank holds less
    assert last["start"]["optimizer_states_bytes"] < fsdp_rank0["start"]["optimizer_states_bytes"]


def test_sharded_grads_are_one_flat_buffer_per_group(fsdp_rank0):
    """The reduce-scatter output of each FSDP group is one storage holding all its padded gradient shards."""
    tensors = tensor_table(spec_from_config(CONFIG))
    groups: dict[object, int] = {}
    for t in tensors:
        groups[t.layer] = groups.get(t.layer, 0) + _shard_numel(t.shape, WORLD) * BF16_BYTES
    expected = sum(_block(n) for n in groups.values())
    assert fsdp_rank0["phases"]["optimizer"]["breakdown"]["sharded_grads_bytes"] == expected
    assert fsdp_rank0["end"]["sharded_grads_bytes"] == 0  # zero_grad(set_to_none=True)


def test_all_gather_buffer_is_the_padded_group(fsdp_rank0):
    tensors = tensor_table(spec_from_config(CONFIG))
    layer0 = sum(_shard_numel(t.shape, WORLD) * WORLD * BF16_BYTES for t in tensors if t.layer == 0)
    assert fsdp_rank0["group_all_gather_bytes"]["model.layers.0"] == _block(layer0)
    # the root group stays unsharded from its forward to the end of backward
    assert "root" in fsdp_rank0["phases"]["backward"]["unsharded_groups"]


def test_peak_adds_up(fsdp_rank0):
    at_peak = fsdp_rank0["at_peak"]
    assert fsdp_rank0["peak_bytes"] == sum(at_peak.values())
    assert fsdp_rank0["peak_bytes"] == max(p["peak_bytes"] for p in fsdp_rank0["phases"].values())
    # AdamW: two states per shard, same dtype and rounding as the shards (step counters live on the host)
    assert fsdp_rank0["start"]["optimizer_states_bytes"] == 2 * fsdp_rank0["start"]["sharded_params_bytes"]


def test_fp32_shards_with_bf16_compute():
    """MixedPrecisionPolicy(param_dtype=bf16): fp32 shards, gradients and states; bf16 all-gather buffers."""
    result = measure_fsdp2_step(CONFIG, world_size=WORLD, batch=1, seq=16, shard_dtype="fp32",
                                param_dtype="bf16", reduce_dtype="fp32")
    tensors = tensor_table(spec_from_config(CONFIG))
    shards = sum(_block(_shard_numel(t.shape, WORLD) * 4) for t in tensors)
    assert result["start"]["sharded_params_bytes"] == shards
    assert result["start"]["optimizer_states_bytes"] == 2 * shards
    layer0 = sum(_shard_numel(t.shape, WORLD) * WORLD * BF16_BYTES for t in tensors if t.layer == 0)
    assert result["group_all_gather_bytes"]["model.layers.0"] == _block(layer0)


def test_tp_splits_projections_only():
    cfg = dict(CONFIG, num_key_value_heads=4, intermediate_size=172)
    result = measure_tp_step(cfg, world_size=WORLD, batch=1, seq=16)
    tensors = tensor_table(spec_from_config(cfg))
    split = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    expected = sum(_block(t.numel // (WORLD if t.module in split else 1) * BF16_BYTES) for t in tensors)
    assert result["start"]["params_bytes"] == expected


def test_bad_layouts_are_refused():
    with pytest.raises(InputError, match="rank"):
        measure_fsdp2_step(CONFIG, world_size=4, rank=4, batch=1, seq=8)
    with pytest.raises(InputError, match="num_key_value_heads"):
        measure_tp_step(CONFIG, world_size=4, batch=1, seq=8)
    with pytest.raises(InputError, match="param_dtype"):
        measure_fsdp2_step(CONFIG, world_size=4, batch=1, seq=8, param_dtype="int8")


def test_phases_follow_program_order():
    """Between ``loss.backward()`` returning and ``optimizer.step()`` every gradient is alive and no module runs;
    that moment belongs to backward (as in ``gpuplan.verify.trace``), not to forward."""
    cfg = dict(CONFIG, num_key_value_heads=4, intermediate_size=172)
    result = measure_tp_step(cfg, world_size=2, batch=1, seq=16)
    assert result["phases"]["forward"]["breakdown"]["grads_bytes"] == 0
    assert result["phases"]["backward"]["peak_bytes"] >= result["backward_end"]["total_bytes"]


def test_alive_accounts_for_every_byte_at_each_peak():
    result = measure_fsdp2_step(CONFIG, world_size=WORLD, batch=2, seq=16, reshard_after_forward=False, alive=True)
    for phase, rec in result["phases"].items():
        assert sum(a["bytes"] for a in rec["alive"]) == rec["peak_bytes"], phase
    forward = result["phases"]["forward"]
    # tiny activations: the forward peaks at the top layer's pre-forward, where layer 0's all-gather result (kept
    # until the next copy-out) and layer 1's are both alive
    assert forward["module"].endswith("model.layers.1")
    gathers = sorted((a["module"], a["bytes"]) for a in forward["alive"] if a["category"] == "All Gather")
    assert gathers == [(f"model.layers.{i}", result["group_all_gather_bytes"][f"model.layers.{i}"]) for i in (0, 1)]
