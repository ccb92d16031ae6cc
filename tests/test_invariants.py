"""Invariants of the pure estimating core over the presets and the options, checked with hypothesis (no torch).

- Sharding never costs a rank more: QLoRA's quantized base and every optimizer's states never grow when a
  parallel axis (dp, tp, pp, the ZeRO stage) is added; weights + gradients + optimizer states + master weights never
  grow with more sharding (a higher ZeRO stage, or a larger dp under ZeRO >= 1).
- The allocated peak never falls when the micro-batch or the sequence grows, for a fixed layout.
- KV cache: bytes per sequence = bytes per token × tokens held, for every KV dtype and engine.
- ``time``: GPUs -> days -> GPUs reproduces the GPU count.
- Every number in every command's JSON is finite, every ``*_bytes`` key >= 0.

Derandomized and sized to run in well under a minute on one core; the case counts add up to more than 10,000.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gpuplan import api
from gpuplan.compute.timecost import estimate_run
from gpuplan.errors import InputError
from gpuplan.hardware.catalog import load_catalog
from gpuplan.infer import kv
from gpuplan.model.presets import load_presets
from gpuplan.model.tensors import tensor_table
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training


def _settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


PRESETS = load_presets()


def _estimated(spec) -> bool:
    """The estimates' rules cover it: not DeepSeek Sparse Attention, not an encoder-decoder (both `params` only)."""
    return spec.layout != "t5" and not (spec.mla and spec.mla.index_n_heads)


SPECS = {name: p.spec() for name, p in PRESETS.items() if _estimated(p.spec())}
# Training properties run per-rank estimates many times: presets up to ~1,800 tensors (every dense preset and the
# Mixtral MoE models) keep them fast; the fine-grained MoE presets (4,600 to 45,000 tensors) are left to
# tests/test_parallel_properties.py, which checks them with fewer cases.
TRAIN_MODELS = tuple(sorted(n for n, s in SPECS.items() if len(tensor_table(s)) <= 2000))
ALL_MODELS = tuple(sorted(SPECS))
OPTIMIZERS = ("sgd", "sgdm", "adam", "adamw", "adamw-8bit", "paged-adamw", "paged-adamw-8bit", "adafactor", "lion")
GPUS = tuple(load_catalog())


def _estimate(model: str, **opts):
    """The report, or None where the options are refused for this model (a degree that does not divide it)."""
    try:
        return estimate_training(SPECS[model], TrainConfig(**opts))
    except InputError:
        return None


STATE_KEYS = ("weights_bytes", "gradients_bytes", "optimizer_bytes", "master_weights_bytes")


def _ranks(report) -> list[dict]:
    """Each pipeline stage's rank (``per_rank``), or the one GPU: the model-state keys of every rank. The report's
    own figures are the most loaded rank's by total bytes, which can be another stage once a layout changes."""
    if report.per_rank:
        return [{k: row[k] for k in STATE_KEYS} for row in report.per_rank]
    return [{k: getattr(report.memory, k) for k in STATE_KEYS}]


def _states(row: dict) -> int:
    return sum(row[k] for k in STATE_KEYS)


# --- states under more parallelism -----------------------------------------------------------------------------------

layouts = st.fixed_dictionaries({
    "dp": st.sampled_from([1, 2, 4]),
    "tp": st.sampled_from([1, 2]),
    "pp": st.sampled_from([1, 2]),
    "zero": st.sampled_from([0, 1, 2, 3]),
    "framework": st.sampled_from(["torch", "deepspeed", "megatron"]),
})
AXES = ("dp", "tp", "pp", "zero")


def _grow(layout: dict, axis: str) -> dict:
    bigger = dict(layout)
    bigger[axis] = layout[axis] + 1 if axis == "zero" else 2 * layout[axis]
    return bigger


def _valid(layout: dict) -> bool:
    return layout["zero"] <= 3 and not (layout["framework"] == "megatron" and layout["zero"] > 1)


@_settings(320)
@given(model=st.sampled_from(TRAIN_MODELS), layout=layouts, axis=st.sampled_from(AXES),
       optimizer=st.sampled_from(OPTIMIZERS), method=st.sampled_from(["full", "lora", "qlora"]),
       precision=st.sampled_from(["bf16", "mixed-bf16"]))
def test_states_never_grow_when_an_axis_is_added(model, layout, axis, optimizer, method, precision):
    """QLoRA's NF4 base (its weights) and every optimizer's states per rank, one axis doubled (or ZeRO one
    stage up, with ranks to shard over: see ``test_model_states_never_grow_with_more_sharding``)."""
    bigger = _grow(layout, axis)
    assume(_valid(layout) and _valid(bigger) and (axis != "zero" or layout["dp"] >= 2))
    opts = dict(optimizer=optimizer, method=method, precision=precision, seq=256)
    small = _estimate(model, **layout, **opts)
    large = _estimate(model, **bigger, **opts)
    assume(small is not None and large is not None)
    before, after = _ranks(small), _ranks(large)
    # ZeRO-1 -> 2 under torch moves from ZeroRedundancyOptimizer's whole-parameter partition to FSDP2's per-parameter
    # shards, each state its own 512-byte-rounded allocation (c10 CUDACachingAllocator): up to 512 B a tensor more
    slack = 512 * len(tensor_table(SPECS[model])) if axis == "zero" and layout["framework"] == "torch" else 0
    assert max(r["optimizer_bytes"] for r in after) <= max(r["optimizer_bytes"] for r in before) + slack
    if method == "qlora":
        assert max(r["weights_bytes"] for r in after) <= max(r["weights_bytes"] for r in before)


@_settings(320)
@given(model=st.sampled_from(TRAIN_MODELS), layout=layouts, more=st.sampled_from(["zero", "dp"]),
       optimizer=st.sampled_from(OPTIMIZERS), method=st.sampled_from(["full", "lora", "qlora"]),
       precision=st.sampled_from(["bf16", "mixed-bf16", "amp-bf16", "fp32"]))
def test_model_states_never_grow_with_more_sharding(model, layout, more, optimizer, method, precision):
    """weights + gradients + optimizer states + master weights per GPU. More sharding: ZeRO one stage up with
    at least two data-parallel ranks to shard over (on one rank FSDP2 holds each parameter as its own
    512-byte-rounded allocation, c10 CUDACachingAllocator, so a "sharded" single rank may hold a few hundred
    bytes per tensor more than DDP: no sharding happens there), or dp doubled under ZeRO >= 1."""
    if more == "zero":
        assume(layout["dp"] >= 2)
        bigger = _grow(layout, "zero")
    else:
        assume(layout["zero"] >= 1)
        bigger = _grow(layout, "dp")
    assume(_valid(layout) and _valid(bigger))
    assume(not (method == "qlora" and precision in ("amp-bf16", "fp32")))
    opts = dict(optimizer=optimizer, method=method, precision=precision, seq=256)
    small = _estimate(model, **layout, **opts)
    large = _estimate(model, **bigger, **opts)
    assume(small is not None and large is not None)
    slack = 0
    if layout["framework"] == "torch" and layout["zero"] == 1 and bigger["zero"] == 2:
        # DDP -> FSDP2: FSDP2 shards are rounded to the allocator's 512-byte blocks per tensor
        # (gpuplan.parallel.dataparallel.round_block), DDP's whole parameters are counted unrounded
        slack = 511 * _tensors_per_rank(model, layout)
    for a, b in zip(_ranks(small), _ranks(large)):  # the same pipeline stages: compare stage by stage
        assert _states(b) <= _states(a) + slack


def _tensors_per_rank(model: str, layout: dict) -> int:
    """An upper bound on the tensors one rank holds: the whole table for one stage, split evenly otherwise."""
    return -(-len(tensor_table(SPECS[model])) // layout["pp"]) + 8


# --- the peak against batch and sequence -----------------------------------------------------------------------------

@_settings(220)
@given(model=st.sampled_from(TRAIN_MODELS), layout=layouts, batch=st.integers(1, 4), seq=st.integers(1, 64),
       grow=st.sampled_from(["batch", "seq"]), recompute=st.sampled_from(["none", "selective", "full"]),
       method=st.sampled_from(["full", "lora", "qlora"]))
def test_peak_non_decreasing_in_batch_and_seq(model, layout, batch, seq, grow, recompute, method):
    """The most loaded rank's allocated peak, and every pipeline stage's, for one layout."""
    assume(_valid(layout))
    opts = dict(layout, batch=batch, seq=64 * seq, recompute=recompute, method=method)
    more = dict(opts, **({"batch": batch + 1} if grow == "batch" else {"seq": 64 * seq + 64 * 3}))
    small, large = _estimate(model, **opts), _estimate(model, **more)
    assume(small is not None and large is not None)
    assert large.memory.allocated_peak_bytes >= small.memory.allocated_peak_bytes
    for a, b in zip(small.per_rank, large.per_rank):
        assert b["allocated_peak_bytes"] >= a["allocated_peak_bytes"]


# --- KV cache --------------------------------------------------------------------------------------------------------

KV_CASES = [("hf", d) for d in ("fp32", "bf16", "fp16", "int8", "int4")] + [("vllm", d) for d in
                                                                                ("fp32", "bf16", "fp16", "fp8")]


def _full_layers_held(spec, context: int, engine: str) -> bool:
    """True when every layer holds the whole context (no sliding window trims it at this length, no
    linear-attention layer keeps a constant state instead)."""
    return all(kv.tokens_held(spec, i, context=context, prompt=context, engine=engine, phase="decode") == context
               for i, _ in kv.attention_kinds(spec, range(spec.num_layers))) and spec.linear_attn is None


@_settings(5200)
@given(model=st.sampled_from(ALL_MODELS), case=st.sampled_from(KV_CASES), context=st.integers(1, 1 << 17),
       tp=st.sampled_from([1, 2, 4, 8]), batch=st.integers(1, 8))
def test_kv_bytes_per_sequence_is_per_token_times_context(model, case, context, tp, batch):
    spec = SPECS[model]
    engine, kv_dtype = case
    try:
        per_token = kv.kv_bytes_per_token(spec, kv_dtype=kv_dtype, tp=tp, engine=engine)
    except InputError:  # tp does not divide the heads
        assume(False)
    if spec.linear_attn is not None:  # attention layers hold every token; linear layers a constant state
        try:
            states = sum(map(spec.is_linear_layer, range(spec.num_layers))) * kv.linear_state_bytes(
                spec, engine=engine, tp=tp)
        except InputError:  # tp does not divide the linear-attention heads
            assume(False)
        seq = kv.kv_cache_bytes(spec, batch=1, context=context, kv_dtype=kv_dtype, engine=engine, tp=tp)
        assert seq == math.ceil(per_token * context + states)
        return
    seq = kv.kv_cache_bytes(spec, batch=1, context=context, kv_dtype=kv_dtype, engine=engine, tp=tp)
    many = kv.kv_cache_bytes(spec, batch=batch, context=context, kv_dtype=kv_dtype, engine=engine, tp=tp)
    if _full_layers_held(spec, context, engine):
        assert seq == math.ceil(per_token * context)
        assert many == math.ceil(per_token * context * batch)
    else:  # sliding-window layers keep their window only
        assert seq < per_token * context
        assert many < per_token * context * batch


@_settings(200)
@given(model=st.sampled_from(TRAIN_MODELS), kv_dtype=st.sampled_from(["bf16", "int8", "int4"]),
       context=st.integers(16, 4096))
def test_infer_json_kv_per_sequence_is_per_token_times_context(model, kv_dtype, context):
    """The figures ``gpuplan infer --json`` prints (transformers engine, whole context prefilled)."""
    spec = SPECS[model]
    assume(context <= spec.max_position and _full_layers_held(spec, context, "hf"))
    r = api.infer(model, engine="hf", kv_dtype=kv_dtype, context=context)
    assert r["kv_cache_bytes_per_sequence"] == r["kv_cache_bytes_per_token"] * context


# --- time ------------------------------------------------------------------------------------------------------------

@_settings(3500)
@given(gpus=st.integers(1, 200_000), multiple=st.sampled_from([1, 1, 8]),
       flop=st.floats(1e18, 1e27), peak=st.floats(1e13, 5e15), mfu=st.floats(0.05, 0.8))
def test_time_gpus_days_gpus_round_trip(gpus, multiple, flop, peak, mfu):
    """GPUs (a multiple of --gpu-multiple) -> days -> GPUs gives the same count."""
    n = gpus * multiple
    kw = dict(total_flop=flop, recompute_flop=0.0, flop_per_token=6e9, tokens=10**12, peak_flop_per_s=peak,
              gpu_id=None, mfu=mfu, power_w=700.0)
    days = estimate_run(gpus=n, **kw).days
    assert estimate_run(days=days, gpu_multiple=multiple, **kw).gpus == n


@_settings(40)
@given(model=st.sampled_from(ALL_MODELS), gpus=st.integers(1, 20_000), gpu=st.sampled_from(["h100-sxm", "a100-80gb"]),
       tokens=st.sampled_from(["300B", "1T", "2T", "15T"]))
def test_time_command_round_trip(model, gpus, gpu, tokens):
    """Through the command with its default MFU for the GPU count: the count solved from the days of N GPUs meets
    the deadline and is N where the MFU tier of N is the one that gives it."""
    days = api.time(model, tokens=tokens, gpus=gpus, gpu=gpu)["days"]
    back = api.time(model, tokens=tokens, days=days, gpu=gpu)
    assert back["gpus"] <= gpus
    assert back["days"] <= days * (1 + 1e-9)
    with_mfu = api.time(model, tokens=tokens, gpus=gpus, gpu=gpu, mfu=0.4)["days"]
    assert api.time(model, tokens=tokens, days=with_mfu, gpu=gpu, mfu=0.4)["gpus"] == gpus


# --- every command's JSON --------------------------------------------------------------------------------------------

# signed margins, not sizes: capacity minus total, negative when the run does not fit (docs/interface.md), and
# vLLM's memory left for the KV cache after weights, activations and non-torch memory, negative when the model does
# not fit (vLLM itself logs that figure and refuses to start: "No available memory for the cache blocks")
SIGNED_BYTES = {"headroom_bytes", "available_kv_bytes"}


def _check_json(value, key: str = "") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _check_json(v, str(k))
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_json(v, key)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        assert math.isfinite(value), (key, value)
        if key.endswith("_bytes") and key not in SIGNED_BYTES:
            assert value >= 0, (key, value)


@_settings(120)
@given(model=st.sampled_from(TRAIN_MODELS), layout=layouts, batch=st.integers(1, 4), seq=st.sampled_from([128, 1024]),
       optimizer=st.sampled_from(OPTIMIZERS), method=st.sampled_from(["full", "lora", "qlora"]),
       gpu=st.sampled_from(GPUS + (None,)), explain=st.booleans())
def test_train_json_finite_and_sizes_non_negative(model, layout, batch, seq, optimizer, method, gpu, explain):
    assume(_valid(layout))
    try:
        r = api.train(model, batch=batch, seq=seq, optimizer=optimizer, method=method, gpu=gpu, explain=explain,
                      per_rank=True, **layout)
    except InputError:
        assume(False)
    _check_json(r)


@_settings(120)
@given(model=st.sampled_from(ALL_MODELS), batch=st.integers(1, 16), context=st.integers(16, 8192),
       engine=st.sampled_from(["hf", "vllm"]), kv_dtype=st.sampled_from(["auto", "bf16", "fp8", "int8", "int4"]),
       weights=st.sampled_from(["bf16", "awq", "gptq", "fp8", "nf4"]), tp=st.sampled_from([1, 2]),
       gpu=st.sampled_from(GPUS), explain=st.booleans())
def test_infer_json_finite_and_sizes_non_negative(model, batch, context, engine, kv_dtype, weights, tp, gpu, explain):
    try:
        r = api.infer(model, batch=batch, context=context, engine=engine, kv_dtype=kv_dtype, weights=weights, tp=tp,
                      gpu=gpu, explain=explain)
    except InputError:
        assume(False)
    _check_json(r)


@_settings(100)
@given(model=st.sampled_from(ALL_MODELS), tokens=st.sampled_from(["1B", "300B", "15T"]),
       solve=st.sampled_from(["gpus", "days", "mfu", "none"]), gpu=st.sampled_from(GPUS),
       method=st.sampled_from(["full", "lora"]), mfu=st.sampled_from([None, 0.35]), explain=st.booleans())
def test_time_json_finite_and_sizes_non_negative(model, tokens, solve, gpu, method, mfu, explain):
    given_ = {"gpus": {"days": 30.0}, "days": {"gpus": 256}, "mfu": {"gpus": 256, "days": 30.0}, "none": {}}[solve]
    if solve != "mfu":
        given_["mfu"] = mfu
    try:
        r = api.time(model, tokens=tokens, gpu=gpu, method=method, explain=explain, **given_)
    except InputError:
        assume(False)
    _check_json(r)


@_settings(80)
@given(model=st.sampled_from(ALL_MODELS))
def test_params_json_finite_and_sizes_non_negative(model):
    _check_json(api.params(model))


@_settings(6)
@given(model=st.sampled_from(("llama-3.2-1b", "qwen2.5-0.5b", "gpt2", "llama-3.1-8b")),
       gpus=st.sampled_from([8, 16]))
def test_plan_models_gpus_json_finite_and_sizes_non_negative(model, gpus):
    _check_json(api.plan(model, gpu="h100-sxm", gpus=gpus))
    _check_json(api.models())
    _check_json(api.gpus())
