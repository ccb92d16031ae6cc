"""Precision recipes: the bytes each model-state tensor takes per parameter, and the dtypes of the compute.

| recipe | weights | grads | master | states dtype | compute | source |
|---|---|---|---|---|---|---|
| fp32 | 4 | 4 | 0 | 4 | 4 | plain PyTorch |
| bf16 / fp16 | 2 | 2 | 0 | 2 | 2 | ``model.to(bfloat16)`` + a torch.optim optimizer: ``torch.zeros_like(param)`` states take the parameter dtype (torch/optim/adamw.py ``_init_group``) |
| amp-bf16 / amp-fp16 | 4 | 4 | 0 | 4 | 2 | ``torch.autocast``: fp32 parameters, half compute; autocast caches a half copy of each weight it casts (aten/src/ATen/autocast_mode.cpp ``cached_cast``) |
| mixed-bf16 / mixed-fp16 | 2 | 2 | 4 | 4 | 2 | ZeRO paper (Rajbhandari et al. 2020, section 3.1): 2 + 2 + K=12 = 16 bytes/param |
| megatron (any half recipe) | 2 | 4 | 4 | 4 | 2 | Megatron-LM ``theoretical_memory_usage.py``: bf16 params, fp32 main grads, fp32 main params + Adam = 18 bytes/param |
| fp8 | 2 (+2: fp8 copies of linear weights, row- and column-wise) | 2 | 4 | 4 | 1 for linear inputs | Transformer Engine on Hopper: fp8 weight cache and its transpose, fp8-saved linear inputs (``te.Linear``, ``fp8_model_init`` off) |
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuplan.errors import InputError


@dataclass(frozen=True)
class Recipe:
    name: str
    param_bytes: int  # bytes per parameter of the weights the model holds (trainable and frozen)
    grad_bytes: int  # bytes per trainable parameter of the gradients
    master_bytes: int  # bytes per trainable parameter of fp32 master weights (0 = the weights are the master)
    state_bytes: int  # bytes per element of optimizer states (fp32 = 4; torch.optim uses the parameter dtype)
    compute_bytes: int  # bytes per element of activations in linear layers / attention
    autocast: bool = False  # fp32 parameters with half compute: activation casts and cached weight copies
    fp8_weight_copy_bytes: int = 0  # extra bytes per linear-weight parameter (fp8 weight cache)
    fp8_activations: bool = False  # linear inputs saved in fp8 (1 byte)
    source: str = ""

    @property
    def residual_bytes(self) -> int:
        """dtype of the residual stream: the parameter dtype in Hugging Face models (fp32 under autocast)."""
        return self.param_bytes

    @property
    def half(self) -> bool:
        return self.compute_bytes < 4


def deepspeed_lora_master(framework: str, recipe: Recipe) -> bool:
    """DeepSpeed in a mixed half-precision mode: LoRA adapters are 16-bit with an fp32 master copy and fp32 optimizer
    states, like every trainable parameter. The engine casts the whole module to the 16-bit dtype after PEFT built
    the adapters (deepspeed/runtime/engine.py ``_configure_distributed_model``: ``self.module.half()`` /
    ``bfloat16()``) and its ZeRO optimizer keeps fp32 partitions of every trainable parameter
    (deepspeed/runtime/zero/stage_1_and_2.py ``single_partition_of_fp32_groups``)."""
    return framework == "deepspeed" and recipe.master_bytes > 0 and recipe.param_bytes < 4


def framework_precision_note(precision: str, framework: str) -> str | None:
    """What ``--precision bf16``/``fp16`` becomes under DeepSpeed or Megatron, said in the output (the recipe below
    maps it silently): their half-precision modes keep fp32 master weights and optimizer states."""
    if framework not in ("deepspeed", "megatron") or precision not in ("bf16", "fp16"):
        return None
    how = ("DeepSpeed's bf16/fp16 modes keep fp32 master weights and fp32 optimizer states"
           if framework == "deepspeed" else
           f"Megatron's --{precision} keeps fp32 master weights, fp32 main gradients and fp32 optimizer states")
    return (f"--precision {precision} with --framework {framework} is counted as mixed-{precision}: {how} "
            "(there is no pure half-precision training mode)")


def recipe_for(precision: str, framework: str = "torch") -> Recipe:
    """The recipe for ``--precision`` under ``--framework``.

    DeepSpeed and Megatron always keep fp32 master weights and fp32 optimizer states for half recipes (DeepSpeed's
    ``bf16``/``fp16`` config sections; Megatron's ``--bf16``), so ``bf16`` there means ``mixed-bf16``; Megatron also
    keeps fp32 main gradients (``--accumulate-allreduce-grads-in-fp32``, default with bf16): 18 bytes/param.
    """
    fw_mixed = framework in ("deepspeed", "megatron") and precision in ("bf16", "fp16", "mixed-bf16", "mixed-fp16")
    if fw_mixed:
        grad = 4 if framework == "megatron" else 2
        src = ("Megatron-LM theoretical_memory_usage.py: 18 bytes/param (bf16 params, fp32 main grads, fp32 main "
               "params and Adam states)" if framework == "megatron"
               else "ZeRO paper (arXiv:1910.02054) section 3.1: 2 + 2 + 12 = 16 bytes/param")
        return Recipe(f"mixed-{precision.rsplit('-', 1)[-1]}", 2, grad, 4, 4, 2, source=src)
    if precision == "fp32":
        return Recipe("fp32", 4, 4, 0, 4, 4, source="fp32 parameters, gradients and optimizer states")
    if precision in ("bf16", "fp16"):
        return Recipe(precision, 2, 2, 0, 2, 2,
                      source="torch/optim/adamw.py _init_group: states = torch.zeros_like(param) (parameter dtype)")
    if precision in ("amp-bf16", "amp-fp16"):
        return Recipe(precision, 4, 4, 0, 4, 2, autocast=True,
                      source="torch.autocast: fp32 master parameters, half compute (aten autocast_mode.cpp)")
    if precision in ("mixed-bf16", "mixed-fp16"):
        return Recipe(precision, 2, 2, 4, 4, 2,
                      source="ZeRO paper (arXiv:1910.02054) section 3.1: 2 + 2 + K=12 = 16 bytes/param")
    if precision == "fp8":
        grad = 4 if framework == "megatron" else 2
        return Recipe("fp8", 2, grad, 4, 4, 2, fp8_weight_copy_bytes=2, fp8_activations=True,
                      source="Transformer Engine fp8 (delayed scaling): bf16 params + fp8 weight cache, fp32 "
                             "master and states")
    raise InputError("--precision", precision, "unknown precision recipe")
