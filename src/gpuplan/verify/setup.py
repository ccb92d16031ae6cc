"""What a verification run executes: the training step or the inference prefill, as plain typed options.

Torch-free, so the CLI can validate options (and fail with exit 2) before importing PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuplan.errors import InputError, require_positive_int

PRECISIONS = ("fp32", "bf16", "fp16", "amp-bf16")
OPTIMIZERS = ("adamw", "adam", "sgd", "sgdm")
OPTIMIZER_IMPLS = ("foreach", "fused", "for-loop")
RECOMPUTE_MODES = ("none", "full")
ATTENTIONS = ("sdpa", "eager")
METHODS = ("full", "freeze", "lora")
INFER_DTYPES = ("fp32", "bf16", "fp16")
# PEFT's shorthand for every Linear layer except the output head (peft.utils.constants,
# INCLUDE_LINEAR_LAYERS_SHORTHAND); the default of `gpuplan train --lora-targets`.
ALL_LINEAR = "all-linear"


def _choice(field: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(field, value, f"must be one of {', '.join(allowed)} for verify")


@dataclass(frozen=True)
class TrainSetup:
    """One steady-state training step on one GPU (no parallelism).

    ``precision``: ``fp32``; ``bf16``/``fp16`` = the model cast to half precision with a plain PyTorch optimizer
    (states in the parameter dtype); ``amp-bf16`` = fp32 parameters, gradients and states, forward and loss under
    ``torch.autocast``. ``recompute="full"`` is Hugging Face gradient checkpointing
    (``gradient_checkpointing_enable(use_reentrant=False)``). ``method="freeze"`` trains only the parameters whose
    Hugging Face name matches one of ``trainable`` (fnmatch globs); ``method="lora"`` adds rank-``lora_rank``
    adapters to the modules named ``lora_targets`` (or every Linear but the head: ``("all-linear",)``) and freezes
    the base model; ``lora_modules_to_save`` is PEFT's ``modules_to_save`` (modules trained in full beside the
    adapters, e.g. ``("embed_tokens", "lm_head")``). ``keep_logits``: the loop holds the model output (and its logits) through backward. ``zero_grad``: ``none`` frees the
    gradients after the step (``set_to_none=True``), ``zeros`` zero-fills them (``set_to_none=False``).
    """

    batch: int = 1
    seq: int = 512
    target_seq: int = 0  # an encoder-decoder's labels (the decoder's length); 0: seq
    precision: str = "bf16"
    optimizer: str = "adamw"
    optimizer_impl: str = "foreach"
    recompute: str = "none"
    attention: str = "sdpa"
    method: str = "full"
    trainable: tuple[str, ...] = ()
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_targets: tuple[str, ...] = (ALL_LINEAR,)
    lora_dropout: float = 0.0
    lora_modules_to_save: tuple[str, ...] = ()
    keep_logits: bool = False
    zero_grad: str = "none"

    def __post_init__(self) -> None:
        require_positive_int("batch", self.batch)
        require_positive_int("seq", self.seq)
        require_positive_int("lora_rank", self.lora_rank)
        _choice("precision", self.precision, PRECISIONS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("optimizer_impl", self.optimizer_impl, OPTIMIZER_IMPLS)
        _choice("recompute", self.recompute, RECOMPUTE_MODES)
        _choice("attention", self.attention, ATTENTIONS)
        _choice("method", self.method, METHODS)
        _choice("zero_grad", self.zero_grad, ("none", "zeros"))
        if self.method == "freeze" and not self.trainable:
            raise InputError("trainable", "", "method freeze needs at least one glob of trainable parameter names")
        if self.method == "lora" and not self.lora_targets:
            raise InputError("lora_targets", "", "method lora needs at least one target module name")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise InputError("lora_dropout", self.lora_dropout, "must be in [0, 1)")

    @property
    def param_dtype(self) -> str:
        """Dtype the model's parameters are stored in."""
        return {"fp32": "fp32", "amp-bf16": "fp32", "bf16": "bf16", "fp16": "fp16"}[self.precision]


@dataclass(frozen=True)
class PrefillSetup:
    """One inference prefill: ``model.eval()``, ``torch.no_grad()``, an empty ``DynamicCache`` filled with
    ``batch`` sequences of ``context`` tokens, and logits for the last position only (``logits_to_keep=1``),
    as ``generate()`` does before the first new token."""

    batch: int = 1
    context: int = 2048
    dtype: str = "bf16"
    attention: str = "sdpa"
    # an encoder-decoder's decoder tokens at its last traced step (the first step and one decode step: 2)
    target: int = 2

    def __post_init__(self) -> None:
        require_positive_int("batch", self.batch)
        require_positive_int("context", self.context)
        if isinstance(self.target, bool) or not isinstance(self.target, int) or self.target < 2:
            raise InputError("--target-seq", self.target, "must be an integer >= 2 (the decoder's first step and "
                             "one decode step)")
        _choice("weights", self.dtype, INFER_DTYPES)
        _choice("attention", self.attention, ATTENTIONS)
