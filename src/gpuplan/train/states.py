"""Model states: weights, gradients, fp32 master weights and optimizer states, tensor by tensor.

Per tensor of the table (``gpuplan.model.tensors``): weights at the recipe's parameter size (NF4 for QLoRA's
quantized linears, or GPTQ: ``gpuplan.train.quantbase``), gradients / master / states only for trainable tensors, LoRA adapters in their own dtype
(PEFT keeps them in fp32: ``get_peft_model(autocast_adapter_dtype=True)``). Sources per recipe in
``gpuplan.train.precision``; optimizer states in ``gpuplan.train.optimizer``. PEFT's ``modules_to_save``
(peft/utils/other.py ``ModulesToSaveWrapper``) holds the frozen original beside the trainable copy: one more weight
at the parameter size for each copied tensor (``Trainability.copied``); the copy trains as a base tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from gpuplan.model.spec import ModelSpec
from gpuplan.model.tensors import tensor_table
from gpuplan.train.config import TrainConfig
from gpuplan.train.kbit import kbit_plain_bytes
from gpuplan.train.optimizer import OptimizerMemory, optimizer_memory
from gpuplan.train.peft import Trainability, lora_params, lora_shapes, param_wrapped, trainability
from gpuplan.train.precision import Recipe, deepspeed_lora_master
from gpuplan.train.quantbase import base_weight_bytes

LORA_BYTES = 4  # fp32 adapters (PEFT autocast_adapter_dtype=True)


def lora_param_bytes(cfg: TrainConfig, recipe: Recipe) -> int:
    """Bytes per LoRA adapter element: fp32 under PEFT (``autocast_adapter_dtype=True`` upcasts half adapters,
    ``--lora-dtype fp32``); in the model's dtype (``--lora-dtype model``) where the stack builds the adapters with
    the model and nothing upcasts them: litgpt's ``lora.py`` creates ``lora_A`` / ``lora_B`` under
    ``fabric.init_module()`` (bf16 under bf16-true), torchtune's recipes instantiate the model, its ``LoRALinear``
    adapters included, under ``training.set_default_dtype(self._dtype)`` (``lora_finetune_single_device.py``
    ``_setup_model``). Under DeepSpeed's half-precision modes the engine casts the whole module, adapters
    included, to the 16-bit dtype (deepspeed/runtime/engine.py ``_configure_distributed_model``:
    ``self.module.half()`` / ``bfloat16()``) after PEFT built them, and its optimizer keeps the fp32 master copy
    (``deepspeed_lora_master``)."""
    if deepspeed_lora_master(cfg.framework, recipe):
        return recipe.param_bytes
    model = cfg.lora_dtype == "model" or (cfg.lora_dtype is None and cfg.model_impl == "litgpt")
    return recipe.param_bytes if model else LORA_BYTES



@dataclass(frozen=True, eq=False)
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
    """Cached per (model, trainable set, LoRA/QLoRA settings, optimizer, recipe): independent of batch and seq."""
    return _states(spec, trainability(spec, cfg), _StateKey(cfg.lora_rank, cfg.qlora_block_size,
                                                            cfg.qlora_double_quant, cfg.optimizer,
                                                            effective_impl(cfg), cfg.qlora_base,
                                                            cfg.qlora_group_size, lora_param_bytes(cfg, recipe),
                                                            kbit_plain_bytes(cfg),
                                                            deepspeed_lora_master(cfg.framework, recipe)),
                   recipe)


def effective_impl(cfg: TrainConfig) -> str:
    """DeepSpeed and Megatron step Adam with fused multi-tensor kernels (DeepSpeed ``FusedAdam``, Megatron's
    Apex/Transformer Engine ``FusedAdam``): no step temporaries, whatever --optimizer-impl says."""
    return cfg.optimizer_impl if cfg.framework == "torch" else "fused"


@dataclass(frozen=True)
class _StateKey:
    lora_rank: int
    qlora_block_size: int
    qlora_double_quant: bool
    optimizer: str
    optimizer_impl: str
    qlora_base: str = "nf4"
    qlora_group_size: int = 128
    lora_bytes: int = LORA_BYTES  # per adapter element (lora_param_bytes)
    plain_bytes: int | None = None  # per element of an unquantized frozen tensor when not the recipe's (kbit)
    lora_master: bool = False  # adapters with an fp32 master copy and fp32 states (deepspeed_lora_master)


@lru_cache(maxsize=256)
def _states(spec: ModelSpec, tr: Trainability, cfg: _StateKey, recipe: Recipe) -> ModelStates:
    table = tensor_table(spec)
    weights = grads = master = 0
    total = trainable = n_lora = n_quant = 0
    grad_by: list[int] = []
    shapes_base: list[tuple[int, ...]] = []
    shapes_lora: list[tuple[int, ...]] = []
    copied = tr.copied or (False,) * len(table)
    for t, rg, lo, q, cp in zip(table, tr.base_trainable, tr.lora, tr.quantized, copied):
        n = t.numel
        total += n
        if cp:
            weights += n * recipe.param_bytes
        if q:
            weights += base_weight_bytes(cfg.qlora_base, n, t.shape, cfg.qlora_block_size, cfg.qlora_double_quant,
                                         cfg.qlora_group_size)
            n_quant += n
        else:
            weights += n * (cfg.plain_bytes or recipe.param_bytes)
        if t.linear and not t.is_bias:
            weights += n * recipe.fp8_weight_copy_bytes
        g = 0
        if rg:
            trainable += n
            g = n * recipe.grad_bytes
            master += n * recipe.master_bytes
            shapes_base.append(t.shape)
        if lo:
            # the trainable figure counts per-expert LoRA (the source documents' convention); memory follows the
            # adapters PEFT really builds (fused experts: rank 2r on gate_up, see gpuplan.train.peft)
            wrapped = param_wrapped(spec, t)
            a = lora_params(t, cfg.lora_rank, wrapped)
            n_lora += lora_params(t, cfg.lora_rank)
            trainable += lora_params(t, cfg.lora_rank)
            weights += a * cfg.lora_bytes
            g += a * cfg.lora_bytes
            if cfg.lora_master:
                master += a * recipe.master_bytes
            shapes_lora += lora_shapes(t, cfg.lora_rank, wrapped)
        grads += g
        grad_by.append(g)
    opt = optimizer_memory(cfg.optimizer, cfg.optimizer_impl, shapes_base, recipe.state_bytes)
    if shapes_lora:
        lo_opt = optimizer_memory(cfg.optimizer, cfg.optimizer_impl, shapes_lora,
                                  recipe.state_bytes if cfg.lora_master else cfg.lora_bytes)
        opt = OptimizerMemory(opt.states_bytes + lo_opt.states_bytes,
                              opt.step_temp_bytes + lo_opt.step_temp_bytes, opt.paged, lo_opt.note)
    return ModelStates(total, trainable, weights, grads, master, opt, tuple(grad_by), n_lora, n_quant)


def params_only_states(params_total: int, cfg: TrainConfig, recipe: Recipe, layout=None) -> ModelStates:
    """Model states from a parameter count alone (``--params``): every parameter trains, one flat tensor. With a
    layout: split evenly over tp·pp, then ZeRO stage k shards optimizer states (k >= 1), gradients (k >= 2) and
    parameters (k = 3) over dp·cp (the ZeRO paper's accounting, arXiv:1910.02054 section 5)."""
    p = params_total
    tp_pp, D, z = 1, 1, 0
    if layout is not None:
        tp_pp, D, z = layout.tp * layout.pp, layout.shard_degree, layout.zero
    local = -(-p // tp_pp)
    opt = optimizer_memory(cfg.optimizer, effective_impl(cfg), [(local // (D if z >= 1 else 1),)], recipe.state_bytes)
    if cfg.framework == "deepspeed" and z >= 1 and recipe.master_bytes:
        # DeepSpeed converts its gradient partition to fp32 in step() (stage_1_and_2.py / stage3.py)
        opt = OptimizerMemory(opt.states_bytes, opt.step_temp_bytes + 4 * (local // D), opt.paged,
                              opt.note + "; fp32 gradient partition in step()")
    return ModelStates(p, p, local * recipe.param_bytes // (D if z >= 3 else 1),
                       local * recipe.grad_bytes // (D if z >= 2 else 1),
                       local * recipe.master_bytes // (D if z >= 1 else 1), opt,
                       (local * recipe.grad_bytes,), 0, 0)
