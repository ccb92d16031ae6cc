"""The options of ``gpuplan train``."""

from __future__ import annotations

from gpuplan.options.command import CommandOptions
from gpuplan.options.common import (
    ADVISE,
    CONFIG,
    EXPLAIN,
    FROM,
    JSON,
    LANG,
    MODEL_OPTIONS,
    PLOT,
)
from gpuplan.options.field import Option
from gpuplan.train import config as C
from gpuplan.train.stacks import stack_names
from gpuplan.versions import DEFAULT_TRANSFORMERS

TRAIN = CommandOptions(
    "train",
    help="memory per GPU for training or fine-tuning, and whether it fits",
    description="Per-GPU memory of one steady-state training step: weights, gradients, optimizer states, master "
                "weights, activations, logits, buffers, the phase-aware peak (what torch.cuda.max_memory_allocated() "
                "shows) and the device total.",
    options=(
        *MODEL_OPTIONS,
        JSON,
        EXPLAIN,
        Option("batch", "count", "--batch", default=1, help="micro-batch per GPU (default 1)", group="workload"),
        Option(
            "seq", "count", "--seq", default=2048, help="sequence length in tokens (default 2048)", group="workload"
        ),
        Option("grad_accum", "count", "--grad-accum", default=1, help="gradient accumulation steps", group="workload"),
        Option(
            "precision",
            "choice",
            "--precision",
            default="bf16",
            help="bf16: model cast to bf16, states in bf16; amp-*: fp32 params with autocast; mixed-*: half params + "
                 "fp32 master and states (16 B/param); fp32; fp8 (Transformer Engine style)",
            group="workload",
            choices=C.PRECISIONS,
        ),
        Option(
            "stack",
            "choice",
            "--stack",
            default="torch",
            help="the training stack whose defaults apply to every option below not given (default torch: a plain "
            "PyTorch / Hugging Face loop); the assumptions list what it set, with sources",
            group="workload",
            choices=stack_names(),
        ),
        Option(
            "framework",
            "choice",
            "--framework",
            help="sharding semantics: torch (PyTorch / Hugging Face, FSDP2 for --zero 3), deepspeed, megatron "
            "(18 B/param) (default: the stack's)",
            group="workload",
            choices=C.FRAMEWORKS,
        ),
        Option("optimizer", "choice", "--optimizer", help="default: the stack's (adamw)", group="workload",
               choices=C.OPTIMIZERS),
        Option(
            "optimizer_impl",
            "choice",
            "--optimizer-impl",
            help="foreach (PyTorch's CUDA default: one extra state-sized buffer in step), fused, for-loop "
            "(default: the stack's)",
            group="workload",
            choices=C.OPTIMIZER_IMPLS,
        ),
        Option(
            "optimizer_in_backward",
            "choice",
            "--optimizer-in-backward",
            help="on: each parameter is stepped as soon as its gradient exists (torchtune optimizer_in_bwd), so the "
            "full gradient set never does (default: the stack's, off)",
            group="workload",
            choices=("on", "off"),
        ),
        Option(
            "recompute",
            "choice",
            "--recompute",
            help="full = Hugging Face gradient checkpointing; selective = see --selective-policy (default: the "
            "stack's, none)",
            group="workload",
            choices=C.RECOMPUTE,
        ),
        Option(
            "selective_policy",
            "choice",
            "--selective-policy",
            help="what --recompute selective recomputes: attention (the attention core, Megatron) or op "
            "(torchtitan's op-level policy: matmul outputs saved, every second one recomputed) (default: the "
            "stack's)",
            group="workload",
            choices=C.SELECTIVE_POLICIES,
        ),
        Option(
            "recompute_offload",
            "choice",
            "--recompute-offload",
            help="on: with --recompute full each checkpointed layer's input is kept in host memory (Unsloth's "
            "offloaded gradient checkpointing) (default: the stack's, off)",
            group="workload",
            choices=("on", "off"),
        ),
        Option("attention", "choice", "--attention", default="sdpa", group="workload", choices=C.ATTENTIONS),
        Option(
            "activation_model",
            "choice",
            "--activation-model",
            default="framework",
            help="framework (what transformers saves, default) or korthikanti (the paper's sbh(34+5as/h))",
            group="workload",
            choices=C.ACTIVATION_MODELS,
        ),
        Option(
            "loss",
            "choice",
            "--loss",
            help="standard (fp32 logits), chunked or fused cross-entropy (one chunk of logits at a time) "
            "(default: the stack's, standard)",
            group="workload",
            choices=C.LOSS_IMPLS,
        ),
        Option("loss_chunk", "count", "--loss-chunk", help="tokens per loss chunk (default: the stack's, 1024)",
               group="workload"),
        Option(
            "loss_parallel",
            "choice",
            "--loss-parallel",
            help="on: under --tp each rank keeps 1/tp of the vocabulary's logits (torchtitan loss_parallel, "
            "Megatron's vocab-parallel cross-entropy) (default: the stack's)",
            group="workload",
            choices=("on", "off"),
        ),
        Option(
            "keep_logits",
            "flag",
            "--keep-logits",
            default=False,
            help="the training loop keeps outputs.logits alive",
            group="workload",
        ),
        Option(
            "dropout",
            "real",
            "--dropout",
            default=0.0,
            help="hidden/attention dropout (default 0)",
            group="workload",
            bounds=(("ge", 0), ("lt", 1)),
        ),
        Option(
            "transformers_version",
            "text",
            "--transformers-version",
            help=f"the transformers release the run uses; rules that changed between releases follow it "
            f"(default {DEFAULT_TRANSFORMERS}, the newest traced)",
            group="workload",
            metavar="X.Y",
        ),
        Option("method", "choice", "--method", default="full", group="fine-tuning", choices=C.METHODS),
        Option(
            "trainable",
            "names",
            "--trainable",
            default=(),
            help="trainable parameters by Hugging Face name, e.g. 'model.layers.[0-5].*' (--method freeze)",
            group="fine-tuning",
            metavar="GLOB[,GLOB]",
        ),
        Option("lora_rank", "count", "--lora-rank", default=16, group="fine-tuning"),
        Option(
            "lora_targets",
            "names",
            "--lora-targets",
            default=C.ALL_LINEAR,
            help="module names as PEFT's target_modules (default all-linear)",
            group="fine-tuning",
            metavar="NAME[,NAME]",
        ),
        Option(
            "lora_dropout", "real", "--lora-dropout", default=0.0, group="fine-tuning", bounds=(("ge", 0), ("lt", 1))
        ),
        Option(
            "qlora_base",
            "choice",
            "--qlora-base",
            default="nf4",
            help="the 4-bit base of --method qlora: nf4 (bitsandbytes) or gptq (an AutoGPTQ int4 checkpoint, e.g. "
            "Qwen-*-Chat-Int4: its matmuls keep each dequantized fp16 weight for backward)",
            group="fine-tuning",
            choices=C.QLORA_BASES,
        ),
        Option(
            "qlora_group_size",
            "count",
            "--qlora-group-size",
            default=128,
            help="GPTQ group size (the checkpoint's quantization_config group_size, default 128)",
            group="fine-tuning",
        ),
        Option(
            "gpus",
            "count",
            "--gpus",
            help="total GPUs (infers --dp)",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "dp",
            "count",
            "--dp",
            default=1,
            help="data parallel degree (default 1)",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "tp",
            "count",
            "--tp",
            default=1,
            help="tensor parallel degree (default 1)",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "pp",
            "count",
            "--pp",
            default=1,
            help="pipeline stages degree (default 1)",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "ep",
            "count",
            "--ep",
            default=1,
            help="expert parallel degree (default 1)",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "cp",
            "count",
            "--cp",
            default=1,
            help="context parallel degree (default 1)",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "vpp",
            "count",
            "--vpp",
            default=1,
            help="virtual stages per pipeline rank (interleaved) degree (default 1)",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "sp",
            "flag",
            "--sp",
            default=False,
            help="sequence parallelism (with --tp)",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "zero",
            "choice",
            "--zero",
            default=0,
            help="ZeRO stage (DeepSpeed semantics; FSDP2 with --framework torch --zero 3)",
            group="parallel layout (per GPU, most loaded rank)",
            choices=(0, 1, 2, 3),
        ),
        Option(
            "dp_shard",
            "count",
            "--dp-shard",
            help="hybrid sharding (HSDP, DeepSpeed MiCS, Megatron optimizer instances): with --zero 1-3, shard states "
                 "(and FSDP2/ZeRO-3 parameters) over N·cp ranks, replicate over dp/N groups; N divides dp (default: "
                 "all data-parallel ranks)",
            group="parallel layout (per GPU, most loaded rank)",
            metavar="N",
        ),
        Option(
            "microbatches",
            "count",
            "--microbatches",
            help="micro-batches per step (pipeline)",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "offload",
            "choice",
            "--offload",
            default="none",
            help="optimizer (and params) to CPU",
            group="parallel layout (per GPU, most loaded rank)",
            choices=C.OFFLOADS,
        ),
        Option(
            "no_reshard",
            "flag",
            "--no-reshard",
            default=False,
            help="FSDP2 (--zero 3): keep each layer's gathered parameters from forward to backward "
                 "(reshard_after_forward=False)",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "ds_reduce_bucket",
            "count",
            "--ds-reduce-bucket",
            help="DeepSpeed reduce_bucket_size in elements: ZeRO-1/2's ipg buffer through backward, ZeRO-3's "
            "reduce bucket (default: the stack's, DeepSpeed's 5e8)",
            group="parallel layout (per GPU, most loaded rank)",
            metavar="ELEMENTS",
        ),
        Option(
            "ds_overlap_comm",
            "choice",
            "--ds-overlap-comm",
            help="DeepSpeed overlap_comm: on doubles ZeRO-1/2's ipg buffer; auto = DeepSpeed's default (on for "
            "ZeRO-3 only) (default: the stack's)",
            group="parallel layout (per GPU, most loaded rank)",
            choices=C.DS_OVERLAP_COMM,
        ),
        Option(
            "ds_contiguous_gradients",
            "choice",
            "--ds-contiguous-gradients",
            help="DeepSpeed contiguous_gradients: off drops the reduce buffers (default: the stack's, on)",
            group="parallel layout (per GPU, most loaded rank)",
            choices=("on", "off"),
        ),
        Option(
            "ds_prefetch_bucket",
            "count",
            "--ds-prefetch-bucket",
            help="DeepSpeed stage3_prefetch_bucket_size in elements: ZeRO-3 parameters prefetched ahead of the "
            "layer computing (default: the stack's, 5e7)",
            group="parallel layout (per GPU, most loaded rank)",
            metavar="ELEMENTS",
        ),
        Option(
            "ds_max_live_params",
            "count",
            "--ds-max-live-params",
            help="DeepSpeed stage3_max_live_parameters in elements: caps ZeRO-3's gathered parameters (default: "
            "the stack's, 1e9)",
            group="parallel layout (per GPU, most loaded rank)",
            metavar="ELEMENTS",
        ),
        Option(
            "per_rank",
            "flag",
            "--per-rank",
            default=False,
            help="show every distinct rank (pipeline stages)",
            group="parallel layout (per GPU, most loaded rank)",
        ),
        Option(
            "gpu", "text", "--gpu", help="catalog id (see `gpuplan gpus`): fit and headroom", group="fit and overheads"
        ),
        Option(
            "check",
            "flag",
            "--check",
            default=False,
            help="exit 3 when it does not fit",
            group="fit and overheads",
            api=False,
        ),
        Option(
            "max_batch",
            "flag",
            "--max-batch",
            default=False,
            help="find the largest micro-batch that fits --gpu",
            group="fit and overheads",
        ),
        Option(
            "max_seq",
            "flag",
            "--max-seq",
            default=False,
            help="find the longest sequence that fits --gpu (a multiple of --cp)",
            group="fit and overheads",
        ),
        Option(
            "cuda_context",
            "real",
            "--cuda-context",
            help="CUDA context (default 512)",
            group="fit and overheads",
            metavar="MIB",
            bounds=(("ge", 0),),
            scale=1048576,
            as_int=True,
        ),
        Option(
            "workspace",
            "real",
            "--workspace",
            help="library workspaces (default 40)",
            group="fit and overheads",
            metavar="MIB",
            bounds=(("ge", 0),),
            scale=1048576,
            as_int=True,
        ),
        Option(
            "cuda_module_loading",
            "choice",
            "--cuda-module-loading",
            help="lazy (PyTorch >= 2.0) or eager (older PyTorch: every kernel loaded with the context); sizes the "
            "default CUDA context (default: the stack's, lazy)",
            group="fit and overheads",
            choices=C.CUDA_MODULE_LOADING,
        ),
        Option(
            "allocator_reserve",
            "real",
            "--allocator-reserve",
            help="caching-allocator reserve as a fraction of the allocated peak (default 0.05)",
            group="fit and overheads",
            metavar="FRACTION",
            bounds=(("ge", 0), ("lt", 1)),
        ),
        LANG,
        ADVISE,
        CONFIG,
        FROM,
        PLOT,
    ),
)
