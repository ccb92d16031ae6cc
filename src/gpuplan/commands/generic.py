"""``params``, ``train`` and ``infer`` for a config.json whose family gpuplan has no rules for: the exact, slower
path of :mod:`gpuplan.verify.generic` (transformers on the meta device for the tensors, reduced-depth CPU traces
extrapolated per layer kind for the memory). What the traces cannot show (parallel layouts, other stacks, quantized
weights, speed) is refused with the option that asks for it, never guessed.
"""

from __future__ import annotations

from typing import Any

from gpuplan.errors import InputError, UnknownFamily
from gpuplan.model.spec import target_seq_refusal
from gpuplan.model.traced import TracedMemory, TracedModel
from gpuplan.report import MemoryReport, fits
from gpuplan.train.config import TrainConfig
from gpuplan.train.overheads import overhead_bytes
from gpuplan.train.peak import Phase
from gpuplan.train.report import TrainReport

# The trace's phases under the names the training and inference reports give them (gpuplan.train.peak).
_PHASE_NAMES = {"forward": "forward", "loss_forward": "forward", "backward": "backward",
                "loss_backward": "loss backward", "optimizer": "optimizer step", "prefill": "prefill",
                "decode": "decode", "encode": "encoder pass"}


def traced_model(exc: UnknownFamily) -> TracedModel:
    """The exact tensor table of the config the error carries (InputError without the ``[verify]`` extra, for
    remote code, or for a model_type transformers does not know)."""
    from gpuplan.model.traced import tracing_allowed
    from gpuplan.verify.generic import traced_model as build

    if not tracing_allowed():
        raise exc
    return build(exc.config, exc.name, exc.source)


def traced_line(family: str, wall_s: float) -> str:
    """The line every traced answer carries; an encoder-decoder (T5) is a known family whose parameters have rules
    and whose memory is traced."""
    from gpuplan.model.hf_config import ENCODER_DECODER_TYPES

    if family in ENCODER_DECODER_TYPES:
        return f"traced: {family} (encoder-decoder, no memory rules), {wall_s:.1f} s"
    return f"traced: unknown family {family}, {wall_s:.1f} s"


def left_out_lines(config: dict[str, Any], model: TracedModel) -> list[str]:
    """A multimodal config traces the language model transformers builds for causal LM from it; the warning names
    the sub-models that are not in it (vision tower, audio encoder) and the projector."""
    from gpuplan.model.hf_config import left_out_parts

    left_out = left_out_parts(config)
    if not left_out:
        return []
    return [f"{model.family} is multimodal: the trace is its language model ({model.architecture}); left out: "
            f"{left_out}"]


def _how_line(model: TracedModel, mem: TracedMemory, what: str) -> str:
    depths = " and ".join(str(d) for d in mem.depths)
    if len(mem.depths) == 1:
        return (f"{model.architecture} built by transformers on the meta device for the tensors; {what} traced on "
                f"the CPU at its full {model.num_layers} layers")
    return (f"{model.architecture} built by transformers on the meta device for the tensors; {what} traced on the "
            f"CPU at {depths} layers and extrapolated by whole repeats of the layer pattern to {model.num_layers} "
            "layers")


def params_payload(exc: UnknownFamily) -> dict[str, Any]:
    """The JSON of ``gpuplan params --json`` for a traced family: exact counts by part and by layer kind;
    ``active`` is null (which experts a token uses is the family's routing rule, which gpuplan does not have)."""
    model = traced_model(exc)
    out = params_json(model)
    out["warnings"] += left_out_lines(exc.config, model)
    return out


def params_json(model: TracedModel) -> dict[str, Any]:
    out: dict[str, Any] = {"total": model.params_total, "active": None, **model.component_params()}
    out["layer_kinds"] = [{"kind": k, "layers": n, "params_per_layer": p} for k, (n, p) in model.kind_params().items()]
    out["family"] = model.family
    out["architecture"] = model.architecture
    out["warnings"] = [traced_line(model.family, model.wall_s)]
    return out


def tensors_json(model: TracedModel) -> list[dict[str, Any]]:
    return [{"name": t.name, "shape": list(t.shape), "component": t.component, "layer_kind": t.layer_kind}
            for t in model.tensors]


def _refuse(option: str, value: object, family: str, allowed: str) -> InputError:
    from gpuplan.model.hf_config import ENCODER_DECODER_TYPES

    why = "no memory rules in gpuplan" if family in ENCODER_DECODER_TYPES else "no rules in gpuplan"
    return InputError(option, value, f"the traced path for family {family} ({why}) supports {allowed}")


def train_setup(cfg: TrainConfig, family: str):
    """The single-GPU training step the traces run, from the resolved config; InputError for what they cannot
    show."""
    from gpuplan.verify.setup import METHODS, OPTIMIZERS, PRECISIONS, RECOMPUTE_MODES, TrainSetup

    if (cfg.gpus or 1) != 1 or cfg.dp * cfg.tp * cfg.pp * cfg.ep * cfg.cp != 1 or cfg.zero or cfg.offload != "none":
        raise _refuse("--gpus", cfg.gpus or cfg.world_size, family, "one GPU (no --dp/--tp/--pp/--ep/--cp/--zero/"
                      "--offload)")
    checks = [("--precision", cfg.precision, PRECISIONS), ("--framework", cfg.framework, ("torch",)),
              ("--optimizer", cfg.optimizer, OPTIMIZERS), ("--recompute", cfg.recompute, RECOMPUTE_MODES),
              ("--attention", cfg.attention, ("sdpa", "eager")), ("--method", cfg.method, METHODS),
              ("--grad-accum", cfg.grad_accum, (1,)), ("--loss", cfg.loss_impl, ("standard",)),
              ("--dropout", cfg.dropout, (0.0,))]
    for option, value, allowed in checks:
        if value not in allowed:
            raise _refuse(option, value, family, ", ".join(str(a) for a in allowed))
    if cfg.method == "freeze" and any(ch.isdigit() for glob in cfg.trainable for ch in glob):
        # the reduced copies hold the first layers only: a glob naming layers by index trains other layers there
        raise _refuse("--trainable", ",".join(cfg.trainable), family, "globs without layer numbers (every layer "
                      "trained alike)")
    if cfg.optimizer_in_backward:
        raise _refuse("--optimizer-in-backward", "on", family, "off")
    return TrainSetup(batch=cfg.batch, seq=cfg.seq, target_seq=cfg.target_seq or 0, precision=cfg.precision,
                      optimizer=cfg.optimizer, optimizer_impl=cfg.optimizer_impl, recompute=cfg.recompute,
                      attention=cfg.attention, method=cfg.method, trainable=cfg.trainable, lora_rank=cfg.lora_rank,
                      lora_targets=cfg.lora_targets, lora_dropout=cfg.lora_dropout,
                      lora_modules_to_save=cfg.lora_modules_to_save, keep_logits=cfg.keep_logits)


def _phases(mem: TracedMemory) -> list[Phase]:
    best: dict[str, int] = {}
    for key, value in mem.values.items():
        if key.endswith("_peak"):
            name = _PHASE_NAMES.get(key.removesuffix("_peak"), key.removesuffix("_peak"))
            best[name] = max(best.get(name, 0), value)
    return [Phase(n, b) for n, b in best.items()]


def train_report(exc: UnknownFamily, cfg: TrainConfig, capacity_bytes: int | None
                 ) -> tuple[TracedModel, TrainReport]:
    """The training report of a traced family: components and peak extrapolated from the reduced-depth traces, the
    device total with the same overheads as the engine (gpuplan.train.overheads)."""
    from gpuplan.verify.build import is_encoder_decoder
    from gpuplan.verify.generic import trace_training

    seq2seq = is_encoder_decoder(exc.config)
    if cfg.target_seq is not None and not seq2seq:
        raise target_seq_refusal(cfg.target_seq, str(exc.config.get("model_type")))
    model = traced_model(exc)
    setup = train_setup(cfg, model.family)
    mem = trace_training(exc.config, model, setup)
    v = mem.values
    phases = _phases(mem)
    top = max(phases, key=lambda p: p.bytes)
    m = MemoryReport(weights_bytes=v["weights_bytes"], gradients_bytes=v["gradients_bytes"],
                     optimizer_bytes=v["optimizer_bytes"], activations_bytes=v["activations_bytes"],
                     logits_bytes=v["logits_bytes"], buffers_bytes=v["buffers_bytes"],
                     allocated_peak_bytes=top.bytes, peak_phase=top.name)
    ov = overhead_bytes(cfg.overheads, top.bytes, cfg.cuda_module_loading)
    m.reserved_bytes = top.bytes + ov.in_allocator
    m.total_bytes = m.reserved_bytes + ov.cuda_context_bytes
    m.assumptions = [_how_line(model, mem, "the training step"),
                     *([f"encoder-decoder: the encoder reads {cfg.seq:,} tokens per sequence, the decoder "
                        f"{cfg.target_seq or cfg.seq:,} (the labels, shifted right)"] if seq2seq else []),
                     f"device total: CUDA context {ov.cuda_context_bytes:,} B, workspaces {ov.workspace_bytes:,} B, "
                     f"allocator reserve {ov.allocator_reserve_fraction:.0%} of the allocated peak"]
    m.warnings = [traced_line(model.family, model.wall_s + mem.wall_s), *left_out_lines(exc.config, model)]
    report = TrainReport(m, model.params_total, v["params_trainable"], fits(m.total_bytes, capacity_bytes),
                         capacity_bytes, phases)
    report.config = cfg
    return model, report


def infer_payload(exc: UnknownFamily, values: Any) -> tuple[TracedModel, dict[str, Any]]:
    """The JSON of ``gpuplan infer --json`` for a traced family: one Hugging Face prefill of ``--batch`` x
    ``--context`` tokens and the first decode step, weights in ``--dtype`` (or the config's)."""
    from gpuplan.hardware.catalog import get_gpu
    from gpuplan.infer.source import config_dtype
    from gpuplan.options.infer import DEFAULT_CONTEXT
    from gpuplan.train.config import Overheads
    from gpuplan.units import GiB
    from gpuplan.verify.build import is_encoder_decoder
    from gpuplan.verify.generic import trace_prefill
    from gpuplan.verify.setup import PrefillSetup

    config = exc.config
    family = str(config.get("model_type"))
    dtype = values.dtype or config_dtype(config)
    if values.engine != "hf":
        raise _refuse("--engine", values.engine, family, "hf (Hugging Face transformers)")
    if values.weights.strip().lower() not in ("auto", dtype) or config.get("quantization_config"):
        raise _refuse("--weights", values.weights, family, "unquantized weights (auto, fp32, bf16, fp16)")
    for option in ("tp", "pp", "ep", "dp"):
        if getattr(values, option, 1) not in (None, 1):
            raise _refuse(f"--{option}", getattr(values, option), family, "one GPU")
    if values.kv_dtype.strip().lower() != "auto":
        raise _refuse("--kv-dtype", values.kv_dtype, family, "auto (the KV cache in the weights' dtype)")
    if dtype not in ("fp32", "bf16", "fp16"):
        raise _refuse("--dtype", dtype, family, "fp32, bf16, fp16")
    limit = config.get("max_position_embeddings")
    context = values.context or (min(DEFAULT_CONTEXT, limit) if isinstance(limit, int) and limit > 0
                                 else DEFAULT_CONTEXT)
    if values.prompt and values.prompt != context:
        raise _refuse("--prompt", values.prompt, family, f"the whole context prefilled at once (--context {context})")
    seq2seq = is_encoder_decoder(config)
    target = getattr(values, "target_seq", None)
    if target is not None and not seq2seq:
        raise target_seq_refusal(target, family, serving=True)
    model = traced_model(exc)
    mem = trace_prefill(config, model, PrefillSetup(batch=values.batch, context=context, dtype=dtype,
                                                    attention="sdpa", target=target or 2))
    v = mem.values
    phase, peak = mem.peak()
    ctx = None if values.cuda_context_gib is None else int(values.cuda_context_gib * GiB)
    ov = overhead_bytes(Overheads(cuda_context_bytes=ctx), peak, values.cuda_module_loading)
    total = peak + ov.total
    gpu = get_gpu(values.gpu) if values.gpu else None
    capacity = int(values.gpu_memory_gib * GiB) if values.gpu_memory_gib else (gpu.memory_usable_bytes if gpu
                                                                                 else None)
    memory = {k: int(v.get(k, 0)) for k in ("weights_bytes", "kv_cache_bytes", "activations_bytes", "logits_bytes",
                                            "buffers_bytes")}
    memory.update(gradients_bytes=0, optimizer_bytes=0, master_weights_bytes=0, allocated_peak_bytes=peak,
                  total_bytes=total, peak_phase=_PHASE_NAMES.get(phase, phase))
    out = {"model": exc.name, "family": family, "engine": "hf", "batch": values.batch, "context": context,
           "weights": dtype, "memory": memory, "params": {"total": model.params_total},
           "fits": fits(total, capacity), "capacity_bytes": capacity,
           "assumptions": [_how_line(model, mem, "the prefill and first decode step"),
                           f"device total: CUDA context {ov.cuda_context_bytes:,} B, workspaces "
                           f"{ov.workspace_bytes:,} B, allocator reserve {ov.allocator_reserve_fraction:.0%} of the "
                           "allocated peak"],
           "warnings": [traced_line(family, model.wall_s + mem.wall_s), *left_out_lines(config, model)]}
    if seq2seq:
        out["target_seq"] = target or 2
        out["assumptions"].insert(1, f"encoder-decoder: the {context:,} context tokens are the encoder's input; "
                                     "the decoder starts from its start token, and the KV cache is every decoder "
                                     "layer's cross-attention keys and values over them plus the self-attention "
                                     f"cache of the {target or 2:,} tokens decoded")
    return model, out

