"""The tensor table: every weight tensor of a model, with its checkpoint name and shape.

Names are those of the model's ``model.safetensors.index.json`` on the Hugging Face hub (one tensor per expert,
e.g. ``model.layers.0.block_sparse_moe.experts.3.w1.weight`` for Mixtral), which users, PEFT and checkpoints know.
Parameter counts, freezing by glob, LoRA targeting and tensor-parallel sharding all work on this table.

Each tensor records how Megatron-style tensor parallelism splits it (``tp``): ``column`` (output features split,
weight dim 0 of a [out, in] Linear), ``row`` (input features split), ``vocab`` (embedding / output rows split) or
``replicated`` (norms, routers, biases of row-parallel layers). Shapes are the checkpoint's: GPT-2's Conv1D
weights are stored [in, out].
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from math import prod

from gpuplan.model.spec import ModelSpec

COMPONENTS = ("embedding", "attention", "mlp", "experts", "router", "norm", "lm_head")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    component: str  # one of COMPONENTS
    module: str  # the leaf module name, as PEFT's target_modules matches it ("q_proj", "w1", "c_attn")
    layer: int | None = None
    expert: int | None = None
    tp: str = "replicated"  # column | row | vocab | replicated
    linear: bool = False  # the weight matrix of a Linear layer (LoRA target, quantizable)

    @cached_property
    def numel(self) -> int:  # read in every per-rank loop over the table (45,000 tensors for DeepSeek-V3)
        return prod(self.shape)

    @property
    def is_bias(self) -> bool:
        return self.name.endswith(".bias")


class _Builder:
    def __init__(self) -> None:
        self.tensors: list[TensorInfo] = []

    def linear(self, prefix: str, out_f: int, in_f: int, component: str, tp: str, *, layer: int | None = None,
               expert: int | None = None, bias: bool = False, transposed: bool = False) -> None:
        module = prefix.rsplit(".", 1)[-1]
        shape = (in_f, out_f) if transposed else (out_f, in_f)
        self.tensors.append(TensorInfo(f"{prefix}.weight", shape, component, module, layer, expert, tp, True))
        if bias:
            # A column-parallel bias is split with its outputs; a row-parallel bias is added after the all-reduce.
            bias_tp = "column" if tp == "column" else "replicated"
            self.tensors.append(TensorInfo(f"{prefix}.bias", (out_f,), component, module, layer, expert, bias_tp))

    def norm(self, prefix: str, size: int, *, layer: int | None = None, bias: bool = False,
             component: str = "norm") -> None:
        module = prefix.rsplit(".", 1)[-1]
        self.tensors.append(TensorInfo(f"{prefix}.weight", (size,), component, module, layer))
        if bias:
            self.tensors.append(TensorInfo(f"{prefix}.bias", (size,), component, module, layer))

    def raw(self, name: str, shape: tuple[int, ...], component: str, tp: str, layer: int | None = None) -> None:
        module = name.rsplit(".", 2)[-2]
        self.tensors.append(TensorInfo(name, shape, component, module, layer, None, tp))


def _gated_mlp(b: _Builder, p: str, h: int, f: int, component: str, *, layer: int, expert: int | None = None,
               bias: bool = False, names: tuple[str, str, str] = ("gate_proj", "up_proj", "down_proj")) -> None:
    gate, up, down = names
    b.linear(f"{p}.{gate}", f, h, component, "column", layer=layer, expert=expert, bias=bias)
    b.linear(f"{p}.{up}", f, h, component, "column", layer=layer, expert=expert, bias=bias)
    b.linear(f"{p}.{down}", h, f, component, "row", layer=layer, expert=expert, bias=bias)


def _qkvo(b: _Builder, p: str, s: ModelSpec, i: int) -> None:
    h = s.hidden_size
    # Qwen3-Next's q_proj also yields the output gate: [2·q_dim, h] (Qwen3NextAttention)
    q_out = 2 * s.q_dim if s.attn_output_gate else s.q_dim
    b.linear(f"{p}.q_proj", q_out, h, "attention", "column", layer=i, bias=s.qkv_bias)
    b.linear(f"{p}.k_proj", s.kv_dim, h, "attention", "column", layer=i, bias=s.qkv_bias)
    b.linear(f"{p}.v_proj", s.kv_dim, h, "attention", "column", layer=i, bias=s.qkv_bias)
    b.linear(f"{p}.o_proj", h, s.q_dim, "attention", "row", layer=i, bias=s.o_bias)


def _gated_deltanet(b: _Builder, p: str, s: ModelSpec, i: int) -> None:
    """Qwen3-Next Gated DeltaNet (transformers ``Qwen3NextGatedDeltaNet``): in_proj_qkvz [2·key_dim + 2·value_dim,
    h], in_proj_ba [2·v_heads, h], a depthwise conv1d [conv_dim, 1, kernel] without bias, per-value-head dt_bias
    and A_log, a gated RMSNorm over v_head_dim and out_proj [h, value_dim]. Heads split over tensor parallelism."""
    la, h = s.linear_attn, s.hidden_size
    assert la is not None
    b.linear(f"{p}.in_proj_qkvz", 2 * la.key_dim + 2 * la.value_dim, h, "attention", "column", layer=i)
    b.linear(f"{p}.in_proj_ba", 2 * la.num_v_heads, h, "attention", "column", layer=i)
    b.raw(f"{p}.conv1d.weight", (la.conv_dim, 1, la.conv_kernel), "attention", "column", layer=i)
    b.raw(f"{p}.dt_bias", (la.num_v_heads,), "attention", "column", layer=i)
    b.raw(f"{p}.A_log", (la.num_v_heads,), "attention", "column", layer=i)
    b.norm(f"{p}.norm", la.v_head_dim, layer=i, component="attention")
    b.linear(f"{p}.out_proj", h, la.value_dim, "attention", "row", layer=i)


def _mla(b: _Builder, p: str, s: ModelSpec, i: int) -> None:
    """DeepSeek MLA projections (transformers DeepseekV3Attention; DeepSeek-V2 paper eq. 9-19)."""
    m, h, heads = s.mla, s.hidden_size, s.num_heads
    assert m is not None
    if m.q_lora_rank:
        b.linear(f"{p}.q_a_proj", m.q_lora_rank, h, "attention", "replicated", layer=i, bias=s.qkv_bias)
        b.norm(f"{p}.q_a_layernorm", m.q_lora_rank, layer=i, component="attention")
        b.linear(f"{p}.q_b_proj", heads * m.qk_head_dim, m.q_lora_rank, "attention", "column", layer=i)
    else:
        b.linear(f"{p}.q_proj", heads * m.qk_head_dim, h, "attention", "column", layer=i)
    b.linear(f"{p}.kv_a_proj_with_mqa", m.kv_lora_rank + m.qk_rope_head_dim, h, "attention", "replicated",
             layer=i, bias=s.qkv_bias)
    b.norm(f"{p}.kv_a_layernorm", m.kv_lora_rank, layer=i, component="attention")
    b.linear(f"{p}.kv_b_proj", heads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank, "attention", "column",
             layer=i)
    b.linear(f"{p}.o_proj", h, heads * m.v_head_dim, "attention", "row", layer=i, bias=s.o_bias)
    if m.index_n_heads:  # DeepSeek-V3.2 lightning indexer (transformers DeepseekV32Indexer): a LayerNorm with bias
        x = f"{p}.indexer"
        b.linear(f"{x}.wq_b", m.index_n_heads * m.index_head_dim, m.q_lora_rank, "attention", "replicated", layer=i)
        b.linear(f"{x}.wk", m.index_head_dim, h, "attention", "replicated", layer=i)
        b.norm(f"{x}.k_norm", m.index_head_dim, layer=i, bias=True, component="attention")
        b.linear(f"{x}.weights_proj", m.index_n_heads, h, "attention", "replicated", layer=i)


def _moe_block(b: _Builder, p: str, s: ModelSpec, i: int) -> None:
    """Router, routed experts and shared experts of one MoE layer, in the family's checkpoint names."""
    m, h = s.moe, s.hidden_size
    assert m is not None
    if s.layout == "gpt_oss":
        # transformers and the checkpoint hold each layer's experts fused ([E, h, 2f] gate_up_proj, [E, f, h]
        # down_proj, with [E, 2f] / [E, h] biases); listed here per expert as [out, in] Linears, like the others.
        b.linear(f"{p}.router", m.num_experts, h, "router", "replicated", layer=i, bias=True)
        for e in range(m.num_experts):
            b.linear(f"{p}.experts.{e}.gate_up_proj", 2 * m.expert_ffn_size, h, "experts", "column", layer=i,
                     expert=e, bias=s.mlp_bias)
            b.linear(f"{p}.experts.{e}.down_proj", h, m.expert_ffn_size, "experts", "row", layer=i, expert=e,
                     bias=s.mlp_bias)
        return
    if s.layout == "llama4":
        # transformers ``Llama4TextMoe``: router Linear(h, E), experts fused as [E, h, 2f] gate_up_proj and
        # [E, f, h] down_proj (listed per expert here), one shared expert ``Llama4TextMLP``
        b.linear(f"{p}.router", m.num_experts, h, "router", "replicated", layer=i)
        for e in range(m.num_experts):
            _gated_mlp(b, f"{p}.experts.{e}", h, m.expert_ffn_size, "experts", layer=i, expert=e)
        _gated_mlp(b, f"{p}.shared_expert", h, m.shared_expert_ffn_size, "mlp", layer=i)
        return
    if s.layout == "mixtral":
        b.linear(f"{p}.gate", m.num_experts, h, "router", "replicated", layer=i)
        for e in range(m.num_experts):
            _gated_mlp(b, f"{p}.experts.{e}", h, m.expert_ffn_size, "experts", layer=i, expert=e,
                       names=("w1", "w3", "w2"))
        return
    b.linear(f"{p}.gate", m.num_experts, h, "router", "replicated", layer=i)
    for e in range(m.num_experts):
        _gated_mlp(b, f"{p}.experts.{e}", h, m.expert_ffn_size, "experts", layer=i, expert=e)
    if m.shared_expert_ffn_size:
        shared = "shared_experts" if s.layout == "deepseek" else "shared_expert"
        _gated_mlp(b, f"{p}.{shared}", h, m.shared_expert_ffn_size, "mlp", layer=i)
    if m.shared_expert_gate:
        b.linear(f"{p}.shared_expert_gate", 1, h, "router", "replicated", layer=i)


def _decoder_layer(b: _Builder, s: ModelSpec, i: int) -> None:
    """One layer of the llama-like layouts (llama, olmo2, gemma, mixtral, qwen_moe, deepseek, phi3, gpt_oss,
    llama4, qwen3_next, starcoder2)."""
    h, p = s.hidden_size, f"model.layers.{i}"
    if s.layout == "phi3":
        b.linear(f"{p}.self_attn.qkv_proj", s.q_dim + 2 * s.kv_dim, h, "attention", "column", layer=i,
                 bias=s.qkv_bias)
        b.linear(f"{p}.self_attn.o_proj", h, s.q_dim, "attention", "row", layer=i, bias=s.o_bias)
    elif s.mla:
        _mla(b, f"{p}.self_attn", s, i)
    elif s.is_linear_layer(i):
        _gated_deltanet(b, f"{p}.linear_attn", s, i)
    else:
        _qkvo(b, f"{p}.self_attn", s, i)
    if s.attention_sinks:  # one logit per query head, split with the heads
        b.tensors.append(TensorInfo(f"{p}.self_attn.sinks", (s.num_heads,), "attention", "sinks", i, None, "column"))
    if s.qk_norm and not s.is_linear_layer(i):
        # OLMo-2 normalises the whole projection; Qwen3 and Gemma 3 normalise each head.
        q, k = (s.q_dim, s.kv_dim) if s.layout == "olmo2" else (s.head_dim, s.head_dim)
        b.norm(f"{p}.self_attn.q_norm", q, layer=i, component="attention")
        b.norm(f"{p}.self_attn.k_norm", k, layer=i, component="attention")
    mlp = {"mixtral": "block_sparse_moe", "llama4": "feed_forward"}.get(s.layout, "mlp")
    if s.is_moe_layer(i):
        _moe_block(b, f"{p}.{mlp}", s, i)
    elif s.layout == "starcoder2":
        b.linear(f"{p}.mlp.c_fc", s.ffn_size, h, "mlp", "column", layer=i, bias=s.mlp_bias)
        b.linear(f"{p}.mlp.c_proj", h, s.ffn_size, "mlp", "row", layer=i, bias=s.mlp_bias)
    elif s.layout == "phi3":
        b.linear(f"{p}.mlp.gate_up_proj", 2 * s.ffn_size, h, "mlp", "column", layer=i, bias=s.mlp_bias)
        b.linear(f"{p}.mlp.down_proj", h, s.ffn_size, "mlp", "row", layer=i, bias=s.mlp_bias)
    else:
        _gated_mlp(b, f"{p}.{mlp}", h, s.ffn_size, "mlp", layer=i, bias=s.mlp_bias)
    norms = {
        "olmo2": ("post_attention_layernorm", "post_feedforward_layernorm"),
        "gemma": ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                  "post_feedforward_layernorm"),
    }.get(s.layout, ("input_layernorm", "post_attention_layernorm"))
    for n in norms:
        b.norm(f"{p}.{n}", h, layer=i, bias=s.norm == "layernorm")


def _llama_like(s: ModelSpec) -> list[TensorInfo]:
    b, h = _Builder(), s.hidden_size
    b.raw("model.embed_tokens.weight", (s.vocab_size, h), "embedding", "vocab")
    for i in range(s.num_layers):
        _decoder_layer(b, s, i)
    b.norm("model.norm", h, bias=s.norm == "layernorm")  # StarCoder2's LayerNorms carry a bias
    if not s.tie_embeddings:
        b.raw("lm_head.weight", (s.vocab_size, h), "lm_head", "vocab")
    return b.tensors


def _gpt2(s: ModelSpec) -> list[TensorInfo]:
    """GPT-2 (transformers GPT2LMHeadModel): Conv1D weights stored [in, out], biases everywhere, tied head.
    GPT-BigCode (GPTBigCodeForCausalLM): the same names with nn.Linear weights [out, in] and a c_attn of
    h + 2·kv_dim outputs (one K/V head under multi-query)."""
    b, h, f = _Builder(), s.hidden_size, s.ffn_size
    t = s.layout == "gpt2"
    b.raw("transformer.wte.weight", (s.vocab_size, h), "embedding", "vocab")
    b.raw("transformer.wpe.weight", (s.max_position, h), "embedding", "replicated")
    for i in range(s.num_layers):
        p = f"transformer.h.{i}"
        b.norm(f"{p}.ln_1", h, layer=i, bias=True)
        b.linear(f"{p}.attn.c_attn", s.q_dim + 2 * s.kv_dim, h, "attention", "column", layer=i, bias=True,
                 transposed=t)
        b.linear(f"{p}.attn.c_proj", h, h, "attention", "row", layer=i, bias=True, transposed=t)
        b.norm(f"{p}.ln_2", h, layer=i, bias=True)
        b.linear(f"{p}.mlp.c_fc", f, h, "mlp", "column", layer=i, bias=True, transposed=t)
        b.linear(f"{p}.mlp.c_proj", h, f, "mlp", "row", layer=i, bias=True, transposed=t)
    b.norm("transformer.ln_f", h, bias=True)
    if not s.tie_embeddings:
        b.raw("lm_head.weight", (s.vocab_size, h), "lm_head", "vocab")
    return b.tensors


def _gpt_neox(s: ModelSpec) -> list[TensorInfo]:
    b, h, f = _Builder(), s.hidden_size, s.ffn_size
    b.raw("gpt_neox.embed_in.weight", (s.vocab_size, h), "embedding", "vocab")
    for i in range(s.num_layers):
        p = f"gpt_neox.layers.{i}"
        b.norm(f"{p}.input_layernorm", h, layer=i, bias=True)
        b.norm(f"{p}.post_attention_layernorm", h, layer=i, bias=True)
        b.linear(f"{p}.attention.query_key_value", s.q_dim + 2 * s.kv_dim, h, "attention", "column", layer=i,
                 bias=s.qkv_bias)
        b.linear(f"{p}.attention.dense", h, s.q_dim, "attention", "row", layer=i, bias=s.o_bias)
        b.linear(f"{p}.mlp.dense_h_to_4h", f, h, "mlp", "column", layer=i, bias=s.mlp_bias)
        b.linear(f"{p}.mlp.dense_4h_to_h", h, f, "mlp", "row", layer=i, bias=s.mlp_bias)
    b.norm("gpt_neox.final_layer_norm", h, bias=True)
    if not s.tie_embeddings:
        b.raw("embed_out.weight", (s.vocab_size, h), "lm_head", "vocab")
    return b.tensors


def _falcon(s: ModelSpec) -> list[TensorInfo]:
    """Falcon (transformers FalconForCausalLM). ``spec.layer_norm_names`` lists the per-layer norms."""
    b, h, f = _Builder(), s.hidden_size, s.ffn_size
    b.raw("transformer.word_embeddings.weight", (s.vocab_size, h), "embedding", "vocab")
    norms = s.layer_norm_names or ("input_layernorm",)
    for i in range(s.num_layers):
        p = f"transformer.h.{i}"
        b.linear(f"{p}.self_attention.query_key_value", s.q_dim + 2 * s.kv_dim, h, "attention", "column",
                 layer=i, bias=s.qkv_bias)
        b.linear(f"{p}.self_attention.dense", h, s.q_dim, "attention", "row", layer=i, bias=s.o_bias)
        b.linear(f"{p}.mlp.dense_h_to_4h", f, h, "mlp", "column", layer=i, bias=s.mlp_bias)
        b.linear(f"{p}.mlp.dense_4h_to_h", h, f, "mlp", "row", layer=i, bias=s.mlp_bias)
        for n in norms:
            b.norm(f"{p}.{n}", h, layer=i, bias=True)
    b.norm("transformer.ln_f", h, bias=True)
    if not s.tie_embeddings:
        b.raw("lm_head.weight", (s.vocab_size, h), "lm_head", "vocab")
    return b.tensors


def _mpt(s: ModelSpec) -> list[TensorInfo]:
    """MPT (transformers MptForCausalLM): LayerNorms without bias, a fused ``Wqkv`` [3h, h] and ``out_proj``,
    ``ffn.up_proj`` / ``ffn.down_proj``, no bias anywhere; ALiBi needs no position table; the head is tied to
    ``wte`` unless ``tie_word_embeddings`` is false. llm-foundry's ``no_bias: false`` adds a bias to every Linear
    and LayerNorm, its ``learned_pos_emb`` without ALiBi a ``wpe`` table (``spec.learned_positions``)."""
    b, h, f, bias = _Builder(), s.hidden_size, s.ffn_size, s.qkv_bias
    b.raw("transformer.wte.weight", (s.vocab_size, h), "embedding", "vocab")
    if s.learned_positions:
        b.raw("transformer.wpe.weight", (s.max_position, h), "embedding", "replicated")
    for i in range(s.num_layers):
        p = f"transformer.blocks.{i}"
        b.norm(f"{p}.norm_1", h, layer=i, bias=bias)
        b.linear(f"{p}.attn.Wqkv", s.q_dim + 2 * s.kv_dim, h, "attention", "column", layer=i, bias=bias)
        b.linear(f"{p}.attn.out_proj", h, s.q_dim, "attention", "row", layer=i, bias=bias)
        b.norm(f"{p}.norm_2", h, layer=i, bias=bias)
        b.linear(f"{p}.ffn.up_proj", f, h, "mlp", "column", layer=i, bias=bias)
        b.linear(f"{p}.ffn.down_proj", h, f, "mlp", "row", layer=i, bias=bias)
    b.norm("transformer.norm_f", h, bias=bias)
    if not s.tie_embeddings:
        b.raw("lm_head.weight", (s.vocab_size, h), "lm_head", "vocab")
    return b.tensors


def _bert(s: ModelSpec) -> list[TensorInfo]:
    """BERT / RoBERTa (transformers BertModel / RobertaModel) with the spec's head: word, position and token-type
    embeddings with a LayerNorm; per layer q/k/v and the attention output dense with its LayerNorm, the
    intermediate and output dense with the output LayerNorm (post-norm, biases everywhere). Heads:
    BertForSequenceClassification keeps the pooler and a classifier [num_labels, h]; RobertaForSequenceClassification
    drops the pooler for classifier.dense [h, h] and classifier.out_proj [num_labels, h]; the masked-LM heads a
    transform dense and LayerNorm and a vocabulary bias, the decoder weight tied to the word embeddings."""
    b, h, f = _Builder(), s.hidden_size, s.ffn_size
    root = "roberta" if s.family == "roberta" else "bert"
    e = f"{root}.embeddings"
    b.raw(f"{e}.word_embeddings.weight", (s.vocab_size, h), "embedding", "vocab")
    b.raw(f"{e}.position_embeddings.weight", (s.max_position, h), "embedding", "replicated")
    if s.type_vocab_size:
        b.raw(f"{e}.token_type_embeddings.weight", (s.type_vocab_size, h), "embedding", "replicated")
    b.norm(f"{e}.LayerNorm", h, bias=True)
    for i in range(s.num_layers):
        p = f"{root}.encoder.layer.{i}"
        for n in ("query", "key", "value"):
            b.linear(f"{p}.attention.self.{n}", h, h, "attention", "column", layer=i, bias=True)
        b.linear(f"{p}.attention.output.dense", h, h, "attention", "row", layer=i, bias=True)
        b.norm(f"{p}.attention.output.LayerNorm", h, layer=i, bias=True)
        b.linear(f"{p}.intermediate.dense", f, h, "mlp", "column", layer=i, bias=True)
        b.linear(f"{p}.output.dense", h, f, "mlp", "row", layer=i, bias=True)
        b.norm(f"{p}.output.LayerNorm", h, layer=i, bias=True)
    if s.encoder_head == "mlm":
        head = "lm_head" if root == "roberta" else "cls.predictions"
        dense, ln = ("dense", "layer_norm") if root == "roberta" else ("transform.dense", "transform.LayerNorm")
        b.raw(f"{head}.bias", (s.vocab_size,), "lm_head", "vocab")
        b.linear(f"{head}.{dense}", h, h, "lm_head", "replicated", bias=True)
        b.norm(f"{head}.{ln}", h, bias=True, component="lm_head")
    elif root == "roberta":
        b.linear("classifier.dense", h, h, "lm_head", "replicated", bias=True)
        b.linear("classifier.out_proj", s.num_labels, h, "lm_head", "replicated", bias=True)
    else:
        b.linear(f"{root}.pooler.dense", h, h, "lm_head", "replicated", bias=True)
        b.linear("classifier", s.num_labels, h, "lm_head", "replicated", bias=True)
    return b.tensors


def _t5_attention(b: _Builder, p: str, s: ModelSpec, i: int, relative: bool) -> None:
    """T5Attention: bias-free q, k, v [heads·d_kv, h] and o [h, heads·d_kv]; the first layer of each stack's
    self-attention holds the relative-position bias table [buckets, heads] the whole stack shares (one column per
    head: split with the heads under tensor parallelism)."""
    h = s.hidden_size
    for n in ("q", "k", "v"):
        b.linear(f"{p}.{n}", s.q_dim, h, "attention", "column", layer=i)
    b.linear(f"{p}.o", h, s.q_dim, "attention", "row", layer=i)
    if relative:
        b.raw(f"{p}.relative_attention_bias.weight", (s.relative_buckets, s.num_heads), "attention", "column", layer=i)


def _t5(s: ModelSpec) -> list[TensorInfo]:
    """T5 / mT5 (transformers T5ForConditionalGeneration): the shared embedding (the encoder's and decoder's
    ``embed_tokens`` are the same tensor); encoder blocks of self-attention and MLP, decoder blocks of
    self-attention, cross-attention (``EncDecAttention``) and MLP, each sub-layer with its RMS norm (weight only);
    a final norm per stack; ``lm_head`` unless tied. The MLP is wi, wo (ReLU) or wi_0, wi_1, wo (gated). Decoder
    layers are numbered after the encoder's (layer ``num_layers + j`` is decoder block j)."""
    b, h, f = _Builder(), s.hidden_size, s.ffn_size
    b.raw("shared.weight", (s.vocab_size, h), "embedding", "vocab")
    for stack, depth, first in (("encoder", s.num_layers, 0), ("decoder", s.decoder_layers, s.num_layers)):
        for j in range(depth):
            i, p = first + j, f"{stack}.block.{j}.layer"
            _t5_attention(b, f"{p}.0.SelfAttention", s, i, relative=j == 0)
            b.norm(f"{p}.0.layer_norm", h, layer=i)
            if stack == "decoder":
                _t5_attention(b, f"{p}.1.EncDecAttention", s, i, relative=False)
                b.norm(f"{p}.1.layer_norm", h, layer=i)
            ff = f"{p}.{2 if stack == 'decoder' else 1}"
            if s.gated_mlp:
                _gated_mlp(b, f"{ff}.DenseReluDense", h, f, "mlp", layer=i, names=("wi_0", "wi_1", "wo"))
            else:
                b.linear(f"{ff}.DenseReluDense.wi", f, h, "mlp", "column", layer=i)
                b.linear(f"{ff}.DenseReluDense.wo", h, f, "mlp", "row", layer=i)
            b.norm(f"{ff}.layer_norm", h, layer=i)
        b.norm(f"{stack}.final_layer_norm", h)
    if not s.tie_embeddings:
        b.raw("lm_head.weight", (s.vocab_size, h), "lm_head", "vocab")
    return b.tensors


_BUILDERS = {"t5": _t5, "bert": _bert, "mpt": _mpt, "gpt2": _gpt2, "gpt_bigcode": _gpt2, "gpt_neox": _gpt_neox,
             "falcon": _falcon}


@lru_cache(maxsize=64)
def tensor_table(spec: ModelSpec) -> tuple[TensorInfo, ...]:
    """All parameter tensors of ``spec`` in checkpoint order (embedding, layers, final norm, head).

    Buffers (rotary caches, DeepSeek-V3's ``e_score_correction_bias``) are not parameters and are not listed;
    DeepSeek-V3's multi-token-prediction layers are not built by transformers and are counted separately
    (``gpuplan.model.params.mtp_params``).
    """
    return tuple(_BUILDERS.get(spec.layout, _llama_like)(spec))
