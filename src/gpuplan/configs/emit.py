"""A planned layout written as a stack's launch config (``gpuplan plan ... --emit FORMAT``).

Each writer turns one layout (``gpuplan.compute.steptime.Layout``) with the plan's workload into the file that stack
launches from, in the keys its own reader in this package reads back (:mod:`gpuplan.configs.megatron`,
:mod:`~gpuplan.configs.deepspeed`, :mod:`~gpuplan.configs.torchtitan`): what a format has no key for is an
:class:`InputError` naming it, never a silently different file. The plan's command then reads the text back and
checks that ``gpuplan train`` gives the same memory as the layout itself (``commands/plan.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gpuplan.errors import InputError

EMIT_FORMATS = ("torchtitan", "deepspeed", "megatron", "accelerate", "vllm")
# the file name a format is written to by default
SUFFIX = {"torchtitan": ".toml", "deepspeed": ".json", "megatron": ".sh", "accelerate": ".yaml", "vllm": ".txt"}
# the --framework values a format's memory semantics can be
FRAMEWORKS = {"torchtitan": ("torch",), "deepspeed": ("deepspeed",), "megatron": ("megatron",),
              "accelerate": ("torch", "deepspeed")}


def stack_for(fmt: str, framework: str) -> str:
    """The stack whose defaults read the format back (accelerate: its FSDP/DDP or DeepSpeed plugin's)."""
    if fmt == "accelerate":
        return "deepspeed" if framework == "deepspeed" else "torch"
    return fmt


@dataclass(frozen=True)
class EmitInput:
    """What a writer needs: the layout and the workload it was planned for."""

    layout: Any  # gpuplan.compute.steptime.Layout
    spec: Any  # gpuplan.model.spec.ModelSpec
    model: str  # MODEL as given to plan (a preset id, or the raw dimensions)
    seq: int
    global_batch: int
    precision: str
    framework: str
    gpus_per_node: int
    summary: str  # one line saying which plan this is


def _refuse(fmt: str, what: str, hint: str | None = None) -> InputError:
    return InputError("--emit", fmt, f"cannot express {what}", hint=hint)


def emit(fmt: str, e: EmitInput) -> str:
    """The launch config text of ``fmt`` for the planned layout; InputError naming what ``fmt`` cannot express."""
    if fmt not in EMIT_FORMATS:
        raise InputError("--emit", fmt, "must be one of " + ", ".join(EMIT_FORMATS))
    if fmt == "vllm":
        raise _refuse("vllm", "a training layout: `vllm serve` launches inference, and plan's layouts are for "
                      "training", hint="use `gpuplan infer MODEL --engine vllm --tp N` for serving")
    want = FRAMEWORKS[fmt]
    if e.framework not in want:
        raise _refuse(fmt, f"a layout planned with --framework {e.framework}: its memory semantics are "
                      f"--framework {' or '.join(want)}", hint=f"plan with --framework {want[0]} to emit {fmt}")
    lay = e.layout
    if e.global_batch % (lay.dp * lay.micro_batch):
        raise _refuse(fmt, f"a global batch {e.global_batch} that is not a multiple of micro-batch {lay.micro_batch} "
                      f"x DP {lay.dp}")
    return {"megatron": _megatron, "deepspeed": _deepspeed, "torchtitan": _torchtitan,
            "accelerate": _accelerate}[fmt](e)


def _microbatches(e: EmitInput) -> int:
    return e.global_batch // (e.layout.dp * e.layout.micro_batch)


# --- Megatron-LM -----------------------------------------------------------------------------------------------

def _megatron_model(e: EmitInput) -> list[str]:
    """Megatron-LM's model arguments for the spec (megatron/training/arguments.py names)."""
    s = e.spec
    unsupported = [(s.mla is not None, "multi-head latent attention"), (s.sliding_window is not None,
                   "sliding-window attention"), (s.attention_sinks, "attention sinks"),
                   (s.parallel_residual, "parallel attention and MLP"), (s.attn_softcap is not None or
                   s.final_softcap is not None, "logit soft-capping"), (s.mtp_layers > 0, "multi-token prediction"),
                   (bool(s.moe and (s.moe.num_shared_experts or not all(s.moe.moe_layers))),
                    "shared experts or dense layers between MoE layers")]
    for bad, what in unsupported:
        if bad:
            raise _refuse("megatron", f"the model {s.name}: its {what} has no Megatron-LM argument gpuplan writes "
                          "and reads back")
    args = [f"--num-layers {s.num_layers}", f"--hidden-size {s.hidden_size}",
            f"--num-attention-heads {s.num_heads}"]
    if s.num_kv_heads != s.num_heads:
        args.append(f"--group-query-attention --num-query-groups {s.num_kv_heads}")
    if s.head_dim * s.num_heads != s.hidden_size:
        args.append(f"--kv-channels {s.head_dim}")
    ffn = s.moe.expert_ffn_size if s.moe else s.ffn_size
    args.append(f"--ffn-hidden-size {ffn}")
    if s.gated_mlp:
        args.append("--swiglu")
    if not s.tie_embeddings:
        args.append("--untie-embeddings-and-output-weights")
    args.append("--normalization " + ("RMSNorm" if s.norm == "rmsnorm" else "LayerNorm"))
    if s.learned_positions:
        args.append("--position-embedding-type learned_absolute")
    else:
        args.append("--position-embedding-type rope")
    args.append(f"--max-position-embeddings {s.max_position}")
    if not (s.qkv_bias or s.o_bias or s.mlp_bias):
        args.append("--disable-bias-linear")
    elif s.qkv_bias and not (s.o_bias or s.mlp_bias):
        args.append("--disable-bias-linear --add-qkv-bias")
    if s.qk_norm:
        args.append("--qk-layernorm")
    if s.moe:
        args.append(f"--num-experts {s.moe.num_experts} --moe-router-topk {s.moe.top_k}")
    if s.vocab_size % e.layout.tp:
        raise _refuse("megatron", f"vocabulary {s.vocab_size:,} with TP {e.layout.tp}: Megatron pads it to a "
                      "multiple of TP, a different model")
    # padding to a multiple of 1 x TP keeps the vocabulary as it is
    args.append(f"--vocab-size {s.vocab_size} --make-vocab-size-divisible-by 1")
    return args


def _megatron(e: EmitInput) -> str:
    lay = e.layout
    if lay.zero not in (0, 1):
        raise _refuse("megatron", f"ZeRO-{lay.zero}: Megatron's distributed optimizer shards optimizer states and "
                      "main parameters (ZeRO-1)", hint="restrict the search with --zero 0,1")
    precision = {"bf16": ["--bf16"], "mixed-bf16": ["--bf16"], "fp16": ["--fp16"], "mixed-fp16": ["--fp16"],
                 "fp32": [], "fp8": ["--bf16", "--fp8-format hybrid"]}.get(e.precision)
    if precision is None:
        raise _refuse("megatron", f"--precision {e.precision}: Megatron has no fp32-parameter autocast mode")
    par = [f"--tensor-model-parallel-size {lay.tp}", f"--pipeline-model-parallel-size {lay.pp}"]
    if lay.vpp > 1:
        par.append(f"--num-layers-per-virtual-pipeline-stage {e.spec.num_layers // (lay.pp * lay.vpp)}")
    if lay.cp > 1:
        par.append(f"--context-parallel-size {lay.cp}")
    if lay.ep > 1:
        par.append(f"--expert-model-parallel-size {lay.ep}")
    if lay.seq_parallel:
        par.append("--sequence-parallel")
    if lay.zero == 1:
        par.append("--use-distributed-optimizer")
    if lay.dp_shard is not None:
        par.append(f"--num-distributed-optimizer-instances {lay.dp // lay.dp_shard}")
    recompute = {"none": [], "selective": ["--recompute-granularity selective"],
                 "full": ["--recompute-granularity full --recompute-method uniform --recompute-num-layers 1"]}
    train = [f"--micro-batch-size {lay.micro_batch}", f"--global-batch-size {e.global_batch}",
             f"--seq-length {e.seq}", "--optimizer adam", "--attention-backend flash", *precision,
             *recompute[lay.recompute]]
    node = min(lay.gpus, e.gpus_per_node)
    if lay.gpus % node:
        raise _refuse("megatron", f"{lay.gpus} GPUs in nodes of {node}")
    lines = [f"# {e.summary}", ("# Megatron-LM arguments written by gpuplan plan --emit megatron; add your data and "
             "tokenizer arguments (--data-path, --tokenizer-type ...) before launching."),
             f"torchrun --nproc_per_node {node} --nnodes {lay.gpus // node} pretrain_gpt.py"]
    groups = [_megatron_model(e), par, train]
    body = [a for g in groups for a in g]
    return "\n".join([lines[0], lines[1], lines[2] + " \\"] + [f"    {a} \\" for a in body[:-1]]
                     + [f"    {body[-1]}"]) + "\n"


# --- DeepSpeed -------------------------------------------------------------------------------------------------

def _deepspeed(e: EmitInput) -> str:
    lay = e.layout
    for n, what in ((lay.tp, "TP"), (lay.pp, "PP"), (lay.cp, "CP"), (lay.ep, "EP")):
        if n > 1:
            raise _refuse("deepspeed", f"{what} {n}: a DeepSpeed JSON holds ZeRO, precision and batch settings; "
                          "model parallelism belongs to the model code and launcher",
                          hint=f"restrict the search with --{what.lower()} 1")
    if lay.recompute != "none":
        raise _refuse("deepspeed", f"--recompute {lay.recompute}: activation checkpointing is switched on in the "
                      "training script, not the DeepSpeed JSON", hint="restrict the search with --recompute none")
    half = {"bf16": "bf16", "mixed-bf16": "bf16", "fp16": "fp16", "mixed-fp16": "fp16", "fp32": None}
    if e.precision not in half:
        raise _refuse("deepspeed", f"--precision {e.precision}")
    cfg: dict[str, Any] = {
        "train_batch_size": e.global_batch,
        "train_micro_batch_size_per_gpu": lay.micro_batch,
        "gradient_accumulation_steps": _microbatches(e),
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-4}},
        "zero_optimization": {"stage": lay.zero},
    }
    if lay.dp_shard is not None:
        cfg["zero_optimization"]["mics_shard_size"] = lay.dp_shard
    if half[e.precision]:
        cfg[half[e.precision]] = {"enabled": True}
    return json.dumps(cfg, indent=2) + "\n"


# --- torchtitan ------------------------------------------------------------------------------------------------

def _torchtitan(e: EmitInput) -> str:
    from gpuplan.configs.torchtitan import PRESETS

    lay = e.layout
    flavor = next(((n, f) for (n, f), p in PRESETS.items() if p == e.spec.name), None)
    if flavor is None:
        known = ", ".join(sorted(set(PRESETS.values())))
        raise _refuse("torchtitan", f"the model {e.spec.name}: a torchtitan job config names one of its model "
                      f"flavors ({known})")
    mp = {"amp-bf16": "bfloat16", "amp-fp16": "float16", "fp32": "float32"}.get(e.precision)
    if mp is None:
        raise _refuse("torchtitan", f"--precision {e.precision}: FSDP2 keeps fp32 sharded parameters and states "
                      "(amp-bf16, amp-fp16 or fp32)", hint="plan with --precision amp-bf16")
    if lay.zero not in (0, 3):
        raise _refuse("torchtitan", f"ZeRO-{lay.zero}: torchtitan shards with FSDP2 (ZeRO-3) or not at all",
                      hint="restrict the search with --zero 0,3")
    if lay.pp > 1:
        raise _refuse("torchtitan", f"PP {lay.pp} with one micro-batch per accumulation step: torchtitan's pipeline "
                      "splits local_batch_size into pipeline_parallel_microbatch_size pieces instead",
                      hint="restrict the search with --pp 1")
    if lay.recompute == "selective":
        raise _refuse("torchtitan", "the plan's selective recomputation (the attention core): torchtitan's "
                      "selective checkpointing is op-level", hint="restrict the search with --recompute none,full")
    if lay.tp > 1 and not lay.seq_parallel:
        raise _refuse("torchtitan", "TP without sequence parallelism: torchtitan's TP always shards the norms")
    if lay.zero == 0:
        replicate, shard = lay.dp, 1
    elif lay.dp_shard is not None:
        replicate, shard = lay.dp // lay.dp_shard, lay.dp_shard
    else:
        replicate, shard = 1, lay.dp
    name, fl = flavor
    lines = [f"# {e.summary}", ("# torchtitan job config written by gpuplan plan --emit torchtitan; add your "
             "dataset, tokenizer and run settings before launching."), "",
             "[model]", f'name = "{name}"', f'flavor = "{fl}"', "",
             "[optimizer]", 'name = "AdamW"', "",
             "[training]", f"local_batch_size = {lay.micro_batch}", f"seq_len = {e.seq}",
             f"global_batch_size = {e.global_batch}", f'mixed_precision_param = "{mp}"', "",
             "[parallelism]", f"data_parallel_replicate_degree = {replicate}",
             f"data_parallel_shard_degree = {shard}", f"tensor_parallel_degree = {lay.tp}",
             f"pipeline_parallel_degree = {lay.pp}", f"context_parallel_degree = {lay.cp}",
             f"expert_parallel_degree = {lay.ep}", "",
             "[activation_checkpoint]", f'mode = "{lay.recompute}"']
    return "\n".join(lines) + "\n"


# --- accelerate ------------------------------------------------------------------------------------------------

def _accelerate(e: EmitInput) -> str:
    """An ``accelerate launch --config_file`` YAML: the FSDP plugin (or DDP) for --framework torch, the DeepSpeed
    plugin for --framework deepspeed. Batch sizes live in the training script, not in this file."""
    lay = e.layout
    for n, what in ((lay.tp, "TP"), (lay.pp, "PP"), (lay.cp, "CP"), (lay.ep, "EP")):
        if n > 1:
            raise _refuse("accelerate", f"{what} {n}: accelerate's FSDP and DeepSpeed plugins are data-parallel",
                          hint=f"restrict the search with --{what.lower()} 1")
    node = min(lay.gpus, e.gpus_per_node)
    note = ("# accelerate config written by gpuplan plan --emit accelerate; the training script sets the micro-batch "
            "and sequence length.")
    head = [f"# {e.summary}", note, "compute_environment: LOCAL_MACHINE"]
    tail = [f"num_machines: {lay.gpus // node}", f"num_processes: {lay.gpus}"]
    if e.framework == "deepspeed":
        if lay.recompute != "none":
            raise _refuse("accelerate", f"--recompute {lay.recompute} with the DeepSpeed plugin: activation "
                          "checkpointing is switched on in the training script", hint="restrict the search with "
                          "--recompute none")
        if lay.dp_shard is not None:
            raise _refuse("accelerate", "DeepSpeed MiCS (hybrid sharding): the DeepSpeed plugin has no key for it")
        mp = {"bf16": "bf16", "mixed-bf16": "bf16", "fp16": "fp16", "mixed-fp16": "fp16", "fp32": "no"}.get(e.precision)
        if mp is None:
            raise _refuse("accelerate", f"--precision {e.precision} with the DeepSpeed plugin")
        body = ["distributed_type: DEEPSPEED", "deepspeed_config:",
                f"  gradient_accumulation_steps: {_microbatches(e)}", f"  zero_stage: {lay.zero}",
                f"mixed_precision: {mp}"]
        return "\n".join(head + body + tail) + "\n"
    mp = {"amp-bf16": "bf16", "amp-fp16": "fp16", "fp32": "no"}.get(e.precision)
    if mp is None:
        raise _refuse("accelerate", f"--precision {e.precision}: accelerate's mixed precision keeps fp32 parameters "
                      "(amp-bf16, amp-fp16 or fp32)", hint="plan with --precision amp-bf16")
    if lay.recompute == "selective":
        raise _refuse("accelerate", "selective recomputation: fsdp_activation_checkpointing checkpoints whole "
                      "layers", hint="restrict the search with --recompute none,full")
    if lay.zero == 1:
        raise _refuse("accelerate", "ZeRO-1 under --framework torch (ZeroRedundancyOptimizer): no accelerate plugin "
                      "has it", hint="restrict the search with --zero 0,2,3")
    if lay.zero == 0:
        if lay.recompute != "none":
            raise _refuse("accelerate", "recomputation with DDP (MULTI_GPU): it is switched on in the training "
                          "script", hint="restrict the search with --recompute none")
        body = ["distributed_type: MULTI_GPU" if lay.gpus > 1 else "distributed_type: 'NO'", f"mixed_precision: {mp}"]
        return "\n".join(head + body + tail) + "\n"
    if lay.dp_shard is not None and lay.dp_shard != node:
        raise _refuse("accelerate", f"hybrid sharding over {lay.dp_shard} ranks: HYBRID_SHARD shards within a node "
                      f"of {node}")
    strategy = {3: "FULL_SHARD", 2: "SHARD_GRAD_OP"}[lay.zero]
    if lay.dp_shard is not None:
        strategy = {3: "HYBRID_SHARD", 2: "HYBRID_SHARD_ZERO2"}[lay.zero]
    body = ["distributed_type: FSDP", "fsdp_config:",
            f"  fsdp_activation_checkpointing: {'true' if lay.recompute == 'full' else 'false'}",
            "  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP", "  fsdp_offload_params: false",
            f"  fsdp_sharding_strategy: {strategy}", "  fsdp_state_dict_type: SHARDED_STATE_DICT",
            f"mixed_precision: {mp}"]
    return "\n".join(head + body + tail) + "\n"
