"""Hugging Face accelerate config YAML (``accelerate config`` / ``accelerate launch --config_file``), next to a
named model: ``gpuplan train MODEL --from accelerate_config.yaml``.

Keys follow accelerate's ``ClusterConfig`` (accelerate/commands/config/config_args.py, accelerate 1.x) and its
plugins: ``fsdp_config`` (accelerate/utils/dataclasses.py ``FullyShardedDataParallelPlugin``: FULL_SHARD = ZeRO-3,
SHARD_GRAD_OP = ZeRO-2, NO_SHARD = DDP, HYBRID_* = sharded within a node and replicated across nodes; with
``fsdp_version: 2``, ``fsdp_reshard_after_forward`` true/false is FULL_SHARD/SHARD_GRAD_OP) and ``deepspeed_config``
(``DeepSpeedPlugin``: zero_stage, offload devices, gradient_accumulation_steps). ``mixed_precision`` under FSDP or
DDP is autocast over fp32 parameters (gpuplan ``amp-*``); under DeepSpeed it is DeepSpeed's bf16/fp16 engine
(``mixed-*``). The file holds no batch size or model: they come from the training script (the options).
"""

from __future__ import annotations

from typing import Any

from gpuplan.configs.checks import Keys
from gpuplan.configs.report import ConfigReport

SOURCE = "accelerate config_args.py ClusterConfig"
_TOP_IGNORED = {
    "compute_environment": "where it runs (LOCAL_MACHINE, AMAZON_SAGEMAKER): no memory effect",
    "machine_rank": "this machine's rank: no memory effect",
    "main_process_ip": "rendezvous address: no memory effect",
    "main_process_port": "rendezvous port: no memory effect",
    "main_training_function": "the script's entry point: no memory effect",
    "rdzv_backend": "rendezvous: no memory effect",
    "same_network": "networking: no memory effect",
    "gpu_ids": "which devices: no memory effect",
    "use_cpu": "false: runs on GPUs",
    "debug": "debug checks: no memory effect",
    "downcast_bf16": "TPU only",
    "enable_cpu_affinity": "CPU affinity: no memory effect",
    "tpu_env": "TPU only", "tpu_use_cluster": "TPU only", "tpu_use_sudo": "TPU only",
    "dynamo_config": "torch.compile: gpuplan estimates eager-mode memory",
    "num_machines": "read with num_processes (GPUs per node for HYBRID_SHARD)",
}
_KNOWN = {"distributed_type", "mixed_precision", "num_processes", "fsdp_config", "deepspeed_config",
          *_TOP_IGNORED}
_FSDP_IGNORED = {
    "fsdp_auto_wrap_policy": "wrapping unit: gpuplan shards per transformer layer",
    "fsdp_transformer_layer_cls_to_wrap": "wrapping unit: gpuplan shards per transformer layer",
    "fsdp_min_num_params": "wrapping unit: gpuplan shards per transformer layer",
    "fsdp_backward_prefetch": "prefetch order: one layer ahead, as modelled",
    "fsdp_forward_prefetch": "prefetch order: one layer ahead, as modelled",
    "fsdp_state_dict_type": "checkpoint format: between steps",
    "fsdp_use_orig_params": "parameter views: no memory effect",
    "fsdp_cpu_ram_efficient_loading": "model loading: before training",
    "fsdp_sync_module_states": "model loading: before training",
    "fsdp_version": "read with the sharding strategy",
}
_FSDP_KEYS = {"fsdp_sharding_strategy", "fsdp_reshard_after_forward", "fsdp_offload_params",
              "fsdp_activation_checkpointing", *_FSDP_IGNORED}
_DS_IGNORED = {
    "zero3_init_flag": "model construction sharded at init: before training",
    "zero3_save_16bit_model": "checkpoint saving only",
    "gradient_clipping": "clipping: no memory of its own",
    "deepspeed_multinode_launcher": "launcher: no memory effect",
    "deepspeed_hostfile": "launcher: no memory effect",
}
_DS_KEYS = {"zero_stage", "offload_optimizer_device", "offload_param_device", "gradient_accumulation_steps",
            "deepspeed_config_file", *_DS_IGNORED}
_SHARDING = {"FULL_SHARD": 3, "SHARD_GRAD_OP": 2, "NO_SHARD": 0, "HYBRID_SHARD": 3, "HYBRID_SHARD_ZERO2": 2,
             "1": 3, "2": 2, "3": 0, "4": 3, "5": 2}  # accelerate also writes the enum's number


def read(data: dict[str, Any], name: str, report: ConfigReport) -> None:
    """Map an accelerate config (already parsed) into ``report``."""
    k = Keys(name)
    k.unknown("", data, _KNOWN, SOURCE)
    kind = k.str("distributed_type", data.get("distributed_type", "NO"),
                 ("NO", "MULTI_GPU", "FSDP", "DEEPSPEED"))
    stack = "deepspeed" if kind == "DEEPSPEED" else "torch"
    report.set("(file)", "stack", stack, f"an accelerate config with distributed_type {kind}")
    report.set("distributed_type", "framework", "deepspeed" if kind == "DEEPSPEED" else "torch",
               {"NO": "one process", "MULTI_GPU": "DistributedDataParallel", "FSDP": "FullyShardedDataParallel",
                "DEEPSPEED": "the DeepSpeed engine"}[kind])
    procs = k.int("num_processes", data["num_processes"]) if "num_processes" in data else 1
    machines = k.int("num_machines", data["num_machines"]) if "num_machines" in data else 1
    if "num_processes" in data:
        report.set("num_processes", "gpus", procs)
    mp = k.str("mixed_precision", data.get("mixed_precision", "no"), ("no", "bf16", "fp16", "fp8"))
    if mp == "fp8":
        report.set("mixed_precision", "precision", "fp8", "Transformer Engine / torchao fp8 linears")
    elif mp == "no":
        report.set("mixed_precision" if "mixed_precision" in data else "mixed_precision (accelerate default no)",
                   "precision", "fp32")
    else:
        report.set("mixed_precision", "precision", ("mixed-" if kind == "DEEPSPEED" else "amp-") + mp,
                   "DeepSpeed's half engine: half weights, fp32 master and states" if kind == "DEEPSPEED"
                   else "autocast over fp32 parameters and states")
    if kind in ("NO", "MULTI_GPU"):
        report.set("distributed_type", "zero", 0, "no sharding")
    for key, owner in (("fsdp_config", "FSDP"), ("deepspeed_config", "DEEPSPEED")):
        if key in data and kind != owner:
            for sub in k.table(key, data[key]) or {"": None}:
                report.ignore(f"{key}.{sub}".rstrip("."), f"used only with distributed_type {owner}")
    if kind == "FSDP":
        _fsdp(k, k.table("fsdp_config", data.get("fsdp_config", {})), procs, machines, report)
    if kind == "DEEPSPEED":
        _deepspeed(k, k.table("deepspeed_config", data.get("deepspeed_config", {})), report)
    for key in data:
        if key in _TOP_IGNORED and key not in set(report.keys()):
            report.ignore(key, _TOP_IGNORED[key])


def _fsdp(k: Keys, f: dict[str, Any], procs: int, machines: int, report: ConfigReport) -> None:
    k.unknown("fsdp_config", f, _FSDP_KEYS, "FullyShardedDataParallelPlugin")
    v2 = str(f.get("fsdp_version", 1)) == "2"
    if v2 and "fsdp_reshard_after_forward" in f and not isinstance(f["fsdp_reshard_after_forward"], str):
        on = k.bool("fsdp_config.fsdp_reshard_after_forward", f["fsdp_reshard_after_forward"])
        report.set("fsdp_config.fsdp_reshard_after_forward", "zero", 3 if on else 2,
                   "FSDP2: parameters resharded after forward" if on else "FSDP2 without resharding (ZeRO-2)")
        strategy = None
    else:
        key = "fsdp_config.fsdp_reshard_after_forward" if "fsdp_reshard_after_forward" in f else \
            "fsdp_config.fsdp_sharding_strategy"
        raw = f.get("fsdp_reshard_after_forward", f.get("fsdp_sharding_strategy", "FULL_SHARD"))
        strategy = k.str(key, str(raw), tuple(_SHARDING))
        strategy = {"1": "FULL_SHARD", "2": "SHARD_GRAD_OP", "3": "NO_SHARD", "4": "HYBRID_SHARD",
                    "5": "HYBRID_SHARD_ZERO2"}.get(strategy, strategy)
        shown = key if key in {f"fsdp_config.{x}" for x in f} else key + " (accelerate default FULL_SHARD)"
        report.set(shown, "zero", _SHARDING[strategy], strategy)
        if strategy.startswith("HYBRID"):
            if procs % machines:
                raise k.error("num_processes", procs, f"must be a multiple of num_machines ({machines})")
            report.set(shown, "dp_shard", procs // machines, "sharded within a node, replicated across nodes")
    for sub in ("fsdp_sharding_strategy", "fsdp_reshard_after_forward"):
        if sub in f and f"fsdp_config.{sub}" not in {m.key.split(" (")[0] for m in report.mapped}:
            report.ignore(f"fsdp_config.{sub}", "read with the other sharding key")
    if "fsdp_offload_params" in f:
        if k.bool("fsdp_config.fsdp_offload_params", f["fsdp_offload_params"]):
            report.set("fsdp_config.fsdp_offload_params", "offload", "optimizer+params", "FSDP CPUOffload")
        else:
            report.ignore("fsdp_config.fsdp_offload_params", "false: nothing offloaded")
    if "fsdp_activation_checkpointing" in f:
        on = k.bool("fsdp_config.fsdp_activation_checkpointing", f["fsdp_activation_checkpointing"])
        report.set("fsdp_config.fsdp_activation_checkpointing", "recompute", "full" if on else "none")
    for sub in f:
        if sub in _FSDP_IGNORED:
            report.ignore(f"fsdp_config.{sub}", _FSDP_IGNORED[sub])


def _deepspeed(k: Keys, d: dict[str, Any], report: ConfigReport) -> None:
    k.unknown("deepspeed_config", d, _DS_KEYS, "DeepSpeedPlugin")
    if "deepspeed_config_file" in d:
        raise k.error("deepspeed_config.deepspeed_config_file", d["deepspeed_config_file"], "points at a DeepSpeed "
                      "JSON, which holds the settings", hint="give that JSON with --from instead")
    stage = k.int("deepspeed_config.zero_stage", d.get("zero_stage", 2), least=0)
    if stage > 3:
        raise k.error("deepspeed_config.zero_stage", stage, "must be 0, 1, 2 or 3")
    key = "deepspeed_config.zero_stage" + ("" if "zero_stage" in d else " (accelerate default 2)")
    report.set(key, "zero", stage)
    offloads = []
    for sub, what in (("offload_optimizer_device", "optimizer"), ("offload_param_device", "params")):
        if sub in d:
            dev = k.str(f"deepspeed_config.{sub}", d[sub], ("none", "cpu", "nvme"))
            if dev == "none":
                report.ignore(f"deepspeed_config.{sub}", "none: nothing offloaded")
            else:
                offloads.append((sub, what))
    if offloads:
        value = "optimizer+params" if any(w == "params" for _, w in offloads) else "optimizer"
        report.set(f"deepspeed_config.{offloads[-1][0]}", "offload", value)
        for sub, _ in offloads[:-1]:
            report.ignore(f"deepspeed_config.{sub}", "read with the other offload device")
    if "gradient_accumulation_steps" in d:
        report.set("deepspeed_config.gradient_accumulation_steps", "grad_accum",
                   k.int("deepspeed_config.gradient_accumulation_steps", d["gradient_accumulation_steps"]))
    for sub in d:
        if sub in _DS_IGNORED:
            report.ignore(f"deepspeed_config.{sub}", _DS_IGNORED[sub])
