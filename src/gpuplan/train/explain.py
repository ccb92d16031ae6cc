"""The explained terms, assumptions and warnings of a training estimate (``--explain``, JSON, web page)."""

from __future__ import annotations

from gpuplan.model.spec import ModelSpec, family_warnings
from gpuplan.parallel.layout import Layout
from gpuplan.report import MemoryReport, Term
from gpuplan.train.compiled import (COMPILE_ASSUMPTION, COMPILE_MODES, COMPILE_UNSUPPORTED, compile_modelled,
                                    compiled_supported)
from gpuplan.train.config import TrainConfig
from gpuplan.train.context import model_impl
from gpuplan.train.logits import LossMemory
from gpuplan.train.model_acts import ModelActs
from gpuplan.train.optimizer import managed_bytes
from gpuplan.train.overheads import OverheadBytes, segment_rule_note
from gpuplan.train.peak import Phase
from gpuplan.train.precision import Recipe, deepspeed_lora_master
from gpuplan.train.states import LORA_BYTES, ModelStates, lora_param_bytes
from gpuplan.versions import (FALCON_SDPA_MATH, FALCON_SHARED_SDPA, TRACED_TORCH, transformers_release, version_text,
                              version_warnings)


def terms(spec: ModelSpec, cfg: TrainConfig, recipe: Recipe, st: ModelStates, acts: ModelActs, loss: LossMemory,
          kept: tuple[int, ...], top: Phase, ov: OverheadBytes, b: int, s: int) -> list[Term]:
    P, Pt = st.total_params, st.trainable_params
    impl = model_impl(spec, cfg)
    litgpt = impl == "litgpt"
    out = [
        Term("weights_bytes", st.weights_bytes,
             "Σ tensors numel × param_bytes (NF4 for QLoRA's quantized linears, "
             + ("16-bit LoRA adapters under DeepSpeed)" if deepspeed_lora_master(cfg.framework, recipe)
                else "fp32 LoRA adapters)" if lora_param_bytes(cfg, recipe) == LORA_BYTES
                else "LoRA adapters in the model dtype)"),
             recipe.source, {"params": P, "param_bytes": recipe.param_bytes, "quantized_params": st.quantized_params,
                             "lora_params": st.lora_params}),
        Term("gradients_bytes", st.gradients_bytes, "trainable × grad_bytes (created by backward)", recipe.source,
             {"trainable": Pt, "grad_bytes": recipe.grad_bytes}),
        Term("master_weights_bytes", st.master_weights_bytes, "trainable × master_bytes", recipe.source,
             {"trainable": Pt, "master_bytes": recipe.master_bytes}),
        Term("optimizer_bytes", st.optimizer_bytes, f"{cfg.optimizer} states over the trainable tensors",
             "torch/optim (states per element) or bitsandbytes (8-bit blocks)",
             {"optimizer": cfg.optimizer, "state_bytes": recipe.state_bytes}),
        Term("optimizer_step_temp_bytes", st.optimizer.step_temp_bytes, st.optimizer.note,
             "torch/optim/adam.py _multi_tensor_adam / _single_tensor_adam / _fused_adam",
             {"impl": cfg.optimizer_impl}),
    ]
    if cfg.activation_model == "korthikanti":
        out.append(Term("activations_per_layer_bytes", kept[0] if kept else 0,
                        "s·b·h·(34 + 5·a·s/h) (selective: 34·s·b·h; full: 2·s·b·h)",
                        "Korthikanti et al. 2022, arXiv:2205.05198, section 4 / Table 2",
                        {"s": s, "b": b, "h": spec.hidden_size, "a": spec.num_heads}))
    out.append(Term("activations_kept_bytes", sum(kept), "Σ layers kept (layer inputs only under full recompute)",
                    "Hugging Face gradient checkpointing = torch.utils.checkpoint(use_reentrant=False) per layer",
                    {"recompute": cfg.recompute, "layers": spec.num_layers}))
    if cfg.activation_model != "korthikanti":
        la = acts.layers[-1] if acts.layers else None
        if la is not None:
            items = {k: round(a.bytes(b, s)) for k, a in la.items}
            out.append(Term("activations_per_layer_bytes", la.saved.bytes(b, s),
                            "Σ tensors saved for backward by one decoder layer (shared tensors once)",
                            "gpuplan.train.compiled (torch.compile: AOTAutograd's min-cut partitioner, traced with "
                            "Inductor)" if cfg.compile and impl == "hf" and compile_modelled(spec, cfg.act_mode, cfg.tp)
                            else "gpuplan.train.litgpt_acts (litgpt 0.5.3 litgpt/model.py, checked by traces)" if litgpt
                            else "gpuplan.train.activations (torchtitan models/llama/model.py: repeat_kv before SDPA, "
                            "checked by traces)" if impl == "torchtitan"
                            else "gpuplan.train.activations (transformers 5 modelling code, checked by traces)",
                            {"b": b, "s": s, "saved": items}))
        if impl in ("litgpt", "torchtitan"):
            out.append(Term("activations_shared_bytes", acts.shared.bytes(b, s),
                            "rotary cos/sin: module buffers, sliced per forward (none per token)",
                            "litgpt 0.5.3 litgpt/model.py GPT.max_seq_length / GPT.forward" if litgpt else
                            "torchtitan models/llama/model.py Transformer.freqs_cis", {}))
        elif spec.layout == "bert":
            out.append(Term("activations_shared_bytes", acts.shared.bytes(b, s),
                            "embeddings LayerNorm input r·h + statistics 8 (+ dropout mask h) per token",
                            "transformers BertEmbeddings / RobertaEmbeddings (traced)", {}))
        else:
            out.append(Term("activations_shared_bytes", acts.shared.bytes(b, s), "rotary cos/sin 2·b·s·head_dim·r",
                            "transformers RotaryEmbedding (computed once per forward)", {}))
        if spec.layout == "bert":
            head_formula = "task head's saved tensors (pooler or masked-LM transform and decoder)"
            head_source = "transformers BertForMaskedLM / *ForSequenceClassification (traced)"
        else:
            head_formula = "final norm saved tensors + output head input"
            head_source = ("litgpt 0.5.3 litgpt/model.py GPT" if litgpt else "torchtitan models/llama/model.py "
                           "Transformer" if impl == "torchtitan" else "transformers *ForCausalLM")
        out.append(Term("activations_head_bytes", acts.head.bytes(b, s), head_formula, head_source, {}))
    out.append(Term("logits_bytes", max(loss.forward_peak_bytes, loss.backward_peak_bytes), loss.formula,
                    "transformers loss/loss_utils.py ForCausalLMLoss (logits.float() + cross_entropy)",
                    {"tokens": b * s, "vocab": spec.vocab_size, "impl": cfg.loss_impl}))
    out.append(Term("allocated_peak_bytes", top.bytes, f"max over phases; peak in '{top.name}'",
                    "gpuplan.train.peak", {"phase": top.name}))
    out.append(Term("cuda_context_bytes", ov.cuda_context_bytes, "named input", "gpuplan.train.overheads", {}))
    out.append(Term("workspace_bytes", ov.workspace_bytes, "named input", "gpuplan.train.overheads", {}))
    out.append(reserve_term(ov, top.bytes))
    managed = managed_bytes(st.optimizer)
    out.append(Term("reserved_bytes", top.bytes + ov.in_allocator, "allocated_peak + workspace + allocator_reserve",
                    "gpuplan.train.overheads (torch.cuda.max_memory_reserved())", {}))
    out.append(Term("managed_bytes", managed, "paged optimizer states (CUDA managed memory)",
                    "gpuplan.train.optimizer.managed_bytes", {"optimizer": cfg.optimizer}))
    out.append(Term("total_bytes", top.bytes + ov.total + managed,
                    "reserved + cuda_context + managed", "gpuplan.train.overheads", {}))
    return out


# the modelling code --model-impl litgpt follows (gpuplan.train.litgpt_acts)
LITGPT_CODE = (f"litgpt 0.5.3 modelling code (litgpt/model.py GPT: fused QKV, K and V expanded to every head, fp32 "
               f"RMSNorm output; lora.py adapters in the model dtype) on PyTorch {TRACED_TORCH} (--model-impl)")
TORCHTITAN_CODE = (f"torchtitan modelling code (models/llama/model.py Transformer: K and V repeated to every head "
                   f"before SDPA, RoPE on a complex64 buffer) on PyTorch {TRACED_TORCH} (--model-impl)")


def reserve_term(ov: OverheadBytes, allocated_peak_bytes: int) -> Term:
    """The allocator reserve: the flat fraction, or the segment rule when it is larger (gpuplan.train.overheads)."""
    sg = ov.segments
    if sg is None:
        return Term("allocator_reserve_bytes", ov.allocator_reserve_bytes, "fraction × allocated_peak_bytes",
                    "gpuplan.train.overheads", {"fraction": ov.allocator_reserve_fraction})
    return Term("allocator_reserve_bytes", ov.allocator_reserve_bytes,
                "(1 + fraction) × peak without the loss region + loss region + side-stream pools − allocated_peak",
                "gpuplan.train.overheads (c10/cuda/CUDACachingAllocator.cpp; replayed traces)",
                {"fraction": ov.allocator_reserve_fraction, "peak_without_loss": sg.nonloss_peak_bytes,
                 "loss_region": sg.loss_bytes, "side_stream_pools": sg.side_pool_bytes,
                 "allocated_peak": allocated_peak_bytes})


def assumptions(spec: ModelSpec, cfg: TrainConfig, recipe: Recipe, st: ModelStates, ov: OverheadBytes) -> list[str]:
    out = [
        f"precision {recipe.name}: weights {recipe.param_bytes} B, gradients {recipe.grad_bytes} B, master "
        f"{recipe.master_bytes} B per parameter, optimizer states {recipe.state_bytes} B per element "
        f"({recipe.source})",
        f"optimizer {cfg.optimizer} ({cfg.optimizer_impl}): {st.optimizer.note}",
        "steady state (second and later steps): optimizer states exist, gradients are created by backward "
        "(zero_grad(set_to_none=True)); the first step's peak is never higher" if cfg.zero_grad == "none" else
        "steady state (second and later steps): optimizer states exist and every gradient is allocated from the "
        "step's start, zero-filled by the previous step (zero_grad(set_to_none=False), --zero-grad zeros); backward "
        "adds into them in place",
        f"activations: {cfg.activation_model} model, attention {cfg.attention}, recompute {cfg.recompute}"
        f"{' (' + cfg.selective_policy + ' policy)' if cfg.recompute == 'selective' else ''}; "
        + (LITGPT_CODE if model_impl(spec, cfg) == "litgpt" else TORCHTITAN_CODE if model_impl(spec, cfg) ==
           "torchtitan" else
           f"Hugging Face transformers {version_text(transformers_release(cfg.transformers_version))} modelling "
           f"code on PyTorch {cfg.torch_version or TRACED_TORCH} (MoE experts as grouped_mm; --transformers-version)"),
        (f"loss: chunked-held cross-entropy, {cfg.loss_chunk_tokens}-token chunks in the logits' dtype over logits the "
         "loop holds through backward (litgpt's chunked_cross_entropy)" if cfg.loss_impl == "chunked-held" else
         f"loss: {cfg.loss_impl} cross-entropy on fp32 logits"
         + ("; the loop keeps outputs.logits through backward" if cfg.keep_logits else
            "; the loop drops outputs.logits after taking the loss")),
        f"CUDA context {ov.cuda_context_bytes / 2**20:.0f} MiB, workspaces {ov.workspace_bytes / 2**20:.0f} MiB, "
        f"allocator reserve {ov.allocator_reserve_fraction:.0%} of the allocated peak (named inputs, "
        "gpuplan.train.overheads)",
    ]
    out += segment_rule_note(ov)
    out += stack_assumptions(cfg)
    if cfg.compile and compile_modelled(spec, cfg.act_mode, cfg.tp):
        out.append(COMPILE_ASSUMPTION)
    out += lora_dtype_note(cfg, recipe)
    out += modules_to_save_note(spec, cfg)
    if cfg.method == "qlora":
        out += qlora_notes(cfg)
    return out


def lora_dtype_note(cfg: TrainConfig, recipe: Recipe) -> list[str]:
    """The assumption line saying which dtype the LoRA adapters are held in (``gpuplan.train.states``)."""
    if cfg.method not in ("lora", "qlora"):
        return []
    head = f"LoRA rank {cfg.lora_rank} on {', '.join(cfg.lora_targets)}; "
    if deepspeed_lora_master(cfg.framework, recipe):
        return [head + "adapters in the 16-bit dtype with fp32 master copies and fp32 optimizer states (the DeepSpeed "
                "engine casts the whole module: engine.py _configure_distributed_model)"]
    if lora_param_bytes(cfg, recipe) == LORA_BYTES:
        return [head + "adapters in fp32 (PEFT autocast_adapter_dtype=True)"]
    return [head + "adapters in the model's dtype (--lora-dtype model)"]


def modules_to_save_note(spec: ModelSpec, cfg: TrainConfig) -> list[str]:
    """The assumption line naming PEFT's ``modules_to_save`` (peft/utils/other.py ``ModulesToSaveWrapper``), or
    litgpt's untied output head."""
    out = []
    if spec.litgpt_untied:
        out.append("output head untied: litgpt's GPT holds lm_head and transformer.wte as separate parameters "
                   "(litgpt/model.py; convert_hf_checkpoint copies the tied embedding into lm_head)")
    if cfg.method not in ("lora", "qlora") or not cfg.lora_modules_to_save:
        return out
    note = (f"modules_to_save {', '.join(cfg.lora_modules_to_save)}: trained in full beside the adapters (PEFT "
            "ModulesToSaveWrapper), each a frozen original plus a trainable copy with its gradients and optimizer "
            "states")
    if spec.peft_untied:
        note += "; the copies are not tied (PEFT ensure_weight_tying=False), so the tied embedding trains untied"
    return [*out, note]


def qlora_notes(cfg: TrainConfig, layout: "Layout | None" = None) -> list[str]:
    """QLoRA's assumption lines: the base format (and how each rank holds it), the bitsandbytes release when one
    was given, and PEFT's fp32 k-bit preparation when it applies (``gpuplan.train.kbit``)."""
    from gpuplan.train.context import bnb_keeps_input
    from gpuplan.train.kbit import NOTE, kbit_upcast

    out = [qlora_base_note(cfg, layout)]
    if cfg.bitsandbytes_version and bnb_keeps_input(cfg):
        out.append(f"bitsandbytes {cfg.bitsandbytes_version}: each 4-bit matmul keeps its input for backward "
                   "(MatMul4Bit before 0.43.2), also where the frozen weight needs none")
    elif cfg.bitsandbytes_version:
        out.append(f"bitsandbytes {cfg.bitsandbytes_version}: 4-bit matmuls keep no input for backward (0.43.2 and "
                   "later)")
    if kbit_upcast(cfg):
        out.append(NOTE)
    if cfg.stable_embedding:
        out.append("StableEmbedding (litgpt finetune/lora.py): the token embedding is replaced after the optimizer is "
                   "built, so its gradient is computed every step and kept, in no optimizer; its LayerNorm keeps its "
                   "input (--stable-embedding)")
    return out


def qlora_base_note(cfg: TrainConfig, layout: "Layout | None" = None) -> str:
    """The assumption line naming QLoRA's base format, and with a parallel layout how each rank holds it (see
    ``gpuplan.parallel.dataparallel.quantized_weight_bytes``)."""
    from gpuplan.train.quantbase import base_note

    note = (base_note(cfg.qlora_base, cfg.qlora_block_size, cfg.qlora_double_quant, cfg.qlora_group_size)
            + ("; the output head is quantized too and dequantized whole for each of its matmuls (fp16, then the "
               "compute dtype: --qlora-head on); routers stay unquantized" if cfg.qlora_head
               else "; output head and routers stay unquantized"))
    if layout is None:
        return note
    share = "the whole 4-bit base"
    if layout.tp > 1 or layout.pp > 1:
        share = "its tensor/pipeline-parallel share of the 4-bit base"
    how = f"each rank holds {share}"
    if layout.shard_degree > 1 and (layout.zero >= 3 or (cfg.framework == "torch" and layout.zero >= 2)):
        how = (f"each rank holds 1/{layout.shard_degree} of {share} (ZeRO-3/FSDP shard the packed 4-bit "
               "storage)")
    return f"{note}; {how}"


def stack_assumptions(cfg: TrainConfig) -> list[str]:
    """What the stack (``--stack``) set, each with its source, and the behaviours that follow."""
    out = []
    if cfg.stack != "torch":
        from gpuplan.train.stacks import load_stack
        stack = load_stack(cfg.stack)
        out.append(f"stack {stack.name} ({stack.title}, {stack.version}): options not given take its defaults")
        out += [f"stack {stack.name} set {name.replace('_', '-')} = {value} ({source})"
                for name, value, source in cfg.stack_settings]
    if cfg.act_mode == "op":
        out.append("selective recompute, op-level policy: each layer keeps its input, the outputs of its odd-numbered "
                   "bias-free projections and the attention kernel's output; backward rebuilds the layer "
                   "(gpuplan.train.checkpointing)")
    if cfg.optimizer_in_backward:
        out.append("optimizer in backward: each parameter is stepped and its gradient freed as soon as it is "
                   "accumulated; at most one parameter's gradient exists (gpuplan.train.peak.optimizer_in_backward)")
    if cfg.cuda_module_loading == "eager":
        out.append("CUDA modules loaded eagerly: the CUDA context includes every kernel of the library")
    return out


def warnings(spec: ModelSpec, cfg: TrainConfig, st: ModelStates) -> list[str]:
    out: list[str] = []
    out += family_warnings(spec)
    if spec.moe and cfg.method == "freeze" and spec.layout in ("mixtral", "qwen_moe", "deepseek", "gpt_oss"):
        out.append("transformers >= 5 stores each layer's routed experts as fused 3-D tensors: freezing some "
                   "experts by requires_grad is not possible there; the estimate follows the per-expert "
                   "checkpoint tensors (as transformers 4, Megatron or DeepSpeed modules)")
    if cfg.optimizer.startswith("paged"):
        out.append("paged optimizer states live in CUDA managed memory, outside PyTorch's allocator, and can spill "
                   "to host memory under pressure: reported as managed_bytes, counted in total_bytes (on the GPU) "
                   "but not in allocated_peak_bytes or reserved_bytes")
    out += _peft_fused_expert_warnings(spec, cfg)
    if cfg.model_impl not in (None, "hf") and model_impl(spec, cfg) == "hf":
        out.append(f"stack {cfg.stack}: its own modelling code is modelled for the Llama layout only; this model's "
                   f"layers follow transformers' code")
    if cfg.compile and not compiled_supported(spec):
        out.append(COMPILE_UNSUPPORTED)
    elif cfg.compile and not compile_modelled(spec, cfg.act_mode, cfg.tp):
        out.append(COMPILE_MODES)
    release = transformers_release(cfg.transformers_version)
    out += version_warnings(release)
    if spec.layout == "falcon" and cfg.attention != "eager":
        for rule in (FALCON_SDPA_MATH, FALCON_SHARED_SDPA):
            if rule.holds(release) and spec.num_kv_heads == 1 < spec.num_heads:
                out.append(f"transformers {version_text(release)}: {rule.what}")
    from gpuplan.train.logits import loss_release_rule

    rule = loss_release_rule(spec, cfg)
    if rule is not None:
        out.append(f"transformers {version_text(release)}: {rule.what}")
    out += torch_release_notes(cfg)
    return out


def torch_release_notes(cfg: TrainConfig) -> list[str]:
    """What ``--torch-version`` changes: softmax's kept input before 1.11 (eager attention), and no
    scaled_dot_product_attention before 2.0."""
    from gpuplan.train.context import softmax_keeps_input
    from gpuplan.versions import TORCH_SOFTMAX_KEEPS_INPUT, torch_release

    if not cfg.torch_version:
        return []
    out = []
    if softmax_keeps_input(cfg) and cfg.attention == "eager":
        out.append(f"PyTorch {cfg.torch_version}: {TORCH_SOFTMAX_KEEPS_INPUT.what}")
    if torch_release(cfg.torch_version) < (2, 0) and cfg.attention != "eager":
        out.append(f"PyTorch {cfg.torch_version} has no scaled_dot_product_attention (added in 2.0): transformers "
                   f"ran eager attention there; give --attention eager")
    return out


def _peft_fused_expert_warnings(spec: ModelSpec, cfg: TrainConfig) -> list[str]:
    """What PEFT really does to transformers-5 fused experts when LoRA targets them."""
    from gpuplan.model.tensors import tensor_table
    from gpuplan.train.peft import param_wrapped, peft_adapter_params, peft_fused_moe, trainability, trainable_params

    if cfg.method not in ("lora", "qlora") or peft_fused_moe(spec) is None or spec.moe is None:
        return []
    tr = trainability(spec, cfg)
    kinds = {param_wrapped(spec, t) for t, lo in zip(tensor_table(spec), tr.lora) if lo} - {None}
    if not kinds & {"gate_up", "down"}:
        return []
    m = spec.moe
    per_layer = (2 if "gate_up" in kinds else 0) + (1 if "down" in kinds else 0)
    weight_b = {"fp32": 4, "amp-bf16": 4, "amp-fp16": 4}.get(cfg.precision, 2)
    stack = per_layer * m.num_experts * m.expert_ffn_size * spec.hidden_size * weight_b
    n_moe = sum(1 for i in range(spec.num_layers) if spec.is_moe_layer(i))
    return [f"LoRA on fused experts: transformers 5 stores each layer's experts as 3-D tensors, and PEFT (>= 0.19, "
            f"target_parameters / ParamWrapper) adapts them as one stack (lora_A [r·E, in], lora_B [out, r·E]; the "
            f"fused gate_up gets rank 2r) and materialises W + ΔW of the whole expert stack on every forward, kept "
            f"for backward: {stack / 2**30:.2f} GiB per MoE layer x {n_moe} layers of activations that "
            f"per-expert LoRA would not have. Memory follows PEFT's adapters ({peft_adapter_params(spec, cfg):,} "
            f"LoRA parameters, which PEFT reports); the trainable figure counts per-expert LoRA "
            f"({trainable_params(spec, cfg):,} in all). Target only the attention projections to avoid the "
            f"materialised stacks"]


def explain_parallel(m: MemoryReport, spec: ModelSpec, cfg: TrainConfig, layout: Layout, recipe: Recipe,
                      st: object, row: dict, ov: OverheadBytes | None = None) -> None:
    """Terms, assumptions and warnings of a distributed estimate (the most loaded rank)."""
    from gpuplan.parallel.dataparallel import RankStates

    assert isinstance(st, RankStates)
    m.terms = [
        Term("weights_bytes", st.weights_bytes, "Σ local tensors × param bytes (/D when parameters are sharded)",
             recipe.source, {"scheme": st.scheme, "D": layout.shard_degree}),
        Term("gradients_bytes", st.gradients_bytes, "local trainable × grad bytes (/D from ZeRO-2 / FSDP)",
             recipe.source, {}),
        Term("optimizer_bytes", st.optimizer_bytes, "states of the local trainable tensors (/D from ZeRO-1)",
             "gpuplan.parallel.dataparallel", {}),
        Term("allocated_peak_bytes", m.allocated_peak_bytes, f"max over phases of the most loaded stage ({row['stage']})",
             "gpuplan.train.distributed", {"inflight_microbatches": row["inflight_microbatches"]}),
    ]
    if ov is not None:
        m.terms.append(reserve_term(ov, m.allocated_peak_bytes))
    m.assumptions = [
        f"layout: dp={layout.dp} tp={layout.tp} pp={layout.pp} cp={layout.cp} ep={layout.ep} vpp={layout.vpp}"
        f"{' sp' if layout.sp else ''} = {layout.world} GPUs; {st.scheme}; {layout.microbatches} micro-batches",
        f"precision {recipe.name}: {recipe.source}",
        "the row shown is the most loaded rank (tensor/expert-parallel rank 0 of the heaviest pipeline stage); "
        "--per-rank lists every stage",
        "vocabulary " + ("replicated (torch TP plans)" if cfg.framework == "torch" and not cfg.loss_parallel else
                         "split over tp with loss parallel: each rank keeps 1/tp of the logits (torchtitan "
                         "loss_parallel)" if cfg.framework == "torch" else "split over tp "
                         "(Megatron VocabParallelEmbedding)"),
        "NCCL staging buffers 64 MiB per GPU (outside PyTorch's allocator, in total_bytes only)",
    ]
    m.assumptions += segment_rule_note(ov) if ov is not None else []
    m.assumptions += stack_assumptions(cfg)
    from gpuplan.train.stage import ds_buckets, pipeline_accumulation
    ds = ds_buckets(cfg, layout, recipe)
    if ds is not None:
        m.assumptions.append(ds.note())
    if layout.sp and layout.tp > 1:
        m.assumptions.append(
            "sequence parallelism: norms and the residual stream split over tp by tokens; "
            + ("the column projections and the output head save their all-gathered inputs whole (DTensor: "
               "PrepareModuleInput / ColwiseParallel redistribute to Replicate)" if cfg.framework == "torch" else
               "the column projections save the local shard and gather it again in backward (Megatron-LM, "
               "Korthikanti et al. 2022 section 4.2.2)"))
    if pipeline_accumulation(cfg, layout):
        m.assumptions.append(
            "FSDP2 under a pipeline: each stage keeps its parameters unsharded and accumulates its gradients "
            "unsharded in the reduce dtype until the step's last micro-batch, whose backward reduce-scatters them "
            "(torch.distributed.pipelining stage.py backward_maybe_with_nosync)")
    if layout.kv_replicated:
        m.assumptions.append(f"{spec.num_kv_heads} KV heads < tp={layout.tp}: each rank keeps a replicated KV head")
    m.assumptions += lora_dtype_note(cfg, recipe)
    m.assumptions += modules_to_save_note(spec, cfg)
    if cfg.method == "qlora":
        m.assumptions += qlora_notes(cfg, layout)
    m.warnings = []
    if layout.pp > 1 and layout.microbatches < layout.pp:
        m.warnings.append(f"{layout.microbatches} micro-batches < {layout.pp} stages: the pipeline is mostly idle")
    if cfg.offload != "none":
        m.warnings.append(f"offloaded to host memory per GPU: {st.host_bytes / 2**30:.1f} GiB (host_bytes)")
