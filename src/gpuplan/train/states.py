"""Model states: weights, gradients, fp32 master weights and optimizer states, tensor by tensor.

Per tensor of the table (``gpuplan.model.tensors``): weights at the recipe's parameter size (NF4 for QLoRA's
quantized linears), gradients / master / states only for trainable tensors, LoRA adapters in their own dtype
(PEFT keeps them in fp32: ``get_peft_model(autocast_adapter_dtype=True)``). Sources per recipe in
``gpuplan.train.precision``; optimizer states in ``gpuplan.train.optimizer``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuplan.model.spec import ModelSpec
from gpuplan.model.tensors import TensorInfo, tensor_table
from gpuplan.train.config import TrainConfig
from gpuplan.train.optimizer import OptimizerMemory, optimizer_memory
from gpuplan.train.peft import Trainability, lora_params, nf4_bytes, trainability
from gpuplan.train.precision import Recipe

LORA_BYTES = 4  # fp32 adapters (PEFT autocast_adapter_dtype=True)


@dataclass(frozen=True)
class ModelStates:
    total_params: int
    trainable_params: int
    weights_bytes: int
    gradients_bytes: int
    master_weights_bytes: int
    optimizer: OptimizerMemory
    grad_bytes_by_tensor: tuple[int, ...]  # aligned with the tensor table (LoRA adapter grads on their base)
    lora_params: int
    quantized_params: int

    @property
    def optimizer_bytes(self) -> int:
        return self.optimizer.states_bytes


def model_states(spec: ModelSpec, cfg: TrainConfig, recipe: Recipe) -> ModelStates:
    table = tensor_table(spec)
    tr = trainability(spec, cfg)
    return _states(table, tr, cfg, recipe)


def _states(table: tuple[TensorInfo, ...], tr: Trainability, cfg: TrainConfig, recipe: Recipe) -> ModelStates:
    weights = grads = master = 0
    total = trainable = n_lora = n_quant = 0
    grad_by: list[int] = []
    shapes_base: list[tuple[int, ...]] = []
    shapes_lora: list[tuple[int, ...]] = []
    for t, rg, lo, q in zip(table, tr.base_trainable, tr.lora, tr.quantized):
        n = t.numel
        total += n
        if q:
            weights += nf4_bytes(n, cfg.qlora_block_size, cfg.qlora_double_quant)
            n_quant += n
        else:
            weights += n * recipe.param_bytes
        if t.linear and not t.is_bias:
            weights += n * recipe.fp8_weight_copy_bytes
        g = 0
        if rg:
            trainable += n
            g = n * recipe.grad_bytes
            master += n * recipe.master_bytes
            shapes_base.append(t.shape)
        if lo:
            a = lora_params(t, cfg.lora_rank)
            n_lora += a
            trainable += a
            weights += a * LORA_BYTES
            g += a * LORA_BYTES
            shapes_lora += [(cfg.lora_rank, t.shape[-1]), (t.shape[0], cfg.lora_rank)]
        grads += g
        grad_by.append(g)
    opt = optimizer_memory(cfg.optimizer, cfg.optimizer_impl, shapes_base, recipe.state_bytes)
    if shapes_lora:
        lo_opt = optimizer_memory(cfg.optimizer, cfg.optimizer_impl, shapes_lora, LORA_BYTES)
        opt = OptimizerMemory(opt.states_bytes + lo_opt.states_bytes,
                              opt.step_temp_bytes + lo_opt.step_temp_bytes, opt.paged, lo_opt.note)
    return ModelStates(total, trainable, weights, grads, master, opt, tuple(grad_by), n_lora, n_quant)


def params_only_states(params_total: int, cfg: TrainConfig, recipe: Recipe) -> ModelStates:
    """Model states from a parameter count alone (``--params``): every parameter trains, one flat tensor."""
    opt = optimizer_memory(cfg.optimizer, cfg.optimizer_impl, [(params_total,)], recipe.state_bytes)
    return ModelStates(params_total, params_total, params_total * recipe.param_bytes,
                       params_total * recipe.grad_bytes, params_total * recipe.master_bytes, opt,
                       (params_total * recipe.grad_bytes,), 0, 0)
