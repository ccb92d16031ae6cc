"""The typed model description every estimate starts from.

A ``ModelSpec`` is built from a preset, a Hugging Face ``config.json`` (``gpuplan.model.hf_config``) or raw
dimensions, and validated once on construction; everything downstream can trust it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from gpuplan.errors import InputError

# Naming schemes for the tensor table: how a family names its checkpoint tensors.
LAYOUTS = (
    "llama",  # llama, mistral, qwen2, qwen3, and raw dimensions
    "olmo2",
    "gemma",  # gemma2, gemma3_text: four norms per layer
    "mixtral",
    "qwen_moe",  # qwen2_moe, qwen3_moe
    "deepseek",  # deepseek_v2, deepseek_v3, kimi_k2 (MLA + MoE); glm4_moe (grouped-query attention + the same MoE)
    "phi3",
    "gpt2",
    "gpt_neox",
    "falcon",
    "gpt_oss",  # biased top-k router, experts with biases, per-head attention sinks
    "llama4",  # feed_forward modules: router, experts and a shared expert on MoE layers, dense MLP on the others
    "qwen3_next",  # Gated DeltaNet (linear_attn) and gated full-attention layers, Qwen2-MoE-style sparse MLP
    "starcoder2",  # llama names with LayerNorms (bias) and a plain c_fc / c_proj MLP, biases everywhere
    "gpt_bigcode",  # GPT-2 names with nn.Linear weights ([out, in]) and multi-query c_attn (StarCoder, SantaCoder)
    "mpt",  # MPT: fused bias-free Wqkv, weight-only LayerNorms, ALiBi, GELU up/down MLP, tied head
    "bert",  # encoders (bert, roberta): post-norm layers, token-type embeddings, a task head instead of an LM head
    "t5",  # encoder-decoder (t5, mt5): an encoder stack, a decoder stack with cross-attention, relative position buckets
)

# Heads of an encoder (``ModelSpec.encoder_head``): "classify" a sequence-classification head over ``num_labels``
# (BertForSequenceClassification: pooler + classifier; RobertaForSequenceClassification: classifier.dense +
# classifier.out_proj), "mlm" the masked-LM head (transform + decoder tied to the word embeddings).
ENCODER_HEADS = ("classify", "mlm")

# Attention kinds of ``ModelSpec.layer_types``: "sliding" attends the last ``sliding_window`` keys; "chunked"
# (Llama 4 ``attention_chunk_size``) attends the keys of its own chunk of ``sliding_window`` positions; "linear"
# is a linear-attention layer (Qwen3-Next Gated DeltaNet) with a constant-size recurrent state and no KV cache.
LAYER_TYPES = ("full", "sliding", "chunked", "linear")


@dataclass(frozen=True)
class MoESpec:
    """Mixture-of-experts feed-forward layers.

    ``moe_layers`` holds, per decoder layer, whether its MLP is a routed MoE block (dense-first layers such as
    DeepSeek's ``first_k_dense_replace`` or Qwen's ``mlp_only_layers`` are False).
    """

    num_experts: int
    top_k: int
    expert_ffn_size: int
    moe_layers: tuple[bool, ...]
    num_shared_experts: int = 0
    shared_expert_ffn_size: int = 0  # intermediate size of the whole shared-expert MLP
    shared_expert_gate: bool = False  # Qwen2-MoE: sigmoid gate Linear(h, 1) on the shared expert
    # group-limited routing (DeepSeek-V3 config ``n_group`` / ``topk_group``): the experts form n_group groups and a
    # token's top-k experts come from at most topk_group of them (0: no limit)
    route_groups: int = 1
    route_topk_groups: int = 0

    @property
    def num_moe_layers(self) -> int:
        return sum(self.moe_layers)


@dataclass(frozen=True)
class MLASpec:
    """DeepSeek multi-head latent attention (DeepSeek-V2 paper, arXiv:2405.04434, section 2.1).

    ``q_lora_rank`` 0 means queries are projected directly (DeepSeek-V2-Lite: ``q_lora_rank: null``).
    """

    q_lora_rank: int
    kv_lora_rank: int
    qk_rope_head_dim: int
    qk_nope_head_dim: int
    v_head_dim: int
    # DeepSeek Sparse Attention's lightning indexer (DeepSeek-V3.2, ``deepseek_v32``; transformers
    # ``DeepseekV32Indexer``): ``index_n_heads`` heads of ``index_head_dim`` that pick the keys each query attends to.
    # 0: no indexer (dense MLA).
    index_n_heads: int = 0
    index_head_dim: int = 0

    @property
    def qk_head_dim(self) -> int:
        return self.qk_rope_head_dim + self.qk_nope_head_dim


def require_modelled_attention(spec: ModelSpec) -> None:
    """Refuse DeepSeek Sparse Attention (``deepseek_v32``) where an estimate would leave its lightning indexer's
    activations, key cache and FLOPs out (training, serving, time and plans); ``gpuplan params`` counts it.
    InputError naming the model and what gpuplan does with it."""
    if spec.mla is not None and spec.mla.index_n_heads:
        raise InputError("model", spec.name, f"uses DeepSeek Sparse Attention ({spec.family}): `gpuplan params` "
                         "counts it exactly, indexer included, but the training, serving, time and plan estimates "
                         "do not model the indexer's activations, key cache and FLOPs yet")


@dataclass(frozen=True)
class LinearAttnSpec:
    """Gated DeltaNet linear attention (Yang et al. 2024, arXiv:2412.06464; transformers ``Qwen3NextGatedDeltaNet``):
    ``in_proj_qkvz`` projects to q and k (``num_k_heads`` x ``k_head_dim`` each), v and the output gate z
    (``num_v_heads`` x ``v_head_dim`` each); ``in_proj_ba`` to one beta and one decay input per value head; a
    depthwise causal conv1d of ``conv_kernel`` taps runs over q, k and v."""

    num_k_heads: int
    num_v_heads: int
    k_head_dim: int
    v_head_dim: int
    conv_kernel: int

    @property
    def key_dim(self) -> int:
        return self.num_k_heads * self.k_head_dim

    @property
    def value_dim(self) -> int:
        return self.num_v_heads * self.v_head_dim

    @property
    def conv_dim(self) -> int:
        """Channels of the depthwise conv: q, k and v."""
        return 2 * self.key_dim + self.value_dim


# Vision towers of multimodal checkpoints (``VisionSpec.kind``): the config's vision model and its projector.
VISION_KINDS = (
    "qwen2_5_vl",  # Qwen2.5-VL: RMSNorm ViT with SwiGLU MLPs, 3-D patch embedding, window attention, 2x2 merger
    "qwen3_vl",  # Qwen3-VL: LayerNorm ViT with GELU MLPs, learned positions, 2x2 merger and DeepStack mergers
    "siglip",  # Gemma 3: SigLIP ViT, average-pooled to mm_tokens_per_image, RMSNorm + projection
    "pixtral",  # Mistral 3: Pixtral ViT (RMSNorm, SwiGLU, 2-D RoPE), patch merger + two-layer projector
    "llama4",  # Llama 4: tiled ViT (LayerNorm, GELU, 2-D RoPE, class token), pixel shuffle MLP + projector
)


@dataclass(frozen=True)
class VisionSpec:
    """A multimodal checkpoint's vision tower and the projector (merger) into the text model's embedding space.

    ``hidden_size``/``num_layers``/``num_heads``/``ffn_size`` are the tower's (its ``vision_config``);
    ``out_hidden`` is the text model's hidden size the projector writes. ``merge`` is the side of the square of
    patches merged into one text token (Qwen ``spatial_merge_size``, Mistral 3 ``spatial_merge_size``; SigLIP
    under Gemma 3: the average pool's side, ``image_size / patch_size / sqrt(mm_tokens_per_image)``).
    ``min_pixels``/``max_pixels`` bound the resized image (Qwen image processors); ``image_size`` is SigLIP's
    fixed square or Pixtral's longest edge. ``window_size`` (pixels) and ``full_attention_layers`` are
    Qwen2.5-VL's window attention; ``deepstack_layers`` Qwen3-VL's extra mergers. Llama 4 cuts an image into
    tiles of ``image_size`` (at most ``max_tiles``, plus a global tile) and its pixel shuffle joins ``merge`` x
    ``merge`` patches (``pixel_shuffle_ratio`` 1/merge) into the ``adapter_dim``-wide MLP before the projector.
    """

    kind: str
    model_type: str = field(compare=False)  # the vision_config's model_type as written: a label, not the architecture
    num_layers: int
    hidden_size: int
    num_heads: int
    ffn_size: int
    patch_size: int
    out_hidden: int
    merge: int = 1
    temporal_patch: int = 1
    image_size: int = 0
    min_pixels: int = 0
    max_pixels: int = 0
    window_size: int = 0
    full_attention_layers: tuple[int, ...] = ()
    deepstack_layers: tuple[int, ...] = ()
    num_position_embeddings: int = 0
    use_head: bool = False  # SigLIP's attention-pooling head (vision_use_head)
    projector_bias: bool = False  # Mistral 3 multimodal_projector_bias
    tokens_per_image: int = 0  # Gemma 3 mm_tokens_per_image (fixed)
    in_channels: int = 3
    adapter_dim: int = 0  # Llama 4 projector_input_dim: the pixel-shuffle MLP's width
    adapter_out: int = 0  # Llama 4 projector_output_dim: the pixel-shuffle MLP's output
    projector_in: int = 0  # Llama 4 vision_output_dim: the projector's input
    max_tiles: int = 0  # Llama 4: the image processor's max_patches (tiles of image_size per image)


@dataclass(frozen=True)
class ModelSpec:
    """Decoder-only transformer dimensions and structure.

    Attributes follow Hugging Face config names where one exists. ``ffn_size`` is the dense MLP's intermediate
    size (for gated MLPs the size of each of gate and up). ``layer_types`` gives "full", "sliding" or "chunked"
    per layer; ``sliding_window`` is the window of sliding layers or the chunk size of chunked layers (both keep at
    most that many keys in a cache, which is why one field holds either).
    """

    def __hash__(self) -> int:
        """The fields' hash, computed once: the step-time and memory caches key on the spec thousands of times per
        layout search, and a model's per-layer tuples make each hash a walk over them."""
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(tuple(getattr(self, f.name) for f in fields(self)))
            object.__setattr__(self, "_hash", cached)
        return cached

    name: str
    family: str  # the config's model_type, or "custom"
    layout: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_size: int
    vocab_size: int
    max_position: int = 4096
    gated_mlp: bool = True  # SwiGLU/GeGLU (gate, up, down) vs plain two-matrix MLP
    activation: str = "silu"
    norm: str = "rmsnorm"  # rmsnorm | layernorm
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    tie_embeddings: bool = False
    qk_norm: bool = False
    # Llama 4 ``use_qk_norm``: a weightless fp32 L2 norm of q and k on its RoPE layers, per layer (no parameters)
    l2_qk_norm_layers: tuple[bool, ...] = ()
    attention_sinks: bool = False  # gpt-oss: one learned logit per head joins each softmax (``self_attn.sinks``)
    learned_positions: bool = False  # GPT-2 style position embedding table
    parallel_residual: bool = False  # GPT-NeoX / Falcon: attention and MLP read the same input
    sliding_window: int | None = None
    layer_types: tuple[str, ...] = ()
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    linear_attn: LinearAttnSpec | None = None  # the "linear" layers of layer_types (Qwen3-Next)
    encoder_head: str = ""  # encoders only (layout "bert"): one of ENCODER_HEADS; decoders have an LM head
    num_labels: int = 0  # the classification head's outputs (encoder_head "classify")
    type_vocab_size: int = 0  # BERT token-type (segment) embeddings
    # Encoder-decoders (layout "t5"): ``num_layers`` is the encoder's depth, ``decoder_layers`` the decoder's
    # (T5Config ``num_decoder_layers``); ``relative_buckets`` the relative-position buckets of each stack's first
    # self-attention (``relative_attention_num_buckets``). 0 for decoder-only models.
    decoder_layers: int = 0
    relative_buckets: int = 0
    attn_output_gate: bool = False  # Qwen3-Next: q_proj also yields a sigmoid gate on the attention output
    mtp_layers: int = 0  # DeepSeek-V3 multi-token-prediction modules (not built by transformers)
    layer_norm_names: tuple[str, ...] = ()  # Falcon: which per-layer norms exist (depends on its variant)
    hidden_dropout: float = 0.0  # residual / embedding dropout of the config (GPT-2 resid_pdrop, embd_pdrop)
    alibi: bool = False  # MPT / BLOOM-style ALiBi: linear biases on the attention scores, no rotary embedding
    clip_qkv: float | None = None  # MPT attn_config.clip_qkv: the fused QKV output clamped to [-clip, clip]
    attn_softcap: float | None = None  # Gemma 2 attn_logit_softcapping: scores = cap·tanh(scores / cap)
    final_softcap: float | None = None  # Gemma 2 final_logit_softcapping: logits = cap·tanh(logits / cap)
    # tie_embeddings cleared because PEFT's modules_to_save trains its own copy of the tied head or embedding:
    # the frozen original stays one shared matrix (gpuplan.train.peft ``saved_spec``)
    peft_untied: bool = False
    # tie_embeddings cleared because litgpt's own module never ties: its GPT holds lm_head and transformer.wte as
    # two parameters (gpuplan.train.peft ``saved_spec``)
    litgpt_untied: bool = False
    # What the estimate leaves out of the named model (a multimodal checkpoint's vision tower), said in every
    # output's assumptions; not part of the architecture, so equal specs stay equal.
    notes: tuple[str, ...] = field(default=(), compare=False)
    # The vision tower and projector of a multimodal checkpoint (qwen2_5_vl, qwen3_vl, gemma3, mistral3): counted
    # apart from the text model (``gpuplan.model.vision``); estimates add it where images are given.
    vision: VisionSpec | None = None

    def __post_init__(self) -> None:
        validate_spec(self)

    @property
    def q_dim(self) -> int:
        """Width of the concatenated query heads."""
        if self.mla:
            return self.num_heads * self.mla.qk_head_dim
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of the concatenated key (or value) heads: num_kv_heads * head_dim."""
        return self.num_kv_heads * self.head_dim

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    def is_moe_layer(self, layer: int) -> bool:
        return self.moe is not None and self.moe.moe_layers[layer]

    def is_sliding_layer(self, layer: int) -> bool:
        """The layer attends a bounded local span of ``sliding_window`` keys: a sliding window or a chunk. Caches
        and masks treat both alike (transformers ``cache_utils`` maps ``chunked_attention`` to its sliding-window
        cache layer with the chunk size as window); only the keys each query sees differ (``is_chunked_layer``)."""
        return bool(self.layer_types) and self.layer_types[layer] in ("sliding", "chunked")

    def is_linear_layer(self, layer: int) -> bool:
        """A linear-attention layer (Qwen3-Next Gated DeltaNet): no per-token KV cache, a constant state."""
        return bool(self.layer_types) and self.layer_types[layer] == "linear"

    def is_chunked_layer(self, layer: int) -> bool:
        """Llama 4 chunked attention: query i sees keys j <= i with j // chunk == i // chunk."""
        return bool(self.layer_types) and self.layer_types[layer] == "chunked"


def require_decoder(spec: ModelSpec) -> None:
    """Refuse an encoder (bert, roberta) where the estimate models decoder-only transformers (serving plans:
    ``plan --serve``, and ``verify``, whose trace runs generation): InputError naming the model and what gpuplan
    does with it."""
    if spec.layout == "bert":
        raise InputError("model", spec.name, f"is an encoder ({spec.family}, {spec.encoder_head} head): `gpuplan "
                         "params`, `train`, `infer`, `time` and `plan` cover it, but this command models "
                         "decoder-only (causal LM) transformers")


def require_memory_rules(spec: ModelSpec) -> None:
    """Refuse an encoder-decoder (T5) where an estimate would run the decoder-only memory rules on it (training,
    serving, plans): its tensors and FLOPs have rules, its memory is traced (``gpuplan.commands.generic``).
    InputError naming the model and what gpuplan does with it."""
    if spec.layout == "t5":
        raise InputError("model", spec.name, encoder_decoder_rule(spec.family))


def encoder_decoder_rule(family: str) -> str:
    """What gpuplan does with an encoder-decoder, as every refusal of one says it."""
    return (f"is an encoder-decoder ({family}): `gpuplan params` and `time` count it by rule and `train` / `infer` "
            "trace its memory from its config.json (the [verify] extra); the rule-based memory and plan estimates "
            "model decoder-only and encoder-only transformers")


def target_seq_refusal(value: object, model: str, *, serving: bool = False) -> InputError:
    """``--target-seq`` given for a model that is not an encoder-decoder: the InputError naming what to give
    instead (training: the sequence length; serving: the prompt and the whole context)."""
    instead = "its prompt and output as --prompt and --context" if serving else "its length as --seq"
    return InputError("--target-seq", value, f"applies to encoder-decoders (T5) only; {model} is not one: give "
                      f"{instead}")


def sinks_warning(spec: ModelSpec) -> list[str]:
    """What the memory and time estimates assume for gpt-oss attention sinks (empty for other models)."""
    if not spec.attention_sinks:
        return []
    return ["attention sinks (one learned logit per head, counted in the parameters): transformers has no SDPA path "
            "for gpt-oss, so its memory is that of the eager path, whose [batch, heads, q, k + 1] scores with the "
            "sink column are modelled with the experts' clamped GLU (CPU traces: training activations within 3 %, a "
            "4,096-token prefill within 0.2 %); the time estimate treats attention as plain softmax attention over "
            "the same keys (sliding window on alternate layers)"]


def llama4_warning(spec: ModelSpec) -> list[str]:
    """What the activation and time estimates approximate for Llama 4 (empty for other models)."""
    if spec.layout != "llama4":
        return []
    chunk = f"; chunked-attention layers cache and attend at most their chunk ({spec.sliding_window:,} tokens)" if (
        spec.sliding_window) else ""
    return ["Llama 4: activations are modelled with the terms of a llama-style layer with a top-k MoE and a shared "
            "expert; not traced for this family: the router's sigmoid scores multiplying the expert inputs, the L2 "
            "q/k norm of the RoPE layers and the NoPE layers' attention temperature scaling" + chunk]


def linear_attention_warning(spec: ModelSpec) -> list[str]:
    """What the estimates assume for linear-attention layers (Qwen3-Next Gated DeltaNet; empty for others)."""
    if spec.linear_attn is None:
        return []
    n = sum(spec.is_linear_layer(i) for i in range(spec.num_layers))
    return [f"{n} of {spec.num_layers} layers are Gated DeltaNet linear attention: they cache no tokens but keep a "
            "constant recurrent state per sequence (conv state + delta-rule state, counted in the KV cache); their "
            "training activations are approximated from transformers' torch fallback of the chunked delta rule "
            "(within 2 % of CPU traces at small sizes; the fla kernels real runs use keep less); their FLOPs are "
            "the recurrent form's 4·heads·dk·dv per token; inference activations treat them as attention layers"]


def bigcode_warning(spec: ModelSpec) -> list[str]:
    """GPT-BigCode's activations: modelled as GPT-2's block with one K/V head (empty for other models)."""
    if spec.layout != "gpt_bigcode":
        return []
    return ["GPT-BigCode: training activations are modelled as GPT-2's block (fused c_attn, q/k/v views of it, "
            "a contiguous copy of the attention output) with one K/V head under multi-query; a CPU trace at small "
            "size measures about 6 % less (the estimate errs high); the peak is within 1 %"]


def mpt_warning(spec: ModelSpec) -> list[str]:
    """Which attention code an MPT estimate assumes (empty for other models)."""
    if spec.layout != "mpt":
        return []
    return ["MPT: transformers' MptForCausalLM has no SDPA or flash path; --attention sdpa and eager are estimated "
            "as its eager attention (ALiBi added to fp32 scores, the [batch, heads, seq, seq] probabilities kept "
            "for backward); --attention flash stands for MosaicML's own fused kernel (llm-foundry attn_impl flash "
            "or triton)"]


def encoder_warning(spec: ModelSpec) -> list[str]:
    """What the estimates assume for an encoder (bert, roberta; empty for decoders)."""
    if spec.layout != "bert":
        return []
    return [f"encoder ({spec.family}, {spec.encoder_head} head): bidirectional attention over the whole input and "
            "no KV cache; serving is one forward per request (the prefill figures), the decode and generation "
            "figures do not apply"]


def family_warnings(spec: ModelSpec) -> list[str]:
    """Every family's statement of what its estimates approximate."""
    return (sinks_warning(spec) + llama4_warning(spec) + linear_attention_warning(spec) + bigcode_warning(spec)
            + mpt_warning(spec) + encoder_warning(spec))


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(name, value, "must be an integer >= 1")


def _at_most(name: str, value: int, bound: int) -> None:
    if value > bound:
        raise InputError(name, value, f"must be at most {bound:,} (far beyond any real model; a larger value would "
                         "make the estimate enumerate that many layers or tensors)")


def validate_spec(spec: ModelSpec) -> None:
    """Raise InputError naming the field, the value and the rule for any inconsistent or out-of-range dimension
    (the bounds, shared with the command line and the web API, are in gpuplan.limits)."""
    from gpuplan.limits import COUNT_BOUNDS, MAX_LAYER_EXPERTS, MAX_MTP_LAYERS, MAX_POSITION, SPEC_BOUNDS

    for name, bound in SPEC_BOUNDS.items():
        _positive(name, getattr(spec, name))
        _at_most(name, getattr(spec, name), bound)
    if spec.layout not in LAYOUTS:
        raise InputError("layout", spec.layout, f"must be one of {', '.join(LAYOUTS)}")
    if spec.num_heads % spec.num_kv_heads:
        raise InputError("num_kv_heads", spec.num_kv_heads,
                         f"must divide num_attention_heads={spec.num_heads} (GQA groups must be whole)")
    if spec.norm not in ("rmsnorm", "layernorm"):
        raise InputError("norm", spec.norm, "must be rmsnorm or layernorm")
    if spec.layer_types:
        if len(spec.layer_types) != spec.num_layers:
            raise InputError("layer_types", len(spec.layer_types),
                             f"must list one type per layer (num_hidden_layers={spec.num_layers})")
        bad = sorted(set(spec.layer_types) - set(LAYER_TYPES))
        if bad:
            raise InputError("layer_types", bad[0], f"must be one of {', '.join(LAYER_TYPES)}")
    if spec.layout == "bert":
        if spec.encoder_head not in ENCODER_HEADS:
            raise InputError("encoder_head", spec.encoder_head, f"must be one of {', '.join(ENCODER_HEADS)}")
        if spec.encoder_head == "classify":
            _positive("num_labels", spec.num_labels)
            _at_most("num_labels", spec.num_labels, COUNT_BOUNDS["vocab"])
        if spec.type_vocab_size < 0:
            raise InputError("type_vocab_size", spec.type_vocab_size, "must be >= 0")
        _at_most("type_vocab_size", spec.type_vocab_size, COUNT_BOUNDS["vocab"])
    if spec.layout == "t5":
        _positive("num_decoder_layers", spec.decoder_layers)
        _at_most("num_decoder_layers", spec.decoder_layers, COUNT_BOUNDS["layers"])
        _positive("relative_attention_num_buckets", spec.relative_buckets)
        _at_most("relative_attention_num_buckets", spec.relative_buckets, MAX_POSITION)
    if spec.layer_types and "linear" in spec.layer_types and spec.linear_attn is None:
        raise InputError("layer_types", "linear", "needs the linear-attention sizes (linear_num_key_heads, ...)")
    if spec.linear_attn:
        la = spec.linear_attn
        for name in ("num_k_heads", "num_v_heads", "k_head_dim", "v_head_dim", "conv_kernel"):
            _positive(f"linear_{name}", getattr(la, name))
            _at_most(f"linear_{name}", getattr(la, name), COUNT_BOUNDS["hidden"])
        if la.num_v_heads % la.num_k_heads:
            raise InputError("linear_num_value_heads", la.num_v_heads,
                             f"must be a multiple of linear_num_key_heads={la.num_k_heads}")
    if spec.l2_qk_norm_layers and len(spec.l2_qk_norm_layers) != spec.num_layers:
        raise InputError("l2_qk_norm_layers", len(spec.l2_qk_norm_layers),
                         f"must hold one flag per layer (num_hidden_layers={spec.num_layers})")
    if spec.sliding_window is not None:
        _positive("sliding_window", spec.sliding_window)
        _at_most("sliding_window", spec.sliding_window, MAX_POSITION)
    if spec.moe:
        m = spec.moe
        _positive("num_experts", m.num_experts)
        _positive("num_experts_per_tok", m.top_k)
        _positive("moe_intermediate_size", m.expert_ffn_size)
        _at_most("num_experts", m.num_experts, COUNT_BOUNDS["experts"])
        _at_most("num_experts_per_tok", m.top_k, COUNT_BOUNDS["top_k"])
        _at_most("moe_intermediate_size", m.expert_ffn_size, COUNT_BOUNDS["ffn"])
        _at_most("layers x experts", m.num_experts * m.num_moe_layers, MAX_LAYER_EXPERTS)
        if m.top_k > m.num_experts:
            raise InputError("num_experts_per_tok", m.top_k, f"must be <= num_experts={m.num_experts}")
        if len(m.moe_layers) != spec.num_layers:
            raise InputError("moe_layers", len(m.moe_layers), f"must have num_hidden_layers={spec.num_layers} entries")
        if m.num_shared_experts < 0 or m.shared_expert_ffn_size < 0:
            raise InputError("n_shared_experts", m.num_shared_experts, "must be >= 0")
        _at_most("n_shared_experts", m.num_shared_experts, COUNT_BOUNDS["experts"])
        _at_most("shared_expert_intermediate_size", m.shared_expert_ffn_size, COUNT_BOUNDS["ffn"] * 64)
    if spec.mla:
        for name in ("kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim"):
            _positive(name, getattr(spec.mla, name))
            _at_most(name, getattr(spec.mla, name), COUNT_BOUNDS["hidden"])
        if spec.mla.q_lora_rank < 0:
            raise InputError("q_lora_rank", spec.mla.q_lora_rank, "must be >= 0 (0 = no query compression)")
    if spec.vision is not None:
        v = spec.vision
        if v.kind not in VISION_KINDS:
            raise InputError("vision.kind", v.kind, f"must be one of {', '.join(VISION_KINDS)}")
        for name in ("num_layers", "hidden_size", "num_heads", "ffn_size", "patch_size", "out_hidden", "merge",
                     "temporal_patch", "in_channels"):
            _positive(f"vision_config.{name}", getattr(v, name))
            _at_most(f"vision_config.{name}", getattr(v, name), COUNT_BOUNDS["ffn"])
        _at_most("vision_config.depth", v.num_layers, COUNT_BOUNDS["layers"])
    if spec.mtp_layers < 0:
        raise InputError("num_nextn_predict_layers", spec.mtp_layers, "must be >= 0")
    _at_most("num_nextn_predict_layers", spec.mtp_layers, MAX_MTP_LAYERS)
    for name in ("attn_softcap", "final_softcap"):
        cap = getattr(spec, name)
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float)) or not 0 < cap < 1e300):
            raise InputError(name, cap, "must be a positive number or null (no soft-capping)")
