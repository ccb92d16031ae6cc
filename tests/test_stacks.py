"""Training stacks (``--stack``): the data files, their resolution into ``TrainConfig`` and the stack behaviours
(loss parallel, op-level selective checkpointing, optimizer in backward, paged states, reserved memory)."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from gpuplan import api
from gpuplan.compute.schedules import SCHEDULES
from gpuplan.errors import InputError
from gpuplan.model.hf_config import spec_from_config
from gpuplan.train.config import STACK_FIELDS, TrainConfig
from gpuplan.train.engine import estimate_training
from gpuplan.train.stacks import DEFAULT_KEYS, STEP_KEYS, load_stack, parse_stack, stack_names

LLAMA = dict(model_type="llama", hidden_size=512, intermediate_size=1408, num_hidden_layers=4, num_attention_heads=8,
             num_key_value_heads=4, vocab_size=32000, max_position_embeddings=4096, tie_word_embeddings=False)


def test_every_stack_file_loads_with_known_keys_and_sources():
    names = stack_names()
    assert {"torch", "hf-trainer", "torchtitan", "torchtune", "deepspeed", "megatron", "unsloth", "axolotl",
            "llama-factory", "litgpt"} <= set(names)
    assert set(DEFAULT_KEYS) == set(STACK_FIELDS)
    for name in names:
        stack = load_stack(name)
        assert stack.name == name
        for d in stack.defaults:
            assert (d.key in DEFAULT_KEYS or d.key in STEP_KEYS) and len(d.source) >= 10
            if d.key == "pipeline_schedule":
                assert d.value in SCHEDULES
            if d.key == "attention_impl":
                assert d.value in ("flash", "unfused")
        for s in stack.supports:
            assert s.values and len(s.source) >= 10
    torch = load_stack("torch")
    assert all(torch.default(k) is not None for k in STACK_FIELDS), "torch.toml must give every stack field"


def test_stack_files_ship_as_package_data():
    folder = resources.files("gpuplan").joinpath("data", "stacks")
    assert sorted(p.name for p in folder.iterdir() if p.name.endswith(".toml"))
    pyproject = tomllib.loads((resources.files("gpuplan") / ".." / ".." / "pyproject.toml").read_text()
                              ) if (resources.files("gpuplan") / ".." / ".." / "pyproject.toml").is_file() else None
    if pyproject is not None:
        assert "data/stacks/*.toml" in pyproject["tool"]["setuptools"]["package-data"]["gpuplan"]


@pytest.mark.parametrize("bad", [
    {"name": "x", "title": "x", "version": "1", "defaults": {"nonsense": {"value": 1, "source": "somewhere long"}}},
    {"name": "x", "title": "x", "version": "1", "defaults": {"recompute": {"value": "full"}}},
    {"name": "x", "title": "x", "version": "1", "defaults": {"loss_parallel": {"value": "yes",
                                                                                "source": "somewhere long"}}},
    {"name": "x", "title": "x", "version": "1", "supports": {"parallel": {"values": ["warp"],
                                                                          "source": "somewhere long"}}},
])
def test_a_malformed_stack_file_is_refused(bad):
    with pytest.raises(ValueError):
        parse_stack(bad, "bad.toml")


def test_explicit_options_win_over_the_stack_and_the_stack_implies_its_framework():
    cfg = TrainConfig(stack="torchtitan", gpus=8, zero=3)
    assert (cfg.recompute, cfg.selective_policy, cfg.optimizer_impl, cfg.framework) == ("selective", "op", "fused",
                                                                                       "torch")
    assert dict((k, v) for k, v, _ in cfg.stack_settings)["loss_parallel"] is True
    given = TrainConfig(stack="torchtitan", gpus=8, zero=3, recompute="full", loss_parallel=False)
    assert given.recompute == "full" and given.loss_parallel is False
    assert "recompute" not in {k for k, _, _ in given.stack_settings}
    assert TrainConfig(stack="deepspeed").framework == "deepspeed"
    assert TrainConfig(stack="megatron").framework == "megatron"
    assert TrainConfig().recompute == "none" and TrainConfig().stack_settings == ()
    # changing the stack re-resolves what the previous one filled in, not what was given
    assert cfg.with_(stack="torch").recompute == "none"
    assert given.with_(stack="torch").recompute == "full"


def test_conditional_defaults_follow_method_and_gpu_count():
    full = TrainConfig(stack="torchtune")
    assert full.optimizer == "paged-adamw-8bit" and full.optimizer_in_backward
    lora = TrainConfig(stack="torchtune", method="lora")
    assert lora.optimizer == "adamw" and not lora.optimizer_in_backward
    multi = TrainConfig(stack="torchtune", gpus=2, zero=3)
    assert multi.optimizer == "adamw" and not multi.optimizer_in_backward


@pytest.mark.parametrize("opts, flag", [
    (dict(stack="litgpt", tp=2, gpus=2), "--tp"),
    (dict(stack="unsloth", gpus=4, zero=3), "--zero"),
    (dict(stack="torchtitan", optimizer="adamw-8bit"), "--optimizer"),
    (dict(stack="torchtitan", method="lora"), "--method"),
    (dict(stack="torchtune", pp=2, gpus=2), "--pp"),
])
def test_an_option_the_stack_does_not_implement_is_refused(opts, flag):
    with pytest.raises(InputError) as err:
        TrainConfig(**opts)
    assert err.value.field == flag and opts["stack"] in str(err.value)


def test_cli_refusal_is_exit_2_and_names_stack_and_option(capsys):
    from gpuplan.cli.main import main

    assert main(["train", "llama-3.1-8b", "--stack", "litgpt", "--tp", "2", "--gpus", "2"]) == 2
    err = capsys.readouterr().err
    assert "--tp" in err and "litgpt" in err


def test_assumptions_name_what_the_stack_set_with_its_source():
    r = api.train("llama-3.1-8b", stack="torchtitan", gpus=8, zero=3, seq=4096)
    lines = [a for a in r["assumptions"] if a.startswith("stack torchtitan set")]
    assert any("selective-policy = op" in a and "_save_list" in a for a in lines)
    r = api.train("llama-3.1-8b", stack="torchtitan", gpus=8, zero=3, seq=4096, recompute="full")
    assert not any("set recompute" in a for a in r["assumptions"])


def test_loss_parallel_keeps_a_tp_share_of_the_logits():
    spec = spec_from_config(dict(LLAMA))
    base = dict(batch=2, seq=1024, gpus=4, tp=4, sp=True, precision="bf16")
    off = estimate_training(spec, TrainConfig(**base, loss_parallel=False)).memory
    on = estimate_training(spec, TrainConfig(**base, loss_parallel=True)).memory
    tv = 2 * 1024 * 32000
    assert off.logits_bytes == 12 * tv
    assert on.logits_bytes == 16 * tv // 4  # torch loss_parallel backward: 16·T·V/tp
    assert on.weights_bytes < off.weights_bytes  # embedding and head split over tp


def test_op_level_checkpointing_keeps_what_the_torchtitan_policy_saves():
    """torch.utils.checkpoint with torchtitan's op policy around a transformers Llama layer: the bytes of the
    outputs the policy marks MUST_SAVE plus the layer input match ``op_sac_kept``."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from gpuplan.train.activations import ActContext
    from gpuplan.train.checkpointing import op_sac_kept
    from gpuplan.verify.distributed import measure_op_sac_saved

    b, s = 2, 256
    saved = measure_op_sac_saved(dict(LLAMA), batch=b, seq=s)
    spec = spec_from_config(dict(LLAMA))
    c = ActContext(e=4, r=4, attention="sdpa")
    assert saved["mm_calls"] == 7
    # the CPU runs SDPA's math kernel: the flash kernel's output and logsumexp are not among the saved outputs
    attention_out = (4 * spec.num_heads * spec.head_dim + 4 * spec.num_heads) * b * s
    assert saved["saved_bytes"] == op_sac_kept(spec, c, 0).bytes(b, s) - attention_out
    del torch


def test_op_level_checkpointing_sits_between_none_and_full():
    spec = spec_from_config(dict(LLAMA))
    kw = dict(batch=2, seq=2048, precision="bf16")
    none, op, full = (estimate_training(spec, TrainConfig(**kw, recompute=r, selective_policy=p)).memory
                      for r, p in (("none", None), ("selective", "op"), ("full", None)))
    assert full.activations_bytes < op.activations_bytes < none.activations_bytes


def test_optimizer_in_backward_never_holds_the_full_gradient_set():
    spec = spec_from_config(dict(LLAMA))
    kw = dict(batch=1, seq=512, precision="bf16", optimizer="adamw", optimizer_impl="fused")
    plain = estimate_training(spec, TrainConfig(**kw))
    in_bwd = estimate_training(spec, TrainConfig(**kw, optimizer_in_backward=True))
    largest = 32000 * 512 * 2  # embedding / head gradient
    assert in_bwd.memory.gradients_bytes == largest
    end = {r.memory is plain.memory: {p.name: p.bytes for p in r.phases} for r in (plain, in_bwd)}
    # plain: every gradient (+ the residual gradient the embedding's backward reads); in backward: one gradient
    saved = end[True]["end of backward"] - end[False]["end of backward"]
    assert 0 <= saved - (plain.memory.gradients_bytes - largest) <= 512 * 512 * 2
    assert end[False]["optimizer step"] < end[True]["optimizer step"]
    with pytest.raises(InputError):
        TrainConfig(**kw, optimizer_in_backward=True, grad_accum=2)


def test_paged_states_are_managed_memory_outside_the_allocator():
    spec = spec_from_config(dict(LLAMA))
    kw = dict(batch=1, seq=512, precision="bf16")
    paged = estimate_training(spec, TrainConfig(**kw, optimizer="paged-adamw-8bit")).memory
    plain = estimate_training(spec, TrainConfig(**kw, optimizer="adamw-8bit")).memory
    assert paged.managed_bytes == paged.optimizer_bytes > 0 and plain.managed_bytes == 0
    assert plain.allocated_peak_bytes - paged.allocated_peak_bytes == paged.optimizer_bytes
    assert paged.total_bytes == paged.reserved_bytes + 512 * 2**20 + paged.managed_bytes


def test_reserved_is_allocated_plus_allocator_overheads_and_eager_loading_sizes_the_context():
    r = api.train("llama-3.1-8b", seq=1024)
    m = r["memory"]
    # the reserve is at least the flat 5 %; the segment rule may add the loss region (tests/test_allocator_reserve_rule.py)
    assert m["reserved_bytes"] >= m["allocated_peak_bytes"] + 40 * 2**20 + int(m["allocated_peak_bytes"] * 0.05)
    assert m["total_bytes"] == m["reserved_bytes"] + 512 * 2**20
    flat = api.train("llama-3.1-8b", seq=1024, allocator_reserve=0.05)["memory"]
    assert flat["reserved_bytes"] == m["allocated_peak_bytes"] + 40 * 2**20 + int(m["allocated_peak_bytes"] * 0.05)
    eager = api.train("llama-3.1-8b", seq=1024, cuda_module_loading="eager")["memory"]
    assert eager["total_bytes"] - m["total_bytes"] == (1343 - 512) * 2**20
