"""What the activation model of one step depends on: element sizes, switches, and the few layer facts the
single-GPU engine and the per-rank (parallel) estimate both use."""

from __future__ import annotations

from gpuplan.model.spec import ModelSpec
from gpuplan.errors import InputError
from gpuplan.train.activations import ActContext
from gpuplan.train.compiled import compile_modelled
from gpuplan.train.config import TrainConfig
from gpuplan.train.litgpt_acts import supports_own_module
from gpuplan.train.precision import Recipe
from gpuplan.train.quantbase import keeps_dequantized_weight
from gpuplan.train.states import lora_param_bytes
from gpuplan.versions import FALCON_SDPA_MATH, transformers_release

# The first module whose weight gradient a layer's backward creates (the MLP's output projection), and the modules
# whose gradients exist once backward has passed the attention core.
MLP_FIRST = ("down_proj", "w2", "dense_4h_to_h")
AFTER_ATTN_CORE = ("o_proj", "dense", "post_attention_layernorm", "ln_2", "shared_expert_gate")


def activation_context(cfg: TrainConfig, recipe: Recipe, spec: ModelSpec | None = None) -> ActContext:
    """Element sizes and switches of the activation model. Dropout: ``--dropout`` or, when larger, the model
    config's own residual / embedding dropout (GPT-2's ``resid_pdrop`` 0.1), which a Hugging Face run applies."""
    dropout = max(cfg.dropout, spec.hidden_dropout if spec is not None else 0.0)
    impl = model_impl(spec, cfg)
    from gpuplan.train.kbit import FP32, kbit_upcast

    kbit = kbit_upcast(cfg)  # fp32 activations after prepare_model_for_kbit_training (gpuplan.train.kbit)
    return ActContext(e=FP32 if kbit else recipe.compute_bytes, r=FP32 if kbit else recipe.residual_bytes,
                      amp=recipe.autocast,
                      fp8=recipe.fp8_activations, attention=attention_path(cfg, spec),
                      dropout=dropout, lora_rank=cfg.lora_rank, lora_bytes=lora_param_bytes(cfg, recipe),
                      lora_dropout=cfg.lora_dropout > 0, selective=cfg.act_mode == "selective",
                      batched=cfg.batch > 1,
                      dequant_kept=cfg.method == "qlora" and keeps_dequantized_weight(cfg.qlora_base),
                      bnb_input_kept=bnb_keeps_input(cfg),
                      bnb_head_kept=bnb_keeps_input(cfg) and bool(cfg.qlora_head),
                      window_mask=spec is not None and spec.sliding_window is not None
                      and (cfg.seq > spec.sliding_window or _chunked(spec)),
                      fused_gelu=cfg.framework == "megatron", model_impl=impl,
                      repeat_kv=impl == "torchtitan" and spec is not None and spec.num_kv_heads // cfg.tp > 1,
                      compiled=bool(cfg.compile) and impl == "hf" and spec is not None
                      and compile_modelled(spec, cfg.act_mode, cfg.tp),
                      **release_switches(spec, cfg))


def bnb_keeps_input(cfg: TrainConfig) -> bool:
    """QLoRA over an NF4 base run with a bitsandbytes release whose 4-bit matmul keeps its input
    (``gpuplan.versions.BNB_MATMUL4BIT_KEEPS_INPUT``); no release given: the newest behaviour."""
    from gpuplan.versions import BNB_MATMUL4BIT_KEEPS_INPUT, bitsandbytes_release

    if cfg.method != "qlora" or cfg.qlora_base != "nf4" or not cfg.bitsandbytes_version:
        return False
    return BNB_MATMUL4BIT_KEEPS_INPUT.holds(bitsandbytes_release(cfg.bitsandbytes_version))


def model_impl(spec: ModelSpec | None, cfg: TrainConfig) -> str:
    """Whose modelling code runs the layers: ``cfg.model_impl`` where that code covers the model. A stack's default
    that does not (litgpt's or torchtitan's Llama module for another layout) leaves transformers' code (a warning says so,
    ``gpuplan.train.explain``); ``--model-impl`` given for such a model is an InputError."""
    impl = cfg.model_impl or "hf"
    if impl == "hf" or spec is None:
        return impl
    why = supports_own_module(spec, impl)
    if why is None:
        return impl
    if "model_impl" not in cfg.resolved_fields:
        raise InputError("--model-impl", impl, why, hint="use --model-impl hf")
    return "hf"


def attention_path(cfg: TrainConfig, spec: ModelSpec | None) -> str:
    """The attention code a step runs: ``flash`` is estimated as SDPA's flash kernel; MPT has no SDPA path in
    transformers (``MptAttention`` computes its ALiBi scores in eager matmuls), so ``sdpa`` runs eager there, while
    ``flash`` stands for MosaicML's own fused kernels (llm-foundry ``attn_impl: flash`` or ``triton``)."""
    if spec is not None and spec.layout == "mpt" and cfg.attention == "sdpa":
        return "eager"
    return "sdpa" if cfg.attention == "flash" else cfg.attention


def _chunked(spec: ModelSpec) -> bool:
    """Llama 4 builds its chunked mask whatever the sequence length (traced, transformers 5.23: a [b, 1, s, s]
    mask and K/V repeated to the query heads on the chunked layers even when s <= chunk)."""
    return any(spec.is_chunked_layer(i) for i in range(spec.num_layers))


def release_switches(spec: ModelSpec | None, cfg: TrainConfig) -> dict[str, bool]:
    """Switches that follow the modelling code of the transformers release the run uses (gpuplan.versions).
    Falcon materialises its causal mask in every release traced (``FalconModel.forward``: ``create_causal_mask(...,
    allow_is_causal_skip=False)``, so ALiBi can be added to it); its multi-query layers ran the math kernel up to
    5.24."""
    falcon = spec is not None and spec.layout == "falcon"
    release = transformers_release(cfg.transformers_version)
    return {"full_mask": falcon, "mqa_math": falcon and FALCON_SDPA_MATH.holds(release),
            "softmax_keeps_input": softmax_keeps_input(cfg)}


def softmax_keeps_input(cfg: TrainConfig) -> bool:
    """PyTorch before 1.11 keeps softmax's input for backward (``gpuplan.versions.TORCH_SOFTMAX_KEEPS_INPUT``); no
    release given: the traced one's behaviour."""
    from gpuplan.versions import TORCH_SOFTMAX_KEEPS_INPUT, torch_release

    return bool(cfg.torch_version) and TORCH_SOFTMAX_KEEPS_INPUT.holds(torch_release(cfg.torch_version))


def norm_bwd_per_token(spec: ModelSpec, c: ActContext) -> int:
    """Temporaries of a norm's backward beyond the incoming gradient (traced): Hugging Face RMSNorm's Python
    backward peaks with four fp32 h-sized tensors plus, for a half input, the half copy of the upcast gradient:
    (20 - 2r)·h per token with r the residual dtype size; LayerNorm's fused kernel only writes grad_input."""
    if spec.norm == "rmsnorm":
        return (20 - 2 * c.r) * spec.hidden_size
    return c.e * spec.hidden_size
