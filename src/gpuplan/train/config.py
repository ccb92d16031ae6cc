"""``TrainConfig``: every option of one training (or fine-tuning) step, typed, defaulted and validated once.

Field names follow the command-line options of ``gpuplan train`` (INTERFACE.md). Defaults describe a plain
single-GPU PyTorch / Hugging Face run: bf16 model, AdamW with the foreach implementation (PyTorch's CUDA
default), SDPA attention, no recompute, full fine-tuning, every parallel degree 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from gpuplan.errors import InputError
from gpuplan.versions import transformers_release

PRECISIONS = ("fp32", "bf16", "fp16", "amp-bf16", "amp-fp16", "mixed-bf16", "mixed-fp16", "fp8")
FRAMEWORKS = ("torch", "deepspeed", "megatron")
OPTIMIZERS = ("sgd", "sgdm", "adam", "adamw", "adamw-8bit", "paged-adamw", "paged-adamw-8bit", "adafactor", "lion")
OPTIMIZER_IMPLS = ("foreach", "fused", "for-loop")
RECOMPUTE = ("none", "selective", "full")
ATTENTIONS = ("sdpa", "flash", "eager")
METHODS = ("full", "freeze", "lora", "qlora")
ACTIVATION_MODELS = ("framework", "korthikanti")
LOSS_IMPLS = ("standard", "chunked", "fused", "chunked-held")
SELECTIVE_POLICIES = ("attention", "op")
CUDA_MODULE_LOADING = ("lazy", "eager")
# what zero_grad does between steps: free the gradients (set_to_none=True) or zero-fill them in place (False)
ZERO_GRAD = ("none", "zeros")
OFFLOADS = ("none", "optimizer", "optimizer+params")
QLORA_BASES = ("nf4", "gptq")
DS_OVERLAP_COMM = ("auto", "on", "off")
# whose modelling code runs the layers: transformers' (hf) or a stack's own module (litgpt: gpuplan.train.litgpt_acts;
# torchtitan: gpuplan.train.activations.sdpa_repeats_kv)
MODEL_IMPLS = ("hf", "litgpt", "torchtitan")
LORA_DTYPES = ("fp32", "model")  # LoRA adapter elements: fp32 (PEFT) or the model's dtype

# Hugging Face PEFT's LoRA target for "all linear layers" (peft.utils.constants INCLUDE_LINEAR_LAYERS_SHORTHAND):
# every Linear except the output head.
ALL_LINEAR = ("all-linear",)


@dataclass(frozen=True)
class Overheads:
    """Memory outside the tensors PyTorch's allocator reports, as named inputs (see gpuplan.train.overheads)."""

    cuda_context_bytes: int | None = None  # None: the default of gpuplan.train.overheads
    workspace_bytes: int | None = None
    allocator_reserve_fraction: float | None = None


@dataclass(frozen=True)
class TrainConfig:
    """One training step in steady state. ``batch`` is the micro-batch per GPU (per data-parallel rank)."""

    batch: int = 1
    seq: int = 2048
    # encoder-decoders (T5) only: the decoder's length (the labels), None for ``seq``; the encoder reads ``seq``
    target_seq: int | None = None
    grad_accum: int = 1
    precision: str = "bf16"
    # the training stack whose defaults fill every stack-settable field left None (gpuplan.train.stacks); a field
    # given explicitly wins over the stack
    stack: str = "torch"
    framework: str | None = None
    optimizer: str | None = None
    optimizer_impl: str | None = None
    recompute: str | None = None
    selective_policy: str | None = None  # what --recompute selective recomputes: attention core | op-level policy
    attention: str = "sdpa"
    model_impl: str | None = None  # whose modelling code runs the layers (MODEL_IMPLS); the stack's by default
    activation_model: str = "framework"
    method: str = "full"
    trainable: tuple[str, ...] = ()  # globs over Hugging Face parameter names (method "freeze")
    lora_rank: int = 16
    lora_targets: tuple[str, ...] = ALL_LINEAR
    lora_dropout: float | None = None  # None: the stack's (PEFT's 0.0; litgpt's 0.05)
    lora_dtype: str | None = None  # LORA_DTYPES; the stack's by default (fp32: PEFT's upcast adapters)
    lora_modules_to_save: tuple[str, ...] = ()  # PEFT modules_to_save: modules trained in full beside the adapters
    qlora_block_size: int = 64
    qlora_double_quant: bool = True
    # the 4-bit base QLoRA trains over: bitsandbytes NF4 or a GPTQ checkpoint (gpuplan.train.quantbase)
    qlora_base: str = "nf4"
    qlora_group_size: int = 128  # GPTQ quantization_config group_size (columns per scale/zero group)
    loss_impl: str | None = None
    loss_chunk_tokens: int | None = None
    loss_parallel: bool | None = None  # tensor parallelism keeps 1/tp of the vocabulary's logits per rank
    optimizer_in_backward: bool | None = None  # each parameter stepped as soon as its gradient is accumulated
    compile: bool | None = None  # each decoder layer under torch.compile (gpuplan.train.compiled)
    cuda_module_loading: str | None = None  # CUDA_MODULE_LOADING: lazy (PyTorch >= 2.0) or eager (all kernels)
    # checkpointed layer inputs kept in host memory (Unsloth's offloaded gradient checkpointing)
    recompute_offload: bool | None = None
    # DeepSpeed ZeRO communication buffers, in elements (gpuplan.parallel.deepspeed); used with --framework deepspeed
    ds_reduce_bucket: int | None = None
    ds_overlap_comm: str | None = None  # auto: DeepSpeed's rule (on for ZeRO-3 only)
    ds_contiguous_gradients: bool | None = None
    ds_prefetch_bucket: int | None = None
    ds_max_live_params: int | None = None
    keep_logits: bool = False  # the training loop holds the model output (logits) through backward
    zero_grad: str = "none"  # none: gradients freed after each step; zeros: kept, zero-filled (PyTorch < 2.0)
    dropout: float = 0.0  # hidden and attention dropout probability (Hugging Face Llama-style models: 0)
    overheads: Overheads = field(default_factory=Overheads)
    # parallel layout (issue 4); all 1 = one GPU
    gpus: int | None = None
    dp: int = 1
    tp: int = 1
    pp: int = 1
    ep: int = 1
    cp: int = 1
    vpp: int = 1
    sp: bool = False
    zero: int = 0
    microbatches: int | None = None
    offload: str = "none"
    reshard_after_forward: bool = True  # FSDP2 with --zero 3 (--zero 2 never reshards)
    # FSDP2: the embedding and the output head as groups of their own (gpuplan.parallel.buffers.embedding_groups)
    fsdp_embedding_groups: bool | None = None
    dp_shard: int | None = None  # hybrid sharding: ZeRO/FSDP shard group of dp_shard·cp ranks (None: all of dp)
    transformers_version: str | None = None  # release whose modelling code the run uses (None: gpuplan.versions)
    bitsandbytes_version: str | None = None  # release of a QLoRA run's NF4 matmuls (None: the newest behaviour)
    torch_version: str | None = None  # PyTorch release of the run's autograd (None: the traced one)
    # QLoRA: PEFT's prepare_model_for_kbit_training upcasts the unquantized parameters to fp32 (gpuplan.train.kbit)
    kbit_prepare: bool | None = None
    qlora_head: bool | None = None  # QLoRA: the output head quantized too (litgpt through Lightning's plugin)
    # QLoRA through litgpt: bitsandbytes' StableEmbedding replaces the token embedding after the optimizer is built
    stable_embedding: bool | None = None
    # (field, value, source) of each field the stack filled in; set by __post_init__
    stack_settings: tuple[tuple[str, object, str], ...] = field(default=(), compare=False, repr=False)
    # the stack-settable fields that were not given (None) and were resolved
    resolved_fields: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        resolve_stack(self)
        validate(self)

    def with_(self, **changes: object) -> "TrainConfig":
        """A copy with some fields changed (validated again). Changing the stack resolves again every field the
        previous stack filled in."""
        if "stack" in changes:
            changes = {**{k: None for k in self.resolved_fields if k not in changes}, **changes}
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def tokens(self) -> int:
        """Tokens of one micro-batch on one GPU (before context parallelism splits the sequence)."""
        return self.batch * self.seq

    @property
    def act_mode(self) -> str:
        """The activation model's recompute mode: none | selective (attention core) | op (torchtitan's op-level
        selective checkpointing, gpuplan.train.checkpointing) | full."""
        if self.recompute == "selective" and self.selective_policy == "op":
            return "op"
        return self.recompute  # type: ignore[return-value]

    @property
    def checkpointed(self) -> bool:
        """Each layer runs under torch.utils.checkpoint and is rebuilt in full during backward."""
        return self.act_mode in ("full", "op")

    @property
    def world_size(self) -> int:
        return self.dp * self.tp * self.pp * self.cp


# The stack-settable fields; what the default stack (``torch``) gives each is in data/stacks/torch.toml.
STACK_FIELDS = ("framework", "optimizer", "optimizer_impl", "recompute", "selective_policy", "loss_impl",
                "loss_chunk_tokens", "loss_parallel", "optimizer_in_backward", "compile", "cuda_module_loading",
                "recompute_offload", "ds_reduce_bucket", "ds_overlap_comm", "ds_contiguous_gradients",
                "ds_prefetch_bucket", "ds_max_live_params", "model_impl", "lora_dtype", "fsdp_embedding_groups",
                "kbit_prepare", "qlora_head", "lora_dropout", "stable_embedding")


def resolve_stack(cfg: TrainConfig) -> None:
    """Fill every stack-settable field left None: from the stack's defaults, else from the ``torch`` stack (a
    plain PyTorch / Hugging Face loop). Records what a non-default stack set, with its source."""
    from gpuplan.train.stacks import load_stack

    stack = load_stack(cfg.stack)
    base = load_stack("torch")
    single = (cfg.gpus or 1) == 1 and cfg.dp * cfg.tp * cfg.pp * cfg.cp * cfg.ep == 1
    settings, resolved = [], []
    for name in STACK_FIELDS:
        if getattr(cfg, name) is not None:
            continue
        d = stack.default(name, cfg.method, single)
        if d is not None and cfg.stack != "torch":
            settings.append((name, d.value, d.source))
        else:
            d = base.default(name, cfg.method, single)
        assert d is not None, f"torch.toml lacks a default for {name}"
        object.__setattr__(cfg, name, d.value)
        resolved.append(name)
    object.__setattr__(cfg, "stack_settings", tuple(settings))
    object.__setattr__(cfg, "resolved_fields", tuple(resolved))


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(name, value, f"must be one of {', '.join(allowed)}")


def _positive(name: str, value: object) -> None:
    """``name``: the option (``--gpus``) or a field name (``lora_rank``, written ``--lora-rank`` in the error). The
    upper bound is the option's in gpuplan.limits, shared with the command line and the web API."""
    from gpuplan.limits import count_bound

    flag = name if name.startswith("--") else f"--{name.replace('_', '-')}"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(flag, value, "must be an integer >= 1")
    if value > count_bound(name):
        raise InputError(flag, value, f"must be at most {count_bound(name):,}")


def validate(cfg: TrainConfig) -> None:
    """Raise InputError naming the option, the value and the rule for any invalid setting."""
    for name in ("batch", "seq", "grad_accum", "lora_rank", "qlora_block_size", "qlora_group_size",
                 "loss_chunk_tokens", "dp", "tp", "pp", "ep", "cp", "vpp", "ds_reduce_bucket", "ds_prefetch_bucket",
                 "ds_max_live_params"):
        _positive(name, getattr(cfg, name))
    if cfg.target_seq is not None:
        _positive("target_seq", cfg.target_seq)
    _choice("--precision", cfg.precision, PRECISIONS)
    _choice("--framework", cfg.framework, FRAMEWORKS)
    _choice("--optimizer", cfg.optimizer, OPTIMIZERS)
    _choice("--optimizer-impl", cfg.optimizer_impl, OPTIMIZER_IMPLS)
    _choice("--recompute", cfg.recompute, RECOMPUTE)
    _choice("--attention", cfg.attention, ATTENTIONS)
    _choice("--activation-model", cfg.activation_model, ACTIVATION_MODELS)
    _choice("--method", cfg.method, METHODS)
    _choice("--loss", cfg.loss_impl, LOSS_IMPLS)
    _choice("--selective-policy", cfg.selective_policy, SELECTIVE_POLICIES)
    _choice("--cuda-module-loading", cfg.cuda_module_loading, CUDA_MODULE_LOADING)
    _choice("--zero-grad", cfg.zero_grad, ZERO_GRAD)
    _choice("--model-impl", cfg.model_impl, MODEL_IMPLS)
    _choice("--lora-dtype", cfg.lora_dtype, LORA_DTYPES)
    if cfg.model_impl in ("litgpt", "torchtitan") and cfg.attention == "eager":
        raise InputError("--attention", "eager", f"{cfg.model_impl}'s own module always calls "
                         "F.scaled_dot_product_attention (litgpt model.py CausalSelfAttention."
                         "scaled_dot_product_attention; torchtitan models/llama/model.py Attention.forward)",
                         hint="use --attention sdpa or flash, or --model-impl hf")
    if cfg.model_impl == "litgpt" and cfg.act_mode in ("selective", "op"):
        raise InputError("--recompute", "selective", "litgpt's own module has no selective recompute (litgpt 0.5.3 "
                         "checkpoints whole Blocks through FSDPStrategy(activation_checkpointing_policy=...))",
                         hint="use --recompute none or full, or --model-impl hf")
    _choice("--qlora-base", cfg.qlora_base, QLORA_BASES)
    _choice("--ds-overlap-comm", cfg.ds_overlap_comm, DS_OVERLAP_COMM)
    if cfg.recompute_offload and cfg.recompute != "full":
        raise InputError("--recompute-offload", "on", "offloads the inputs of checkpointed layers: it needs "
                         "--recompute full", hint="add --recompute full, or leave --recompute-offload off")
    if cfg.optimizer_in_backward and ((cfg.gpus or 1) > 1 or cfg.world_size > 1):
        raise InputError("--optimizer-in-backward", True, "is modelled for one GPU only",
                         hint="leave it off (--optimizer-in-backward off) for a parallel layout")
    if cfg.optimizer_in_backward and cfg.grad_accum > 1:
        raise InputError("--optimizer-in-backward", True, "steps each parameter during backward, so it cannot "
                         "accumulate gradients over micro-batches: needs --grad-accum 1",
                         hint="torchtune's recipes refuse optimizer_in_bwd with gradient_accumulation_steps > 1")
    if cfg.zero_grad == "zeros" and ((cfg.gpus or 1) > 1 or cfg.world_size > 1 or cfg.framework != "torch"):
        raise InputError("--zero-grad", "zeros", "is modelled for one GPU with the plain PyTorch loop only",
                         hint="sharded and data-parallel stacks keep their gradients their own way; leave --zero-grad "
                         "none for a parallel layout")
    if cfg.zero_grad == "zeros" and cfg.optimizer_in_backward:
        raise InputError("--zero-grad", "zeros", "cannot be combined with --optimizer-in-backward, which frees "
                         "each gradient as soon as its parameter is stepped")
    _choice("--offload", cfg.offload, OFFLOADS)
    if cfg.zero not in (0, 1, 2, 3):
        raise InputError("--zero", cfg.zero, "must be 0, 1, 2 or 3")
    if cfg.gpus is not None:
        _positive("--gpus", cfg.gpus)
    if cfg.microbatches is not None:
        _positive("--microbatches", cfg.microbatches)
    if not 0.0 <= cfg.dropout < 1.0:
        raise InputError("--dropout", cfg.dropout, "must be in [0, 1)")
    if not 0.0 <= cfg.lora_dropout < 1.0:
        raise InputError("--lora-dropout", cfg.lora_dropout, "must be in [0, 1)")
    if cfg.method == "freeze" and not cfg.trainable:
        raise InputError("--trainable", "", "is required with --method freeze",
                         hint="e.g. --trainable 'model.layers.[0-5].*' (globs over Hugging Face parameter names)")
    if cfg.trainable and cfg.method != "freeze":
        raise InputError("--trainable", ",".join(cfg.trainable), "is only used with --method freeze")
    if cfg.method in ("lora", "qlora") and not cfg.lora_targets:
        raise InputError("--lora-targets", "", "must name at least one module (or all-linear)")
    if cfg.lora_modules_to_save and cfg.method not in ("lora", "qlora"):
        raise InputError("--lora-modules-to-save", ",".join(cfg.lora_modules_to_save),
                         "is only used with --method lora or qlora")
    if cfg.method == "qlora" and cfg.precision in ("fp32", "amp-bf16", "amp-fp16", "fp8"):
        raise InputError("--precision", cfg.precision, "QLoRA computes in bf16 or fp16: use bf16 or fp16",
                         hint="the 4-bit base is dequantized to the compute dtype")
    if cfg.precision == "fp8" and cfg.framework == "torch" and cfg.method != "full":
        raise InputError("--precision", "fp8", "fp8 training is modelled for full training only")
    ov = cfg.overheads
    for name in ("cuda_context_bytes", "workspace_bytes"):
        v = getattr(ov, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise InputError(f"--{name.replace('_bytes', '').replace('_', '-')}", v, "must be a size >= 0")
    frac = ov.allocator_reserve_fraction
    if frac is not None and not 0.0 <= frac < 1.0:
        raise InputError("--allocator-reserve", frac, "must be a fraction in [0, 1)")
    if cfg.sp and cfg.tp == 1:
        raise InputError("--sp", True, "sequence parallelism needs --tp > 1")
    if cfg.vpp > 1 and cfg.pp == 1:
        raise InputError("--vpp", cfg.vpp, "interleaved pipeline stages need --pp > 1")
    if cfg.dp_shard is not None:
        _validate_dp_shard(cfg)
    transformers_release(cfg.transformers_version)
    if cfg.torch_version is not None:
        from gpuplan.versions import torch_release

        if torch_release(cfg.torch_version) < (1, 0):
            raise InputError("--torch-version", cfg.torch_version, "must be a PyTorch release, 1.0 or newer")
    if cfg.bitsandbytes_version is not None:
        _check_bitsandbytes(cfg)
    if cfg.stable_embedding and cfg.method == "qlora" and not ((cfg.gpus or 1) == 1 and
                                                              cfg.dp * cfg.tp * cfg.pp * cfg.cp * cfg.ep == 1):
        raise InputError("--gpus", cfg.gpus or cfg.dp * cfg.tp * cfg.pp * cfg.cp * cfg.ep,
                         "litgpt's QLoRA (--stable-embedding on, the litgpt stack's) runs on one device: "
                         "finetune/lora.py refuses quantization with several ('Quantization is currently not supported "
                         "for multi-GPU training')", hint="give --stable-embedding off for another stack's QLoRA")
    _check_stack_support(cfg)


def _check_bitsandbytes(cfg: TrainConfig) -> None:
    """``--bitsandbytes-version`` describes the NF4 matmuls of a bitsandbytes QLoRA run; torchtune's QLoRA runs
    torchao's NF4Tensor (torchtune/modules/low_precision/nf4_linear.py), not bitsandbytes."""
    from gpuplan.versions import bitsandbytes_release

    bitsandbytes_release(cfg.bitsandbytes_version)
    if cfg.method != "qlora" or cfg.qlora_base != "nf4":
        raise InputError("--bitsandbytes-version", cfg.bitsandbytes_version,
                         "describes a QLoRA run over an NF4 base (--method qlora --qlora-base nf4)")
    if cfg.stack == "torchtune":
        raise InputError("--bitsandbytes-version", cfg.bitsandbytes_version,
                         "does not apply to --stack torchtune, whose QLoRA runs torchao's NF4 tensors, not bitsandbytes")


def _validate_dp_shard(cfg: TrainConfig) -> None:
    """Hybrid sharding (``--dp-shard N``) exists where a framework shards over a subgroup of the data-parallel ranks
    and replicates across groups; divisibility by dp is checked once dp is known (``gpuplan.parallel.layout``).

    - torch: FSDP2 ``fully_shard(mesh=2-D DeviceMesh)`` (torch/distributed/fsdp/_fully_shard/_fsdp_init.py,
      HSDPMeshInfo; torchtitan ``data_parallel_replicate_degree`` / ``data_parallel_shard_degree``) for
      --zero 2/3; ``ZeroRedundancyOptimizer(process_group=...)`` over the shard group for --zero 1;
    - deepspeed: MiCS (``zero_optimization.mics_shard_size``), built on ZeRO-3 only: deepspeed/runtime/engine.py
      ``_configure_zero_optimizer`` returns the MiCS optimizer for stage 3 and ignores the field below it;
      deepspeed/runtime/zero/mics.py refuses CPU offload ("Local sharding has no support for CPU offloading");
      AutoEP with ZeRO-3 refuses MiCS (engine.py);
    - megatron: the partial distributed optimizer, ``--num-distributed-optimizer-instances = dp / N``
      (megatron/core/parallel_state.py: intra-partial data-parallel groups of dp·cp / instances ranks;
      megatron/core/distributed/distributed_data_parallel_config.py), so with --zero 1 only."""
    _positive("--dp-shard", cfg.dp_shard)
    if cfg.zero < 1:
        raise InputError("--dp-shard", cfg.dp_shard, "hybrid sharding splits ZeRO/FSDP states: it needs --zero 1, 2 "
                         "or 3", hint="add --zero 3 (FSDP2 / ZeRO-3), or leave --dp-shard out for plain replicas")
    if cfg.framework == "deepspeed":
        if cfg.zero != 3:
            raise InputError("--dp-shard", cfg.dp_shard, "DeepSpeed's hybrid sharding (MiCS, mics_shard_size) "
                             "exists for ZeRO-3 only", hint="add --zero 3")
        if cfg.offload != "none":
            raise InputError("--dp-shard", cfg.dp_shard, "DeepSpeed MiCS has no CPU offload (zero/mics.py)",
                             hint="leave --offload at none, or --dp-shard out")
        if cfg.ep > 1:
            raise InputError("--dp-shard", cfg.dp_shard, "DeepSpeed expert parallelism with ZeRO-3 does not "
                             "support MiCS (runtime/engine.py)", hint="leave --ep at 1, or --dp-shard out")


def _check_stack_support(cfg: TrainConfig) -> None:
    """A parallel axis, optimizer or method the stack has no implementation of is refused (gpuplan.train.stacks)."""
    from gpuplan.train.stacks import check_support, load_stack

    used = {k: v for k, v in (("tp", cfg.tp), ("pp", cfg.pp), ("cp", cfg.cp), ("ep", cfg.ep)) if v > 1}
    if cfg.dp > 1 or (cfg.gpus or 1) > 1 and not used:
        used["dp"] = cfg.gpus if cfg.dp == 1 else cfg.dp
    if cfg.sp:
        used["sp"] = True
    if cfg.zero:
        used["zero"] = cfg.zero
    if cfg.dp_shard is not None:
        used["dp_shard"] = cfg.dp_shard
    if cfg.offload != "none":
        used["offload"] = cfg.offload
    check_support(load_stack(cfg.stack), used, cfg.optimizer, cfg.method)
