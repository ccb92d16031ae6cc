"""Whole-model activations: every decoder layer (cached by the layer's signature), the shared rotary tables, the
final norm and the output head's input, under each recompute mode.

Full recompute is Hugging Face gradient checkpointing (``model.gradient_checkpointing_enable()``, non-reentrant
``torch.utils.checkpoint`` around each decoder layer): a layer keeps only its input hidden states (r·h per token);
during backward one layer at a time is recomputed and holds its full saved set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property, lru_cache

from gpuplan.model.spec import ModelSpec
from gpuplan.model.tensors import tensor_table
from gpuplan.train.activations import Act, ActContext, _Saved, layernorm, linear, norm
from gpuplan.train.checkpointing import op_sac_kept
from gpuplan.train.layers import LayerActs, decoder_layer
from gpuplan.train.litgpt_acts import litgpt_rmsnorm
from gpuplan.train.peft import Trainability, layer_flags


@dataclass(frozen=True)
class ModelActs:
    layers: tuple[LayerActs, ...]  # full saved set of each layer (what it holds with no recompute)
    kept: tuple[Act, ...]  # what each layer keeps between forward and backward under the recompute mode
    shared: Act  # rotary tables (and eager's causal mask): built once per forward, alive until backward ends
    head: Act  # final norm and output-head input (and autocast's half head weight), released first in backward
    head_norm: Act  # the final norm's part of ``head`` (still held while its backward runs)
    embed_rg: bool  # the embedding output requires grad (the embedding trains)
    stack_held: Act = Act()  # referenced by the model's forward through the decoder stack beyond what layers keep
    head_fwd: Act = Act()  # the final norm's forward temporaries beyond ``head``
    first_held: Act = Act()  # held by the model's forward at the first layer's pre-forward beyond its input

    # Identical layers share one object: these group them once per (cached) ModelActs, so that an estimate sizes
    # each distinct layer once and spreads the figures over the layers at C speed.
    @cached_property
    def kept_groups(self) -> tuple[tuple[Act, ...], tuple[int, ...]]:
        return groups(self.kept)

    @cached_property
    def saved_groups(self) -> tuple[tuple[Act, ...], tuple[int, ...]]:
        return groups(tuple(la.saved for la in self.layers))

    @cached_property
    def layer_groups(self) -> tuple[tuple[LayerActs, ...], tuple[int, ...]]:
        return groups(self.layers)


def groups(items: tuple) -> tuple[tuple, tuple[int, ...]]:
    """(the distinct objects of ``items`` by identity, in order; each item's index into them)."""
    seen: dict[int, int] = {}
    distinct: list = []
    index = []
    for item in items:
        k = seen.get(id(item))
        if k is None:
            k = seen[id(item)] = len(distinct)
            distinct.append(item)
        index.append(k)
    return tuple(distinct), tuple(index)


@lru_cache(maxsize=4096)
def _layer(spec: ModelSpec, rep: int, c: ActContext, flags: tuple[tuple[str, tuple[bool, bool]], ...],
           x_rg: bool) -> LayerActs:
    """Layers of the same kind (MoE or dense, sliding or full attention) with the same trainable flags save the
    same: ``rep`` is the first layer of that kind, so the cache holds one entry per distinct layer."""
    return decoder_layer(spec, rep, c, dict(flags), x_rg)


@lru_cache(maxsize=256)
def _representatives(spec: ModelSpec) -> tuple[int, ...]:
    first: dict[tuple[bool, str, bool], int] = {}
    # the attention kind (full, sliding, chunked, linear) and Llama 4's per-layer L2 q/k norm set a layer apart
    return tuple(first.setdefault((spec.is_moe_layer(i), spec.layer_types[i] if spec.layer_types else "full",
                                   bool(spec.l2_qk_norm_layers and spec.l2_qk_norm_layers[i])), i)
                 for i in range(spec.num_layers))


@lru_cache(maxsize=512)
def model_acts(spec: ModelSpec, tr: Trainability, c: ActContext, recompute: str) -> ModelActs:
    """Cached: every ``Act`` is a per-token (and per-b·s²) coefficient, independent of batch and sequence."""
    table = tensor_table(spec)
    embed_rg = any(rg or lo for t, rg, lo in zip(table, tr.base_trainable, tr.lora) if t.component == "embedding")
    # gradient checkpointing with a frozen embedding needs the layer inputs to require grad: PEFT and the Trainer
    # call model.enable_input_require_grads() (transformers modeling_utils), which marks the embedding output
    x_rg = embed_rg or recompute == "full"
    layers: list[LayerActs] = []
    kept: list[Act] = []
    h, r = spec.hidden_size, c.r
    reps = _representatives(spec)
    flags = layer_flags(spec, tr)
    # selective recompute keeps the layer without its attention core, which backward rebuilds one layer at a time
    c_full = replace(c, selective=False)
    for i in range(spec.num_layers):
        la = _layer(spec, reps[i], c_full, flags[i], x_rg)
        layers.append(la)
        if recompute == "full":
            kept.append(Act(tok=r * h))
        elif recompute == "op":  # torchtitan's op-level selective checkpointing (gpuplan.train.checkpointing)
            kept.append(op_sac_kept(spec, c, i))
        elif recompute == "selective":
            kept.append(_layer(spec, reps[i], replace(c, selective=True), flags[i], x_rg).saved)
        else:
            kept.append(la.saved)
        x_rg = la.out_rg
    head, head_norm, head_fwd = _head(spec, tr, c, x_rg)
    return ModelActs(tuple(layers), tuple(kept), _shared(spec, c, recompute), head, head_norm, embed_rg,
                     _stack_held(spec, c, layers[0] if layers else None, recompute), head_fwd,
                     _first_held(spec, c, recompute))


def _stack_held(spec: ModelSpec, c: ActContext, first: LayerActs | None, recompute: str) -> Act:
    """What the model's forward keeps referenced until the decoder stack and the final norm have run, beyond the
    layers' kept sets (traced: FSDP2 Llama/Qwen2 rows of ``benchmarks/parallel_accuracy.py``, one-GPU Gemma 2):

    - the embedding output (transformers ``inputs_embeds``, a local of ``LlamaModel.forward`` and its kin):
      r·h per token, unless it is the first layer's input and that layer keeps it (its first norm saves an fp32
      stream itself; full recompute keeps every layer input). With learned positions or embedding dropout the
      stack's input is a new tensor and the embedding output is always extra (GPT-2's position embeddings,
      s·h, are ignored);
    - the attention masks the model materialises (``attention_masks``), unless full recompute keeps them
      through backward anyway (``_shared``)."""
    if first is None or c.model_impl in ("litgpt", "torchtitan"):
        # litgpt ``GPT.forward`` rebinds ``x = block(x, ...)`` (model.py 94-99), torchtitan's ``Transformer.forward``
        # ``h = layer(h, self.freqs_cis)``: the embedding output goes once the first layer returns, and neither
        # builds a mask in training
        return Act()
    fresh = spec.learned_positions or c.dropout > 0
    out = Act()
    if fresh or not (recompute in ("full", "op") or any(k == "x" for k, _ in first.items)):
        out = Act(tok=float(c.r * spec.hidden_size))
    if recompute not in ("full", "op"):
        out = out + attention_masks(spec, c)
    return out


def _first_held(spec: ModelSpec, c: ActContext, recompute: str) -> Act:
    """What the model's forward references at the first decoder layer's pre-forward beyond that layer's input
    (r·h per token) and the shared tensors: the attention masks unless full recompute counts them in ``_shared``,
    and the embedding output when the stack's input is another tensor (learned positions, embedding dropout:
    r·h). ``gpuplan.train.peak.forward_peak`` places it beside FSDP2's root all-gather buffer."""
    out = Act() if recompute in ("full", "op") else attention_masks(spec, c)
    if spec.learned_positions or c.dropout > 0:
        out = out + Act(tok=float(c.r * spec.hidden_size))
    return out


def attention_masks(spec: ModelSpec, c: ActContext) -> Act:
    """The [b, 1, s, s] masks the model's forward builds once and passes to its layers (transformers
    ``masking_utils.py`` ``create_causal_mask`` / ``create_sliding_window_causal_mask``, called in
    ``LlamaModel.forward`` and kin):

    - eager attention: one additive mask per attention kind among the layers (full, sliding), in the model
      dtype (r), always materialised (``eager_mask``: ``torch.where`` over the expanded boolean mask writes
      b·s² elements);
    - SDPA: the full causal mask is skipped (``allow_is_causal_skip``: ``is_causal=True`` instead), and so is
      the sliding one while the window covers the sequence; a window shorter than the sequence
      (``ActContext.window_mask``) gives a boolean mask for the sliding layers (``sdpa_mask``: built as
      [1, 1, s, s], 1 byte per element, and ``expand``-ed over the batch, so s² bytes whatever the batch). The
      per-call additive copy SDPA keeps is a layer tensor (``attn.mask``).

    Ignores padding masks (the traced batches have none) and the cached per-layer-type dict itself."""
    if c.attention == "eager" and spec.layout == "mpt":
        # MptModel.forward: ``create_causal_mask(...).to(torch.bool)``, one boolean [b, 1, s, s] mask
        return Act(sq=1.0)
    if c.attention == "eager":
        return Act(sq=float(c.r * len({spec.is_sliding_layer(i) for i in range(spec.num_layers)})))
    if c.window_mask and any(spec.is_sliding_layer(i) for i in range(spec.num_layers)):
        return Act(seq_sq=1.0)
    return Act()


def _shared(spec: ModelSpec, c: ActContext, recompute: str) -> Act:
    """Rotary cos/sin (b·s·head_dim each, in the residual dtype, built once per forward and passed to every layer);
    under full recompute the attention masks (``attention_masks``): each is an input of every checkpointed
    layer of its kind, which non-reentrant ``torch.utils.checkpoint`` holds for the recomputation until that
    layer's backward, so they live through the whole backward (traced: eager Llama; Gemma 2's two eager masks;
    Mistral's and Gemma 3's boolean sliding-window mask under SDPA, 16 MiB at 1 × 4096); without recompute no
    saved tensor holds them (traced); the embedding dropout mask."""
    out = Act()
    if c.model_impl in ("litgpt", "torchtitan"):
        # litgpt's cos/sin are module buffers of max_seq_length rows (``GPT.max_seq_length`` setter, model.py
        # 50-57), sliced per forward (``self.cos[:T]``); torchtitan's ``freqs_cis`` is a complex64 module buffer
        # of max_seq_len rows (``Transformer.__init__``, ``precompute_freqs_cis``), whose product with q and k
        # keeps nothing per token (``apply_rotary_emb``: the fp32 complex copies are temporaries): no per-token
        # tensor (the buffers, 8·seq·head_dim bytes, are ignored)
        return out
    if not (spec.learned_positions or spec.alibi):
        rot = spec.mla.qk_rope_head_dim if spec.mla else spec.head_dim
        out = out + Act(tok=2 * c.r * rot)
    if recompute in ("full", "op"):
        out = out + attention_masks(spec, c)
    if c.dropout > 0:
        out = out + Act(tok=spec.hidden_size)
    if spec.layout == "bert":
        # the embeddings' LayerNorm keeps its input, the sum of the word, position and token-type embeddings
        # (residual dtype), and its fp32 statistics (transformers BertEmbeddings; traced)
        out = out + Act(tok=float(c.r * spec.hidden_size + 8))
    return out


def _encoder_head(spec: ModelSpec, tr: Trainability, c: ActContext, x_rg: bool) -> tuple[Act, Act, Act]:
    """An encoder's task head (no final norm: the last layer's LayerNorm output is the encoder's output).

    Sequence classification: BERT's pooler reads ``hidden_states[:, 0]``, a view whose storage is the whole last
    hidden state, so its saved input keeps r·h per token (traced); the pooler's tanh, the dropout and the classifier
    work on one row per sequence (ignored). RoBERTa's ``classifier.dense`` reads ``features[:, 0, :]`` the same way.
    Masked LM (``cls.predictions`` / ``lm_head``): dense (h→h), GELU, LayerNorm, decoder (h→V, tied to the word
    embeddings), each a ``linear`` / ``layernorm`` as in the decoder layers: under autocast the two linears keep
    their half inputs and half weight copies (the decoder's V·h·2 bytes) and the LayerNorm, on autocast's fp32
    list, an fp32 copy of its input (traced: roberta-base amp-bf16, 1.13 % low before the weight copies)."""
    table = tensor_table(spec)
    h, r, e = spec.hidden_size, c.r, c.e
    head_w = any(rg or lo for t, rg, lo in zip(table, tr.base_trainable, tr.lora)
                 if t.component == "lm_head" and not t.is_bias)
    sv = _Saved()
    if spec.encoder_head != "mlm":
        if head_w or x_rg:
            sv.save("x_final", Act(tok=float(r * h)))
        return sv.total(), Act(), Act()
    decoder_w = any(rg or lo for t, rg, lo in zip(table, tr.base_trainable, tr.lora)
                    if t.tp == "vocab" and not t.is_bias and t.component in ("embedding", "lm_head"))
    rg = linear(sv, c, "head.dense", "x_final", r * h, x_rg, h, h, head_w, False)
    if rg:
        sv.save("head.gelu_in", Act(tok=float(e * h)))
    ln_bytes = 4 if c.amp else e
    key, out_bytes, rg = layernorm(sv, c, "head.ln", "head.ln_in", ln_bytes, rg, h, head_w)
    linear(sv, c, "head.decoder", key, out_bytes * h, rg, h, spec.vocab_size, decoder_w, False)
    return sv.total(), Act(), Act()


def _head(spec: ModelSpec, tr: Trainability, c: ActContext, x_rg: bool) -> tuple[Act, Act, Act]:
    """The final norm's saved tensors and the output head's input; under autocast the head's half weight copy.
    Third: the final norm's forward temporaries beyond those (traced, transformers 5 Llama): the stack's output,
    its input, until the norm returns (unless it saves it: fp32 stream, LayerNorm), and for a half stream
    RMSNorm's fp32 product ``x32 * rsqrt(...)`` before the cast back (4·h)."""
    if spec.layout == "bert":
        return _encoder_head(spec, tr, c, x_rg)
    table = tensor_table(spec)
    sv = _Saved()
    c = replace(c, compiled=False)  # the final norm and the head run outside the compiled decoder layers
    h, r = spec.hidden_size, c.r
    final_w = any(rg for t, rg in zip(table, tr.base_trainable) if t.component == "norm" and t.layer is None)
    if c.model_impl == "litgpt":  # ``ln_f`` is litgpt's RMSNorm (fp32 normed tensor, fp32 weight copy)
        y_key, y_b, y_rg = litgpt_rmsnorm(sv, c, "final_norm", "x_final", x_rg, h, final_w)
    else:
        y_key, y_b, y_rg = norm(sv, c, spec, "final_norm", "x_final", r, x_rg, h, final_w)
    norm_part = sv.total()
    head = [(t, rg, lo) for t, rg, lo in zip(table, tr.base_trainable, tr.lora)
            if t.component == ("lm_head" if not spec.tie_embeddings else "embedding") and t.tp == "vocab"]
    if head:
        t, rg, lo = head[0]
        linear(sv, c, "lm_head", y_key, y_b * h, y_rg, h, spec.vocab_size, rg, lo)
    fwd = (0 if "x_final" in sv.items else r * h) + (4 * h if spec.norm == "rmsnorm" and r < 4 else 0)
    return sv.total(), norm_part, Act(tok=float(fwd))
