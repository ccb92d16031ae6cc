"""Training FLOPs per token: the 6·P rule, the attention term, MoE, frozen weights and LoRA, recomputation.

Model FLOPs (the numerator of MFU) count one forward and one backward pass of the model as written; the extra
forward work of activation recomputation is reported separately (``recompute_flop_per_token``) so that MFU stays
comparable between runs with and without recomputation (Korthikanti et al. 2022, "Reducing Activation
Recomputation in Large Transformer Models", section 6: model vs hardware FLOPs utilization).

Conventions differ between frameworks in two places, and both are inputs here:

* **Which parameters count.** Kaplan et al. 2020 count non-embedding parameters; torchtitan
  (``get_num_flop_per_token``) subtracts the input embedding (a table lookup, no multiply) but keeps the output
  projection. That is what gpuplan does with a model: P = parameters a token is multiplied by (MoE: the routed
  experts it visits plus everything shared; the output head counts, tied or not). With ``--params P`` alone, P is
  taken as given (the 6·P·D rule of Chinchilla, the Llama papers and seed document 004).
* **The attention term** (QKᵀ and attention·V, which have no parameters): per layer and token the forward pass
  costs 2·n_heads·(d_qk + d_v)·s, training three times that, i.e. 12·s·n_heads·d_head = 12·L·h·s per token over L
  layers for standard attention. ``full`` counts every query against all s keys — torchtitan ("we do not account
  for sparsity in causal attention"), MosaicML llm-foundry (``attn_flops_per_seq = n_layers·2·2·d_model·seq²``),
  the Megatron-LM/Korthikanti papers, PaLM (6N + 12·L·H·Q·T) and Llama 3's reported TFLOP/s. ``causal`` counts the
  unmasked half, as NVIDIA NeMo's ``nemo/utils/flops_formulas.py`` does for Llama since 2025 (``6·s/h``; its 2024
  version used ``12·s/h``) and Megatron-Bridge (``causal_self_attn``). ``none`` drops the term (plain 6·P).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatch

from gpuplan.errors import InputError
from gpuplan.model.spec import ModelSpec, target_seq_refusal
from gpuplan.report import Term

ATTENTION_CONVENTIONS = ("full", "causal", "none")
RECOMPUTE_MODES = ("none", "selective", "full")
METHODS = ("full", "freeze", "lora", "qlora")

_SRC_6P = ("Kaplan et al. 2020 (arXiv:2001.08361) section 2.1: C = 6·N per token (forward 2N, backward 4N); "
           "frozen weights skip the weight-gradient GEMM: 2N + 2N (litgpt estimate_flops: trainable 3x, frozen 2x "
           "the forward)")
_SRC_ATTN = ("Narayanan et al. 2021 (arXiv:2104.04473) eq. 3 / Korthikanti et al. 2022 appendix; torchtitan "
             "get_num_flop_per_token (12·l·h·q·t, full); NeMo flops_formulas.py llama (6·s/h, causal half)")
_SRC_RECOMPUTE = ("Korthikanti et al. 2022 (arXiv:2205.05198) section 5: full recomputation repeats the forward pass; "
                  "selective recomputation repeats only QKᵀ, softmax and attention·V")


@dataclass(frozen=True)
class TrainingFlops:
    """FLOP per token of one training step. ``model_flop_per_token`` is the MFU numerator."""

    weight_params: int  # parameters a token is multiplied by (P of 6·P)
    trainable_params: int  # of weight_params, those with weight gradients (plus LoRA adapters)
    dense_flop_per_token: float  # 6·P_trainable + 4·P_frozen
    attention_flop_per_token: float  # the parameter-free attention matmuls, forward + backward
    recompute_flop_per_token: float  # extra forward work of activation recomputation (not in model FLOPs)
    attention_convention: str
    terms: tuple[Term, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())

    @property
    def model_flop_per_token(self) -> float:
        return self.dense_flop_per_token + self.attention_flop_per_token

    @property
    def hardware_flop_per_token(self) -> float:
        """Model FLOPs plus recomputation: what the GPU executes (HFU numerator), FlashAttention's own backward
        recomputation aside."""
        return self.model_flop_per_token + self.recompute_flop_per_token


def weight_flop_params(spec: ModelSpec) -> int:
    """Parameters one token is multiplied by: active parameters (MoE: top-k routed experts plus all shared
    weights) minus lookup tables (token and learned position embeddings) and norm weights (elementwise, not
    matmuls), plus the output projection when it is tied to the embedding (it still multiplies).

    Source: torchtitan ``get_num_params(exclude_embedding=True)``; Kaplan et al. 2020 (non-embedding N).
    Ignores: biases' adds and norm/activation/softmax FLOPs (under 1 % for models above 1B), MTP modules.
    """
    from gpuplan.model.params import count_params

    counts = count_params(spec)
    tied_head = spec.vocab_size * spec.hidden_size if spec.tie_embeddings else 0
    return counts.active - counts.embedding - counts.norm + tied_head


def keys_per_query(seq: int, window: int | None, convention: str, chunked: bool = False) -> float:
    """Average number of keys one query attends to: ``full`` counts min(s, w) for every query; ``causal`` the
    unmasked mean, s/2 without a window and w − w²/(2s) for a sliding window w < s (query i sees min(i, w) keys).
    ``chunked`` (Llama 4 chunked attention, chunk c = ``window``): query i sees i mod c keys, so s = q·c + r
    tokens average (q·c² + r²) / (2s), the causal mean of each chunk.
    """
    span = seq if window is None else min(seq, window)
    if convention == "full":
        return float(span)
    if convention == "causal":
        if window is None or window >= seq:
            return seq / 2
        if chunked:
            q, r = divmod(seq, window)
            return (q * window * window + r * r) / (2 * seq)
        return window - window * window / (2 * seq)
    if convention == "none":
        return 0.0
    raise InputError("--attention-flops", convention, f"must be one of {', '.join(ATTENTION_CONVENTIONS)}")


def encoder_convention(spec: ModelSpec, convention: str) -> str:
    """An encoder (bert, roberta) attends bidirectionally: every query sees every key, so the ``causal`` count
    of keys is the ``full`` one there."""
    return "full" if spec.layout == "bert" and convention == "causal" else convention


def attention_forward_flop_per_token(spec: ModelSpec, seq: int, convention: str = "full") -> float:
    """Forward FLOP per token of the parameter-free attention matmuls, summed over layers:
    2·n_heads·(d_qk + d_v)·keys per layer (QKᵀ and attention·V, one multiply-add = 2 FLOP each).

    Standard attention has d_qk = d_v = head_dim, so training (3x the forward) gives 12·L·s·n_heads·head_dim
    (= 12·L·h·s when n_heads·head_dim = h) under the ``full`` convention. MLA uses d_qk = nope + rope dims and
    d_v = v_head_dim (DeepSeek-V2 paper section 2.1). Sliding-window layers see at most the window, chunked layers
    the keys of their chunk; linear-attention layers cost ``linear_attention_flop_per_token``.
    """
    if spec.mla:
        d_qk, d_v = spec.mla.qk_head_dim, spec.mla.v_head_dim
    else:
        d_qk = d_v = spec.head_dim
    per_layer = 2 * spec.num_heads * (d_qk + d_v)
    total = 0.0
    for i in range(spec.num_layers):
        if spec.is_linear_layer(i):
            total += linear_attention_flop_per_token(spec)
            continue
        window = spec.sliding_window if spec.is_sliding_layer(i) else None
        total += per_layer * keys_per_query(seq, window, encoder_convention(spec, convention),
                                            spec.is_chunked_layer(i))
    return total


def linear_attention_flop_per_token(spec: ModelSpec) -> float:
    """Forward FLOP per token of one linear-attention layer's parameter-free part (Qwen3-Next Gated DeltaNet), in
    its recurrent form: reading the [dk, dv] state of each value head with k and q and writing the rank-one
    update, 4·nv·dk·dv (Yang et al. 2024, arXiv:2412.06464, eq. 3). Independent of the sequence length; ignores
    the chunked form's intra-chunk products and the conv (4 taps per channel)."""
    la = spec.linear_attn
    return 0.0 if la is None else 4.0 * la.num_v_heads * la.k_head_dim * la.v_head_dim


def lora_adapter_params(spec: ModelSpec, rank: int, targets: tuple[str, ...] | None = None) -> int:
    """Trainable LoRA parameters: r·(in + out) per targeted Linear (PEFT ``LoraConfig``: A is [r, in], B is
    [out, r]). ``targets`` are PEFT ``target_modules`` leaf names (glob patterns allowed); None means every linear
    layer except the output head (PEFT's ``"all-linear"``)."""
    from gpuplan.model.tensors import tensor_table

    if rank < 1:
        raise InputError("--lora-rank", rank, "must be an integer >= 1")
    total, matched = 0, False
    for t in tensor_table(spec):
        if not t.linear or t.component == "lm_head":
            continue
        if targets is not None and not any(fnmatch(t.module, pat) for pat in targets):
            continue
        matched = True
        total += rank * sum(t.shape)
    if not matched:
        raise InputError("--lora-targets", ",".join(targets or ()), "matches no linear module of this model",
                         hint="use PEFT leaf names such as q_proj,v_proj (see `gpuplan params MODEL --tensors`)")
    return total


def seq2seq_weight_flop_params(spec: ModelSpec, seq: int, target_seq: int) -> float:
    """An encoder-decoder's (T5) matmul weights per encoder input token: each weight multiplies the tokens of its
    own stack. Encoder blocks and the cross-attention's k and v (they read the encoder output) act on the ``seq``
    input tokens; the decoder's self-attention, MLP, the cross-attention's q and o and the head on the
    ``target_seq`` decoder tokens. Norms, the shared embedding (a lookup) and the relative-position tables (a
    lookup) multiply nothing. Sum over the tensor table, divided by ``seq``."""
    from gpuplan.model.tensors import tensor_table

    on_input = on_target = 0
    for t in tensor_table(spec):
        if not t.linear:
            continue
        encoder_side = t.layer is not None and (t.layer < spec.num_layers or
                                                (".EncDecAttention." in t.name and t.module in ("k", "v")))
        if encoder_side:
            on_input += t.numel
        else:
            on_target += t.numel
    head = spec.vocab_size * spec.hidden_size  # lm_head, or the shared embedding used as the head when tied
    return (on_input * seq + (on_target + head) * target_seq) / seq


def seq2seq_attention_forward_flop_per_token(spec: ModelSpec, seq: int, target_seq: int, convention: str) -> float:
    """An encoder-decoder's attention matmuls per encoder input token, forward: 2·heads·2·d_kv per query-key pair
    (QKᵀ and attention·V) over the encoder's bidirectional S x S, the decoder's self-attention (T queries,
    ``keys_per_query(T)`` keys under ``convention``) and its cross-attention (T queries x S keys), divided by S."""
    pair = 4 * spec.num_heads * spec.head_dim
    if convention == "none":
        return 0.0
    pairs = (spec.num_layers * seq * seq
             + spec.decoder_layers * target_seq * (keys_per_query(target_seq, None, convention) + seq))
    return pair * pairs / seq


def training_flops(spec: ModelSpec | None, *, seq: int | None = None, params: int | None = None,
                   attention: str = "full", method: str = "full", trainable_params: int | None = None,
                   lora_rank: int | None = None, lora_targets: tuple[str, ...] | None = None,
                   recompute: str = "none", target_seq: int | None = None) -> TrainingFlops:
    """FLOP per token for training ``spec`` (or a bare parameter count ``params``) on sequences of ``seq``.

    * full training: 6·P (+ attention term);
    * ``freeze`` with ``trainable_params``: 6·P_trainable + 4·P_frozen — frozen weights still pay the forward (2P)
      and the activation gradient (2P) that flows through them, but no weight gradient;
    * ``lora``/``qlora``: the base is frozen (4·P) and the adapters train (6·P_lora); QLoRA's dequantization is
      elementwise work and is not counted;
    * recomputation: ``full`` repeats the whole forward (2·P + attention forward), ``selective`` only the attention
      matmuls — reported apart from model FLOPs.

    An encoder-decoder (T5) counts per encoder input token, its decoder training ``target_seq`` tokens per
    ``seq`` input tokens (:func:`seq2seq_weight_flop_params`); P is then that weighted count.

    Ignores: the saving from not back-propagating below the lowest trainable layer, norms, activations, softmax,
    the loss (all elementwise, under 1 % for models above 1B), and FlashAttention's recomputation inside its
    backward kernel (counted by no framework's MFU).
    """
    if attention not in ATTENTION_CONVENTIONS:
        raise InputError("--attention-flops", attention, f"must be one of {', '.join(ATTENTION_CONVENTIONS)}")
    if recompute not in RECOMPUTE_MODES:
        raise InputError("--recompute", recompute, f"must be one of {', '.join(RECOMPUTE_MODES)}")
    if method not in METHODS:
        raise InputError("--method", method, f"must be one of {', '.join(METHODS)}")
    notes: list[str] = []
    if spec is None:
        if params is None or params < 1:
            raise InputError("--params", params, "is required (an integer >= 1) when no model is given")
        weight_params = params
        attn_fwd = 0.0
        if attention != "none":
            notes.append("attention term left out: it needs the model's dimensions (give MODEL or --layers/--hidden/"
                         "--heads); FLOPs are the plain 6·P rule")
        attention = "none"
    else:
        if spec.layout == "t5":
            if method != "full":
                raise InputError("--method", method, f"{spec.name} is an encoder-decoder: its FLOPs are counted for "
                                 "full training only")
            if seq is None:
                raise InputError("--seq", None, "is required to count an encoder-decoder's FLOPs")
            target = target_seq or seq
            weight_params = round(seq2seq_weight_flop_params(spec, seq, target))
            notes.append(f"encoder-decoder: FLOPs per encoder input token, each sequence of {seq:,} input tokens "
                         f"training {target:,} target tokens (--target-seq); --tokens counts input tokens")
        else:
            weight_params = weight_flop_params(spec)
            if target_seq is not None:
                raise target_seq_refusal(target_seq, spec.name)
        if params is not None:
            notes.append(f"--params {params:,} ignored: the model's own count ({weight_params:,} multiplied "
                         "per token) is used")
        if seq is None:
            raise InputError("--seq", None, "is required to count attention FLOPs for a model")
        attn_fwd = (seq2seq_attention_forward_flop_per_token(spec, seq, target_seq or seq, attention)
                    if spec.layout == "t5" else attention_forward_flop_per_token(spec, seq, attention))

    adapters = 0
    if method == "full":
        trainable = weight_params
    elif method == "freeze":
        if trainable_params is None:
            raise InputError("--trainable-params", None, "is required with --method freeze for the time estimate")
        if not 0 <= trainable_params <= weight_params:
            raise InputError("--trainable-params", trainable_params, f"must be between 0 and {weight_params:,}")
        trainable = trainable_params
    else:
        if spec is None:
            raise InputError("--method", method, "needs the model's dimensions to size the LoRA adapters",
                             hint="or use --method freeze --trainable-params N")
        adapters = lora_adapter_params(spec, lora_rank or 16, lora_targets)
        if lora_rank is None:
            notes.append("LoRA rank 16 assumed (PEFT examples' common value); pass --lora-rank")
        trainable = adapters
    frozen = weight_params - (0 if method in ("lora", "qlora") else trainable)
    trainable_dense = trainable
    dense = 6.0 * trainable_dense + 4.0 * frozen
    attn_train = 3.0 * attn_fwd
    forward_dense = 2.0 * (weight_params + adapters)
    if recompute == "full":
        recompute_flop = forward_dense + attn_fwd
    elif recompute == "selective":
        recompute_flop = attn_fwd
    else:
        recompute_flop = 0.0

    terms = (
        Term("dense_flop_per_token", dense, "6·P_trainable + 4·P_frozen", _SRC_6P,
             {"P": weight_params, "P_trainable": trainable_dense, "P_frozen": frozen, "method": method}),
        Term("attention_flop_per_token", attn_train,
             "3 · Σ_layers 2·n_heads·(d_qk + d_v)·keys_per_query  (= 12·L·h·s, full convention)", _SRC_ATTN,
             {"seq": seq, "convention": attention}),
        Term("recompute_flop_per_token", recompute_flop,
             {"full": "2·P + attention forward", "selective": "attention forward", "none": "0"}[recompute],
             _SRC_RECOMPUTE, {"recompute": recompute}),
    )
    return TrainingFlops(weight_params=weight_params, trainable_params=trainable, dense_flop_per_token=dense,
                         attention_flop_per_token=attn_train, recompute_flop_per_token=recompute_flop,
                         attention_convention=attention, terms=terms, notes=tuple(notes))


def total_training_flop(flops: TrainingFlops, tokens: int) -> float:
    """Model FLOPs of a whole run: FLOP per token × tokens (6·P·D for the plain rule)."""
    return flops.model_flop_per_token * tokens
