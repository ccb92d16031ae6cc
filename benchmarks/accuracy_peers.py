"""Other tools' memory answers for the accuracy suite's configurations ("—" where a tool cannot answer).

- Hugging Face accelerate ``accelerate estimate-memory`` (package ``accelerate``, extra ``bench``): the model's
  fp32 size from an empty (meta) model via ``accelerate.utils.calculate_maximum_sizes`` and the training figure
  ``max(estimate_training_usage(size, dtype).values())`` ("Training using Adam"), exactly as
  ``accelerate/commands/estimate.py`` computes them; inference: the weights in the dtype ("Total Size"; the CLI
  halves only for ``float16``, which has bf16's size). It knows no batch, sequence, LoRA or sharding.
- DeepSpeed's model-state estimators (package ``deepspeed`` installs and imports on this CPU machine, extra
  ``bench``): ``estimate_zero2_model_states_mem_needs`` (one GPU, no offload) and, for FSDP rows,
  ``estimate_zero3_model_states_mem_needs`` (no offload) — model states only, for DeepSpeed's mixed-precision
  recipe, no activations.
- Megatron-LM ``megatron/training/theoretical_memory_usage.py`` (not a pip package; formulas reproduced from that
  file and Korthikanti et al. 2022, arXiv:2205.05198, Table 2): 18 bytes per parameter (no distributed optimizer)
  divided by TP, plus ``compute_activation_memory_without_sp``: per layer ``s·b·h·(10 + 24/tp)``, embeddings
  ``8·s·b + s·b·h``, output ``2·(s·b·V/tp + s·b·h)``, all × 1.05. gpuplan's exact parameter count stands in for
  Megatron's own parameter formula. It knows no LoRA, freezing or FSDP.
"""

from __future__ import annotations

import warnings
from typing import Any

_MEGATRON_BYTES_PER_PARAM = 18  # bf16 param + fp32 grad + fp32 master + 2 fp32 Adam states (no distributed opt.)
_MEGATRON_OVERHEAD = 1.05  # the file's own "buffer for optimizer and miscellaneous temporaries"


def model_sizes(config: dict[str, Any]) -> tuple[int, int]:
    """(fp32 bytes of parameters + buffers, fp32 bytes of the largest layer), as accelerate measures them."""
    import torch
    from accelerate import init_empty_weights
    from accelerate.utils import calculate_maximum_sizes
    from transformers import AutoModelForCausalLM

    from gpuplan.verify.build import hf_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with init_empty_weights():
            model = AutoModelForCausalLM.from_config(hf_config(config, "eager"), dtype=torch.float32)
    total, largest = calculate_maximum_sizes(model)
    return int(total), int(largest[0])


def accelerate_bytes(total_fp32_bytes: int, kind: str, precision: str) -> int | None:
    """accelerate estimate-memory's answer for a training row (full fine-tuning only) or an inference row."""
    from accelerate.commands.estimate import estimate_training_usage

    if kind == "infer":
        return total_fp32_bytes // 2 if precision in ("bf16", "fp16") else total_fp32_bytes
    if kind != "train":
        return None
    dtype = "float32" if precision == "fp32" else "bfloat16"
    return int(max(estimate_training_usage(total_fp32_bytes, dtype).values()))


def deepspeed_bytes(params: int, largest_layer_params: int, kind: str, world: int) -> int | None:
    """DeepSpeed's per-GPU model-state estimate: ZeRO-2 on one GPU, ZeRO-3 over ``world`` GPUs (no offload)."""
    import logging

    logging.getLogger("DeepSpeed").setLevel(logging.ERROR)
    if kind == "train":
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

        _cpu, gpu = estimate_zero2_model_states_mem_needs(params, num_gpus_per_node=1, num_nodes=1,
                                                          cpu_offload=False)
        return int(gpu)
    if kind == "fsdp2":
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

        _cpu, gpu, _largest = estimate_zero3_model_states_mem_needs(
            params, largest_layer_params, num_gpus_per_node=world, num_nodes=1, cpu_offload=False,
            cpu_offload_params=False)
        return int(gpu)
    return None


def megatron_bytes(params: int, *, kind: str, batch: int, seq: int, hidden: int, layers: int, vocab: int,
                   tp: int = 1) -> int | None:
    """Megatron-LM theoretical_memory_usage (tp, pp=1, no sequence parallelism, no distributed optimizer)."""
    if kind not in ("train", "tp"):
        return None
    sbh = seq * batch * hidden
    weights_and_optimizer = params * _MEGATRON_BYTES_PER_PARAM / tp
    activations = sbh * (10 + 24 / tp) * layers + 8 * seq * batch + sbh
    activations += (seq * batch * vocab / tp + sbh) * 2
    return int(weights_and_optimizer + activations * _MEGATRON_OVERHEAD)
