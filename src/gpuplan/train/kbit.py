"""PEFT's ``prepare_model_for_kbit_training`` on a QLoRA model (``--kbit-prepare on``).

The function (peft/utils/other.py) freezes the model and, for bitsandbytes models (it skips GPTQ, AQLM, EETQ,
HQQ and torchao ones), casts every fp16/bf16 parameter that is not a ``Params4bit`` to fp32: the embedding, the
output head, the norms and any bias. TRL's ``SFTTrainer`` calls it for every 4-bit model it is given that is not
sharded over FSDP / ZeRO-3 (trl ``prepare_peft_model``: ``is_qlora and not is_sharded_qlora``), and PEFT's QLoRA
guide calls it by hand.

What that changes, traced on the CPU with bitsandbytes' NF4 ``Linear4bit`` (``benchmarks/trace_kbit.py``):

- the unquantized parameters take 4 bytes per element instead of 2;
- the activations run in fp32: the embedding output is fp32, each norm multiplies its fp32 weight into the
  normalised input (an fp32 output), ``Linear4bit`` computes in its bf16 ``compute_dtype`` and casts the result
  back to its input's dtype (fp32), so the residual stream, the projections' outputs, the MLP's intermediates and
  the logits of the fp32 head are all fp32: activations and the loss region are sized with 4-byte elements.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpuplan.train.config import TrainConfig

FP32 = 4


def kbit_upcast(cfg: "TrainConfig") -> bool:
    """``prepare_model_for_kbit_training`` ran on a bitsandbytes QLoRA model whose 4-bit weights are not sharded
    (TRL skips it for FSDP / ZeRO-3 QLoRA, whose ``Params4bit`` storage is loaded on the host or the meta device)."""
    sharded = cfg.zero >= 3 or (cfg.framework == "torch" and cfg.zero >= 2)
    return bool(cfg.kbit_prepare) and cfg.method == "qlora" and cfg.qlora_base == "nf4" and not sharded


NOTE = ("prepare_model_for_kbit_training: the unquantized parameters (embedding, head, norms) and the activations "
        "in fp32 (gpuplan.train.kbit)")


def kbit_plain_bytes(cfg: "TrainConfig") -> int | None:
    """Bytes per element of the unquantized parameters when they were upcast (None: the recipe's)."""
    return FP32 if kbit_upcast(cfg) else None


def head_dequant_bytes(spec, cfg: "TrainConfig", compute_bytes: int, tp: int = 1) -> int:
    """The quantized output head's transient (``--qlora-head on``): each 4-bit matmul of the head dequantizes the
    whole weight in the dtype it was quantized from and casts it to the compute dtype (bitsandbytes ``MatMul4Bit``
    forward and backward: ``F.dequantize_4bit(B, quant_state).to(A.dtype)``). Lightning's plugin quantizes from
    fp16 (``_Linear4bit._quantize_weight``: ``weight.half()``), so a bf16 run holds an fp16 and a bf16 copy, 4 bytes
    per head element, while the head's forward or backward runs; an fp16 run only the one. 0 when the head is not
    quantized or the model ties it to the embedding."""
    if cfg.method != "qlora" or not cfg.qlora_head:
        return 0
    from gpuplan.model.tensors import tensor_table

    head = next((t for t in tensor_table(spec) if t.component == "lm_head" and len(t.shape) == 2), None)
    if head is None:
        return 0
    fp16_run = cfg.precision in ("fp16", "amp-fp16", "mixed-fp16")
    return head.numel // max(1, tp) * (2 + (0 if fp16_run else compute_bytes))
