"""Optimizer states and the temporaries of ``optimizer.step()``.

States per trainable element (torch.optim and bitsandbytes):

| optimizer | states | source |
|---|---|---|
| sgd | 0 | torch/optim/sgd.py (momentum=0 keeps no buffer) |
| sgdm, lion | 1 (momentum / exp_avg) | torch/optim/sgd.py ``momentum_buffer``; Lion paper (Chen et al. 2023) Alg. 1 |
| adam, adamw | 2 (exp_avg, exp_avg_sq) | torch/optim/adam.py ``_init_group`` |
| adamw-8bit | 2 x (1 byte + one fp32 absmax per 256-element block) | bitsandbytes ``Optimizer8bit`` (block-wise quantization, Dettmers et al. 2022) |
| adafactor | row + column second moments of each matrix (full for vectors), no momentum | torch/optim/_adafactor.py; Shazeer & Stern 2018 |

Temporaries during ``step()`` (the peak of the optimizer phase):
- ``foreach`` Adam/AdamW: ``exp_avg_sq_sqrt = torch._foreach_sqrt(exp_avg_sqs)`` allocates one state-sized tensor per
  parameter, for all parameters of a (device, dtype) group at once (torch/optim/adam.py ``_multi_tensor_adam``).
- ``for-loop`` Adam/AdamW: ``(exp_avg_sq.sqrt() / bias_correction2_sqrt)`` holds two temporaries of the largest
  single parameter (``_single_tensor_adam``).
- ``fused``: one CUDA kernel per tensor list, no temporaries (``_fused_adam``).
"""

from __future__ import annotations

from dataclasses import dataclass

# bitsandbytes 8-bit optimizers: block-wise dynamic quantization with 256-element blocks, fp32 absmax per block;
# tensors with fewer than 4096 elements keep 32-bit states (bnb.optim.optimizer.Optimizer8bit, min_8bit_size=4096).
BNB_BLOCK = 256
BNB_MIN_8BIT_SIZE = 4096


@dataclass(frozen=True)
class OptimizerMemory:
    states_bytes: int
    step_temp_bytes: int
    paged: bool
    note: str


def managed_bytes(opt: OptimizerMemory) -> int:
    """Optimizer states in CUDA managed memory, outside PyTorch's caching allocator: bitsandbytes' paged
    optimizers allocate their states with ``cudaMallocManaged`` (bitsandbytes functional.py ``get_paged`` /
    ``GlobalPageManager``; csrc ``cget_managed_ptr``), so ``torch.cuda.max_memory_allocated()`` and
    ``max_memory_reserved()`` never count them; the driver may page them to host memory under pressure. The CPU
    cannot show this (no CUDA allocator): the published torchtune RTX 4090 rows rely on it."""
    return opt.states_bytes if opt.paged else 0


def allocator_states_bytes(opt: OptimizerMemory) -> int:
    """Optimizer states the caching allocator holds (all but the paged ones, ``managed_bytes``)."""
    return opt.states_bytes - managed_bytes(opt)


def states_per_element(optimizer: str) -> int:
    """Number of parameter-sized state tensors (for the optimizers that keep whole tensors)."""
    return {"sgd": 0, "sgdm": 1, "lion": 1, "adam": 2, "adamw": 2, "paged-adamw": 2}.get(optimizer, 2)


def eight_bit_state_bytes(numel: int) -> int:
    """Two 8-bit states plus one fp32 absmax per 256-element block each; small tensors stay fp32 (8 bytes)."""
    if numel < BNB_MIN_8BIT_SIZE:
        return 8 * numel
    blocks = -(-numel // BNB_BLOCK)
    return 2 * (numel + 4 * blocks)


def adafactor_state_elements(shape: tuple[int, ...]) -> int:
    """Factored second moment: row and column accumulators for a matrix, a full accumulator for a vector."""
    if len(shape) >= 2:
        rows = 1
        for d in shape[:-1]:
            rows *= d
        lead = 1
        for d in shape[:-2]:
            lead *= d
        return rows + lead * shape[-1]
    return shape[0] if shape else 1


def adafactor_sharded_elements(shape: tuple[int, ...], shards: int) -> int:
    """Adafactor state elements of a tensor of ``shape`` whose states are split over ``shards`` ranks: the factored
    row and column accumulators of the whole (local) matrix, divided evenly (rounded up). The factorization is a
    property of the parameter's shape, not of how a ZeRO/FSDP partition stores it: FSDP2 keeps the states as
    DTensors of the parameter's shape (``new_zeros`` of the sharded gradient, dim-0 sharded), torch's
    ``ZeroRedundancyOptimizer`` gives each rank whole parameters; so every layout holds its share of the same
    factored states (Shazeer & Stern 2018, section 3; torch/optim/_adafactor.py ``row_var`` / ``col_var``)."""
    return -(-adafactor_state_elements(shape) // max(1, shards))


def optimizer_memory(optimizer: str, impl: str, shapes: list[tuple[int, ...]], state_bytes: int,
                     step_operand_bytes: int | None = None,
                     state_shards: list[tuple[tuple[int, ...], int]] | None = None) -> OptimizerMemory:
    """States and step temporaries for the trainable tensors ``shapes``.

    ``state_bytes``: bytes per state element (4 = fp32; torch.optim keeps the parameter dtype).
    ``step_operand_bytes``: element size of the tensors the step's temporaries take (the states' by default).
    ``state_shards``: for shape-dependent states (Adafactor), each tensor's unflattened local shape and the ranks its
    states are split over; ``shapes`` may then be flat shards (their sizes still give the step temporaries).
    """
    numels = [_numel(s) for s in shapes]
    total = sum(numels)
    largest = max(numels, default=0)
    tmp_b = step_operand_bytes or state_bytes
    paged = optimizer.startswith("paged")
    base = optimizer.removeprefix("paged-")
    if base == "adamw-8bit":
        states = sum(eight_bit_state_bytes(n) for n in numels)
        return OptimizerMemory(states, 0, paged, "bitsandbytes 8-bit block-wise states, fused update kernel")
    if base == "adafactor":
        if state_shards is not None:
            states = sum(adafactor_sharded_elements(s, k) for s, k in state_shards) * state_bytes
        else:
            states = sum(adafactor_state_elements(s) for s in shapes) * state_bytes
        # torch.optim.Adafactor (for-loop): grad**2 and the update are full-size temporaries of one tensor
        return OptimizerMemory(states, 2 * largest * tmp_b, paged, "factored second moments, no momentum")
    n_states = states_per_element(base)
    states = n_states * total * state_bytes
    if base == "lion" or n_states == 0 or impl == "fused":
        temp = 0 if base != "lion" else 2 * largest * tmp_b
        note = "fused kernel, no step temporaries" if impl == "fused" and base != "lion" else "per-tensor update"
        return OptimizerMemory(states, temp, paged, note)
    if base in ("adam", "adamw"):
        if impl == "foreach":
            return OptimizerMemory(states, total * tmp_b, paged, "foreach: _foreach_sqrt(exp_avg_sqs) temporary")
        return OptimizerMemory(states, 2 * largest * tmp_b, paged, "for-loop: sqrt and division of one tensor")
    return OptimizerMemory(states, 0, paged, "in-place foreach update")


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
