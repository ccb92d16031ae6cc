"""The frozen 4-bit base that QLoRA trains adapters over (``--qlora-base``): bitsandbytes NF4 or a GPTQ checkpoint.

Storage per quantized [out, in] linear weight of n = out·in elements:

- nf4 (bitsandbytes ``Linear4bit``, the QLoRA paper's format, arXiv:2305.14314 section 3): n/2 bytes of codes plus
  one absmax per block of 64 (8-bit with an fp32 second-level constant per 256 blocks under double quantization,
  else fp32): ``gpuplan.train.peft.nf4_bytes``.
- gptq (AutoGPTQ ``QuantLinear`` buffers, auto_gptq/nn_modules/qlinear/qlinear_cuda_old.py, AutoGPTQ commit
  179776bd): ``qweight`` int32 [in·bits/32, out], ``qzeros`` int32 [⌈in/g⌉, out·bits/32], ``scales`` fp16
  [⌈in/g⌉, out] and ``g_idx`` int32 [in], g the checkpoint's ``quantization_config.group_size`` (Qwen-*-Chat-Int4:
  bits 4, group_size 128): ``gpuplan.infer.quant.quantized_matrix_bytes``, about n/2 + 2.5·n/g + 4·in bytes.

What each keeps in training (the activation model, ``gpuplan.train.activations.linear``):

- nf4: bitsandbytes' ``MatMul4Bit`` (bitsandbytes/autograd/_functions.py) dequantizes inside its own autograd
  function and saves only the quantization state, dequantizing again in backward: no weight-sized tensor is kept.
- gptq: the module's forward at 128 tokens or more (``kernel_switch_threshold``; always when built with
  ``trainable=True``, which disables the CUDA kernel) unpacks the weight with tensor ops and calls
  ``torch.matmul(x.half(), weight)`` on the fp16 result. The weight needs no gradient but the input does (LoRA,
  ``enable_input_require_grads``), so autograd keeps the dequantized fp16 weight for the input's gradient: 2·n
  bytes per quantized linear of each layer whose forward ran with grad (under full recomputation: the layer being
  recomputed; without recomputation: every layer). Qwen's finetune.py loads the Int4 checkpoints with
  ``GPTQConfig(bits=4, disable_exllama=True)``, i.e. this module. Not counted: the unpacking's transient int32
  and int8 copies of one weight (5·n bytes of the largest linear, freed within its forward).

PEFT's ``prepare_model_for_kbit_training`` casts the unquantized fp16/bf16 parameters to fp32 for bitsandbytes
models but skips GPTQ models (peft/utils/other.py, ``is_gptq_quantized``); gpuplan keeps them in the precision's
parameter dtype for both. The CPU cannot run either kernel: the kept weight is the ``torch.matmul`` saved-variable
rule that the CPU traces of ``gpuplan verify`` check for plain linears.
"""

from __future__ import annotations

from gpuplan.train.peft import nf4_bytes

GPTQ_BITS = 4


def base_weight_bytes(kind: str, numel: int, shape: tuple[int, ...], block: int = 64, double_quant: bool = True,
                      group_size: int = 128) -> int:
    """Bytes of ``numel`` elements of a quantized base weight of full ``shape`` [out, in] (a rank's share of a
    sharded or split tensor is that fraction of the whole tensor's GPTQ storage)."""
    if kind == "nf4":
        return nf4_bytes(numel, block, double_quant)
    from gpuplan.infer.quant import WeightFormat, quantized_matrix_bytes

    out_f, in_f = shape[0], shape[-1]
    fmt = WeightFormat("gptq", "gptq", dtype="fp16", bits=GPTQ_BITS, group_size=group_size)
    full = quantized_matrix_bytes(fmt, out_f, in_f)
    whole = out_f * in_f
    return full if numel == whole else -(-full * numel // whole)


def keeps_dequantized_weight(kind: str) -> bool:
    """Whether a quantized linear keeps its dequantized fp16 weight for backward (GPTQ's matmul does, NF4's
    ``MatMul4Bit`` does not; sources in the module docstring)."""
    return kind == "gptq"


def base_note(kind: str, block: int, double_quant: bool, group_size: int) -> str:
    """The assumption line naming the base format."""
    if kind == "gptq":
        return (f"QLoRA GPTQ int4 base, group size {group_size} (AutoGPTQ QuantLinear: qweight, qzeros, fp16 scales, "
                f"g_idx); each quantized linear's matmul keeps its dequantized fp16 weight for backward (2 bytes per "
                f"weight of every layer whose forward runs with grad)")
    return (f"QLoRA NF4 base, block {block}, double quantization {'on' if double_quant else 'off'}")
