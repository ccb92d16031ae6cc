"""Build the real Hugging Face transformers model from a ``config.json`` dict, with random weights.

Must be called inside a ``FakeTensorMode``: parameters are then fake tensors on a fake ``cpu`` device and no
memory is used. Nothing is downloaded and no remote code runs (``AutoConfig.for_model`` only knows the model types
built into transformers).
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gpuplan.errors import InputError
from gpuplan.model.hf_config import ENCODER_DECODER_TYPES
from gpuplan.model.hf_families import t5_head_tied
from gpuplan.model.spec import ModelSpec
from gpuplan.verify.setup import TrainSetup

TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def hf_config(config: dict[str, Any], attention: str):
    """A transformers ``PretrainedConfig`` for ``config`` (a config.json dict with ``model_type``)."""
    from transformers import AutoConfig

    cfg = dict(config)
    model_type = cfg.pop("model_type", None)
    if not model_type:
        raise InputError("config.model_type", None, "is required to build the model in PyTorch")
    if model_type == "gemma3" and isinstance(cfg.get("text_config"), dict):
        model_type, cfg = "gemma3_text", dict(cfg["text_config"])
        cfg.pop("model_type", None)
    if cfg.get("q_lora_rank") == 0:  # presets write config.json's null as 0 (TOML has no null)
        cfg["q_lora_rank"] = None
    if model_type == "mistral":  # presets omit config.json's `"sliding_window": null`; MistralConfig's default is 4096
        cfg.setdefault("sliding_window", None)
    if model_type in ENCODER_DECODER_TYPES:  # presets drop token ids; T5 decodes from the pad token (0 in every release)
        cfg.setdefault("decoder_start_token_id", cfg.get("pad_token_id", 0))
    for key in ("architectures", "auto_map", "quantization_config", "torch_dtype", "dtype", "transformers_version"):
        cfg.pop(key, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            conf = AutoConfig.for_model(model_type, **cfg)
        except ValueError as exc:
            raise InputError("config.model_type", model_type, f"transformers cannot build it ({exc})") from None
    conf._attn_implementation = attention
    conf.use_cache = False
    return conf


def build_model(config: dict[str, Any], *, dtype: str, attention: str):
    """``AutoModelForCausalLM.from_config`` in ``dtype`` (fp32 | bf16 | fp16) with the given attention; an
    encoder-decoder config (``is_encoder_decoder``, e.g. T5) is built with ``AutoModelForSeq2SeqLM``, whose
    ``forward(input_ids, labels)`` runs the encoder and the decoder (decoder inputs: the labels shifted right).

    A model class without an SDPA path in transformers (Gemma 2) gets eager attention, as transformers itself
    falls back to when no implementation is requested; ``model.config._attn_implementation`` says which ran."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    torch_dtype = getattr(torch, TORCH_DTYPES[dtype])
    if config.get("model_type") in ("bert", "roberta"):
        return build_encoder(config, torch_dtype, attention)
    if config.get("model_type") in VL_TEXT:
        return build_vl_text(config, torch_dtype, attention)
    auto = AutoModelForSeq2SeqLM if is_encoder_decoder(config) else AutoModelForCausalLM
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = auto.from_config(hf_config(config, attention), dtype=torch_dtype, attn_implementation=attention)
        except ValueError as exc:
            if attention != "sdpa" or "scaled_dot_product_attention" not in str(exc):
                raise
            attention = "eager"
            model = auto.from_config(hf_config(config, attention), dtype=torch_dtype, attn_implementation=attention)
    untie_as_checkpoint(model, config)
    return model


def untie_as_checkpoint(model, config: dict[str, Any]) -> None:
    """Give a T5-family output head its own weight where the checkpoint stores one
    (:func:`gpuplan.model.hf_families.t5_head_tied`) and transformers tied it anyway. transformers 5 forces
    T5-family configs to tie (``T5Config.__post_init__`` sets ``tie_word_embeddings = True`` and keeps the written
    false only as ``scale_decoder_outputs``), so ``from_config`` shares ``lm_head`` with ``shared``;
    ``from_pretrained`` of a checkpoint that stores both (T5 v1.1, Flan-T5, mT5) leaves them apart
    (``PreTrainedModel.tie_weights``: both present with different values, not tied). The model here is the loaded
    one."""
    import torch

    if config.get("model_type") not in ENCODER_DECODER_TYPES or t5_head_tied(config):
        return
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    if out is not None and inp is not None and out.weight is inp.weight:
        out.weight = torch.nn.Parameter(inp.weight.detach().clone())
        getattr(model, "all_tied_weights_keys", {}).pop("lm_head.weight", None)


# language models of multimodal families that transformers builds only inside their image-text model (no
# ...ForCausalLM class for the text config): the text_config's model_type -> the multimodal model_type
VL_TEXT = {"qwen2_5_vl_text": "qwen2_5_vl", "qwen3_vl_text": "qwen3_vl", "qwen3_vl_moe_text": "qwen3_vl_moe"}


def build_vl_text(config: dict[str, Any], torch_dtype, attention: str):
    """The language model of a Qwen2.5-VL / Qwen3-VL config as it trains inside its image-text model: the
    ``...ForConditionalGeneration`` built around ``config`` (its text_config) with the vision tower removed, so the
    parameters, gradients and states are the text model's and a text-only forward (no ``pixel_values``: the model
    never calls the tower) runs its decoder layers, multimodal rotary positions included, and its head."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    text = {k: v for k, v in config.items()
            if k not in ("model_type", "architectures", "torch_dtype", "dtype", "transformers_version")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conf = AutoConfig.for_model(VL_TEXT[config["model_type"]], text_config=text,
                                    tie_word_embeddings=bool(text.get("tie_word_embeddings", False)))
        conf.use_cache = False
        conf.get_text_config().use_cache = False
        model = AutoModelForImageTextToText.from_config(conf, dtype=torch_dtype, attn_implementation=attention)
    model.model.visual = None
    return model


def is_encoder_decoder(config: dict[str, Any]) -> bool:
    """Whether transformers builds ``config`` as an encoder-decoder (its config class sets ``is_encoder_decoder``,
    as ``T5Config`` does by default)."""
    if "is_encoder_decoder" in config:
        return bool(config["is_encoder_decoder"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool(getattr(hf_config(config, "eager"), "is_encoder_decoder", False))
        except InputError:
            return False


def encoder_is_mlm(config: dict[str, Any]) -> bool:
    """The head an encoder's ``architectures`` name (as ``gpuplan.model.hf_config``): masked LM or classification."""
    return any(str(a).endswith("ForMaskedLM") for a in config.get("architectures") or [])


def build_encoder(config: dict[str, Any], torch_dtype, attention: str):
    """BERT / RoBERTa with the head gpuplan counts: ``AutoModelForMaskedLM`` for ``*ForMaskedLM`` architectures,
    else ``AutoModelForSequenceClassification`` (``num_labels`` from the config)."""
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    cls = AutoModelForMaskedLM if encoder_is_mlm(config) else AutoModelForSequenceClassification
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls.from_config(hf_config(config, attention), dtype=torch_dtype, attn_implementation=attention)


def encoder_head(model):
    """The module whose forward starts an encoder's loss region: the classifier, or the masked-LM decoder."""
    if hasattr(model, "classifier"):
        return model.classifier
    return model.get_output_embeddings()


def prepare_for_training(model, setup: TrainSetup):
    """Apply recompute, freezing or LoRA; returns the module to train (a PEFT wrapper for LoRA)."""
    model.train()
    if setup.recompute == "full":
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if setup.method == "freeze":
        matched = 0
        for name, p in model.named_parameters():
            keep = any(fnmatch.fnmatchcase(name, g) for g in setup.trainable)
            p.requires_grad_(keep)
            matched += keep
        if not matched:
            raise InputError("trainable", ",".join(setup.trainable), "matches no parameter name of this model",
                             hint="names look like model.layers.0.self_attn.q_proj.weight")
    elif setup.method == "lora":
        model = add_lora(model, setup)
    return model


def add_lora(model, setup: TrainSetup):
    """PEFT LoRA with its defaults (``bias="none"``; ``modules_to_save`` from the setup, adapters upcast to fp32 when the base model is bf16/fp16:
    ``get_peft_model(autocast_adapter_dtype=True)``)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise InputError("method", "lora", "verifying LoRA needs PEFT: pip install 'gpuplan[verify]'") from None
    from gpuplan.verify.setup import ALL_LINEAR

    if ALL_LINEAR in setup.lora_targets:
        targets: str | list[str] = ALL_LINEAR
    else:
        names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        missing = [t for t in setup.lora_targets if t not in names]
        if missing:
            raise InputError("lora_targets", ",".join(missing), "are not module names of this model")
        targets = list(setup.lora_targets)
    leaves = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    unknown = [m for m in setup.lora_modules_to_save if m not in leaves]
    if unknown:
        raise InputError("lora_modules_to_save", ",".join(unknown), "are not module names of this model")
    lcfg = LoraConfig(r=setup.lora_rank, lora_alpha=setup.lora_alpha, target_modules=targets,
                      lora_dropout=setup.lora_dropout, bias="none", task_type="CAUSAL_LM",
                      modules_to_save=list(setup.lora_modules_to_save) or None)
    from gpuplan.verify.patches import module_to_patch

    with module_to_patch(), fake_parameter_deepcopy(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*did not match any targeted module")
        return get_peft_model(model, lcfg)



@contextmanager
def fake_parameter_deepcopy() -> Iterator[None]:
    """PEFT's ``ModulesToSaveWrapper`` deep-copies each module to save (peft/utils/other.py); ``Tensor.__deepcopy__``
    reads ``data_ptr()`` of the fake parameters and lands in a fresh ``FakeTensorMode``. While PEFT wraps the model,
    a copied parameter is a new one of the same shape, dtype and ``requires_grad`` in the active mode."""
    import torch

    saved = torch.Tensor.__deepcopy__

    def deepcopy(self, memo):
        if not isinstance(self, torch.nn.Parameter):
            return saved(self, memo)
        if id(self) not in memo:
            memo[id(self)] = torch.nn.Parameter(torch.empty(self.shape, dtype=self.dtype), self.requires_grad)
        return memo[id(self)]

    torch.Tensor.__deepcopy__ = deepcopy
    try:
        yield
    finally:
        torch.Tensor.__deepcopy__ = saved

def config_from_spec(spec: ModelSpec) -> dict[str, Any]:
    """A Llama / Mixtral / GPT-NeoX ``config.json`` dict for a model given only by raw dimensions."""
    if spec.layout == "gpt_neox":
        return {"model_type": "gpt_neox", "hidden_size": spec.hidden_size, "num_hidden_layers": spec.num_layers,
                "num_attention_heads": spec.num_heads, "intermediate_size": spec.ffn_size,
                "vocab_size": spec.vocab_size, "max_position_embeddings": spec.max_position,
                "tie_word_embeddings": spec.tie_embeddings, "rotary_pct": 1.0}
    cfg: dict[str, Any] = {
        "model_type": "mixtral" if spec.moe else "llama", "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_layers, "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads, "head_dim": spec.head_dim, "intermediate_size": spec.ffn_size,
        "vocab_size": spec.vocab_size, "max_position_embeddings": spec.max_position,
        "tie_word_embeddings": spec.tie_embeddings}
    if spec.moe:
        cfg.update(num_local_experts=spec.moe.num_experts, num_experts_per_tok=spec.moe.top_k,
                   intermediate_size=spec.moe.expert_ffn_size)
    return cfg
