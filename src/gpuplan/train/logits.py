"""Logits and the cross-entropy loss: often the largest single term for 128k-256k vocabularies.

Hugging Face ``ForCausalLMLoss`` (transformers ``loss/loss_utils.py``) upcasts the logits with ``logits.float()``
and calls ``cross_entropy`` = ``log_softmax`` + ``nll_loss``; ``log_softmax`` keeps its fp32 output for backward.
With T = b·s tokens, V the vocabulary and e the logits' dtype size (2 in bf16, 4 in fp32), traces show:

- forward high-water mark: half logits + fp32 logits + log-softmax output = (e + 4 + 4)·T·V (8·T·V in fp32, where
  ``.float()`` returns the same tensor);
- saved until backward: the log-softmax output, 4·T·V;
- start of backward: ``nll_loss`` backward's gradient, ``log_softmax`` backward's output and the saved output:
  12·T·V bytes, the peak of the loss region.

Gemma 2's final soft-capping (``logits = tanh(logits / cap) * cap`` in the logits' dtype before the loss,
transformers ``Gemma2ForCausalLM.forward``) adds the tanh output, which autograd keeps until the start of backward:
e·T·V more in each of the three figures (traced).

A training loop that keeps ``outputs.logits`` alive (``keep_logits``) adds e·T·V through the backward.
Loss parallel (``vocab_parallel``: torch ``loss_parallel()`` over logits sharded on the vocabulary, V = the rank's
columns) runs the decomposition of torch/distributed/tensor/parallel/loss.py instead of the fused kernels:
``_log_softmax`` keeps the fp32 input, ``shifted = x - max`` and ``exp(shifted)`` beside the result, so the forward
high-water mark is (e + 4 + 4 + 4)·T·V; the saved result is 4·T·V; ``_nll_loss_and_log_softmax_backward`` holds the
saved result, ``zeros_like`` (the one-hot gradient), ``exp(x)`` and their sum, 16·T·V.

Chunked or fused cross-entropy (e.g. Liger-Kernel's fused linear cross-entropy) never holds more than one chunk of
logits: the same factors apply to ``chunk`` tokens instead of T.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpuplan.model.spec import ModelSpec
    from gpuplan.train.config import TrainConfig
    from gpuplan.train.precision import Recipe
    from gpuplan.versions import VersionRule


@dataclass(frozen=True)
class LossMemory:
    forward_peak_bytes: int  # loss-region tensors at their forward high-water mark
    saved_bytes: int  # kept from the end of forward to the start of backward
    backward_peak_bytes: int  # loss-region tensors at the start of backward
    formula: str


def loss_upcasts(spec: ModelSpec, recipe: Recipe) -> bool:
    """Whether the loss reads fp32 logits: a causal LM's ``ForCausalLMLoss`` upcasts them itself; an encoder's
    masked-LM head calls ``CrossEntropyLoss`` on the logits as they come, so only autocast upcasts them
    (``cross_entropy`` runs in fp32 under ``torch.autocast``, CUDA and CPU: autocast_mode.cpp's fp32 list; traced,
    RoBERTa-base under amp-bf16 holds 12·T·V bytes at the start of backward)."""
    return spec.layout != "bert" or recipe.autocast


def loss_release_rule(spec: ModelSpec, cfg: TrainConfig) -> VersionRule | None:
    """The rule of an older transformers release that shapes the causal LM loss forward (``gpuplan.versions``):
    ``LOSS_IN_MODEL_FORWARD`` (before 4.46, the model's own forward upcasts in place and copies the shifted logits),
    ``LOSS_SHIFT_COPY`` (4.46-4.48, ForCausalLMLoss copies them while the model holds the half logits) or None (4.49
    on: labels padded, no copy). Only for transformers' own modelling code and its standard loss."""
    from gpuplan.train.context import model_impl
    from gpuplan.versions import LOSS_IN_MODEL_FORWARD, LOSS_SHIFT_COPY, transformers_release

    if spec.layout == "bert" or cfg.loss_impl != "standard" or model_impl(spec, cfg) != "hf":
        return None
    release = transformers_release(cfg.transformers_version)
    return next((r for r in (LOSS_IN_MODEL_FORWARD, LOSS_SHIFT_COPY) if r.holds(release)), None)


def loss_shift_copy(spec: ModelSpec, cfg: TrainConfig) -> str:
    """``loss_memory``'s ``shift_copy`` for the release: "forward", "function" or "" (``loss_release_rule``)."""
    from gpuplan.versions import LOSS_IN_MODEL_FORWARD, LOSS_SHIFT_COPY

    rule = loss_release_rule(spec, cfg)
    return {LOSS_IN_MODEL_FORWARD: "forward", LOSS_SHIFT_COPY: "function"}.get(rule, "") if rule else ""


def loss_memory(tokens: int, vocab: int, logits_bytes: int, *, impl: str = "standard", chunk_tokens: int = 1024,
                keep_logits: bool = False, hidden: int = 0, softcap: bool = False,
                vocab_parallel: bool = False, upcast: bool = True, shift_copy: str = "") -> LossMemory:
    """Bytes of the loss region for ``tokens`` tokens over a ``vocab``-sized (per-rank) vocabulary. ``upcast``
    False: the loss reads the logits in their own dtype (BERT's masked-LM head calls ``CrossEntropyLoss`` on them,
    transformers ``BertForMaskedLM.forward``): forward logits + log-softmax output 2e·T·V, saved e·T·V, backward
    3e·T·V (traced in bf16; the same as the upcast figures in fp32)."""
    e = logits_bytes
    if impl == "standard" and not upcast and not vocab_parallel:
        tv = tokens * vocab
        held = e * tv if keep_logits else 0
        return LossMemory(2 * e * tv, e * tv + held, 3 * e * tv + held,
                          f"loss on {e}-byte logits: fwd 2e·T·V; saved e·T·V; bwd 3e·T·V (T={tokens}, V={vocab})")
    if impl == "standard" and vocab_parallel:
        tv = tokens * vocab
        held = (e * tv if keep_logits else 0) + (e * tv if softcap else 0)
        return LossMemory((e + 12) * tv + (e * tv if softcap else 0), 4 * tv + held, 16 * tv + held,
                          f"loss parallel: fwd (e+12)·T·V; saved 4·T·V; bwd 16·T·V (T={tokens}, V={vocab} per rank)")
    if impl == "standard":
        tv = tokens * vocab
        held = (e * tv if keep_logits else 0) + (e * tv if softcap else 0)
        fwd = (e + 8 if e < 4 else 8) * tv + (e * tv if softcap else 0)
        formula = f"fwd ({e}+4+4 if half else 8)·T·V; saved 4·T·V; bwd 12·T·V (T={tokens}, V={vocab})"
        if shift_copy == "forward":  # transformers < 4.46: the half logits dropped, the fp32 shift copy made
            fwd = 12 * tv + (e * tv if softcap else 0)
            formula = f"fwd 12·T·V (fp32 logits, shifted copy, log-softmax); bwd 12·T·V (T={tokens}, V={vocab})"
        elif shift_copy == "function":  # 4.46-4.48: the model keeps the half logits beside the copy
            fwd = ((e if e < 4 else 0) + 12) * tv + (e * tv if softcap else 0)
            formula = f"fwd ({e} if half)+12·T·V (the shifted fp32 copy); bwd 12·T·V (T={tokens}, V={vocab})"
        return LossMemory(fwd, 4 * tv + held, 12 * tv + held, formula)
    chunk = min(tokens, chunk_tokens)
    cv = chunk * vocab
    if impl == "chunked-held":
        return chunked_held_loss(tokens, vocab, e, chunk)
    fwd = (e + 8 + (e if softcap else 0) if e < 4 else 8 + (e if softcap else 0)) * cv
    # fused linear cross-entropy computes the hidden-state gradient during forward and keeps it (T·h·e)
    saved = e * tokens * hidden if impl == "fused" else 0
    return LossMemory(fwd, saved, 12 * cv + saved,
                      f"{impl} cross-entropy over chunks of {chunk} tokens: fwd (e+8)·chunk·V, bwd 12·chunk·V")


def chunked_held_loss(tokens: int, vocab: int, e: int, chunk: int) -> LossMemory:
    """litgpt's loss (``--loss chunked-held``): the head's logits all exist at once in the compute dtype (litgpt
    0.5.3 ``lora.py`` ``GPT.forward`` returns ``[self.lm_head(x_i) for x_i in x.split(128, dim=1)]``; ``full.py``
    one tensor) and the fine-tuning loop holds them through backward (``finetune/lora.py``: ``logits = model(...)``,
    then ``chunked_cross_entropy(logits, ...)`` and ``fabric.backward`` in the same scope); ``utils.py``
    ``chunked_cross_entropy`` runs ``F.cross_entropy`` on each 128-token chunk in that dtype, whose log-softmax
    output every chunk keeps for backward. Forward: logits and log-probabilities, 2e·T·V; saved: both; backward, at
    the first chunk's: both, and that chunk's two gradients (the log-softmax's and the logits'), 2e·c·V."""
    tv, cv = tokens * vocab, chunk * vocab
    return LossMemory(2 * e * tv, 2 * e * tv, 2 * e * tv + 2 * e * cv,
                      f"chunked-held cross-entropy over chunks of {chunk} tokens, logits held: fwd 2e·T·V, saved "
                      f"2e·T·V, bwd 2e·T·V + 2e·chunk·V (T={tokens}, V={vocab}, chunk={chunk})")
