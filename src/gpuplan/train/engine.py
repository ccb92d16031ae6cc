"""``estimate_training``: per-GPU memory of one steady-state training step, every number explained.

Pure Python; the caller resolves the model (``gpuplan.model.resolve``) and the GPU (``gpuplan.hardware``).
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Hashable, Iterable

from gpuplan.model.spec import ModelSpec, require_memory_rules, target_seq_refusal
from gpuplan.model.tensors import tensor_table
from gpuplan.parallel.layout import resolve_layout
from gpuplan.report import MemoryReport, Term, fits
from gpuplan.train.activations import Act, ActContext
from gpuplan.train.config import TrainConfig
from gpuplan.train.checkpointing import offloaded_inputs
from gpuplan.train.context import AFTER_ATTN_CORE, MLP_FIRST, activation_context, norm_bwd_per_token
from gpuplan.train.distributed import estimate_distributed
from gpuplan.train.korthikanti import korthikanti_layer
from gpuplan.train.logits import LossMemory, loss_memory, loss_shift_copy, loss_upcasts
from gpuplan.train.model_acts import ModelActs, model_acts
from gpuplan.train.overheads import SegmentInputs, overhead_bytes
from gpuplan.train.kbit import head_dequant_bytes
from gpuplan.train.peak import Phase, PhaseInputs, optimizer_in_backward, peak, phases, without_loss
from gpuplan.train.peft import saved_spec, trainability
from gpuplan.train.precision import Recipe, recipe_for
from gpuplan.train.report import TrainReport
from gpuplan.train.optimizer import allocator_states_bytes, managed_bytes
from gpuplan.train.states import ModelStates, model_states, params_only_states


def estimate_training(spec: ModelSpec | None, cfg: TrainConfig, *, params_total: int | None = None,
                      capacity_bytes: int | None = None) -> TrainReport:
    """Memory of one training step on one GPU. ``spec`` None: model states from ``params_total`` only."""
    recipe = recipe_for(cfg.precision, cfg.framework)
    if spec is None:
        if not params_total:
            from gpuplan.errors import InputError
            raise InputError("model", None, "give a model or --params")
        _check_params_only(cfg)
        return _params_only(params_total, cfg, recipe, capacity_bytes)
    require_memory_rules(spec)
    if cfg.target_seq is not None:
        raise target_seq_refusal(cfg.target_seq, spec.name)
    spec = saved_spec(spec, cfg)
    layout = resolve_layout(spec, cfg)
    if not layout.is_single:
        return _with_spec_notes(spec, estimate_distributed(spec, cfg, layout, capacity_bytes))
    states = model_states(spec, cfg, recipe)
    c = activation_context(cfg, recipe, spec)
    tr = trainability(spec, cfg)
    acts = model_acts(spec, tr, c, cfg.act_mode)
    b, s = cfg.batch, cfg.seq
    rows, width = loss_shape(spec, b, s)
    loss = loss_memory(rows, width, c.e, impl=cfg.loss_impl, chunk_tokens=cfg.loss_chunk_tokens,
                       keep_logits=cfg.keep_logits, hidden=spec.hidden_size, softcap=spec.final_softcap is not None,
                       upcast=loss_upcasts(spec, recipe), shift_copy=loss_shift_copy(spec, cfg))
    kept, full = _activation_lists(spec, cfg, acts, b, s)
    on_gpu, host = offloaded_inputs(kept, bool(cfg.recompute_offload) and cfg.act_mode == "full")
    g = _grad_split(spec, states)
    in_bwd = bool(cfg.optimizer_in_backward)
    if in_bwd:
        g = _no_grads(g)
    bwd_extra = _bwd_extra(spec, cfg, acts, g, b, s)
    orphan = stable_embedding_grad_bytes(spec, cfg, recipe)
    static = states.weights_bytes + states.master_weights_bytes + allocator_states_bytes(states.optimizer) + orphan
    pin = PhaseInputs(
        static_bytes=static, kept_bytes=on_gpu, full_bytes=full, bwd_extra_bytes=bwd_extra,
        # under full recompute the checkpoint holds the layer input beside its rebuilt tensors, unless the first
        # norm's saved fp32 upcast is that very tensor (fp32 residual stream)
        rebuilt_extra_bytes=_rebuilt_extra(spec, cfg, c, kept, b, s),
        layer_grad_bytes=g["layers"],
        shared_bytes=acts.shared.bytes(b, s) + stable_embedding_norm_bytes(spec, cfg, c.e) * b * s,
        head_bytes=acts.head.bytes(b, s), head_norm_bytes=acts.head_norm.bytes(b, s), head_grad_bytes=g["head"],
        embed_grad_bytes=g["embed"], tied_extra_bytes=g["tied_extra"],
        # the StableEmbedding's new gradient at the end of backward, before it is added into the kept one
        end_extra_bytes=orphan,
        loss_forward_bytes=loss.forward_peak_bytes,
        loss_backward_bytes=loss.backward_peak_bytes, residual_grad_bytes=c.r * spec.hidden_size * b * s,
        norm_bwd_bytes=norm_bwd_per_token(spec, c) * b * s,
        step_temp_bytes=states.optimizer.step_temp_bytes, recompute_full=cfg.checkpointed,
        loss_fwd_buf_bytes=head_dequant_bytes(spec, cfg, c.e), loss_bwd_buf_bytes=head_dequant_bytes(spec, cfg, c.e),
        **_forward_moments(spec, cfg, acts, c, b, s))
    if in_bwd:
        pin = optimizer_in_backward(pin, max(states.grad_bytes_by_tensor, default=0), states.optimizer,
                                    states.gradients_bytes)
    ps = phases(pin)
    # zero_grad(set_to_none=False) never frees the gradients: every micro-batch runs as a later one of an
    # accumulation (``_later_micro_batch``)
    accumulating = (cfg.grad_accum > 1 or cfg.zero_grad == "zeros") and not in_bwd
    bwd_no_grads = _bwd_extra(spec, cfg, acts, _no_grads(g), b, s) if accumulating else ()
    if accumulating:
        ps = _with_accumulation(ps, pin, states.gradients_bytes, bwd_no_grads)
    top = peak(ps)
    # the segment rule of the allocator reserve: the same step without the loss region
    nl = phases(without_loss(pin))
    if accumulating:
        nl = _with_accumulation(nl, without_loss(pin), states.gradients_bytes, bwd_no_grads)
    segments = SegmentInputs(peak(nl).bytes, max(loss.forward_peak_bytes, loss.backward_peak_bytes))
    mem = _memory_report(spec, cfg, recipe, replace(states, gradients_bytes=states.gradients_bytes + orphan), acts,
                         loss, on_gpu, top, b, s, segments)
    if host:
        mem.assumptions.append(f"checkpointed layer inputs in host memory (Unsloth offloaded gradient "
                               f"checkpointing): {host / 2**30:.2f} GiB in host_bytes")
    return _with_spec_notes(spec, TrainReport(mem, states.total_params, states.trainable_params,
                                              fits(mem.total_bytes, capacity_bytes), capacity_bytes, ps,
                                              host_bytes=host))


def stable_embedding_grad_bytes(spec: ModelSpec, cfg: TrainConfig, recipe: Recipe) -> int:
    """The gradient of litgpt's QLoRA token embedding (``--stable-embedding on``): litgpt 0.5.3 ``finetune/lora.py``
    replaces ``transformer.wte`` by a ``bitsandbytes.nn.StableEmbedding`` after ``mark_only_lora_as_trainable`` and
    after building the optimizer, so its weight requires a gradient that no optimizer owns. Backward computes the
    [vocab, hidden] gradient each step and adds it into the one kept since the first step (``optimizer.zero_grad()``
    does not reach it): kept through the step, plus the new one at the end of backward. In the weights' dtype (the
    replacement is cast to the old embedding's)."""
    if cfg.method != "qlora" or not cfg.stable_embedding:
        return 0
    return spec.vocab_size * spec.hidden_size * recipe.param_bytes


def stable_embedding_norm_bytes(spec: ModelSpec, cfg: TrainConfig, e: int) -> int:
    """Per token, what the StableEmbedding's LayerNorm keeps for backward (its weight trains): its input in the
    compute dtype and the fp32 mean and rstd (bitsandbytes nn/modules.py ``StableEmbedding.forward``)."""
    if cfg.method != "qlora" or not cfg.stable_embedding:
        return 0
    return e * spec.hidden_size + 8


def loss_shape(spec: ModelSpec, batch: int, seq: int) -> tuple[int, int]:
    """The logits the loss reads: (rows, width). A causal LM or a masked-LM head scores every token over the
    vocabulary; a sequence-classification head one row per sequence over ``num_labels``
    (BertForSequenceClassification's ``CrossEntropyLoss`` on [batch, num_labels])."""
    if spec.encoder_head == "classify":
        return batch, spec.num_labels
    return batch * seq, spec.vocab_size


def _with_accumulation(first: list[Phase], pin: PhaseInputs, gradients_bytes: int,
                       bwd_extra_no_grads: tuple[int, ...]) -> list[Phase]:
    """Gradient accumulation on one GPU: the second and later micro-batches of a step run forward and backward with
    every gradient already there (``zero_grad(set_to_none=True)`` clears them only after ``optimizer.step()``),
    and backward adds each new gradient into it in place (torch/csrc/autograd/functions/accumulate_grad.h), so a
    layer's backward creates no gradient that stays. Phase by phase, the higher of the first micro-batch and a later
    one (the same rule as ``gpuplan.train.distributed`` for data-parallel accumulation; traced, see
    tests/test_train_accumulation.py)."""
    later = _later_micro_batch(pin, gradients_bytes, bwd_extra_no_grads)
    return [a if a.bytes >= b_.bytes else b_ for a, b_ in zip(first, phases(later))]


def _later_micro_batch(pin: PhaseInputs, gradients_bytes: int, bwd_extra_no_grads: tuple[int, ...]) -> PhaseInputs:
    """A micro-batch that starts with every gradient allocated: a later one of an accumulation, or every step when
    ``zero_grad(set_to_none=False)`` zero-fills the gradients instead of freeing them (the default of
    ``torch.nn.Module.zero_grad`` and ``torch.optim.Optimizer.zero_grad`` before PyTorch 2.0, torch/nn/modules/
    module.py; Hugging Face Trainer calls ``model.zero_grad()`` after each step). Backward adds into them in place,
    so no layer's backward creates a gradient that stays."""
    zeros = (0,) * len(pin.layer_grad_bytes)
    return replace(pin, held_bytes=pin.held_bytes + gradients_bytes, layer_grad_bytes=zeros,
                   bwd_extra_bytes=bwd_extra_no_grads, head_grad_bytes=0, embed_grad_bytes=0, opt_grads_bytes=0)


def _with_spec_notes(spec: ModelSpec, report: TrainReport) -> TrainReport:
    """Put what the model spec leaves out (a multimodal model's vision tower) first among the warnings, and the
    family's statement of what it approximates where the layout path did not give it."""
    from gpuplan.model.spec import family_warnings

    missing = [w for w in family_warnings(spec) if w not in report.memory.warnings]
    if spec.notes or missing:
        report.memory.warnings = [*spec.notes, *missing, *report.memory.warnings]
    return report


def _activation_lists(spec: ModelSpec, cfg: TrainConfig, acts: ModelActs, b: int, s: int
                      ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if cfg.activation_model == "korthikanti":
        per = tuple(korthikanti_layer(spec, recompute=cfg.recompute, tp=1, sp=False).bytes(b, s)
                    for _ in range(spec.num_layers))
        return per, per
    return _sizes(acts.kept_groups, b, s), _sizes(acts.saved_groups, b, s)


def _forward_moments(spec: ModelSpec, cfg: TrainConfig, acts: ModelActs, c: ActContext, b: int, s: int
                     ) -> dict[str, int]:
    """The forward pass's moments beyond the kept activations (``gpuplan.train.peak.forward_peak``): the top
    layer's input and forward high-water mark (``forward_end``; ``checkpointed_forward`` under full recompute),
    what the model's forward holds through the stack and the final norm's temporaries. None for the Korthikanti
    activation model, whose per-layer figure has no forward breakdown."""
    if cfg.activation_model == "korthikanti" or not acts.layers:
        return {}
    top = acts.layers[-1]
    high = top.fwd_ckpt[0] + top.fwd_ckpt[1] if cfg.checkpointed else top.fwd_end
    fwd_in = c.r * spec.hidden_size * b * s
    return {"fwd_in_bytes": fwd_in, "fwd_high_bytes": high.bytes(b, s),
            "stack_held_bytes": acts.stack_held.bytes(b, s), "head_fwd_bytes": acts.head_fwd.bytes(b, s),
            "first_in_bytes": fwd_in + acts.first_held.bytes(b, s)}


def _rebuilt_extra(spec: ModelSpec, cfg: TrainConfig, c: ActContext, kept: tuple[int, ...], b: int, s: int
                   ) -> tuple[int, ...]:
    """Per layer, what a checkpointed layer still holds beside its rebuilt saved set: its input (r·h per token),
    unless the first norm's saved fp32 upcast is that very tensor (fp32 residual stream). Under the op-level
    policy the saved projection outputs are handed to the recomputation (torch/utils/checkpoint.py
    _CachedTorchDispatchMode pops them), so only the input stays beside the rebuilt set."""
    if not cfg.checkpointed or c.r >= 4 or c.compiled:  # a compiled layer saves its input itself
        return (0,) * len(kept)
    if cfg.act_mode == "op":
        return (c.r * spec.hidden_size * b * s,) * len(kept)
    return kept


def _sizes(grouped: tuple[tuple[Act, ...], tuple[int, ...]], b: int, s: int) -> tuple[int, ...]:
    """Bytes of each layer's item from (distinct items, each layer's index): each distinct one sized once."""
    distinct, index = grouped
    sizes = [a.bytes(b, s) for a in distinct]
    return tuple(map(sizes.__getitem__, index))


def _bwd_extra(spec: ModelSpec, cfg: TrainConfig, acts: ModelActs, g: dict, b: int, s: int) -> tuple[int, ...]:
    """Per layer, the highest of its backward points: layer gradients existing then + bytes beyond its saved set."""
    if cfg.activation_model == "korthikanti":
        return tuple(g["mlp_first"][i] for i in range(spec.num_layers))
    layers, layer_index = acts.layer_groups
    pairs, pair_index = _pair_groups(layer_index, g["row_index"])  # distinct (layer, gradient sizes) pairs
    tops = []
    for li, ri in pairs:
        first, mlp_all, attn, layer = g["rows"][ri]
        grads = {"none": 0, "mlp_first": first, "mlp_all": mlp_all, "after_attn": attn, "layer": layer}
        tops.append(max(0, max(grads[p.grads] + p.extra.bytes(b, s) for p in layers[li].points)))
    return tuple(map(tops.__getitem__, pair_index))


@lru_cache(maxsize=256)
def _pair_groups(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...]]:
    """The distinct (a[i], b[i]) pairs and each position's index into them."""
    return _by_value(zip(a, b))


@lru_cache(maxsize=256)
def _grad_split(spec: ModelSpec, st: ModelStates) -> dict:
    """Gradients per layer, the first one each layer's backward creates, the head's and the embedding's."""
    L = spec.num_layers
    layers = [0] * L
    first = [0] * L
    mlp = [0] * L
    attn = [0] * L  # gradients that exist when the attention core's backward runs: MLP, second norm, o_proj
    head = embed = tied_extra = 0
    for t, gb in zip(tensor_table(spec), st.grad_bytes_by_tensor):
        if not gb:
            continue
        if t.layer is not None:
            layers[t.layer] += gb
            if t.component in ("mlp", "experts"):
                mlp[t.layer] += gb
            if t.component in ("mlp", "experts", "router") or t.module in AFTER_ATTN_CORE:
                attn[t.layer] += gb
            if t.module in MLP_FIRST or (t.module == "c_proj" and t.component == "mlp"):
                first[t.layer] += gb
        elif t.component == "lm_head" or t.component == "norm":
            head += gb
        elif t.component == "embedding" and spec.tie_embeddings and t.tp == "vocab":
            head += gb
            tied_extra = 2 * gb  # autograd sums the two gradients out of place: buffer + new + sum
        else:
            embed += gb
    rows, row_index = _by_value(zip(first, mlp, attn, layers))  # distinct per-layer gradient rows
    return {"layers": tuple(layers), "mlp_first": tuple(first), "mlp_all": tuple(mlp), "attn": tuple(attn),
            "head": head, "embed": embed, "tied_extra": tied_extra, "rows": rows, "row_index": row_index}


def _no_grads(g: dict) -> dict:
    """The gradient split with no gradient kept: under optimizer-in-backward each is freed by its own step
    (``gpuplan.train.peak.optimizer_in_backward`` adds the one alive at a time)."""
    zero = tuple(0 for _ in g["layers"])
    return {**g, "layers": zero, "mlp_first": zero, "mlp_all": zero, "attn": zero, "head": 0, "embed": 0,
            "tied_extra": 0, "rows": ((0, 0, 0, 0),), "row_index": tuple(0 for _ in g["layers"])}


def _by_value(items: Iterable[Hashable]) -> tuple[tuple, tuple[int, ...]]:
    """(the distinct values of ``items``, in order; each item's index into them)."""
    index_of: dict = {}
    index = tuple(index_of.setdefault(x, len(index_of)) for x in items)
    return tuple(index_of), index


def _memory_report(spec: ModelSpec, cfg: TrainConfig, recipe: Recipe, st: ModelStates, acts: ModelActs,
                   loss: LossMemory, kept: tuple[int, ...], top: Phase, b: int, s: int,
                   segments: SegmentInputs | None = None) -> MemoryReport:
    act_bytes = sum(kept) + acts.shared.bytes(b, s) + acts.head.bytes(b, s)
    logits = max(loss.forward_peak_bytes, loss.backward_peak_bytes)
    # under optimizer-in-backward at most the largest gradient exists at a time
    grads = max(st.grad_bytes_by_tensor, default=0) if cfg.optimizer_in_backward else st.gradients_bytes
    m = MemoryReport(weights_bytes=st.weights_bytes, gradients_bytes=grads,
                     optimizer_bytes=st.optimizer_bytes, master_weights_bytes=st.master_weights_bytes,
                     activations_bytes=act_bytes, logits_bytes=logits,
                     buffers_bytes=st.optimizer.step_temp_bytes, allocated_peak_bytes=top.bytes,
                     peak_phase=top.name)
    ov = overhead_bytes(cfg.overheads, top.bytes, cfg.cuda_module_loading, segments)
    m.reserved_bytes = top.bytes + ov.in_allocator
    m.managed_bytes = managed_bytes(st.optimizer)
    m.total_bytes = m.reserved_bytes + ov.cuda_context_bytes + m.managed_bytes
    from gpuplan.train.explain import assumptions, terms, warnings
    m.terms = lambda: terms(spec, cfg, recipe, st, acts, loss, kept, top, ov, b, s)
    m.assumptions = assumptions(spec, cfg, recipe, st, ov)
    m.warnings = warnings(spec, cfg, st)
    return m


def _check_params_only(cfg: TrainConfig) -> None:
    """Refuse what a parameter count cannot size, rather than answer for something else. LoRA/QLoRA adapters are
    r·(in + out) per targeted linear layer and QLoRA quantizes only the linear weights (Hu et al. 2021,
    arXiv:2106.09685 section 4.1; Dettmers et al. 2023, arXiv:2305.14314 section 3), freezing matches parameter
    names, and Adafactor's factored states are row + column sums of each matrix (Shazeer & Stern 2018): all need
    the model's tensor shapes, which ``--params`` does not give."""
    from gpuplan.errors import InputError

    hint = "give a model (preset, Hugging Face id or config.json) or its dimensions (--layers, --hidden, --heads)"
    if cfg.method != "full":
        raise InputError("--method", cfg.method, f"{cfg.method} cannot be sized from --params alone: it depends on "
                         "the shapes (and names) of the model's tensors", hint=hint)
    if cfg.optimizer == "adafactor":
        raise InputError("--optimizer", cfg.optimizer, "Adafactor's factored states depend on each matrix's shape, "
                         "which --params alone does not give", hint=hint)


def _params_only(params_total: int, cfg: TrainConfig, recipe: Recipe, capacity_bytes: int | None) -> TrainReport:
    layout = resolve_layout(None, cfg)
    st = params_only_states(params_total, cfg, recipe, layout)
    static = st.weights_bytes + st.master_weights_bytes + st.optimizer_bytes
    ps = [Phase("end of backward", static + st.gradients_bytes),
          Phase("optimizer step", static + st.gradients_bytes + st.optimizer.step_temp_bytes)]
    top = peak(ps)
    m = MemoryReport(weights_bytes=st.weights_bytes, gradients_bytes=st.gradients_bytes,
                     optimizer_bytes=st.optimizer_bytes, master_weights_bytes=st.master_weights_bytes,
                     buffers_bytes=st.optimizer.step_temp_bytes, allocated_peak_bytes=top.bytes,
                     peak_phase=top.name)
    ov = overhead_bytes(cfg.overheads, top.bytes, cfg.cuda_module_loading)
    m.reserved_bytes = top.bytes + ov.in_allocator
    m.total_bytes = top.bytes + ov.total
    m.warnings = ["only --params was given: activations and logits need the model's dimensions and are left out"]
    m.assumptions = [f"precision {recipe.name}: {recipe.param_bytes} + {recipe.grad_bytes} + {recipe.master_bytes} "
                     f"bytes/param (+ optimizer states); {recipe.source}"]
    m.terms = [Term("weights_bytes", st.weights_bytes, "P × param_bytes", recipe.source,
                    {"P": params_total, "param_bytes": recipe.param_bytes})]
    if not layout.is_single:
        m.assumptions.append(f"layout dp={layout.dp} tp={layout.tp} pp={layout.pp} cp={layout.cp}, ZeRO-{layout.zero} "
                             f"({cfg.framework}): parameters split evenly over tp·pp, states sharded over "
                             + (f"{layout.shard_degree} ranks (--dp-shard × cp), {layout.replicas} replicas"
                                if layout.replicas > 1 else "dp·cp"))
    return TrainReport(m, params_total, params_total, fits(m.total_bytes, capacity_bytes), capacity_bytes, ps)
