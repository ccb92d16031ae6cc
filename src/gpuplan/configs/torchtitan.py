"""torchtitan TOML job configs (``gpuplan train llama3_8b.toml``).

Sections and keys follow torchtitan's job config (torchtitan/config/job_config.py, and config_manager.py before
it; torchtitan 0.1-0.2, 2025) and the shipped train_configs/*.toml. The parallel degrees mean what
parallel_dims.py gives them: data_parallel_shard_degree = -1 takes every rank left over (so the data-parallel
degree comes from --gpus), replicate x shard > 1 with shard > 1 is FSDP2/HSDP, tensor parallelism always
shards the norms' activations too (parallelize.py apply_tp: SequenceParallel). FSDP2's mixed-precision policy
(param_dtype = mixed_precision_param, fp32 sharded parameters and states) is gpuplan's ``amp-bf16``.
"""

from __future__ import annotations

from typing import Any

from gpuplan.configs.checks import Keys
from gpuplan.configs.report import ConfigReport

SOURCE = "torchtitan job_config.py"

# (model.name, model.flavor) -> preset: torchtitan's llama3 flavors are the Llama 3.1 architectures
# (torchtitan/models/llama3/__init__.py llama3_args: 8B, 70B, 405B with rope scaling of Llama 3.1)
PRESETS = {("llama3", "8B"): "llama-3.1-8b", ("llama3", "70B"): "llama-3.1-70b",
           ("llama3", "405B"): "llama-3.1-405b"}

_KNOWN = {
    "model": {"name", "flavor", "tokenizer_path", "hf_assets_path", "converters", "print_after_conversion",
              "norm_type", "use_flex_attn", "attn_mask_type"},
    "optimizer": {"name", "lr", "beta1", "beta2", "eps", "weight_decay", "implementation",
                  "early_step_in_backward"},
    "training": {"dataset", "dataset_path", "local_batch_size", "batch_size", "global_batch_size", "seq_len",
                 "max_norm", "steps", "enable_cpu_offload", "mixed_precision_param", "mixed_precision_reduce",
                 "compile", "gc_freq", "gc_debug", "seed", "deterministic", "warmup_steps",
                 "debug_moe_force_load_balance"},
    "parallelism": {"data_parallel_replicate_degree", "data_parallel_shard_degree", "fsdp_reshard_after_forward",
                    "tensor_parallel_degree", "disable_loss_parallel", "enable_async_tensor_parallel",
                    "pipeline_parallel_degree", "pipeline_parallel_split_points", "module_fqns_per_model_part",
                    "pipeline_parallel_first_stage_less_layers", "pipeline_parallel_last_stage_less_layers",
                    "pipeline_parallel_layers_per_stage", "pipeline_parallel_schedule",
                    "pipeline_parallel_schedule_csv", "pipeline_parallel_microbatch_size",
                    "context_parallel_degree", "context_parallel_rotate_method", "expert_parallel_degree",
                    "expert_tensor_parallel_degree", "enable_compiled_autograd"},
    "activation_checkpoint": {"mode", "selective_ac_option", "per_op_sac_force_recompute_mm_shapes_by_fqns",
                              "early_stop", "memory_budget", "visualize_memory_budget_pareto",
                              "preserve_rng_state", "determinism_check", "debug"},
    "float8": {"enable_fsdp_float8_all_gather", "precompute_float8_dynamic_scale_for_fsdp", "recipe_name",
               "filter_fqns", "emulate", "moe_fqns_prototype", "force_recompute_fp8_weight_in_bwd"},
    "compile": {"enable", "components", "backend"},
}

# sections with no effect on GPU memory
_SECTION_REASONS = {
    "job": "run bookkeeping (folders, description)",
    "profiling": "profiling only",
    "metrics": "logging only",
    "lr_scheduler": "learning-rate schedule: no memory effect",
    "checkpoint": "checkpoint saving and loading, between steps",
    "validation": "validation runs between training steps",
    "comm": "collective timeouts and tracing",
    "fault_tolerance": "fault tolerance (TorchFT): not modelled",
    "memory_estimation": "torchtitan's own estimator",
    "experimental": "experimental extensions: not modelled",
    "mx": "MX formats: not modelled",
    "quantize": "quantized training: not modelled",
}
_NO_MEMORY = "no memory effect"
_IGNORED = {
    "model.tokenizer_path": "tokenizer files: no memory effect",
    "model.hf_assets_path": "tokenizer and config files: the preset gives the architecture",
    "model.print_after_conversion": "logging only",
    "model.norm_type": "the preset gives the architecture",
    "model.use_flex_attn": "attention kernel: give --attention",
    "model.attn_mask_type": "attention mask: give --attention",
    "optimizer.lr": "hyperparameter: " + _NO_MEMORY,
    "optimizer.beta1": "hyperparameter: " + _NO_MEMORY,
    "optimizer.beta2": "hyperparameter: " + _NO_MEMORY,
    "optimizer.eps": "hyperparameter: " + _NO_MEMORY,
    "optimizer.weight_decay": "hyperparameter: " + _NO_MEMORY,
    "training.dataset": "data: " + _NO_MEMORY,
    "training.dataset_path": "data: " + _NO_MEMORY,
    "training.max_norm": "gradient clipping: no memory of its own",
    "training.steps": "run length: " + _NO_MEMORY,
    "training.warmup_steps": "learning-rate schedule: " + _NO_MEMORY,
    "training.mixed_precision_reduce": "gradient reduction dtype: communication buffers are not modelled",
    "training.gc_freq": "Python garbage collection: " + _NO_MEMORY,
    "training.gc_debug": "debugging only",
    "training.seed": _NO_MEMORY,
    "training.deterministic": "kernel choice: " + _NO_MEMORY,
    "training.debug_moe_force_load_balance": "debugging only",
    "training.compile": "torch.compile: gpuplan estimates eager-mode memory (fusion is not modelled)",
    "parallelism.enable_async_tensor_parallel": "communication overlap: " + _NO_MEMORY,
    "parallelism.enable_compiled_autograd": "compiled autograd: not modelled",
    "parallelism.pipeline_parallel_split_points": "pipeline stage split: gpuplan splits layers evenly",
    "parallelism.module_fqns_per_model_part": "pipeline stage split: gpuplan splits layers evenly",
    "parallelism.pipeline_parallel_first_stage_less_layers": "pipeline stage split: gpuplan splits layers evenly",
    "parallelism.pipeline_parallel_last_stage_less_layers": "pipeline stage split: gpuplan splits layers evenly",
    "parallelism.pipeline_parallel_layers_per_stage": "pipeline stage split: give --vpp for interleaving",
    "parallelism.pipeline_parallel_schedule": "pipeline schedule: give --microbatches and --vpp",
    "parallelism.pipeline_parallel_schedule_csv": "pipeline schedule: give --microbatches and --vpp",
    "parallelism.pipeline_parallel_microbatch_size": "pipeline micro-batch: give --microbatches",
    "parallelism.context_parallel_rotate_method": "communication pattern: " + _NO_MEMORY,
    "parallelism.expert_tensor_parallel_degree": "not modelled: experts follow --ep",
    "activation_checkpoint.per_op_sac_force_recompute_mm_shapes_by_fqns": "op-policy detail: not modelled",
    "activation_checkpoint.early_stop": "recompute detail: not modelled",
    "activation_checkpoint.memory_budget": "torch.compile memory-budget policy: not modelled",
    "activation_checkpoint.visualize_memory_budget_pareto": "debugging only",
    "activation_checkpoint.preserve_rng_state": _NO_MEMORY,
    "activation_checkpoint.determinism_check": "debugging only",
    "activation_checkpoint.debug": "debugging only",
}


def read(data: dict[str, Any], name: str, report: ConfigReport) -> str:
    """Map a torchtitan job config into ``report``; returns the model preset."""
    k = Keys(name)
    report.set("(file)", "stack", "torchtitan", "a torchtitan job config: the torchtitan stack's defaults")
    tables = {}
    for section, value in data.items():
        if section in _KNOWN:
            tables[section] = k.table(section, value)
            k.unknown(section, tables[section], _KNOWN[section], SOURCE)
        else:
            why = _SECTION_REASONS.get(section, "a section gpuplan does not read")
            for key in (value if isinstance(value, dict) else {"": value}):
                report.ignore(f"{section}.{key}".rstrip("."), why)
    model = tables.get("model", {})
    preset = _model(k, model, report)
    float8 = _converters(k, model, report)
    _optimizer(k, tables.get("optimizer", {}), report)
    _training(k, tables.get("training", {}), report)
    _parallelism(k, tables.get("parallelism", {}), report)
    _checkpointing(k, tables.get("activation_checkpoint", {}), report)
    why8 = ("torchao float8 linears are not modelled (gpuplan's fp8 is Transformer Engine style): the estimate is "
            "for bf16 compute" if float8 else "applies only with model.converters = ['float8'], not enabled here")
    for key in tables.get("float8", {}):
        report.ignore(f"float8.{key}", why8)
    for key in tables.get("compile", {}):
        report.ignore(f"compile.{key}", "torch.compile: gpuplan estimates eager-mode memory (fusion is not "
                                        "modelled)")
    for key in ("model", "optimizer", "training", "parallelism", "activation_checkpoint"):
        for sub in tables.get(key, {}):
            dotted = f"{key}.{sub}"
            if dotted in _IGNORED and dotted not in report.keys():
                report.ignore(dotted, _IGNORED[dotted])
    return preset


def _model(k: Keys, model: dict[str, Any], report: ConfigReport) -> str:
    name = k.str("model.name", model.get("name", "llama3"))
    flavor = k.str("model.flavor", model.get("flavor", "debugmodel"))
    preset = PRESETS.get((name, flavor))
    if preset is None:
        known = ", ".join(f"{n} {f}" for n, f in PRESETS)
        raise k.error("model.flavor", f"{name} {flavor}", f"has no gpuplan preset (known: {known})",
                      hint="give the model's dimensions (--layers --hidden --heads ...) with --stack torchtitan")
    report.set("model.name", "model", preset, f"{name} {flavor}: torchtitan's llama3 flavors are Llama 3.1")
    report.ignore("model.flavor", f"read with model.name: {flavor}")
    return preset


def _converters(k: Keys, model: dict[str, Any], report: ConfigReport) -> bool:
    if "converters" not in model:
        return False
    value = model["converters"]
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise k.error("model.converters", value, "must be a list of names")
    if items:
        report.ignore("model.converters", f"{', '.join(items)}: torchao float8 training is not modelled; the "
                                          "estimate is for bf16 compute")
    else:
        report.ignore("model.converters", "none")
    return "float8" in items


def _optimizer(k: Keys, opt: dict[str, Any], report: ConfigReport) -> None:
    if "name" in opt:
        name = k.str("optimizer.name", opt["name"])
        ours = {"adamw": "adamw", "adam": "adam"}.get(name.lower())
        if ours is None:
            raise k.error("optimizer.name", name, "is an optimizer gpuplan does not model (Adam, AdamW)")
        report.set("optimizer.name", "optimizer", ours)
    if "implementation" in opt:
        impl = k.str("optimizer.implementation", opt["implementation"], ("fused", "foreach", "for-loop"))
        report.set("optimizer.implementation", "optimizer_impl", impl)
    if "early_step_in_backward" in opt:
        on = k.bool("optimizer.early_step_in_backward", opt["early_step_in_backward"])
        report.set("optimizer.early_step_in_backward", "optimizer_in_backward", "on" if on else "off")


def _training(k: Keys, t: dict[str, Any], report: ConfigReport) -> None:
    for key in ("local_batch_size", "batch_size"):  # batch_size: the name before torchtitan 0.1
        if key in t:
            report.set(f"training.{key}", "batch", k.int(f"training.{key}", t[key]))
    if "seq_len" in t:
        report.set("training.seq_len", "seq", k.int("training.seq_len", t["seq_len"]))
    if "global_batch_size" in t:
        n = k.int("training.global_batch_size", t["global_batch_size"], least=-1)
        if n < 0:
            report.ignore("training.global_batch_size", "-1: no accumulation")
        else:  # torchtitan: global = local x data-parallel degree x accumulation steps (train.py)
            report.batch_rule["global_batch"] = n
            report.ignore("training.global_batch_size", "gives the accumulation steps once the data-parallel "
                                                         "degree is known")
    # absent, torchtitan's default applies: mixed_precision_param = "bfloat16"
    dtype = k.str("training.mixed_precision_param", t.get("mixed_precision_param", "bfloat16"),
                  ("bfloat16", "float32", "float16"))
    precision = {"bfloat16": "amp-bf16", "float16": "amp-fp16", "float32": "fp32"}[dtype]
    key = "training.mixed_precision_param" + ("" if "mixed_precision_param" in t else " (torchtitan default)")
    report.set(key, "precision", precision,
               "FSDP2 MixedPrecisionPolicy: fp32 sharded parameters and states, compute in " + dtype)
    if "enable_cpu_offload" in t:
        if k.bool("training.enable_cpu_offload", t["enable_cpu_offload"]):
            report.set("training.enable_cpu_offload", "offload", "optimizer+params", "FSDP2 CPUOffloadPolicy")
        else:
            report.ignore("training.enable_cpu_offload", "false: nothing offloaded")


def _parallelism(k: Keys, p: dict[str, Any], report: ConfigReport) -> None:
    def degree(key: str, least: int = 1) -> int | None:
        return k.int(f"parallelism.{key}", p[key], least=least) if key in p else None

    replicate, shard = degree("data_parallel_replicate_degree") or 1, degree("data_parallel_shard_degree", -1)
    shard = -1 if shard is None else shard
    if shard == 0:
        raise k.error("parallelism.data_parallel_shard_degree", 0, "must be -1 or a whole number >= 1")
    for key, option in (("tensor_parallel_degree", "tp"), ("pipeline_parallel_degree", "pp"),
                        ("context_parallel_degree", "cp"), ("expert_parallel_degree", "ep")):
        n = degree(key)
        if n is not None:
            report.set(f"parallelism.{key}", option, n)
            if option == "tp" and n > 1:
                report.set(f"parallelism.{key}", "sp", True, "torchtitan's TP always shards the norms (SP)")
    rkey, skey = "parallelism.data_parallel_replicate_degree", "parallelism.data_parallel_shard_degree"
    if "data_parallel_shard_degree" not in p:
        skey += " (torchtitan default -1)"
    if shard == 1:  # no sharding: DDP over the replicas
        report.set(skey, "zero", 0, "1: parameters not sharded")
        if "data_parallel_replicate_degree" in p:
            report.set(rkey, "dp", replicate) if replicate > 1 else report.ignore(rkey, "1: no replication")
    elif shard == -1:
        report.set(skey, "zero", 3, "-1: FSDP2 over every rank left over; the degree comes from --gpus")
        if "data_parallel_replicate_degree" in p:
            if replicate > 1:
                report.ignore(rkey, "HSDP with shard degree -1: the shard group size depends on the GPU "
                                    "count; give --dp-shard")
            else:
                report.ignore(rkey, "1: no replication")
    else:
        report.set(skey, "zero", 3, "FSDP2")
        report.set(skey, "dp", replicate * shard, "replicate x shard" if replicate > 1 else "")
        if replicate > 1:
            report.set(rkey, "dp_shard", shard, "HSDP: sharded over the shard degree, replicated across")
        elif "data_parallel_replicate_degree" in p:
            report.ignore(rkey, "1: no replication")
    if "fsdp_reshard_after_forward" in p:
        mode = k.str("parallelism.fsdp_reshard_after_forward", p["fsdp_reshard_after_forward"],
                     ("default", "always", "never"))
        if mode == "never":
            report.set("parallelism.fsdp_reshard_after_forward", "no_reshard", True)
        else:
            report.ignore("parallelism.fsdp_reshard_after_forward", f"{mode}: parameters resharded after forward "
                                                                    "(gpuplan's default)")
    if "disable_loss_parallel" in p:
        off = k.bool("parallelism.disable_loss_parallel", p["disable_loss_parallel"])
        report.set("parallelism.disable_loss_parallel", "loss_parallel", "off" if off else "on")


def _checkpointing(k: Keys, ac: dict[str, Any], report: ConfigReport) -> None:
    if "mode" not in ac:
        if "selective_ac_option" in ac:
            report.ignore("activation_checkpoint.selective_ac_option", "used only with mode = 'selective'")
        return
    mode = k.str("activation_checkpoint.mode", ac["mode"], ("none", "selective", "full"))
    option = ac.get("selective_ac_option", "2")  # torchtitan's default option
    key = "activation_checkpoint.selective_ac_option"
    if mode != "selective":
        report.set("activation_checkpoint.mode", "recompute", mode)
        if "selective_ac_option" in ac:
            report.ignore(key, f"used only with mode = 'selective', not {mode!r}")
        return
    option = k.str(key, option)
    if option == "op":
        report.set("activation_checkpoint.mode", "recompute", "selective")
        report.set(key, "selective_policy", "op")
    elif option == "1":  # every layer checkpointed whole
        report.set("activation_checkpoint.mode", "recompute", "full", "selective with option '1': every layer")
        report.ignore(key, "'1': every layer checkpointed, i.e. full")
    else:
        raise k.error(key, option, "checkpointing every N-th layer is not modelled by gpuplan",
                      hint="write 'op', or mode = 'full'")
