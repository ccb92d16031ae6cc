"""Megatron-LM / NeMo argument lists: a launch script (``torchrun ... pretrain_gpt.py --num-layers ...``) or the
bare arguments in a text file, read as MODEL (``gpuplan train train_gpt3_175b_distributed.sh``).

The arguments mean what Megatron-LM's ``megatron/training/arguments.py`` (core_r0.12) gives them: no ``--bf16`` /
``--fp16`` trains in fp32; ``--use-distributed-optimizer`` shards the fp32 main parameters and optimizer states
over the data-parallel ranks (gpuplan's ``--zero 1`` with ``--framework megatron``); ``--swiglu`` without
``--ffn-hidden-size`` gives ``int(4h * 2/3 / 64) * 64``, otherwise ``4h``; the vocabulary is padded to a multiple of
``--make-vocab-size-divisible-by`` (128) x TP (``_vocab_size_with_padding``); the number of micro-batches is
``--global-batch-size / (--micro-batch-size x data-parallel size)`` (``megatron/core/num_microbatches_calculator.py``).
The model is a gpuplan preset when one has exactly these dimensions, otherwise raw Llama-style dimensions (which
need ``--swiglu`` and ``--untie-embeddings-and-output-weights``).
"""

from __future__ import annotations

import re
from typing import Any

from gpuplan.configs.launch import (
    Arg,
    Launch,
    int_value,
    is_launch,
    no_value,
    one_value,
    other_commands,
    split_args,
)
from gpuplan.configs.report import ConfigReport
from gpuplan.configs.shell import Script
from gpuplan.errors import InputError

SOURCE = "Megatron-LM megatron/training/arguments.py (core_r0.12)"
PROGRAM = re.compile(r"(^|/)pretrain_\w+\.py$")

# tokenizers whose vocabulary size is fixed (before Megatron's padding)
_TOKENIZER_VOCAB = {
    "GPT2BPETokenizer": (50257, "GPT-2 BPE (gpt2-vocab.json): 50,257 tokens"),
    "Llama2Tokenizer": (32000, "Llama 2 SentencePiece tokenizer.model: 32,000 tokens"),
}

_LOG = "logging only"
_NO_MEM = "no memory effect"
_HYPER = "hyperparameter: " + _NO_MEM
_IGNORED = {
    # run bookkeeping, data and logging
    **{f: "paths and data: " + _NO_MEM for f in (
        "--data-path", "--train-data-path", "--valid-data-path", "--test-data-path", "--data-cache-path", "--split",
        "--vocab-file", "--merge-file", "--tokenizer-model", "--mock-data", "--data-args-path", "--num-workers",
        "--dataloader-type", "--no-create-attention-mask-in-dataloader", "--reset-position-ids",
        "--reset-attention-mask", "--eod-mask-loss", "--per-split-data-args-path")},
    **{f: "checkpoint saving and loading, between steps" for f in (
        "--save", "--load", "--save-interval", "--no-load-optim", "--no-load-rng", "--no-save-optim",
        "--no-save-rng", "--finetune", "--ckpt-format", "--async-save", "--use-dist-ckpt", "--auto-detect-ckpt-format",
        "--pretrained-checkpoint", "--ckpt-fully-parallel-save", "--ckpt-fully-parallel-load", "--use-checkpoint-args",
        "--exit-on-missing-checkpoint", "--dist-ckpt-strictness")},
    **{f: _LOG for f in (
        "--log-interval", "--tensorboard-dir", "--wandb-project", "--wandb-exp-name", "--wandb-save-dir",
        "--log-throughput", "--log-timers-to-tensorboard", "--log-validation-ppl-to-tensorboard",
        "--log-memory-to-tensorboard", "--log-num-zeros-in-grad", "--log-params-norm", "--timing-log-level",
        "--tensorboard-log-interval", "--tensorboard-queue-size", "--log-progress", "--logging-level",
        "--log-world-size-to-tensorboard", "--log-loss-scale-to-tensorboard", "--no-log-loss-scale-to-tensorboard")},
    **{f: "validation runs between training steps" for f in ("--eval-interval", "--eval-iters", "--skip-train")},
    **{f: "run length and schedule: " + _NO_MEM for f in (
        "--train-iters", "--train-samples", "--exit-interval", "--exit-duration-in-mins", "--exit-signal-handler")},
    **{f: "learning-rate schedule: " + _NO_MEM for f in (
        "--lr", "--min-lr", "--lr-decay-style", "--lr-decay-iters", "--lr-decay-samples", "--lr-warmup-fraction",
        "--lr-warmup-iters", "--lr-warmup-samples", "--lr-warmup-init", "--lr-wsd-decay-style",
        "--lr-wsd-decay-iters", "--lr-wsd-decay-samples", "--override-opt_param-scheduler",
        "--use-checkpoint-opt_param-scheduler", "--start-weight-decay", "--end-weight-decay",
        "--weight-decay-incr-style")},
    **{f: _HYPER for f in (
        "--weight-decay", "--adam-beta1", "--adam-beta2", "--adam-eps", "--sgd-momentum", "--clip-grad",
        "--init-method-std", "--seed", "--attention-dropout", "--hidden-dropout", "--loss-scale",
        "--initial-loss-scale", "--min-loss-scale", "--loss-scale-window", "--hysteresis", "--rotary-base",
        "--rotary-percent", "--norm-epsilon", "--layernorm-epsilon", "--moe-aux-loss-coeff", "--moe-z-loss-coeff",
        "--moe-router-load-balancing-type", "--moe-router-score-function", "--moe-router-pre-softmax",
        "--moe-input-jitter-eps", "--apply-layernorm-1p", "--init-method-xavier-uniform", "--rope-scaling-factor",
        "--use-rope-scaling", "--moe-router-topk-scaling-factor", "--qk-layernorm", "--rotary-scaling-factor")},
    **{f: "kernel fusion or communication overlap: " + _NO_MEM for f in (
        "--overlap-grad-reduce", "--overlap-param-gather", "--overlap-param-gather-with-optimizer-step",
        "--tp-comm-overlap", "--no-masked-softmax-fusion", "--no-bias-gelu-fusion", "--no-bias-dropout-fusion",
        "--no-bias-swiglu-fusion", "--no-gradient-accumulation-fusion", "--no-rope-fusion", "--cross-entropy-loss-fusion",
        "--use-fused-weight-gradient-mlp", "--moe-grouped-gemm", "--moe-token-dispatcher-type", "--moe-permute-fusion",
        "--no-async-tensor-model-parallel-allreduce", "--distributed-timeout-minutes", "--distributed-backend",
        "--ddp-bucket-size", "--ddp-average-in-collective", "--align-grad-reduce", "--align-param-gather",
        "--defer-embedding-wgrad-compute", "--manual-gc", "--manual-gc-interval", "--no-persist-layer-norm",
        "--tp-comm-overlap-cfg", "--use-pytorch-profiler", "--profile", "--profile-step-start",
        "--profile-step-end", "--profile-ranks", "--nccl-communicator-config-path", "--calculate-per-token-loss",
        "--no-check-for-nan-in-loss-and-grad", "--check-for-nan-in-loss-and-grad", "--deterministic-mode",
        "--te-rng-tracker", "--inference-rng-tracker", "--empty-unused-memory-level", "--accumulate-allreduce-grads-in-fp32",
        "--use-mcore-models", "--use-legacy-models", "--transformer-impl", "--spec", "--use-flash-attn",
        "--moe-expert-capacity-factor", "--moe-pad-expert-input-to-capacity", "--moe-token-drop-policy")},
    "--max-position-embeddings": "read with the model's dimensions (learned position embeddings)",
    "--rampup-batch-size": "batch-size ramp-up at the start: the estimate is for the full global batch",
    "--normalization": "read with the model's dimensions",
    "--position-embedding-type": "read with the model's dimensions",
    "--no-position-embedding": "read with the model's dimensions",
    "--disable-bias-linear": "read with the model's dimensions",
    "--add-qkv-bias": "read with the model's dimensions",
    "--tokenizer-type": "read with the vocabulary size",
    "--make-vocab-size-divisible-by": "read with the vocabulary size",
    "--group-query-attention": "read with --num-query-groups",
    "--recompute-method": "read with --recompute-granularity",
    "--recompute-num-layers": "read with --recompute-granularity",
    "--global-batch-size": "gives the micro-batches per step once the data-parallel size is known",
    "--attention-backend": "read as --attention",
}
# flags read as the model's dimensions (set the model, not an option of their own)
_MODEL_FLAGS = ("--num-layers", "--hidden-size", "--num-attention-heads", "--num-query-groups", "--ffn-hidden-size",
                "--kv-channels", "--vocab-size", "--num-experts", "--moe-router-topk", "--moe-ffn-hidden-size",
                "--swiglu", "--untie-embeddings-and-output-weights")
_SWITCHES = frozenset({
    "--swiglu", "--untie-embeddings-and-output-weights", "--group-query-attention", "--bf16", "--fp16",
    "--use-distributed-optimizer", "--sequence-parallel", "--recompute-activations", "--no-position-embedding",
    "--disable-bias-linear", "--add-qkv-bias", "--mock-data", "--use-mcore-models", "--use-legacy-models",
    "--overlap-grad-reduce", "--overlap-param-gather", "--no-masked-softmax-fusion", "--moe-grouped-gemm",
    "--no-load-optim", "--no-load-rng", "--use-flash-attn", "--log-throughput", "--no-gradient-accumulation-fusion",
    "--tp-comm-overlap", "--cross-entropy-loss-fusion", "--qk-layernorm", "--use-rope-scaling", "--finetune",
    "--apply-layernorm-1p", "--use-dist-ckpt", "--async-save", "--manual-gc", "--calculate-per-token-loss",
})


def find_launch(script: Script, name: str, report: ConfigReport) -> Launch:
    """The script's ``pretrain_*.py`` command (after its launcher), or the whole file as bare arguments."""
    cmds = [c for c in script.commands if is_launch(c, PROGRAM)]
    if len(cmds) > 1:
        raise InputError(name, f"lines {', '.join(str(c.line) for c in cmds)}",
                         "holds more than one pretrain_*.py command: give a file with one")
    if cmds:
        cmd = cmds[0]
        at = next(i for i, w in enumerate(cmd.words) if PROGRAM.search(w.text))
        launch = Launch(line=cmd.line, program=[cmd.words[at]])
        lead, launch.launcher = split_args(cmd.words[:at], cmd.line)
        launch.launcher_name = " ".join(w.text for w in lead)
        rest, launch.args = split_args(cmd.words[at + 1:], cmd.line)
        if rest and rest[0].unresolved:
            raise InputError(f"{name}: {cmd.words[at].text}", ", ".join(rest[0].unresolved), "is not set in the "
                             "file (gpuplan runs no command and reads no environment)",
                             hint="write the arguments into the file")
        if rest:
            raise InputError(f"{name}: {cmd.words[at].text}", rest[0].text, "is a positional argument: Megatron-LM "
                             "takes only --flag value arguments")
    else:
        bare = [c for c in script.commands if not c.conditional and c.words and c.words[0].text.startswith("--")]
        if not bare:
            raise InputError(name, None, "holds no pretrain_*.py command and no --flag arguments")
        launch = Launch(line=bare[0].line)
        for c in bare:
            launch.args += split_args(c.words, c.line)[1]
            script.commands = [x for x in script.commands if x is not c or c is bare[0]]
    other_commands(script, launch.line, report, "pretrain_*.py launch")
    report.set("(file)", "stack", "megatron", "a Megatron-LM argument list: the megatron stack's defaults")
    return launch


def read(script: Script, name: str, report: ConfigReport) -> str | None:
    """Map a Megatron-LM launch into ``report``; returns the model preset (None: raw dimensions were set)."""
    launch = find_launch(script, name, report)
    seen: dict[str, Arg] = {}
    for arg in launch.args:
        if arg.flag in seen:
            raise InputError(f"{name}: {arg.flag}", arg.text, f"is given twice (lines {seen[arg.flag].line} and "
                             f"{arg.line}); Megatron keeps the last, which is easy to miss: give it once")
        if arg.flag in _SWITCHES:
            no_value(name, arg)
        seen[arg.flag] = arg
    known = set(_IGNORED) | set(_MODEL_FLAGS) | set(_HANDLED)
    for flag, arg in seen.items():
        if flag not in known:
            raise InputError(f"{name}: {flag}", arg.text or None, f"is not a Megatron-LM argument gpuplan knows "
                             f"({SOURCE})", hint="remove it, or check its spelling")
    if "--bf16" in seen and "--fp16" in seen:
        raise InputError(f"{name}: --bf16", None, "contradicts --fp16: Megatron trains in one of them")
    tp = _degree(name, seen, "--tensor-model-parallel-size", "tp", report)
    pp = _degree(name, seen, "--pipeline-model-parallel-size", "pp", report)
    cp = _degree(name, seen, "--context-parallel-size", "cp", report)
    ep = _degree(name, seen, "--expert-model-parallel-size", "ep", report)
    preset = _model(name, seen, tp, report)
    _launcher(name, launch, tp * pp * cp, ep, report)
    _precision(name, seen, report)
    _parallel(name, seen, pp, report)
    _recompute(name, seen, report)
    _training(name, seen, report)
    accounted = set(report.keys())
    for flag in seen:
        if flag in _IGNORED and flag not in accounted:
            report.ignore(flag, _IGNORED[flag])
    return preset


_HANDLED = ("--tensor-model-parallel-size", "--pipeline-model-parallel-size", "--context-parallel-size",
            "--expert-model-parallel-size", "--bf16", "--fp16", "--fp8-format", "--fp8-recipe",
            "--use-distributed-optimizer", "--sequence-parallel", "--num-layers-per-virtual-pipeline-stage",
            "--virtual-pipeline-model-parallel-size", "--recompute-granularity", "--recompute-activations",
            "--micro-batch-size", "--seq-length", "--optimizer", "--num-distributed-optimizer-instances")


def _degree(name: str, seen: dict[str, Arg], flag: str, option: str, report: ConfigReport) -> int:
    if flag not in seen:
        return 1
    n = int_value(name, seen[flag])
    report.set(flag, option, n)
    return n


def _launcher(name: str, launch: Launch, model_parallel: int, ep: int, report: ConfigReport) -> None:
    """torchrun's --nproc_per_node x --nnodes is the GPU count, when the layout fits in it."""
    counts: dict[str, int] = {}
    for a in launch.launcher:
        key = f"{launch.launcher_name} {a.flag}".strip()
        flag = a.flag.replace("-", "_")
        if flag in ("__nproc_per_node", "__nnodes") and not a.unresolved and a.text.isdigit():
            counts[flag] = int(a.text)
            continue
        report.ignore(key, "the launcher's rendezvous and rank setting: " + _NO_MEM)
    if not counts:
        return
    gpus = counts.get("__nproc_per_node", 1) * counts.get("__nnodes", 1)
    key = f"{launch.launcher_name} --nproc_per_node x --nnodes"
    dp = gpus // model_parallel if gpus % model_parallel == 0 else 0
    if dp and dp % ep == 0:
        report.set(key, "gpus", gpus, f"{counts.get('__nproc_per_node', 1)} x {counts.get('__nnodes', 1)}")
    else:
        report.ignore(key, f"{gpus} GPUs cannot hold this layout (TP x PP x CP = {model_parallel}, EP {ep} dividing "
                           "the data-parallel size): the script's node count is a placeholder; give --gpus")


def _model(name: str, seen: dict[str, Arg], tp: int, report: ConfigReport) -> str | None:
    def num(flag: str, default: int | None = None) -> int | None:
        return int_value(name, seen[flag]) if flag in seen else default

    for flag in ("--num-layers", "--hidden-size", "--num-attention-heads"):
        if flag not in seen:
            raise InputError(f"{name}: {flag}", None, "is required: the model is read from the arguments")
    layers, hidden, heads = num("--num-layers"), num("--hidden-size"), num("--num-attention-heads")
    assert layers and hidden and heads
    gqa = "--group-query-attention" in seen
    kv = num("--num-query-groups") if gqa else None
    if gqa and kv is None:
        raise InputError(f"{name}: --group-query-attention", None, "needs --num-query-groups")
    kv = kv or heads
    head_dim = num("--kv-channels") or (hidden // heads if hidden % heads == 0 else None)
    if head_dim is None:
        raise InputError(f"{name}: --num-attention-heads", heads, f"must divide --hidden-size {hidden} when "
                         "--kv-channels is not given")
    if heads % tp:
        raise InputError(f"{name}: --tensor-model-parallel-size", tp, f"must divide --num-attention-heads {heads}")
    if kv % tp and tp % kv:
        raise InputError(f"{name}: --tensor-model-parallel-size", tp, f"must divide --num-query-groups {kv} (or be "
                         "a multiple of it)")
    gated = "--swiglu" in seen
    ffn = num("--ffn-hidden-size") or (int(4 * hidden * 2 / 3 / 64) * 64 if gated else 4 * hidden)
    tie = "--untie-embeddings-and-output-weights" not in seen
    experts = num("--num-experts", 0) or 0
    top_k = num("--moe-router-topk", 2) if experts else 0
    expert_ffn = num("--moe-ffn-hidden-size") or ffn
    vocab, vocab_note = _vocab(name, seen, tp)
    learned = ("--no-position-embedding" not in seen
               and _text(name, seen, "--position-embedding-type", "learned_absolute") == "learned_absolute")
    rms = _text(name, seen, "--normalization", "LayerNorm") == "RMSNorm"
    bias = "--disable-bias-linear" not in seen
    dims = {"layers": layers, "hidden": hidden, "heads": heads, "kv_heads": kv, "head_dim": head_dim, "ffn": expert_ffn,
                "vocab": vocab, "gated": gated, "tie": tie, "experts": experts, "top_k": top_k}
    preset = _matching_preset(dims)
    if preset is not None:
        report.set("--num-layers", "model", preset, f"{layers} layers, hidden {hidden}, {heads} heads / {kv} KV, "
                   f"FFN {expert_ffn}, vocab {vocab:,} ({vocab_note})" + (f", {experts} experts top-{top_k}"
                                                                          if experts else "")
                   + f": the preset {preset} has exactly these dimensions")
        for flag in _MODEL_FLAGS[1:]:
            if flag in seen:
                report.ignore(flag, f"read with --num-layers: the preset {preset}")
        return preset
    if not gated or tie or learned or not rms or bias:
        what = ("a GELU MLP (no --swiglu)" if not gated else "tied embeddings (no "
                "--untie-embeddings-and-output-weights)" if tie else "learned position embeddings" if learned
                else "LayerNorm (no --normalization RMSNorm)" if not rms else "linear biases (no --disable-bias-linear)")
        flag = ("--swiglu" if not gated else "--untie-embeddings-and-output-weights" if tie else
                "--position-embedding-type" if learned else "--normalization" if not rms else "--disable-bias-linear")
        raise InputError(f"{name}: {flag}", None, f"the model has {what} and no gpuplan preset has its dimensions "
                         f"({layers} layers, hidden {hidden}, {heads} heads, vocab {vocab:,}); gpuplan's raw "
                         "dimensions describe Llama-style models only",
                         hint="give a preset or a config.json as MODEL with the layout options instead")
    for flag, option, value in (("--num-layers", "layers", layers), ("--hidden-size", "hidden", hidden),
                                ("--num-attention-heads", "heads", heads)):
        report.set(flag, option, value)
    if gqa:
        report.set("--num-query-groups", "kv_heads", kv)
    if "--kv-channels" in seen:
        report.set("--kv-channels", "head_dim", head_dim)
    report.set("--ffn-hidden-size" if "--ffn-hidden-size" in seen else "--swiglu", "ffn", ffn,
               "" if "--ffn-hidden-size" in seen else "Megatron's default with --swiglu: int(4h x 2/3 / 64) x 64")
    if "--ffn-hidden-size" in seen and "--swiglu" in seen:
        report.ignore("--swiglu", "a gated MLP: gpuplan's raw dimensions are Llama-style")
    report.set("--vocab-size" if "--vocab-size" in seen else "--tokenizer-type", "vocab", vocab, vocab_note)
    if experts:
        report.set("--num-experts", "experts", experts)
        report.set("--moe-router-topk" if "--moe-router-topk" in seen else "--moe-router-topk (Megatron default 2)",
                   "top_k", top_k)
        if "--moe-ffn-hidden-size" in seen and expert_ffn != ffn:
            raise InputError(f"{name}: --moe-ffn-hidden-size", expert_ffn, "differs from --ffn-hidden-size: "
                             "gpuplan's raw dimensions give experts the dense FFN size",
                             hint="give a config.json as MODEL")
        if "--moe-ffn-hidden-size" in seen:
            report.ignore("--moe-ffn-hidden-size", "equals --ffn-hidden-size")
    report.ignore("--untie-embeddings-and-output-weights", "a separate output layer: gpuplan's raw dimensions")
    return None


def _text(name: str, seen: dict[str, Arg], flag: str, default: str) -> str:
    return one_value(name, seen[flag]) if flag in seen else default


def _vocab(name: str, seen: dict[str, Arg], tp: int) -> tuple[int, str]:
    """Megatron's padded vocabulary: the tokenizer's size rounded up to --make-vocab-size-divisible-by x TP
    (megatron/training/tokenizer/tokenizer.py ``_vocab_size_with_padding``)."""
    divisible = int_value(name, seen["--make-vocab-size-divisible-by"]) if "--make-vocab-size-divisible-by" in seen \
        else 128
    if "--vocab-size" in seen:
        base, why = int_value(name, seen["--vocab-size"]), "--vocab-size"
    else:
        kind = _text(name, seen, "--tokenizer-type", "")
        if not kind and "--vocab-file" in seen and "--merge-file" in seen:
            kind = "GPT2BPETokenizer"  # a vocab/merges pair is the GPT-2 BPE tokenizer's files
        if kind not in _TOKENIZER_VOCAB:
            raise InputError(f"{name}: --tokenizer-type", kind or None, "gives no vocabulary size gpuplan knows "
                             f"(known: {', '.join(_TOKENIZER_VOCAB)})",
                             hint="add --vocab-size N to the file (the tokenizer's size, before padding)")
        base, why = _TOKENIZER_VOCAB[kind]
    multiple = divisible * tp
    padded = -(-base // multiple) * multiple
    return padded, f"{why}, padded to a multiple of {divisible} x TP {tp}" if padded != base else why


def _matching_preset(dims: dict[str, Any]) -> str | None:
    """The first preset (by id) whose architecture has exactly these dimensions."""
    from gpuplan.model.presets import load_presets

    for pid in sorted(load_presets()):
        spec = load_presets()[pid].spec()
        moe = spec.moe
        got = {"layers": spec.num_layers, "hidden": spec.hidden_size, "heads": spec.num_heads, "kv_heads": spec.num_kv_heads,
                   "head_dim": spec.head_dim, "ffn": moe.expert_ffn_size if moe else spec.ffn_size, "vocab": spec.vocab_size,
                   "gated": spec.gated_mlp, "tie": spec.tie_embeddings, "experts": moe.num_experts if moe else 0,
                   "top_k": moe.top_k if moe else 0}
        if got == dims and (not moe or all(moe.moe_layers)):
            return pid
    return None


def _precision(name: str, seen: dict[str, Arg], report: ConfigReport) -> None:
    if "--bf16" in seen and "--fp16" in seen:
        raise InputError(f"{name}: --bf16", None, "contradicts --fp16: Megatron trains in one of them")
    half = "bf16" if "--bf16" in seen else "fp16" if "--fp16" in seen else None
    if "--fp8-format" in seen:
        fmt = one_value(name, seen["--fp8-format"])
        if fmt not in ("e4m3", "hybrid"):
            raise InputError(f"{name}: --fp8-format", fmt, "must be e4m3 or hybrid")
        report.set("--fp8-format", "precision", "fp8", "Transformer Engine fp8 linears")
        if half:
            report.ignore(f"--{half}", "the dtype outside the fp8 linears: read with --fp8-format")
        if "--fp8-recipe" in seen:
            report.ignore("--fp8-recipe", "the scaling recipe: " + _NO_MEM)
        return
    if "--fp8-recipe" in seen:
        report.ignore("--fp8-recipe", "used only with --fp8-format")
    if half:
        report.set(f"--{half}", "precision", f"mixed-{half}", f"{half} parameters, fp32 main gradients, fp32 master "
                                                               "weights and Adam states (18 bytes/param)")
    else:
        report.set("(Megatron default: no --bf16 or --fp16)", "precision", "fp32", "fp32 parameters and states")


def _parallel(name: str, seen: dict[str, Arg], pp: int, report: ConfigReport) -> None:
    if "--use-distributed-optimizer" in seen:
        report.set("--use-distributed-optimizer", "zero", 1, "main parameters and optimizer states sharded over the "
                                                              "data-parallel ranks")
    else:
        report.set("(Megatron default: no --use-distributed-optimizer)", "zero", 0)
    if "--num-distributed-optimizer-instances" in seen:
        n = int_value(name, seen["--num-distributed-optimizer-instances"])
        key = "--num-distributed-optimizer-instances"
        gpus = report.values.get("gpus")
        model_parallel = report.values.get("tp", 1) * pp * report.values.get("cp", 1)
        if n == 1:
            report.ignore(key, "1: one instance, sharded over all data-parallel ranks")
        elif "--use-distributed-optimizer" not in seen:
            raise InputError(f"{name}: {key}", n, "needs --use-distributed-optimizer")
        elif gpus is None or (gpus // model_parallel) % n:
            raise InputError(f"{name}: {key}", n, "the partial distributed optimizer shards over dp / instances "
                             "ranks: the data-parallel size must be known (torchrun --nproc_per_node x --nnodes) "
                             "and a multiple of it", hint="leave it out and give --dp-shard on the command line")
        else:
            report.set(key, "dp_shard", gpus // model_parallel // n, f"dp {gpus // model_parallel} / {n} instances: "
                                                                     "states sharded within each instance")
    if "--sequence-parallel" in seen:
        if "--tensor-model-parallel-size" not in report.values or report.values.get("tp", 1) == 1:
            report.ignore("--sequence-parallel", "TP 1: nothing to split (Megatron turns it off)")
        else:
            report.set("--sequence-parallel", "sp", True)
    layers = int_value(name, seen["--num-layers"])
    if "--num-layers-per-virtual-pipeline-stage" in seen:
        per = int_value(name, seen["--num-layers-per-virtual-pipeline-stage"])
        if layers % (pp * per):
            raise InputError(f"{name}: --num-layers-per-virtual-pipeline-stage", per,
                             f"must divide --num-layers {layers} / PP {pp}")
        report.set("--num-layers-per-virtual-pipeline-stage", "vpp", layers // (pp * per),
                   f"{layers} layers / (PP {pp} x {per})")
    if "--virtual-pipeline-model-parallel-size" in seen:
        report.set("--virtual-pipeline-model-parallel-size", "vpp",
                   int_value(name, seen["--virtual-pipeline-model-parallel-size"]))
    if "vpp" in report.values and report.values["vpp"] > 1 and pp == 1:
        raise InputError(f"{name}: --num-layers-per-virtual-pipeline-stage", None,
                         "interleaving needs --pipeline-model-parallel-size > 1")


def _recompute(name: str, seen: dict[str, Arg], report: ConfigReport) -> None:
    if "--recompute-activations" in seen:
        report.set("--recompute-activations", "recompute", "selective", "the old spelling of selective recompute")
    if "--recompute-granularity" not in seen:
        for flag in ("--recompute-method", "--recompute-num-layers"):
            if flag in seen:
                report.ignore(flag, "used only with --recompute-granularity full")
        return
    kind = one_value(name, seen["--recompute-granularity"])
    if kind not in ("full", "selective"):
        raise InputError(f"{name}: --recompute-granularity", kind, "must be full or selective")
    if "--recompute-activations" in seen and kind != "selective":
        raise InputError(f"{name}: --recompute-granularity", kind, "contradicts --recompute-activations (selective)")
    if kind == "selective":
        if "--recompute-activations" not in seen:
            report.set("--recompute-granularity", "recompute", "selective", "the attention core is recomputed")
        for flag in ("--recompute-method", "--recompute-num-layers"):
            if flag in seen:
                report.ignore(flag, "used only with --recompute-granularity full")
        return
    method = _text(name, seen, "--recompute-method", "")
    if method not in ("", "uniform", "block"):
        raise InputError(f"{name}: --recompute-method", method, "must be uniform or block")
    if not method:
        raise InputError(f"{name}: --recompute-granularity", "full", "needs --recompute-method uniform or block "
                         "(Megatron refuses full recompute without one)")
    n = int_value(name, seen["--recompute-num-layers"]) if "--recompute-num-layers" in seen else 1
    layers = int_value(name, seen["--num-layers"])
    pp = report.values.get("pp", 1)
    if method == "uniform" and n != 1:
        raise InputError(f"{name}: --recompute-num-layers", n, "uniform recompute of groups of more than one layer "
                         "is not modelled by gpuplan (it checkpoints every layer)", hint="use 1")
    if method == "block" and n < layers // pp:
        raise InputError(f"{name}: --recompute-num-layers", n, f"recomputing only {n} of the {layers // pp} layers "
                         "of each stage is not modelled by gpuplan", hint=f"use {layers // pp} (every layer)")
    report.set("--recompute-granularity", "recompute", "full", f"--recompute-method {method}, {n} layer(s): every "
                                                                "layer's input kept, the layer recomputed")


def _training(name: str, seen: dict[str, Arg], report: ConfigReport) -> None:
    if "--micro-batch-size" in seen:
        report.set("--micro-batch-size", "batch", int_value(name, seen["--micro-batch-size"]))
    if "--seq-length" in seen:
        report.set("--seq-length", "seq", int_value(name, seen["--seq-length"]))
    if "--global-batch-size" in seen:
        report.batch_rule["global_batch"] = int_value(name, seen["--global-batch-size"])
        report.batch_rule["micro_batch"] = report.values.get("batch", 1)
    if "--optimizer" in seen:
        opt = one_value(name, seen["--optimizer"])
        ours = {"adam": "adamw", "sgd": "sgdm"}.get(opt)
        if ours is None:
            raise InputError(f"{name}: --optimizer", opt, "must be adam or sgd")
        report.set("--optimizer", "optimizer", ours, "Megatron's adam is AdamW (decoupled weight decay)"
                   if opt == "adam" else "SGD with momentum")
    backend = _text(name, seen, "--attention-backend", "auto")
    if backend not in ("auto", "flash", "fused", "unfused", "local"):
        raise InputError(f"{name}: --attention-backend", backend, "must be auto, flash, fused, unfused or local")
    key = "--attention-backend" if "--attention-backend" in seen else "(Megatron default: --attention-backend auto)"
    if backend in ("unfused", "local"):
        report.set(key, "attention", "eager", "the s x s attention scores are saved")
    else:
        report.set(key, "attention", "flash", "Transformer Engine's flash or fused attention: no s x s scores saved")
    for flag in ("--use-flash-attn",):
        if flag in seen:
            report.ignore(flag, "read as --attention flash")


def resolve_batch(report: ConfigReport, values: Any, key: str = "--global-batch-size",
                  microbatches: bool = True) -> None:
    """--global-batch-size / (--micro-batch-size x data-parallel size) micro-batches per step, once the
    data-parallel size is known (megatron/core/num_microbatches_calculator.py); a remainder is an InputError.
    torchtitan's ``training.global_batch_size`` follows the same rule for its accumulation steps (its pipeline
    micro-batches come from the local batch instead, so ``microbatches`` is False there)."""
    total = report.batch_rule.get("global_batch")
    if total is None:
        return
    name = report.path.rsplit("/", 1)[-1]
    dp = values.dp if values.dp > 1 else max(1, (values.gpus or 1) // (values.tp * values.pp * values.cp))
    micro = values.batch
    if total % (micro * dp):
        raise InputError(f"{name}: {key}", total, f"must be a multiple of the micro-batch ({micro}) x data-parallel "
                         f"size ({dp})")
    n = total // (micro * dp)
    report.ignored = [(k, why) for k, why in report.ignored if k != key]
    if "grad_accum" in report.overridden or "microbatches" in report.overridden:
        return
    values.grad_accum = n
    note = f"{total} / ({micro} x dp {dp})"
    if microbatches:
        values.microbatches = n
        report.set(key, "microbatches", n, note + ": micro-batches per step (gradient accumulation)")
    else:
        report.set(key, "grad_accum", n, note + ": gradient accumulation steps")
