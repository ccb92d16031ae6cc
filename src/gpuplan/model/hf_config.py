"""Build a ``ModelSpec`` from a Hugging Face ``config.json`` (a dict), offline.

Defaults for keys a config may omit follow the transformers 5 configuration classes of each ``model_type``
(e.g. ``Gemma2Config.head_dim = 256``, ``Qwen3Config.head_dim = 128``, ``FalconConfig.ffn_hidden_size = 4h``).
No remote code is ever run: only the listed ``model_type`` values are understood.

Keys are read under every name transformers 4 or 5 writes them: transformers 5 saves a config's
``attribute_map`` aliases (Qwen3-MoE ``num_local_experts`` for ``num_experts``, DeepSeek ``num_local_experts``
for ``n_routed_experts``) and replaces ``rope_theta`` / ``rope_scaling`` by ``rope_parameters`` (which changes no
size; ``gpuplan.infer.source.max_context`` reads either). A multimodal wrapper (``text_config`` inside) is
estimated by its text part, with a note on the spec naming the parts left out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gpuplan.errors import InputError, UnknownFamily
from gpuplan.limits import COUNT_BOUNDS
from gpuplan.model.config_keys import ConfigKeys
from gpuplan.model.hf_families import encoder_spec, gpt2_spec, mpt_spec, t5_spec
from gpuplan.model.spec import LinearAttnSpec, MLASpec, MoESpec, ModelSpec

SUPPORTED_MODEL_TYPES = (
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "deepseek_v2", "deepseek_v3",
    "deepseek_v32", "gemma2", "gemma3_text", "gemma3", "phi3", "gpt2", "gpt_neox", "falcon", "olmo2", "mistral3", "kimi_k2",
    "glm4_moe", "gpt_oss", "llama4", "llama4_text", "qwen3_next", "starcoder2", "gpt_bigcode", "bert", "roberta",
    "mpt", "t5", "mt5",
    "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe",
)

# Encoder-decoders: tensors and FLOPs by rule, memory from the traced path (gpuplan.commands.generic)
ENCODER_DECODER_TYPES = ("t5", "mt5")

# model_types whose config.json names another family's architecture: Kimi K2's ``kimi_k2`` config declares
# ``DeepseekV3ForCausalLM`` with DeepSeek-V3's keys (moonshotai/Kimi-K2-Instruct config.json).
_SAME_AS = {"kimi_k2": "deepseek_v3",
            # a Qwen VL model's text_config on its own: the text family it is estimated as (_TEXT_TYPE)
            "qwen2_5_vl_text": "qwen2", "qwen3_vl_text": "qwen3", "qwen3_vl_moe_text": "qwen3_moe"}

# Multimodal wrappers estimated by their ``text_config``: the wrapper's model_type -> the text model's default
# model_type (transformers' ``Gemma3Config`` / ``Mistral3Config`` sub-config defaults).
_MULTIMODAL = {"gemma3": "gemma3_text", "mistral3": "mistral", "llama4": "llama4_text", "qwen2_5_vl": "qwen2",
               "qwen3_vl": "qwen3", "qwen3_vl_moe": "qwen3_moe"}
# A text_config whose model_type names the wrapper (some Llama 4 configs write "llama4" inside text_config too), and
# the Qwen VL text models, whose tensors are those of Qwen2 / Qwen3 / Qwen3-MoE (multimodal RoPE changes no size).
_TEXT_TYPE = {"llama4": "llama4_text", "qwen2_5_vl": "qwen2", "qwen2_5_vl_text": "qwen2", "qwen3_vl": "qwen3",
              "qwen3_vl_text": "qwen3", "qwen3_vl_moe": "qwen3_moe", "qwen3_vl_moe_text": "qwen3_moe"}
# Wrappers whose vision tower gpuplan models (gpuplan.model.vision)
_VISION_WRAPPERS = ("qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "gemma3", "mistral3", "llama4")
# Wrappers whose transformers 4 config.json keeps the text keys at the top level (no text_config)
_FLAT_TEXT = ("qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")

# Names transformers' ``attribute_map`` gives a key, which ``save_pretrained`` may write instead of the key.
_ALIASES = {
    "num_experts": ("num_experts", "num_local_experts"),  # qwen2_moe, qwen3_moe
    "num_local_experts": ("num_local_experts", "num_experts"),  # mixtral, gpt_oss
    "n_routed_experts": ("n_routed_experts", "num_local_experts", "num_experts"),  # deepseek_v2/v3, glm4_moe
    "num_nextn_predict_layers": ("num_nextn_predict_layers", "num_mtp_layers"),  # deepseek_v3, glm4_moe
}

_LAYOUT = {
    "llama": "llama", "mistral": "llama", "qwen2": "llama", "qwen3": "llama", "olmo2": "olmo2",
    "gemma2": "gemma", "gemma3_text": "gemma", "mixtral": "mixtral", "qwen2_moe": "qwen_moe",
    "qwen3_moe": "qwen_moe", "deepseek_v2": "deepseek", "deepseek_v3": "deepseek", "phi3": "phi3",
    "deepseek_v32": "deepseek",
    "gpt2": "gpt2", "gpt_neox": "gpt_neox", "falcon": "falcon",
    # GLM-4.5: grouped-query attention with DeepSeek-V3's MoE (fp32 sigmoid router, ``shared_experts``)
    "glm4_moe": "deepseek",
    "gpt_oss": "gpt_oss",
    "llama4_text": "llama4",
    "qwen3_next": "qwen3_next",
    "starcoder2": "starcoder2",
    "gpt_bigcode": "gpt_bigcode",
    "bert": "bert",
    "roberta": "bert",
    "mpt": "mpt",
    "t5": "t5",
    "mt5": "t5",
}
_DEEPSEEK_MOE = ("deepseek_v2", "deepseek_v3", "deepseek_v32", "glm4_moe")
# max_position_embeddings of the config classes where it differs from 4096 (FalconConfig, Glm4MoeConfig,
# GptOssConfig)
_MAX_POSITION = {"falcon": 2048, "starcoder2": 4096, "glm4_moe": 131072, "gpt_oss": 131072, "llama4_text": 131072,
                 "qwen3_next": 32768}


def _layer_types(c: ConfigKeys, model_type: str, n_layers: int) -> tuple[tuple[str, ...], int | None]:
    """Per-layer "full"/"sliding" attention and the window, as each family's config class derives them."""
    window = c.opt_int("sliding_window")
    raw = c.data.get("layer_types")
    if raw is not None and (not isinstance(raw, list) or not all(isinstance(t, str) for t in raw)):
        raise InputError(f"{c.source}: layer_types", raw, "must be a list of attention types, one string per layer "
                         "(\"full_attention\", \"sliding_attention\")")
    if model_type == "llama4_text":
        return _llama4_layer_types(c, n_layers, raw)
    if model_type == "qwen3_next":
        return _qwen3_next_layer_types(c, n_layers, raw), None
    if raw:
        types = tuple("sliding" if "sliding" in t else "full" for t in raw)
    elif model_type in ("gemma2", "gpt_oss"):  # Gemma2Config / GptOssConfig: sliding first, then alternating
        types = tuple("sliding" if (i + 1) % 2 else "full" for i in range(n_layers))
    elif model_type in ("gemma3_text", "gemma3"):
        pattern = c.pos_int("sliding_window_pattern", default=6)
        types = tuple("sliding" if (i + 1) % pattern else "full" for i in range(n_layers))
    elif model_type in ("qwen2", "qwen3", "qwen2_moe", "qwen3_moe"):
        if not c.bool("use_sliding_window", False):
            return (), None
        start = c.int("max_window_layers", default=28)
        types = tuple("sliding" if i >= start else "full" for i in range(n_layers))
    elif model_type in ("mistral", "mixtral", "phi3", "starcoder2") and window:
        types = ("sliding",) * n_layers
    else:
        return (), None
    if "sliding" not in types:
        return (), None
    if window is None:
        window = 128 if model_type == "gpt_oss" else 4096
    return types, window


def _llama4_rope_layers(c: ConfigKeys, n_layers: int) -> tuple[bool, ...]:
    """Llama4TextConfig ``no_rope_layers``: 1 = RoPE layer, 0 = NoPE; by default all but every
    ``no_rope_layer_interval``-th (4) layer."""
    rope = c.int_list("no_rope_layers")
    if not rope:
        interval = c.pos_int("no_rope_layer_interval", default=4)
        rope = [int((i + 1) % interval != 0) for i in range(n_layers)]
    if len(rope) < n_layers or any(v not in (0, 1) for v in rope):
        raise InputError(f"{c.source}: no_rope_layers", rope, f"must hold a 0 (NoPE) or 1 (RoPE) for each of the "
                         f"{n_layers} layers")
    return tuple(bool(rope[i]) for i in range(n_layers))


def _llama4_layer_types(c: ConfigKeys, n_layers: int, raw: list | None) -> tuple[tuple[str, ...], int | None]:
    """Llama4TextConfig: RoPE layers (``no_rope_layers[i] == 1``; by default all but every
    ``no_rope_layer_interval``-th) use chunked attention over ``attention_chunk_size`` (8192) positions, the NoPE
    layers full attention; an explicit ``layer_types`` ("chunked_attention", "full_attention") wins. A null chunk
    size leaves every layer full."""
    chunk = c.opt_int("attention_chunk_size") if "attention_chunk_size" in c.data else 8192
    if raw:
        types = _checked_layer_types(c, n_layers, raw, "llama4", {"chunked_attention": "chunked",
                                                                 "full_attention": "full"})
    else:
        types = tuple("chunked" if rope else "full" for rope in _llama4_rope_layers(c, n_layers))
    if chunk is None or "chunked" not in types:
        return (), None
    if chunk < 1:
        raise InputError(f"{c.source}: attention_chunk_size", chunk, "must be an integer >= 1 or null")
    return types, chunk


def _checked_layer_types(c: ConfigKeys, n_layers: int, raw: list, family: str, kinds: dict[str, str]) -> tuple[str, ...]:
    """An explicit ``layer_types`` list: one entry per layer, each a key of ``kinds`` (mapped to gpuplan's name)."""
    if len(raw) != n_layers:
        raise InputError(f"{c.source}: layer_types", len(raw), f"must list one type per layer "
                         f"(num_hidden_layers={n_layers})")
    bad = [t for t in raw if t not in kinds]
    if bad:
        raise InputError(f"{c.source}: layer_types", bad[0], f"must be {' or '.join(kinds)} for {family}")
    return tuple(kinds[t] for t in raw)


def _qwen3_next_layer_types(c: ConfigKeys, n_layers: int, raw: list | None) -> tuple[str, ...]:
    """Qwen3NextConfig: ``layer_types`` ("linear_attention", "full_attention"), by default every
    ``full_attention_interval``-th (4) layer full attention and the others Gated DeltaNet."""
    if raw:
        return _checked_layer_types(c, n_layers, raw, "qwen3_next", {"linear_attention": "linear",
                                                                    "full_attention": "full"})
    interval = c.pos_int("full_attention_interval", default=4)
    return tuple("linear" if (i + 1) % interval else "full" for i in range(n_layers))


def _qwen3_next_kw(c: ConfigKeys) -> dict[str, Any]:
    """Qwen3NextConfig's Gated DeltaNet sizes (defaults: 16 key heads and 32 value heads of 128, 4 conv taps)."""
    la = LinearAttnSpec(num_k_heads=c.pos_int("linear_num_key_heads", default=16),
                        num_v_heads=c.pos_int("linear_num_value_heads", default=32),
                        k_head_dim=c.pos_int("linear_key_head_dim", default=128),
                        v_head_dim=c.pos_int("linear_value_head_dim", default=128),
                        conv_kernel=c.pos_int("linear_conv_kernel_dim", default=4))
    return dict(linear_attn=la, attn_output_gate=True, ffn_size=c.pos_int("intermediate_size", default=5632))


def _qwen3_next_mtp_note(c: ConfigKeys) -> tuple[str, ...]:
    """Qwen3-Next checkpoints carry ``mtp_num_hidden_layers`` multi-token-prediction layers that transformers
    does not build (their weights are skipped on loading): named, not counted."""
    n = c.int("mtp_num_hidden_layers", "num_nextn_predict_layers", default=0)
    if n < 0:
        raise InputError(f"{c.source}: mtp_num_hidden_layers", n, "must be >= 0")
    if not n:
        return ()
    return (f"the checkpoint's {n} multi-token-prediction layer(s) (mtp_num_hidden_layers) are not built by "
            "transformers or used by the estimate: not counted in the parameters, memory or time",)


def _llama4_moe(c: ConfigKeys, n_layers: int) -> MoESpec:
    """Llama4TextConfig: ``moe_layers`` (indices), else every ``interleave_moe_layer_step``-th layer starting at
    step - 1 (Scout: 1, every layer; Maverick: 2, the odd layers). Each MoE layer has a sigmoid top-k router,
    ``num_local_experts`` SwiGLU experts of ``intermediate_size`` and one shared expert of the same size
    (transformers ``Llama4TextMoe``)."""
    listed = c.data.get("moe_layers")
    if listed is not None:
        idx = c.int_list("moe_layers")
        bad = [i for i in idx if not 0 <= i < n_layers]
        if bad:
            raise InputError(f"{c.source}: moe_layers", bad[0], f"must be a layer index in 0..{n_layers - 1}")
        chosen = set(idx)
    else:
        step = c.pos_int("interleave_moe_layer_step", default=1)
        chosen = set(range(step - 1, n_layers, step))
    f_e = c.pos_int("intermediate_size", default=8192)
    return MoESpec(num_experts=c.pos_int(*_ALIASES["num_local_experts"], default=16),
                   top_k=c.pos_int("num_experts_per_tok", default=1), expert_ffn_size=f_e,
                   moe_layers=tuple(i in chosen for i in range(n_layers)), num_shared_experts=1,
                   shared_expert_ffn_size=f_e)


def _moe(c: ConfigKeys, model_type: str, n_layers: int) -> MoESpec | None:
    if model_type == "llama4_text":
        return _llama4_moe(c, n_layers)
    if model_type == "mixtral":
        return MoESpec(num_experts=c.int(*_ALIASES["num_local_experts"], default=8), top_k=c.int("num_experts_per_tok", default=2),
                       expert_ffn_size=c.int("intermediate_size"), moe_layers=(True,) * n_layers)
    if model_type == "gpt_oss":  # GptOssConfig defaults: 128 experts, top-4, every layer MoE
        return MoESpec(num_experts=c.int(*_ALIASES["num_local_experts"], default=128),
                       top_k=c.int("num_experts_per_tok", "experts_per_token", default=4),
                       expert_ffn_size=c.int("intermediate_size", default=2880), moe_layers=(True,) * n_layers)
    if model_type in ("qwen2_moe", "qwen3_moe", "qwen3_next"):
        nxt = model_type == "qwen3_next"  # Qwen3NextConfig defaults: 512 experts, top-10, 512 wide, shared 512
        n_exp = c.int(*_ALIASES["num_experts"], default=512 if nxt else None)
        step = c.pos_int("decoder_sparse_step", default=1)
        dense_only = set(c.int_list("mlp_only_layers"))
        layers = tuple(i not in dense_only and n_exp > 0 and (i + 1) % step == 0 for i in range(n_layers))
        if nxt and not any(layers):  # every layer dense: a plain Qwen3NextMLP of intermediate_size
            return None
        shared = c.int("shared_expert_intermediate_size", default=512 if nxt else 0) if model_type != "qwen3_moe" \
            else 0
        return MoESpec(num_experts=n_exp, top_k=c.int("num_experts_per_tok", default=10 if nxt else None),
                       expert_ffn_size=c.int("moe_intermediate_size", default=512 if nxt else None), moe_layers=layers,
                       num_shared_experts=1 if shared else 0, shared_expert_ffn_size=shared,
                       shared_expert_gate=bool(shared))
    if model_type in _DEEPSEEK_MOE:
        glm = model_type == "glm4_moe"  # Glm4MoeConfig defaults: 1 dense layer, 1 shared expert
        first_dense = c.int("first_k_dense_replace", default=1 if glm else 0)
        layers = tuple(i >= first_dense for i in range(n_layers))
        n_shared = c.int("n_shared_experts", default=1 if glm else 0)
        f_e = c.int("moe_intermediate_size")
        return MoESpec(num_experts=c.int(*_ALIASES["n_routed_experts"]), top_k=c.int("num_experts_per_tok"),
                       expert_ffn_size=f_e, moe_layers=layers, num_shared_experts=n_shared,
                       shared_expert_ffn_size=n_shared * f_e, route_groups=c.int("n_group", default=1),
                       route_topk_groups=c.int("topk_group", default=0))
    return None


def spec_from_config(config: dict[str, Any], name: str = "custom", source: str = "config.json") -> ModelSpec:
    """Translate a Hugging Face config dict into a validated ModelSpec."""
    if not isinstance(config, dict):
        raise InputError(source, type(config).__name__, "config.json must hold a JSON object")
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        raise InputError(f"{source}: model_type", model_type,
                         f"must be a string naming the architecture; supported: {', '.join(sorted(_LAYOUT))}")
    notes: tuple[str, ...] = ()
    wrapper, wrapper_type = config, model_type
    if model_type in _MULTIMODAL or (model_type not in _LAYOUT and isinstance(config.get("text_config"), dict)):
        config, notes = _text_part(config, model_type, source, name)
        model_type = config["model_type"]
    model_type = _SAME_AS.get(model_type, model_type)
    if model_type not in _LAYOUT:
        raise UnknownFamily(f"{source}: model_type", model_type,
                            f"is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}", config=config,
                            name=name, source=source)  # params, train and infer trace it (gpuplan.commands.generic)
    c = ConfigKeys(config, source)
    if model_type in ("gpt2", "gpt_bigcode"):
        return gpt2_spec(c, name, model_type)
    if model_type in ("bert", "roberta"):
        return encoder_spec(c, name, model_type)
    if model_type == "mpt":
        return mpt_spec(c, name)
    if model_type in ENCODER_DECODER_TYPES:
        return t5_spec(c, name, model_type)
    h = c.pos_int("hidden_size")
    n_layers = c.pos_int("num_hidden_layers")
    if n_layers > COUNT_BOUNDS["layers"]:  # checked before per-layer tuples are built
        raise InputError(f"{source}: num_hidden_layers", n_layers, f"must be at most {COUNT_BOUNDS['layers']:,}")
    heads = c.pos_int("num_attention_heads")
    kv_heads = c.pos_int("num_key_value_heads", "num_kv_heads", default=2 if model_type == "qwen3_next" else heads)
    head_dim_default = {"gemma2": 256, "gemma3_text": 256, "qwen3": 128, "qwen3_moe": 128,
                        "llama4_text": 128, "qwen3_next": 256}.get(model_type)
    if head_dim_default is None:
        if h % heads and c.data.get("head_dim") is None:
            raise InputError("num_attention_heads", heads, f"must divide hidden_size={h} when head_dim is not given")
        head_dim_default = max(1, h // heads)
    head_dim = c.int("head_dim", default=head_dim_default)
    layer_types, window = _layer_types(c, model_type, n_layers)
    family_bias = {"qwen2": (True, False), "qwen2_moe": (True, False), "gpt_neox": (True, True)}
    attn_bias = c.bool("attention_bias", model_type == "gpt_oss")
    qkv_bias, o_bias = family_bias.get(model_type, (attn_bias, attn_bias))
    if model_type == "gpt_neox":
        qkv_bias = o_bias = c.bool("attention_bias", True)
    if model_type == "glm4_moe":  # attention_bias adds q/k/v biases only (Glm4MoeAttention: o_proj bias=False)
        o_bias = False
    kw: dict[str, Any] = dict(
        name=name, family=model_type, notes=notes, layout=_LAYOUT[model_type], num_layers=n_layers, hidden_size=h,
        num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim,
        vocab_size=c.int("vocab_size"), max_position=c.int("max_position_embeddings",
                                                                    default=_MAX_POSITION.get(model_type, 4096)),
        activation=c.str("hidden_activation", "hidden_act", default="silu"),
        qkv_bias=qkv_bias, o_bias=o_bias, mlp_bias=c.bool("mlp_bias", False),
        tie_embeddings=c.bool("tie_word_embeddings", model_type in ("gemma2", "gemma3_text", "falcon")),
        qk_norm=model_type in ("qwen3", "qwen3_moe", "qwen3_next", "gemma3_text", "olmo2") or (
            model_type == "glm4_moe" and c.bool("use_qk_norm", False)),
        layer_types=layer_types, sliding_window=window,
        hidden_dropout=c.fraction("resid_pdrop", "embd_pdrop", "hidden_dropout"),
        # Gemma2Config defaults: 50.0 and 30.0 (None turns soft-capping off)
        attn_softcap=c.data.get("attn_logit_softcapping", 50.0 if model_type == "gemma2" else None),
        final_softcap=c.data.get("final_logit_softcapping", 30.0 if model_type == "gemma2" else None),
    )
    if model_type == "gpt_neox":
        kw.update(ffn_size=c.int("intermediate_size"), gated_mlp=False, norm="layernorm", mlp_bias=True,
                  parallel_residual=c.bool("use_parallel_residual", True), activation=c.str("hidden_act", default="gelu"))
    elif model_type == "falcon":
        kw.update(_falcon_kw(c, h, heads))
    elif model_type in ("deepseek_v2", "deepseek_v3", "deepseek_v32"):
        kw.update(ffn_size=c.int("intermediate_size"), mla=MLASpec(
            q_lora_rank=c.opt_int("q_lora_rank") or 0, kv_lora_rank=c.int("kv_lora_rank"),
            qk_rope_head_dim=c.int("qk_rope_head_dim"), qk_nope_head_dim=c.int("qk_nope_head_dim"),
            v_head_dim=c.int("v_head_dim"), **_indexer_kw(c, model_type)),
            head_dim=c.int("qk_rope_head_dim") + c.int("qk_nope_head_dim"),
            mtp_layers=c.int(*_ALIASES["num_nextn_predict_layers"], default=0))
    elif model_type == "starcoder2":  # Starcoder2Config: use_bias (true) on every Linear, LayerNorms, tied head
        bias = c.bool("use_bias", True)
        kw.update(ffn_size=c.int("intermediate_size"), gated_mlp=False, norm="layernorm", qkv_bias=bias,
                  o_bias=bias, mlp_bias=bias, activation=c.str("hidden_act", default="gelu_pytorch_tanh"),
                  tie_embeddings=c.bool("tie_word_embeddings", True),
                  hidden_dropout=c.fraction("residual_dropout", "embedding_dropout"))
    elif model_type == "qwen3_next":
        kw.update(_qwen3_next_kw(c))
        notes = (*notes, *_qwen3_next_mtp_note(c))
        kw["notes"] = notes
    elif model_type == "llama4_text":  # dense layers: intermediate_size_mlp; the L2 qk norm has no weights
        kw.update(ffn_size=c.pos_int("intermediate_size_mlp", default=16384),
                  l2_qk_norm_layers=_llama4_rope_layers(c, n_layers) if c.bool("use_qk_norm", True) else ())
    else:
        kw.update(ffn_size=c.int("intermediate_size"))
    if model_type == "gpt_oss":  # experts carry biases (gate_up_proj_bias, down_proj_bias); per-head sinks
        kw.update(mlp_bias=True, attention_sinks=True)
    if model_type == "glm4_moe":
        kw.update(mtp_layers=c.int(*_ALIASES["num_nextn_predict_layers"], default=1))
    moe = _moe(c, model_type, n_layers)
    if moe is not None:
        kw["moe"] = moe
        if model_type in ("mixtral", "gpt_oss") or (model_type != "llama4_text" and all(moe.moe_layers)):
            kw["ffn_size"] = c.int("intermediate_size", default=moe.expert_ffn_size)
    if wrapper is not config:
        from gpuplan.model.vision import vision_from_config

        kw["vision"] = vision_from_config(wrapper, wrapper_type, h, source)
    return ModelSpec(**kw)


def _indexer_kw(c: ConfigKeys, model_type: str) -> dict[str, int]:
    """DeepSeek-V3.2's lightning indexer (``deepseek_v32``; DeepseekV32Config defaults: 64 heads of 128); it
    projects its queries from the query LoRA, so a config without ``q_lora_rank`` is refused."""
    if model_type != "deepseek_v32":
        return {}
    if not c.opt_int("q_lora_rank"):
        raise InputError(f"{c.source}: q_lora_rank", c.data.get("q_lora_rank"),
                         "must be >= 1 for deepseek_v32 (the indexer's query projection reads the query LoRA)")
    return {"index_n_heads": c.pos_int("index_n_heads", default=64),
            "index_head_dim": c.pos_int("index_head_dim", default=128)}


def _text_part(config: dict[str, Any], model_type: str, source: str,
               name: str = "custom") -> tuple[dict[str, Any], tuple[str, ...]]:
    """The ``text_config`` of a multimodal wrapper, and the note naming what is left out: every other
    ``*_config`` sub-model (vision tower, audio encoder) and the projector between it and the text model. A text
    model of a family gpuplan has no rules for raises UnknownFamily carrying the whole config, so that the traced
    path builds the model transformers builds for it (``gpuplan.commands.generic``)."""
    inner = config.get("text_config")
    if inner is None and model_type in _FLAT_TEXT:  # transformers 4 wrote Qwen VL text keys at the top level
        inner = {k: v for k, v in config.items() if k not in ("model_type", "vision_config")}
    if not isinstance(inner, dict):
        raise InputError(f"{source}: text_config", inner, f"model_type {model_type} is multimodal: its config.json "
                         "must hold the text model's keys in a text_config object")
    text_type = inner.get("model_type") or _MULTIMODAL.get(model_type)
    text_type = _TEXT_TYPE.get(text_type, text_type) if isinstance(text_type, str) else text_type
    text_type = _SAME_AS.get(text_type, text_type) if isinstance(text_type, str) else text_type
    if not isinstance(text_type, str):
        raise InputError(f"{source}: text_config.model_type", text_type,
                         f"must be a string naming the text model's architecture; supported: "
                         f"{', '.join(sorted(_LAYOUT))}")
    if text_type not in _LAYOUT:
        raise UnknownFamily(f"{source}: text_config.model_type", text_type,
                            f"is not supported; supported: {', '.join(sorted(_LAYOUT))}", config=config, name=name,
                            source=source)
    if model_type in _VISION_WRAPPERS and isinstance(config.get("tie_word_embeddings"), bool):
        # transformers 5 ties lm_head to the language model's embed_tokens by the wrapper's own key
        # (Mistral3ForConditionalGeneration / Gemma3ForConditionalGeneration ``_tied_weights_keys``)
        inner = {**inner, "tie_word_embeddings": config["tie_word_embeddings"]}
    left_out = left_out_parts(config) or "the multimodal projector"
    if model_type in _VISION_WRAPPERS:
        note = (f"{model_type} is multimodal: without --images only its text model ({text_type}, text_config) is "
                f"estimated; left out: {left_out} (params counts them as vision; --images adds them)")
    else:
        note = (f"{model_type} is multimodal: only its text model ({text_type}, text_config) is estimated; "
                f"left out: {left_out}")
    return {**inner, "model_type": text_type}, (note,)


def left_out_parts(config: dict[str, Any]) -> str:
    """What estimating a multimodal config's language model leaves out: every ``*_config`` sub-model but the text
    one, and the projector; "" for a config with no such sub-model."""
    parts = [_part_summary(k, v) for k, v in config.items()
             if k.endswith("_config") and k not in ("text_config", "quantization_config") and isinstance(v, dict)]
    return ", ".join([*parts, "the multimodal projector"]) if parts else ""


def _part_summary(key: str, sub: dict[str, Any]) -> str:
    """``vision_config (siglip_vision_model, 27 layers, hidden 1152)``: what a left-out sub-model is."""
    facts = [str(sub["model_type"])] if isinstance(sub.get("model_type"), str) else []
    for name, label in (("num_hidden_layers", "layers"), ("depth", "layers"), ("hidden_size", "hidden")):
        value = sub.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            facts.append(f"{value} {label}" if label == "layers" else f"{label} {value}")
    return f"{key} ({', '.join(facts)})" if facts else key


def _falcon_kw(c: ConfigKeys, h: int, heads: int) -> dict[str, Any]:
    """Falcon variants: multi-query (7B), new decoder architecture with grouped KV (40B/180B)."""
    new_arch = c.bool("new_decoder_architecture", False)
    if new_arch:
        kv = c.int("num_kv_heads", default=heads)
        n_ln = c.int("num_ln_in_parallel_attn", default=2)
        norms = ("ln_attn", "ln_mlp") if n_ln == 2 else ("input_layernorm",)
    else:
        kv = 1 if c.bool("multi_query", True) else heads
        norms = ("input_layernorm",) if c.bool("parallel_attn", True) else ("input_layernorm", "post_attention_layernorm")
    bias = c.bool("bias", False)
    return dict(num_kv_heads=kv, ffn_size=c.int("ffn_hidden_size", default=4 * h), gated_mlp=False, norm="layernorm",
                qkv_bias=bias, o_bias=bias, mlp_bias=bias, activation="gelu", layer_norm_names=norms,
                parallel_residual=c.bool("parallel_attn", True) or new_arch)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a config.json (or a folder holding one). Errors name the path and what is wrong. A UTF-8 byte-order
    mark, which some Windows editors write, is accepted."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise InputError("model", str(path), "no such config.json file or folder holding one")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError("model", str(p), f"cannot be read ({exc.strerror or exc})") from None
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InputError("model", str(p), f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InputError("model", str(p), f"is not valid JSON ({exc})") from None
    except RecursionError:
        raise InputError("model", str(p), "is nested too deeply to be a config.json") from None
