"""Activations of one tensor-parallel rank, from a layer's saved tensors (``gpuplan.train.layers``).

Under tensor parallelism the saved tensors follow Korthikanti et al. 2022 section 4.2: tensors inside the
column/row-parallel pair (q, k, v, attention output and statistics, MLP intermediates, the half weight copies of
split weights) are divided by tp; the norm inputs and outputs, the residual stream and the router stay replicated
unless sequence parallelism splits them too. Context parallelism gives each rank seq/cp tokens (``s_local``).
Under tensor parallelism without SP the norms' backward temporaries are replicated (traced with DTensor TP).
"""

from __future__ import annotations

from functools import lru_cache

from gpuplan.model.spec import ModelSpec
from gpuplan.train.activations import Act
from gpuplan.train.config import TrainConfig
from gpuplan.train.context import norm_bwd_per_token

_REPLICATED_PREFIXES = ("x", "h1", "input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                        "post_feedforward_layernorm", "attn.mask", "ln_1", "ln_2", "router",
                        "moe.index", "moe.gathered", "moe.weights", "moe.down_out", "q_proj.in_half", "k_proj.in_half",
                        "v_proj.in_half", "mlp.gate_proj.in_half", "mlp.up_proj.in_half", "shared_gate", "rotary",
                        "q_a", "kv_a", "attn.resid_mask", "mlp.resid_mask")
_ROW_LORA = ("o_proj", "down_proj", "c_proj", "dense", "dense_4h_to_h", "w2")


def _sharded(key: str) -> bool:
    if key.endswith(".lora_in"):
        return key.rsplit(".", 1)[0].rsplit(".", 1)[-1] in _ROW_LORA
    return not key.startswith(_REPLICATED_PREFIXES)


# the outputs of the norms that feed column-parallel projections: under DTensor sequence parallelism the projections
# receive them all-gathered (PrepareModuleInput / ColwiseParallel(input_layouts=Shard(1)) redistribute to Replicate)
# and autograd saves the gathered tensor for the weight gradient, whole on every rank (traced: a transformers Llama
# under torchtitan's plan on a fake process group); Megatron saves the local shard and gathers it again in backward
_GATHERED = ("input_layernorm.out", "post_attention_layernorm.out", "pre_feedforward_layernorm.out", "ln_1.out",
             "ln_2.out")


def _split(items: tuple[tuple[str, Act], ...], tp: int, sp: bool, gathered: bool = False) -> Act:
    """The rank's share of a layer's saved items. ``gathered``: DTensor sequence parallelism (``_GATHERED``)."""
    out = Act()
    for key, a in items:
        whole = gathered and sp and key in _GATHERED
        out = out + (a.scale(1.0 / tp) if (sp or _sharded(key)) and not whole else a)
    return out


@lru_cache(maxsize=1024)
def _layer_split(la, tp: int, sp: bool, gathered: bool = False) -> Act:
    """A layer's saved set on one tensor-parallel rank (cached: a model has a few layer kinds)."""
    return _split(la.items, tp, sp, gathered)


def _bytes(a: Act, b: int, s_local: int, s: int) -> int:
    return int(a.tok * b * s_local + a.sq * b * s_local * s + a.fixed + a.seq_sq * s_local * s)


def _split_kept(kept: Act, la, tp: int, sp: bool, gathered: bool = False) -> Act:
    """Selective recompute keeps the layer without its attention core: scale like the full set."""
    full_raw = la.saved
    ratio = 1.0 if full_raw.tok == 0 else kept.tok / full_raw.tok
    return _layer_split(la, tp, sp, gathered).scale(ratio)


def _bwd_high(pts, groups: dict[str, int], tp: int, b: int, sl: int, s: int) -> int:
    """A layer's backward high-water mark above its saved set: the layer gradients existing at each traced point
    (``groups``) plus the point's temporaries."""
    if not pts:
        return groups.get("mlp_first", 0)
    return max([0] + [groups[g] + _bytes(extra, b, sl, s) for g, extra in pts])


@lru_cache(maxsize=1024)
def _rank_points(spec: ModelSpec, c, la, tp: int, sp: bool) -> tuple[tuple[str, Act], ...]:
    """A layer's backward points on one tensor-parallel rank: (gradient group, bytes beyond the rank's saved set).

    A point's extra is (saved tensors released by then) + (temporaries). Released tensors are the items saved after
    the point's module (a suffix of the layer's items), each split or replicated as in ``_split``. Temporaries:
    the norms' fp32 backward temporaries act on the full hidden size of every local token, so they are replicated
    unless sequence parallelism splits the tokens (traced with DTensor TP: four fp32 h-sized tensors at
    post_attention_layernorm backward on every rank, beside a second h-sized input gradient); the attention
    core's (q, k, v, output gradients) and the MLP's (ffn-sized) are split by the column/row pair. Without SP a
    suffix that does not match the traced formula falls back to splitting the released part."""
    if tp == 1:
        return tuple((p.grads, p.extra) for p in la.points)
    if sp:
        return tuple((p.grads, p.extra.scale(1.0 / tp)) for p in la.points)
    # + the input gradient of the column-parallel layers after the norm, all-reduced out of place (DTensor
    # Partial -> Replicate): the partial sum and the reduced copy are both alive (traced, W 2 and 4: + e·h)
    norm_tmp = Act(tok=float(norm_bwd_per_token(spec, c)))
    partial = Act(tok=float(c.e * spec.hidden_size))
    out = []
    for p in la.points:
        if p.name not in ("second norm", "first norm"):
            out.append((p.grads, p.extra.scale(1.0 / tp)))
            continue
        released = _minus(p.temporaries, p.extra)
        suffix = _suffix_matching(la.items, released)
        rank_released = released.scale(1.0 / tp) if suffix is None else _split(suffix, tp, sp)
        out.append((p.grads, _minus(norm_tmp + partial, rank_released)))
    return tuple(out)


def _minus(a: Act, b: Act) -> Act:
    return Act(a.tok - b.tok, a.sq - b.sq, a.fixed - b.fixed, a.seq_sq - b.seq_sq)


def _suffix_matching(items: tuple[tuple[str, Act], ...], target: Act) -> tuple[tuple[str, Act], ...] | None:
    """The trailing items of a layer (saved last, released first in backward) that add up to ``target``."""
    acc = Act()
    for k in range(len(items) - 1, -1, -1):
        acc = acc + items[k][1]
        if abs(acc.tok - target.tok) < 0.5 and abs(acc.sq - target.sq) < 0.5 and abs(acc.fixed - target.fixed) < 0.5:
            return items[k:]
    return None


def forward_moments(spec: ModelSpec, cfg: TrainConfig, c, acts, shard, tp: int, sp: bool, b: int, sl: int,
                    s: int) -> dict[str, int]:
    """A stage rank's forward moments beyond its kept activations (``gpuplan.train.peak.forward_peak``): the top
    layer's input (r·h per local token) and forward high-water mark (``LayerActs.fwd_end``, or ``fwd_ckpt`` under
    full recompute), what the model's forward holds through the stack (first stage: the embedding output, eager
    masks) and the final norm's temporaries (last stage), and the first layer's input with what the model holds
    at its pre-forward (``first_in_bytes``). Residual-stream tensors are replicated over
    tensor-parallel ranks unless sequence parallelism splits them (the [b, 1, s, s] masks never are); the
    checkpointed MLP working set is split by the column/row pair. None for the Korthikanti activation model (no
    forward breakdown)."""
    if cfg.activation_model == "korthikanti" or not shard.layers:
        return {}
    rep = 1.0 / tp if sp else 1.0
    top = acts.layers[shard.layers[-1]]
    if cfg.checkpointed:
        high = top.fwd_ckpt[0].scale(rep) + top.fwd_ckpt[1].scale(1.0 / tp)
    else:
        high = top.fwd_end.scale(rep)
    fwd_in = _bytes(Act(tok=float(c.r * spec.hidden_size)).scale(rep), b, sl, s)
    first = acts.first_held
    return {"fwd_in_bytes": fwd_in,
            "first_in_bytes": fwd_in + (_bytes(Act(tok=first.tok * rep, sq=first.sq, seq_sq=first.seq_sq), b, sl, s)
                                        if shard.first else 0),
            "fwd_high_bytes": _bytes(high, b, sl, s),
            "stack_held_bytes": _bytes(Act(tok=acts.stack_held.tok * rep, sq=acts.stack_held.sq,
                                                    seq_sq=acts.stack_held.seq_sq), b, sl, s)
            if shard.first else 0,
            "head_fwd_bytes": _bytes(acts.head_fwd.scale(rep), b, sl, s) if shard.last else 0}
