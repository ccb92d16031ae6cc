"""Whole-model activations: every decoder layer (cached by the layer's signature), the shared rotary tables, the
final norm and the output head's input, under each recompute mode.

Full recompute is Hugging Face gradient checkpointing (``model.gradient_checkpointing_enable()``, non-reentrant
``torch.utils.checkpoint`` around each decoder layer): a layer keeps only its input hidden states (r·h per token);
during backward one layer at a time is recomputed and holds its full saved set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from gpuplan.model.spec import ModelSpec
from gpuplan.model.tensors import tensor_table
from gpuplan.train.activations import Act, ActContext, _Saved, linear, norm
from gpuplan.train.layers import LayerActs, decoder_layer
from gpuplan.train.peft import Trainability, layer_flags


@dataclass(frozen=True)
class ModelActs:
    layers: tuple[LayerActs, ...]  # full saved set of each layer (what it holds with no recompute)
    kept: tuple[Act, ...]  # what each layer keeps between forward and backward under the recompute mode
    shared: Act  # rotary tables (and eager's causal mask): built once per forward, alive until backward ends
    head: Act  # final norm and output-head input (and autocast's half head weight), released first in backward
    head_norm: Act  # the final norm's part of ``head`` (still held while its backward runs)
    embed_rg: bool  # the embedding output requires grad (the embedding trains)


@lru_cache(maxsize=4096)
def _layer(spec: ModelSpec, rep: int, c: ActContext, flags: tuple[tuple[str, tuple[bool, bool]], ...],
           x_rg: bool) -> LayerActs:
    """Layers of the same kind (MoE or dense, sliding or full attention) with the same trainable flags save the
    same: ``rep`` is the first layer of that kind, so the cache holds one entry per distinct layer."""
    return decoder_layer(spec, rep, c, dict(flags), x_rg)


@lru_cache(maxsize=256)
def _representatives(spec: ModelSpec) -> tuple[int, ...]:
    first: dict[tuple[bool, bool], int] = {}
    return tuple(first.setdefault((spec.is_moe_layer(i), spec.is_sliding_layer(i)), i)
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
        elif recompute == "selective":
            kept.append(_layer(spec, reps[i], replace(c, selective=True), flags[i], x_rg).saved)
        else:
            kept.append(la.saved)
        x_rg = la.out_rg
    head, head_norm = _head(spec, tr, c, x_rg)
    return ModelActs(tuple(layers), tuple(kept), _shared(spec, c, recompute), head, head_norm, embed_rg)


def _shared(spec: ModelSpec, c: ActContext, recompute: str) -> Act:
    """Rotary cos/sin (b·s·head_dim each, in the residual dtype, built once per forward and passed to every layer);
    under full recompute eager attention's additive causal mask (b·s², residual dtype; without recompute no saved
    tensor holds it: traced); the embedding dropout mask."""
    out = Act()
    if not spec.learned_positions:
        rot = spec.mla.qk_rope_head_dim if spec.mla else spec.head_dim
        out = out + Act(tok=2 * c.r * rot)
    if c.attention == "eager" and recompute == "full":
        out = out + Act(sq=float(c.r))  # the additive causal mask, an input every checkpointed layer keeps
    if c.dropout > 0:
        out = out + Act(tok=spec.hidden_size)
    return out


def _head(spec: ModelSpec, tr: Trainability, c: ActContext, x_rg: bool) -> tuple[Act, Act]:
    """The final norm's saved tensors and the output head's input; under autocast the head's half weight copy."""
    table = tensor_table(spec)
    sv = _Saved()
    h, r = spec.hidden_size, c.r
    final_w = any(rg for t, rg in zip(table, tr.base_trainable) if t.component == "norm" and t.layer is None)
    y_key, y_b, y_rg = norm(sv, c, spec, "final_norm", "x_final", r, x_rg, h, final_w)
    norm_part = sv.total()
    head = [(t, rg, lo) for t, rg, lo in zip(table, tr.base_trainable, tr.lora)
            if t.component == ("lm_head" if not spec.tie_embeddings else "embedding") and t.tp == "vocab"]
    if head:
        t, rg, lo = head[0]
        linear(sv, c, "lm_head", y_key, y_b * h, y_rg, h, spec.vocab_size, rg, lo)
    return sv.total(), norm_part
