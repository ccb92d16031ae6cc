"""Build a transformers model on the meta device and list its parameters under checkpoint names.

transformers 5 fuses MoE experts into 3-D ``gate_up_proj`` [E, 2f, h] and ``down_proj`` [E, h, f] tensors and
renames a few modules; checkpoints (``model.safetensors.index.json``) keep one tensor per expert. This maps the
former to the latter so the tensor table can be compared name by name. gpt-oss checkpoints are fused too
([E, in, out] weights with [E, out] biases); the table lists them per expert like the rest.
"""

from __future__ import annotations

import re
import warnings


def hf_named_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    cfg = dict(config)
    model_type = cfg.pop("model_type")
    model_type = {"kimi_k2": "deepseek_v3"}.get(model_type, model_type)  # a DeepseekV3ForCausalLM config
    if cfg.get("q_lora_rank") == 0:
        cfg["q_lora_rank"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conf = AutoConfig.for_model(model_type, **cfg)
        if model_type in QWEN_VL:  # no causal-LM class for the Qwen VL text models: the whole model's text part
            return {name: shape for name, shape in hf_multimodal_shapes(config).items()
                    if not name.startswith("model.visual.")}
        if "text_config" in cfg:  # a multimodal wrapper: gpuplan estimates its text model
            conf = conf.get_text_config()
            model_type = conf.model_type
        with torch.device("meta"):
            if model_type in ("bert", "roberta"):  # an encoder with the head its architectures name
                from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

                mlm = any(a.endswith("ForMaskedLM") for a in cfg.get("architectures") or [])
                model = (AutoModelForMaskedLM if mlm else AutoModelForSequenceClassification).from_config(conf)
            elif conf.is_encoder_decoder:  # T5: the checkpoint stores lm_head apart where the file says untied
                from transformers import AutoModelForSeq2SeqLM

                model = AutoModelForSeq2SeqLM.from_config(conf)
                if cfg.get("tie_word_embeddings") is False or model_type == "mt5":  # transformers 5 ties them all
                    return {**{n: tuple(p.shape) for n, p in model.named_parameters()},
                            "lm_head.weight": (conf.vocab_size, conf.d_model)}
            else:
                model = AutoModelForCausalLM.from_config(conf)
    mixtral = model_type == "mixtral"
    out: dict[str, tuple[int, ...]] = {}
    for name, p in model.named_parameters():
        shape = tuple(p.shape)
        if mixtral:
            name = re.sub(r"\.mlp\.", ".block_sparse_moe.", name)
        if model_type == "gpt_neox" and name == "lm_head.weight":
            name = "embed_out.weight"
        if model_type == "gpt_oss":
            # [E, in, out] weights and [E, out] biases, listed per expert as [out, in] Linears
            m = re.fullmatch(r"(.*\.experts)\.(gate_up_proj|down_proj)(_bias)?", name)
            if m:
                prefix, kind, bias = m.groups()
                for e in range(shape[0]):
                    out[f"{prefix}.{e}.{kind}.{'bias' if bias else 'weight'}"] = shape[1:] if bias else shape[:0:-1]
                continue
        if model_type == "llama4_text":
            # Llama4TextExperts: [E, h, 2f] gate_up_proj (gate first) and [E, f, h] down_proj, stored [in, out]
            m = re.fullmatch(r"(.*\.experts)\.(gate_up_proj|down_proj)", name)
            if m:
                prefix, kind = m.groups()
                for e in range(shape[0]):
                    if kind == "gate_up_proj":
                        f = shape[2] // 2
                        out[f"{prefix}.{e}.gate_proj.weight"] = out[f"{prefix}.{e}.up_proj.weight"] = (f, shape[1])
                    else:
                        out[f"{prefix}.{e}.down_proj.weight"] = (shape[2], shape[1])
                continue
        m = re.fullmatch(r"(.*\.experts)\.(gate_up_proj|down_proj)", name)
        if m:
            prefix, kind = m.groups()
            n_exp = shape[0]
            gate, up, down = ("w1", "w3", "w2") if mixtral else ("gate_proj", "up_proj", "down_proj")
            for e in range(n_exp):
                if kind == "gate_up_proj":
                    f = shape[1] // 2
                    out[f"{prefix}.{e}.{gate}.weight"] = (f, shape[2])
                    out[f"{prefix}.{e}.{up}.weight"] = (f, shape[2])
                else:
                    out[f"{prefix}.{e}.{down}.weight"] = (shape[1], shape[2])
            continue
        out[name] = shape
    return out


# Qwen vision-language wrappers; transformers 4 wrote Qwen2.5-VL's text keys at the top level
QWEN_VL = ("qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")


def hf_multimodal_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Every parameter of the whole multimodal model (``AutoModelForImageTextToText`` on the meta device), the
    language model's under the text model's own names (``model.language_model.X`` -> ``model.X``)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText
    from transformers.utils import logging

    logging.set_verbosity_error()
    cfg = dict(config)
    model_type = cfg.pop("model_type")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conf = AutoConfig.for_model(model_type, **cfg)
        with torch.device("meta"):
            model = AutoModelForImageTextToText.from_config(conf)
    out: dict[str, tuple[int, ...]] = {}
    for name, p in model.named_parameters():
        name, shape = re.sub(r"^model\.language_model\.", "model.", name), tuple(p.shape)
        m = re.fullmatch(r"(.*\.experts)\.(gate_up_proj|down_proj)", name)
        if m:  # Qwen3-VL-MoE: [E, 2f, h] gate_up_proj and [E, h, f] down_proj, listed per expert
            prefix, kind = m.groups()
            for e in range(shape[0]):
                if kind == "gate_up_proj":
                    out[f"{prefix}.{e}.gate_proj.weight"] = out[f"{prefix}.{e}.up_proj.weight"] = (
                        shape[1] // 2, shape[2])
                else:
                    out[f"{prefix}.{e}.down_proj.weight"] = shape[1:]
            continue
        out[name] = shape
    return out
