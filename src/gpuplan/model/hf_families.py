"""``ModelSpec`` builders for the families whose ``config.json`` has keys of its own rather than the Llama schema
``gpuplan.model.hf_config`` reads: GPT-2 and GPT-BigCode, the BERT / RoBERTa encoders, MPT and the T5 / mT5
encoder-decoders. Each follows its transformers configuration class's defaults."""

from __future__ import annotations

import json
from typing import Any

from gpuplan.errors import InputError
from gpuplan.limits import COUNT_BOUNDS
from gpuplan.model.config_keys import ConfigKeys
from gpuplan.model.spec import ModelSpec


def gpt2_spec(c: ConfigKeys, name: str, model_type: str = "gpt2") -> ModelSpec:
    """GPT-2, and GPT-BigCode (StarCoder, SantaCoder, OctoCoder): the same block in nn.Linear form, with one K/V
    head when ``multi_query`` (GPTBigCodeConfig default true) and gelu_pytorch_tanh."""
    h = c.pos_int("n_embd", "hidden_size")
    heads = c.pos_int("n_head", "num_attention_heads")
    if h % heads:
        raise InputError("n_head", heads, f"must divide n_embd={h}")
    bigcode = model_type == "gpt_bigcode"
    n_inner = c.opt_int("n_inner")
    return ModelSpec(
        name=name, family=model_type, layout=model_type, num_layers=c.pos_int("n_layer", "num_hidden_layers"),
        hidden_size=h, num_heads=heads, num_kv_heads=1 if bigcode and c.bool("multi_query", True) else heads,
        head_dim=h // heads, ffn_size=4 * h if n_inner is None else n_inner,
        vocab_size=c.int("vocab_size"), max_position=c.int("n_positions", "max_position_embeddings", default=1024),
        gated_mlp=False, activation=c.str("activation_function",
                                          default="gelu_pytorch_tanh" if bigcode else "gelu_new"),
        norm="layernorm", qkv_bias=True, o_bias=True, mlp_bias=True,
        tie_embeddings=c.bool("tie_word_embeddings", True) if bigcode else True, learned_positions=True,
        hidden_dropout=c.fraction("resid_pdrop", "embd_pdrop", default=0.1))  # GPT2Config / GPTBigCodeConfig


def encoder_spec(c: ConfigKeys, name: str, model_type: str) -> ModelSpec:
    """BERT / RoBERTa encoders (BertConfig / RobertaConfig defaults: 512 positions, 2 token types, GELU,
    LayerNorms with bias, biases on every Linear). The head follows ``architectures``: ``*ForMaskedLM`` the
    masked-LM head (its decoder tied to the word embeddings), ``*ForSequenceClassification`` or none (a bare
    ``BertModel`` checkpoint, fine-tuned for classification) a sequence-classification head of ``num_labels``
    (else the number of ``id2label`` entries, else 2, PretrainedConfig's default); other heads are refused."""
    archs = c.data.get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise InputError(f"{c.source}: architectures", archs, "must be a list of class names")
    heads = {"ForMaskedLM": "mlm", "ForSequenceClassification": "classify", "Model": "classify"}
    head = "classify"
    for arch in archs:
        kind = next((v for k, v in heads.items() if arch.endswith(k)), None)
        if kind is None:
            raise InputError(f"{c.source}: architectures", arch, "is not supported for encoders; supported: "
                             "*ForSequenceClassification, *ForMaskedLM (or a bare *Model, estimated with a "
                             "classification head)")
        head = kind
    labels = c.data.get("id2label")
    n_labels = c.pos_int("num_labels", default=len(labels) if isinstance(labels, dict) and labels else 2)
    h = c.pos_int("hidden_size")
    heads_n = c.pos_int("num_attention_heads")
    if h % heads_n:
        raise InputError("num_attention_heads", heads_n, f"must divide hidden_size={h}")
    return ModelSpec(
        name=name, family=model_type, layout="bert", num_layers=c.pos_int("num_hidden_layers"), hidden_size=h,
        num_heads=heads_n, num_kv_heads=heads_n, head_dim=h // heads_n, ffn_size=c.pos_int("intermediate_size"),
        vocab_size=c.pos_int("vocab_size"), max_position=c.pos_int("max_position_embeddings", default=512),
        gated_mlp=False, activation=c.str("hidden_act", default="gelu"), norm="layernorm", qkv_bias=True,
        # only the masked-LM decoder shares the word embeddings; a classification head has no vocabulary output
        o_bias=True, mlp_bias=True, tie_embeddings=head == "mlm", learned_positions=True,
        hidden_dropout=c.fraction("hidden_dropout_prob", "attention_probs_dropout_prob", default=0.1),
        encoder_head=head,
        num_labels=n_labels if head == "classify" else 0, type_vocab_size=c.int("type_vocab_size", default=2))


def t5_head_tied(config: dict[str, Any]) -> bool:
    """Whether a T5-family checkpoint's head is the shared embedding. transformers 5 forces every T5 and mT5
    config to ``tie_word_embeddings: true`` (``T5Config`` / ``MT5Config.__post_init__``) and writes it so;
    ``T5Config`` keeps the file's own setting as ``scale_decoder_outputs`` (true exactly when the head is tied,
    the original T5's d_model^-0.5 rescaling). So a T5 config is read by ``scale_decoder_outputs`` where present,
    else by ``tie_word_embeddings`` (T5Config's default: true). mT5 is never tied: every released checkpoint (the
    T5 v1.1 recipe, Xue et al. 2021) stores ``lm_head.weight`` apart, and a config transformers 5 saved no longer
    says so."""
    if config.get("model_type") == "mt5":
        return False
    if isinstance(config.get("scale_decoder_outputs"), bool):
        return config["scale_decoder_outputs"]
    tied = config.get("tie_word_embeddings", True)
    return tied if isinstance(tied, bool) else True


def t5_spec(c: ConfigKeys, name: str, model_type: str) -> ModelSpec:
    """T5 / mT5 encoder-decoders (transformers ``T5Config`` / ``MT5Config``; keys as ``save_pretrained`` writes
    them, with the ``attribute_map`` names accepted too). ``feed_forward_proj`` "relu" is the original T5's plain
    ReLU MLP (wi, wo); "gated-gelu" T5 v1.1's, Flan-T5's and mT5's gated MLP (wi_0, wi_1, wo) with the tanh GELU
    (T5Config maps it to ``gelu_new``); "gated-ACT" in general a gated MLP with ACT. Whether the head is the
    shared embedding: :func:`t5_head_tied`. T5 has no position table: ``n_positions`` (512, the pre-training
    length) is only a label."""
    proj = c.str("feed_forward_proj", default="relu")
    parts = proj.split("-")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated") or not parts[-1]:
        raise InputError(f"{c.source}: feed_forward_proj", proj, "must be ACT or gated-ACT (relu, gated-gelu, ...)")
    gated = len(parts) == 2
    act = "gelu_new" if proj == "gated-gelu" else parts[-1]
    layers = c.pos_int("num_layers", "num_hidden_layers")
    return ModelSpec(
        name=name, family=model_type, layout="t5", num_layers=layers,
        decoder_layers=c.pos_int("num_decoder_layers", default=layers), hidden_size=c.pos_int("d_model", "hidden_size"),
        num_heads=(heads := c.pos_int("num_heads", "num_attention_heads")), num_kv_heads=heads,
        head_dim=c.pos_int("d_kv", "head_dim"), ffn_size=c.pos_int("d_ff"), vocab_size=c.pos_int("vocab_size"),
        max_position=c.pos_int("n_positions", default=512), gated_mlp=gated, activation=act,
        tie_embeddings=t5_head_tied(c.data),
        hidden_dropout=c.fraction("dropout_rate", default=0.1),
        relative_buckets=c.pos_int("relative_attention_num_buckets", default=32))


# MptAttentionConfig values that change the attention beyond what gpuplan models for MPT (MosaicML's own MPT code,
# llm-foundry ``llmfoundry/models/layers/attention.py``, supports them; transformers' MptForCausalLM builds none):
# key -> the value supported.
_MPT_ATTN_FIXED = {"attn_type": "multihead_attention", "qk_ln": False, "prefix_lm": False, "rope": False}


def mpt_spec(c: ConfigKeys, name: str) -> ModelSpec:
    """MPT (MptConfig defaults: d_model 2048, 16 heads, 24 layers, 50368 tokens, max_seq_len 2048, tied
    embeddings, ``no_bias`` true, ALiBi): pre-norm blocks with LayerNorms (``norm_1``, ``norm_2``, ``norm_f``),
    a fused ``Wqkv`` and ``out_proj``, an exact-GELU MLP of expansion_ratio·d_model (``ffn.up_proj``,
    ``ffn.down_proj``). The attention settings sit in the nested ``attn_config``; its ``attn_pdrop`` (default 0)
    is the dropout transformers applies to the attention probabilities, the attention output and the MLP output
    (``resid_pdrop`` and ``emb_pdrop`` are read by MosaicML's own code only).

    transformers' ``MptForCausalLM`` (models/mpt/modeling_mpt.py) builds the released checkpoints' variant only:
    no biases, a 4·d_model MLP, ALiBi, no position table. MosaicML's llm-foundry (``MPTModel``,
    llmfoundry/models/mpt/modeling_mpt.py and layers/blocks.py) also builds ``no_bias: false`` (biases on every
    Linear and LayerNorm), other expansion ratios and, with ``alibi: false`` and ``learned_pos_emb``, a
    ``wpe`` position table of max_seq_len rows; those are counted as llm-foundry builds them, with a note.
    Multi-query / grouped-query attention, q/k LayerNorm, prefix-LM and rotary MPTs are refused by name."""
    attn = c.data.get("attn_config")
    if attn is None:
        attn = {}
    if not isinstance(attn, dict):
        raise InputError(f"{c.source}: attn_config", attn, "must be an object of attention settings")
    a = ConfigKeys(attn, f"{c.source}: attn_config")
    for key, want in _MPT_ATTN_FIXED.items():
        got = attn.get(key, want)
        if got is not None and got != want:
            raise InputError(f"{a.source}.{key}", got, f"must be {json.dumps(want)} for mpt: gpuplan models "
                             "MPT's multi-head attention without q/k norm, prefix-LM or rotary embedding (as "
                             "every released MPT checkpoint)")
    clip = attn.get("clip_qkv")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or not 0 < clip < 1e300):
        raise InputError(f"{a.source}.clip_qkv", clip, "must be a positive number or null (no clipping)")
    ratio = c.data.get("expansion_ratio", 4)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 64:
        raise InputError(f"{c.source}: expansion_ratio", ratio, "must be a number in (0, 64]")
    h = c.pos_int("d_model", "hidden_size", default=2048)
    heads = c.pos_int("n_heads", "num_attention_heads", default=16)
    if h % heads:
        raise InputError(f"{c.source}: n_heads", heads, f"must divide d_model={h}")
    n_layers = c.pos_int("n_layers", "num_hidden_layers", default=24)
    if n_layers > COUNT_BOUNDS["layers"]:
        raise InputError(f"{c.source}: n_layers", n_layers, f"must be at most {COUNT_BOUNDS['layers']:,}")
    bias = not c.bool("no_bias", True)
    alibi = a.bool("alibi", True)
    positions = not alibi and c.bool("learned_pos_emb", True)
    ffn = int(ratio * h)  # llm-foundry MPTMLP: ffn_hidden_size = int(expansion_ratio * d_model)
    left = [w for w, on in (("biases (no_bias: false)", bias), (f"an MLP of {ratio} x d_model", ffn != 4 * h),
                             ("learned positions instead of ALiBi", positions),
                             ("neither ALiBi nor a position table", not alibi and not positions)) if on]
    notes = (f"MPT with {', '.join(left)}: counted as MosaicML's llm-foundry MPTModel builds it; transformers' "
             "MptForCausalLM builds only bias-free 4 x d_model ALiBi blocks and cannot load this checkpoint",) \
        if left else ()
    return ModelSpec(
        name=name, family="mpt", layout="mpt", notes=notes, num_layers=n_layers, hidden_size=h, num_heads=heads,
        num_kv_heads=heads, head_dim=h // heads, ffn_size=ffn, vocab_size=c.pos_int("vocab_size", default=50368),
        max_position=c.pos_int("max_seq_len", "max_position_embeddings", default=2048), gated_mlp=False,
        activation="gelu", norm="layernorm", qkv_bias=bias, o_bias=bias, mlp_bias=bias,
        tie_embeddings=c.bool("tie_word_embeddings", True), learned_positions=positions, alibi=alibi,
        hidden_dropout=a.fraction("attn_pdrop"), clip_qkv=float(clip) if clip else None)
