"""torchtune recipe YAML configs (``gpuplan train 8B_lora_single_device.yaml``).

Keys follow torchtune's recipe configs (recipes/configs/*/*.yaml) and the recipes that read them
(recipes/full_finetune_single_device.py, lora_finetune_single_device.py and their distributed twins, torchtune
0.6): ``model._component_`` names a model builder (``torchtune.models.llama3_1.lora_llama3_1_8b``; the ``lora_`` and
``qlora_`` builders take ``lora_attn_modules``, ``apply_lora_to_mlp``, ``apply_lora_to_output``, ``lora_rank``),
``batch_size`` is the micro-batch per device, ``dtype`` the dtype the whole model (and so the optimizer states) is
held in, ``optimizer_in_bwd`` steps each parameter in its gradient hook (refused with accumulation: "Gradient
accumulation is not supported with optimizer in bwd"), ``enable_activation_checkpointing`` wraps every transformer
layer, ``enable_activation_offloading`` moves the saved activations to the host (training/_activation_offloading.py
``OffloadActivations``), ``tokenizer.max_seq_len`` truncates samples and, with ``dataset.packed``, is every row's
length. ``CEWithChunkedOutputLoss`` and ``LinearCrossEntropyLoss`` split the output into ``num_output_chunks`` = 8.
"""

from __future__ import annotations

import re
from typing import Any

from gpuplan.configs.checks import Keys
from gpuplan.configs.report import ConfigReport

SOURCE = "torchtune recipes/configs"

# torchtune model builders (torchtune/models/*/_model_builders.py) -> gpuplan preset
BUILDERS = {
    "llama3_1_8b": "llama-3.1-8b", "llama3_1_70b": "llama-3.1-70b", "llama3_1_405b": "llama-3.1-405b",
    "llama3_8b": "meta-llama-3-8b", "llama3_70b": "meta-llama-3-70b", "llama3_3_70b": "llama-3.3-70b-instruct",
    "llama2_7b": "llama-2-7b-hf", "llama2_13b": "llama-2-13b-hf", "llama2_70b": "llama-2-70b-hf",
    "phi3_mini": "phi-3-mini-4k-instruct",  # torchtune's phi3_mini: Phi-3-Mini-4K-Instruct
    "phi4_14b": "phi-4",
    "llama3_2_1b": "llama-3.2-1b", "llama3_2_3b": "llama-3.2-3b",
    "mistral_7b": "mistral-7b-v0.1",  # torchtune's mistral_7b: vocab 32000, the v0.1 architecture
    "qwen2_5_0_5b": "qwen2.5-0.5b", "qwen2_5_1_5b": "qwen2.5-1.5b", "qwen2_5_3b": "qwen2.5-3b",
    "qwen2_5_7b": "qwen2.5-7b", "qwen2_5_14b": "qwen2.5-14b", "qwen2_5_32b": "qwen2.5-32b",
    "qwen2_5_72b": "qwen2.5-72b", "qwen3_0_6b": "qwen3-0.6b", "qwen3_1_7b": "qwen3-1.7b", "qwen3_4b": "qwen3-4b",
    "qwen3_8b": "qwen3-8b", "qwen3_14b": "qwen3-14b", "qwen3_32b": "qwen3-32b",
    "gemma2_2b": "gemma-2-2b", "gemma2_9b": "gemma-2-9b", "gemma2_27b": "gemma-2-27b",
}
_BUILDER = re.compile(r"torchtune\.models\.(\w+)\.(q?lora_)?(\w+?)(_base|_instruct)?$")

# torchtune's LoRA module names (LORA_ATTN_MODULES, torchtune/modules/peft) -> Hugging Face / PEFT names
_ATTN = {"q_proj": "q_proj", "k_proj": "k_proj", "v_proj": "v_proj", "output_proj": "o_proj"}
_MLP = ("gate_proj", "up_proj", "down_proj")  # torchtune's w1, w3, w2
_READ = ("lora_attn_modules", "apply_lora_to_mlp", "apply_lora_to_output", "lora_rank", "quantize_base")

# optimizer components -> (--optimizer, note)
_OPTIMIZERS = {
    "torch.optim.AdamW": "adamw", "torch.optim.Adam": "adam", "torch.optim.SGD": "sgd",
    "bitsandbytes.optim.PagedAdamW8bit": "paged-adamw-8bit", "bitsandbytes.optim.AdamW8bit": "adamw-8bit",
    "bitsandbytes.optim.PagedAdamW": "paged-adamw", "bitsandbytes.optim.PagedAdamW32bit": "paged-adamw",
    "torchao.optim.AdamW8bit": "adamw-8bit", "torchao.prototype.low_bit_optim.AdamW8bit": "adamw-8bit",
}
_LOSSES = {
    "torchtune.modules.loss.CEWithChunkedOutputLoss": ("chunked", "the fp32 upcast one of 8 chunks at a time"),
    "torchtune.modules.loss.LinearCrossEntropyLoss": ("fused", "the output projection and loss, 8 chunks"),
    "torch.nn.CrossEntropyLoss": ("standard", ""),
}
_NO_MEMORY = "no memory effect"
_IGNORED = {
    "output_dir": "output folder", "checkpointer": "checkpoint files: the preset gives the architecture",
    "resume_from_checkpoint": "checkpoint loading", "save_adapter_weights_only": "checkpoint saving",
    "save_last_epoch_only": "checkpoint saving", "epochs_to_save": "checkpoint saving",
    "seed": _NO_MEMORY, "shuffle": "data order: " + _NO_MEMORY, "epochs": "run length: " + _NO_MEMORY,
    "max_steps_per_epoch": "run length: " + _NO_MEMORY, "lr_scheduler": "learning-rate schedule: " + _NO_MEMORY,
    "metric_logger": "logging only", "log_every_n_steps": "logging only", "log_peak_memory_stats": "logging only",
    "log_level": "logging only", "profiler": "profiling only", "clip_grad_norm": "gradient clipping: no memory of its "
    "own", "low_cpu_ram": "host memory while loading",
    "collate_fn": "batch collation: " + _NO_MEMORY, "cudnn_deterministic_mode": "kernel choice: " + _NO_MEMORY,
    "run_val_every_n_steps": "validation runs between steps", "dataset_val": "validation runs between steps",
}


def read(data: dict[str, Any], name: str, report: ConfigReport) -> str:
    """Map a torchtune recipe config into ``report``; returns the model preset."""
    k = Keys(name)
    report.set("(file)", "stack", "torchtune", "a torchtune recipe config: the torchtune stack's defaults")
    model = k.table("model", data.get("model"))
    preset, lora = _model(k, model, report)
    seq = _tokenizer(k, data.get("tokenizer"), report)
    _dataset(k, data.get("dataset"), seq, report)
    batch = k.int("batch_size", data["batch_size"]) if "batch_size" in data else 1
    for key, value in data.items():
        if key in ("model", "tokenizer", "dataset"):
            continue
        if key == "batch_size":
            report.set(key, "batch", batch)
        elif key == "gradient_accumulation_steps":
            report.set(key, "grad_accum", k.int(key, value))
        elif key == "optimizer":
            _optimizer(k, k.table(key, value), report)
        elif key == "optimizer_in_bwd":
            on = k.bool(key, value)
            accum = data.get("gradient_accumulation_steps", 1)
            if lora:
                report.ignore(key, "read only by the full fine-tuning recipes, not the LoRA ones")
                continue
            if on and accum != 1:
                raise k.error(key, value, f"contradicts gradient_accumulation_steps = {accum} (torchtune: gradient "
                              "accumulation is not supported with optimizer in bwd)")
            report.set(key, "optimizer_in_backward", "on" if on else "off")
        elif key == "enable_activation_checkpointing":
            report.set(key, "recompute", "full" if k.bool(key, value) else "none",
                       "every transformer layer checkpointed" if value else "")
        elif key == "enable_activation_offloading":
            if not k.bool(key, value):
                report.ignore(key, "false: nothing offloaded")
            elif data.get("enable_activation_checkpointing") is True:
                report.set(key, "recompute_offload", "on", "each checkpointed layer's input kept on the host")
            else:
                raise k.error(key, value, "without enable_activation_checkpointing (every saved activation on the "
                              "host) is not modelled by gpuplan", hint="set enable_activation_checkpointing: True")
        elif key == "dtype":
            dtype = k.str(key, value, ("bf16", "fp32"))
            report.set(key, "precision", dtype, "the model, gradients and optimizer states held in " + dtype)
        elif key == "compile":
            on = k.bool(key, value)
            report.set(key, "compile", "on" if on else "off", "each decoder layer compiled" if on else "")
        elif key == "loss":
            _loss(k, k.table(key, value), batch, seq, report)
        elif key == "device":
            k.str(key, value, ("cuda",))
            report.ignore(key, "cuda: the GPU is --gpu")
        elif key == "fsdp_cpu_offload":
            if k.bool(key, value):
                report.set(key, "offload", "optimizer+params", "FSDP2 CPUOffloadPolicy")
            else:
                report.ignore(key, "false: nothing offloaded")
        elif key == "fsdp_reshard_after_forward":
            if k.bool(key, value):
                report.ignore(key, "true: FSDP2's default")
            else:
                report.set(key, "no_reshard", True)
        elif key == "tensor_parallel_dim":
            report.set(key, "tp", k.int(key, value))
        elif key == "data_parallel_shard_dim":
            shard = k.int(key, value, least=-1)
            if shard == 0:
                raise k.error(key, 0, "must be -1 or a whole number >= 1")
            if shard == 1:
                report.set(key, "zero", 0, "1: parameters not sharded")
            elif shard > 1:
                report.set(key, "dp_shard", shard, "FSDP2 shard group; replicated across the rest")
            else:
                report.ignore(key, "-1: FSDP2 over every rank left over; the degree comes from --gpus")
        elif key == "data_parallel_replicate_dim":
            report.ignore(key, "read with data_parallel_shard_dim: the data-parallel degree comes from --gpus")
        elif key == "custom_sharded_layers":
            _custom_sharded(k, key, value, report)
        elif key in _IGNORED:
            report.ignore(key, _IGNORED[key])
        else:
            report.ignore(key, "not a setting gpuplan reads (torchtune: no GPU-memory effect it models)")
    _fsdp(data, report)
    return preset


def _custom_sharded(k: Keys, key: str, value: Any, report: ConfigReport) -> None:
    """``custom_sharded_layers``: modules training.shard_model wraps in fully_shard of their own. The embedding
    and the output head together are ``--fsdp-embedding-groups on``; an empty list changes nothing."""
    if value is None or value == []:
        report.ignore(key, "empty: the embedding and the head stay in the root group")
        return
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise k.error(key, value, "must be a list of module names")
    if sorted(set(value)) != ["output", "tok_embeddings"]:
        raise k.error(key, value, "gpuplan models ['tok_embeddings', 'output'] (both as FSDP groups of their own) "
                      "or an empty list")
    report.set(key, "fsdp_embedding_groups", "on", "the embedding and the head are FSDP groups of their own")


def _fsdp(data: dict[str, Any], report: ConfigReport) -> None:
    """Keys only the distributed recipes read (full_finetune_distributed.py, lora_finetune_distributed.py) mean
    FSDP2: parameters, gradients and states sharded over the data-parallel ranks (training.shard_model)."""
    if any(m.option == "zero" for m in report.mapped):
        return
    marker = next((key for key in ("data_parallel_shard_dim", "fsdp_cpu_offload", "fsdp_reshard_after_forward",
                                   "custom_sharded_layers") if key in data), None)
    if marker is not None:
        report.set(marker, "zero", 3, "a distributed recipe's key: FSDP2 (training.shard_model)")


def _model(k: Keys, model: dict[str, Any], report: ConfigReport) -> tuple[str, bool]:
    component = k.str("model._component_", model.get("_component_"))
    m = _BUILDER.fullmatch(component)
    preset = BUILDERS.get(m.group(3)) if m else None
    if m is None or preset is None:
        raise k.error("model._component_", component, "is a model builder with no gpuplan preset (known: "
                      + ", ".join(sorted(BUILDERS)) + ", with lora_ / qlora_ in front)",
                      hint="give the model's dimensions (--layers --hidden --heads ...) with --stack torchtune")
    report.set("model._component_", "model", preset, f"{m.group(3)}{m.group(4) or ''}")
    kind = (m.group(2) or "").rstrip("_")
    lora_keys = [key for key in model if key.startswith(("lora_", "apply_lora")) or key == "quantize_base"]
    if not kind:
        if lora_keys:
            raise k.error(f"model.{lora_keys[0]}", model[lora_keys[0]], f"contradicts model._component_ = "
                          f"{component}, a builder without LoRA (use lora_{m.group(3)})")
        for key in model:
            if key != "_component_":
                report.ignore(f"model.{key}", "a builder argument gpuplan does not read")
        return preset, False
    quantize = kind == "qlora"
    if "quantize_base" in model:
        quantize = k.bool("model.quantize_base", model["quantize_base"]) or kind == "qlora"
        report.ignore("model.quantize_base", "read with model._component_")
    report.set("model._component_", "method", "qlora" if quantize else "lora",
               "NF4 base (torchao NF4Tensor) with LoRA adapters" if quantize else "LoRA adapters")
    if quantize:
        report.set("model._component_", "qlora_base", "nf4")
    if "lora_attn_modules" not in model:
        raise k.error("model.lora_attn_modules", None, "is required by the LoRA builders (a list of q_proj, "
                      "k_proj, v_proj, output_proj)")
    attn = model["lora_attn_modules"]
    if not isinstance(attn, list) or any(a not in _ATTN for a in attn):
        raise k.error("model.lora_attn_modules", attn, "must be a list of " + ", ".join(_ATTN))
    targets = [_ATTN[a] for a in attn]
    report.set("model.lora_attn_modules", "lora_targets", targets, "output_proj is o_proj")
    for key, names in (("apply_lora_to_mlp", _MLP), ("apply_lora_to_output", ("lm_head",))):
        if key in model:
            if k.bool(f"model.{key}", model[key]):
                targets.extend(names)
                report.ignore(f"model.{key}", "true: adds " + ", ".join(names) + " to --lora-targets")
            else:
                report.ignore(f"model.{key}", "false")
    if not targets:
        raise k.error("model.lora_attn_modules", attn, "leaves no module with an adapter")
    rank = k.int("model.lora_rank", model.get("lora_rank", 8))
    report.set("model.lora_rank" + ("" if "lora_rank" in model else " (torchtune builder default)"), "lora_rank",
               rank)
    for key, value in model.items():
        dotted = f"model.{key}"
        if key == "lora_dropout":
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
                raise k.error(dotted, value, "must be a number in [0, 1)")
            report.set(dotted, "lora_dropout", float(value))
        elif key == "lora_alpha":
            report.ignore(dotted, "the adapters' scaling: " + _NO_MEMORY)
        elif key == "use_dora":
            if k.bool(dotted, value):
                raise k.error(dotted, value, "DoRA (a magnitude vector per adapted layer) is not modelled by gpuplan")
            report.ignore(dotted, "false")
        elif key not in _READ and key != "_component_":
            report.ignore(dotted, "a builder argument gpuplan does not read")
    return preset, True


def _tokenizer(k: Keys, tok: Any, report: ConfigReport) -> int | None:
    if tok is None:
        return None
    tok = k.table("tokenizer", tok)
    seq = None
    for key, value in tok.items():
        dotted = f"tokenizer.{key}"
        if key == "max_seq_len":
            if value is None:
                report.ignore(dotted, "null: samples are not truncated, each batch is as long as its longest "
                              "sample; give --seq")
            else:
                seq = k.int(dotted, value)
                report.set(dotted, "seq", seq)
        else:
            report.ignore(dotted, "tokenizer files: " + _NO_MEMORY)
    return seq


def _dataset(k: Keys, ds: Any, seq: int | None, report: ConfigReport) -> bool:
    tables = ds if isinstance(ds, list) else [ds] if ds is not None else []
    packed = False
    for i, table in enumerate(tables):
        where = "dataset" if not isinstance(ds, list) else f"dataset[{i}]"
        table = k.table(where, table)
        for key, value in table.items():
            dotted = f"{where}.{key}"
            if key == "packed":
                if k.bool(dotted, value):
                    if seq is None:
                        raise k.error(dotted, value, "needs tokenizer.max_seq_len (torchtune packs samples into "
                                      "rows of that length)")
                    packed = True
                    report.ignore(dotted, f"true: every row is tokenizer.max_seq_len = {seq} tokens")
                else:
                    report.ignore(dotted, "false: each batch is padded to its longest sample, at most --seq")
            else:
                report.ignore(dotted, "data: " + _NO_MEMORY)
    return packed


def _optimizer(k: Keys, opt: dict[str, Any], report: ConfigReport) -> None:
    component = k.str("optimizer._component_", opt.get("_component_"))
    ours = _OPTIMIZERS.get(component)
    if ours is None:
        raise k.error("optimizer._component_", component, "is an optimizer gpuplan does not model",
                      hint="known: " + ", ".join(sorted(_OPTIMIZERS)) + "; or give --optimizer")
    if ours == "sgd" and opt.get("momentum", 0):
        ours = "sgdm"
    report.set("optimizer._component_", "optimizer", ours)
    for key, value in opt.items():
        dotted = f"optimizer.{key}"
        if key in ("fused", "foreach"):
            if k.bool(dotted, value):
                report.set(dotted, "optimizer_impl", key)
            else:
                report.ignore(dotted, "false")
        elif key != "_component_":
            report.ignore(dotted, "hyperparameter: " + _NO_MEMORY)


def _loss(k: Keys, loss: dict[str, Any], batch: int, seq: int | None, report: ConfigReport) -> None:
    component = k.str("loss._component_", loss.get("_component_"))
    if component not in _LOSSES:
        raise k.error("loss._component_", component, "is a loss gpuplan does not model",
                      hint="known: " + ", ".join(_LOSSES) + "; or give --loss")
    impl, note = _LOSSES[component]
    report.set("loss._component_", "loss", impl, note)
    chunks = k.int("loss.num_output_chunks", loss.get("num_output_chunks", 8))
    if "num_output_chunks" in loss:
        report.ignore("loss.num_output_chunks", f"{chunks} chunks: read into --loss-chunk")
    for key in loss:
        if key not in ("_component_", "num_output_chunks"):
            report.ignore(f"loss.{key}", "loss detail: " + _NO_MEMORY)
    if impl != "standard" and seq is not None:
        report.set("loss._component_", "loss_chunk", max(1, batch * seq // chunks),
                   f"batch_size x max_seq_len / {chunks} chunks")
