"""DeepSpeed JSON configs (``gpuplan train MODEL --from ds_config.json``).

The keys and their meaning follow DeepSpeed's configuration documentation (deepspeed.ai/docs/config-json, DeepSpeed
0.16) and its config classes (deepspeed/runtime/zero/config.py ``DeepSpeedZeroConfig``, which forbids unknown keys;
deepspeed/runtime/config.py for the batch sizes). Only the keys that change GPU memory become options; the others
are listed as ignored, each with its reason. ``"auto"`` (filled in by the Hugging Face Trainer's integration,
transformers/integrations/deepspeed.py ``trainer_config_process``) is left to the other options.
"""

from __future__ import annotations

from typing import Any

from gpuplan.configs.checks import Keys
from gpuplan.configs.report import ConfigReport

SOURCE = "DeepSpeed 0.16 config-json"
AUTO = "\"auto\": left to the other options (the Hugging Face Trainer fills it from its own arguments)"

# zero_optimization keys that change nothing gpuplan estimates, with why
_ZERO_IGNORED = {
    "allgather_partitions": "all-gather of the updated partitions (the default, true): no memory of its own",
    "allgather_bucket_size": "ZeRO-1/2's all-gather bucket after the optimizer step, outside the peak: not modelled",
    "reduce_scatter": "reduce-scatter instead of all-reduce: the same buffers",
    "round_robin_gradients": "gradient partition order: no memory effect",
    "sub_group_size": "ZeRO-3 optimizer step in groups of this many elements: the step's transient, not modelled",
    "stage3_param_persistence_threshold": "small parameters kept gathered: below a full layer, not modelled",
    "stage3_max_reuse_distance": "when a gathered parameter is released: bounded by stage3_max_live_parameters",
    "stage3_gather_16bit_weights_on_model_save": "checkpoint saving only",
    "stage3_gather_fp16_weights_on_model_save": "checkpoint saving only",
    "elastic_checkpoint": "checkpoint layout only",
    "load_from_fp32_weights": "checkpoint loading only",
    "ignore_unused_parameters": "error handling only",
    "legacy_stage1": "the old ZeRO-1 implementation: the same states",
    "cpu_offload_params": "an old spelling of offload_param: give offload_param instead",
    "cpu_offload_use_pin_memory": "host memory pinning: no GPU memory",
    "memory_efficient_linear": "ZeRO-3's linear wrapper: no memory effect gpuplan models",
    "zero_hpz_partition_size": "ZeRO++ secondary partition: not modelled",
    "zero_quantized_weights": "ZeRO++ quantized all-gather: communication only",
    "zero_quantized_gradients": "ZeRO++ quantized reduce-scatter: communication only",
    "mics_hierarchical_params_gather": "MiCS gather order: communication only",
    "pipeline_loading_checkpoint": "checkpoint loading only",
    "override_module_apply": "module hooks: no memory effect",
    "log_trace_cache_warnings": "logging only",
    "use_all_reduce_for_fetch_params": "communication only",
}
_ZERO_KEYS = frozenset({"stage", "offload_optimizer", "offload_param", "cpu_offload", "reduce_bucket_size",
                        "overlap_comm", "contiguous_gradients", "stage3_prefetch_bucket_size", "prefetch_bucket_size",
                        "stage3_max_live_parameters", "max_live_parameters", "mics_shard_size", *_ZERO_IGNORED})
_OFFLOAD_KEYS = frozenset({"device", "pin_memory", "nvme_path", "buffer_count", "buffer_size", "max_in_cpu",
                           "pipeline", "pipeline_read", "pipeline_write", "fast_init", "ratio"})
_FP16_KEYS = frozenset({"enabled", "auto_cast", "loss_scale", "initial_scale_power", "loss_scale_window",
                        "hysteresis", "consecutive_hysteresis", "min_loss_scale", "fp16_master_weights_and_grads"})
_BF16_KEYS = frozenset({"enabled", "immediate_grad_update", "check_grad_overflow"})
_BATCH_KEYS = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")

# top-level keys with no effect on the estimate
_TOP_IGNORED = {
    "scheduler": "learning-rate schedule: no memory effect",
    "gradient_clipping": "clipping: no memory of its own",
    "steps_per_print": "logging only",
    "wall_clock_breakdown": "logging only",
    "dump_state": "logging only",
    "tensorboard": "logging only",
    "wandb": "logging only",
    "csv_monitor": "logging only",
    "comet": "logging only",
    "flops_profiler": "profiling only",
    "comms_logger": "logging only",
    "prescale_gradients": "gradient scaling order: no memory effect",
    "gradient_predivide_factor": "gradient scaling: no memory effect",
    "sparse_gradients": "embedding gradients: not modelled",
    "zero_allow_untested_optimizer": "a permission, no memory effect",
    "zero_force_ds_cpu_optimizer": "which CPU optimizer runs the offloaded step: host side",
    "communication_data_type": "communication only",
    "seq_parallel_communication_data_type": "communication only",
    "checkpoint": "checkpoint saving only",
    "data_efficiency": "data sampling: no memory effect",
    "elasticity": "elastic batch search: give the batch options instead",
    "activation_checkpointing": "deepspeed.checkpointing is used only by models that call it (Megatron-DeepSpeed); "
                                "give --recompute",
    "aio": "NVMe offload I/O: host side",
    "amp": "Apex AMP: give --precision",
    "memory_breakdown": "logging only",
    "gradient_accumulation_dtype": "not modelled",
}


def read(data: dict[str, Any], name: str, report: ConfigReport) -> None:
    """Map a DeepSpeed config (already parsed) into ``report``."""
    k = Keys(name)
    report.set("(file)", "stack", "deepspeed", "a DeepSpeed config: the deepspeed stack's defaults")
    for key, value in data.items():
        if key == "zero_optimization":
            _zero(k, k.table(key, value), report)
        elif key in ("fp16", "bf16"):
            _half(k, key, k.table(key, value), report)
        elif key in _BATCH_KEYS:
            _batch(k, key, value, report)
        elif key == "optimizer":
            _optimizer(k, k.table(key, value), report)
        elif key in _TOP_IGNORED:
            report.ignore(key, _TOP_IGNORED[key])
        else:
            report.ignore(key, "not a setting gpuplan reads (no GPU-memory effect it models)")
    on = [m.key for m in report.mapped if m.key in ("fp16.enabled", "bf16.enabled")]
    if len(on) == 2:
        raise k.error("bf16.enabled", True, "contradicts fp16.enabled = true: DeepSpeed trains in one of them")


def _zero(k: Keys, z: dict[str, Any], report: ConfigReport) -> None:
    k.unknown("zero_optimization", z, _ZERO_KEYS, "DeepSpeedZeroConfig")
    for key, value in z.items():
        dotted = f"zero_optimization.{key}"
        if value == "auto":
            report.ignore(dotted, AUTO)
        elif key == "stage":
            stage = k.int(dotted, value, least=0)
            if stage > 3:
                raise k.error(dotted, value, "must be 0, 1, 2 or 3")
            report.set(dotted, "zero", stage)
        elif key in ("offload_optimizer", "offload_param"):
            _offload(k, dotted, k.table(dotted, value), report)
        elif key == "cpu_offload":  # DeepSpeed's deprecated spelling of offload_optimizer.device = cpu
            if k.bool(dotted, value):
                report.set(dotted, "offload", "optimizer", "the deprecated spelling of offload_optimizer cpu")
            else:
                report.ignore(dotted, "false: nothing offloaded")
        elif key == "reduce_bucket_size":
            report.set(dotted, "ds_reduce_bucket", k.int(dotted, value))
        elif key in ("stage3_prefetch_bucket_size", "prefetch_bucket_size"):
            report.set(dotted, "ds_prefetch_bucket", k.int(dotted, value))
        elif key in ("stage3_max_live_parameters", "max_live_parameters"):
            report.set(dotted, "ds_max_live_params", k.int(dotted, value))
        elif key == "overlap_comm":
            report.set(dotted, "ds_overlap_comm", "on" if k.bool(dotted, value) else "off")
        elif key == "contiguous_gradients":
            report.set(dotted, "ds_contiguous_gradients", "on" if k.bool(dotted, value) else "off")
        elif key == "mics_shard_size":
            size = k.int(dotted, value, least=-1)
            if size > 0:
                report.set(dotted, "dp_shard", size, "MiCS: states sharded over this many ranks")
            else:
                report.ignore(dotted, "-1 or 0: MiCS off")
        else:
            report.ignore(dotted, _ZERO_IGNORED[key])
    # both offloads: the parameters go to the host too
    offs = [m for m in report.mapped if m.option == "offload"]
    if len(offs) == 2:
        report.mapped.remove(offs[0])
        offs[1].value = "optimizer+params"


def _offload(k: Keys, section: str, table: dict[str, Any], report: ConfigReport) -> None:
    k.unknown(section, table, _OFFLOAD_KEYS, "DeepSpeedZeroOffload*Config")
    for key, value in table.items():
        dotted = f"{section}.{key}"
        if key != "device":
            report.ignore(dotted, "host-side offload setting: no GPU memory")
            continue
        device = k.str(dotted, value, ("none", "cpu", "nvme"))
        if device == "none":
            report.ignore(dotted, "none: nothing offloaded")
        elif section.endswith("offload_optimizer"):
            report.set(dotted, "offload", "optimizer")
        else:
            report.set(dotted, "offload", "optimizer+params", "parameters offloaded with the optimizer")


def _half(k: Keys, section: str, table: dict[str, Any], report: ConfigReport) -> None:
    k.unknown(section, table, _FP16_KEYS if section == "fp16" else _BF16_KEYS, "DeepSpeed config-json")
    for key, value in table.items():
        dotted = f"{section}.{key}"
        if key != "enabled":
            report.ignore(dotted, "loss scaling and overflow checks: no memory effect" if section == "fp16"
                          else "bf16 optimizer detail: no memory effect gpuplan models")
        elif value == "auto":
            report.ignore(dotted, AUTO)
        elif k.bool(dotted, value):
            # DeepSpeed's fp16/bf16 engine keeps half parameters and gradients with fp32 master weights and states
            report.set(dotted, "precision", "mixed-" + section, "half weights, fp32 master and states")
        else:
            report.ignore(dotted, "false: not this precision")


def _batch(k: Keys, key: str, value: Any, report: ConfigReport) -> None:
    if value == "auto":
        report.ignore(key, AUTO)
        return
    n = k.int(key, value)
    report.batch_rule[key] = n
    if key == "train_micro_batch_size_per_gpu":
        report.set(key, "batch", n)
    elif key == "gradient_accumulation_steps":
        report.set(key, "grad_accum", n)
    else:
        report.ignore(key, "checked against micro-batch x accumulation x data-parallel degree (or used to "
                           "derive the missing one)")


_OPTIMIZERS = {"adam": "adam", "adamw": "adamw", "fusedadam": "adamw", "cpuadam": "adamw", "deepspeedcpuadam": "adamw",
               "deepspeed_adam": "adam", "sgd": "sgd", "lion": "lion"}


def _optimizer(k: Keys, table: dict[str, Any], report: ConfigReport) -> None:
    k.unknown("optimizer", table, frozenset({"type", "params"}), "DeepSpeed config-json")
    for key, value in table.items():
        dotted = f"optimizer.{key}"
        if key == "params":
            report.ignore(dotted, "hyperparameters: no memory effect")
            continue
        name = k.str(dotted, value)
        ours = _OPTIMIZERS.get(name.lower())
        if ours is None:
            raise k.error(dotted, value, "is an optimizer gpuplan does not model",
                          hint="Adam, AdamW, SGD or Lion; or give --optimizer")
        report.set(dotted, "optimizer", ours)


def resolve_batch(report: ConfigReport, values: Any) -> None:
    """DeepSpeed's rule, train_batch_size = micro-batch x accumulation x data-parallel degree, once the degree is
    known (deepspeed/runtime/config.py ``_set_batch_related_parameters``): a missing micro-batch or accumulation
    is derived, and a contradiction is an InputError naming the keys."""
    rule = report.batch_rule
    total = rule.get("train_batch_size")
    if total is None:
        return
    name = report.path.rsplit("/", 1)[-1]
    k = Keys(name)
    dp = values.dp if values.dp > 1 else max(1, (values.gpus or 1) // (values.tp * values.pp * values.cp))
    micro, accum = rule.get("train_micro_batch_size_per_gpu"), rule.get("gradient_accumulation_steps")
    if micro is not None and accum is not None:
        if micro * accum * dp != total:
            raise k.error("train_batch_size", total, f"must equal train_micro_batch_size_per_gpu ({micro}) x "
                          f"gradient_accumulation_steps ({accum}) x data-parallel degree ({dp}) = "
                          f"{micro * accum * dp}")
        return
    other = micro if micro is not None else accum if accum is not None else 1
    missing = "gradient_accumulation_steps" if micro is not None else "train_micro_batch_size_per_gpu"
    if total % (other * dp):
        raise k.error("train_batch_size", total, f"is not divisible by {other} x data-parallel degree ({dp}), so "
                      f"{missing} cannot be derived")
    option = "grad_accum" if micro is not None else "batch"
    if option not in report.overridden:
        setattr(values, option, total // (other * dp))
        report.ignored = [(key, why) for key, why in report.ignored if key != "train_batch_size"]
        report.set("train_batch_size", option, total // (other * dp),
                   f"{total} / ({other} x dp {dp}), DeepSpeed's rule for the missing {missing}")
