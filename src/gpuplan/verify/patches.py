"""The few changes a fake-tensor trace needs so that it allocates what a real CUDA run allocates.

Patches 1 to 3, 6 and 8 apply inside ``trace_patches()``, 4, 5 and 7 where their functions are called; all are
undone on exit:

1. **Packed-sequence detection.** ``transformers.masking_utils.find_packed_sequence_indices`` cannot read a fake
   tensor's values, so it treats every fake input as possibly packed; ``create_causal_mask`` then materialises a
   ``[batch, 1, seq, seq]`` mask, which also stops SDPA from using its ``is_causal`` / GQA fast path (transformers
   falls back to ``repeat_kv``). A real run with unpacked input gets ``None`` there. The verifier only ever feeds
   unpacked sequences (position ids 0..seq-1), so the patch returns ``None`` as the real run does. Without it the
   "measurement" is about 10 % high on a GQA model.
2. **CUDA allocator rounding.** ``MemTracker`` rounds each storage up to 512 bytes only on a ``cuda`` device
   (``c10/cuda/CUDACachingAllocator.cpp``, ``kMinBlockSize = 512``; ``round_size``); the trace runs on a fake
   ``cpu`` device (fake ``cuda`` aborts in autograd on a CPU-only build), so the rounding is applied here.
3. **Grouped GEMM dtype** (MoE). transformers runs experts with ``torch._grouped_mm``, whose CUDA kernel (and the
   meta function the trace uses) takes bf16 only; for fp32 expert weights the trace routes them through
   transformers' own ``grouped_mm_fallback`` custom op, which has a fake implementation of the same output shapes.
4. **Module.to on fake parameters** (``module_to_patch()``, used while PEFT wraps the model). ``Module.to`` swaps
   each parameter for a converted one, which fails on fake tensors (they carry weak references). PEFT moves every
   adapter to its base layer's device and dtype, then (``autocast_adapter_dtype=True``, its default) upcasts
   bf16/fp16 adapters back to fp32. The patched ``to`` ignores the device (there is one fake device) and converts
   the dtype by re-registering each floating-point parameter, so the adapters end with the dtypes a real run gives.
5. **Frozen parameters** (``skip_frozen_grad_hooks``). ``MemTracker`` registers a gradient hook on every parameter
   a module owns, which PyTorch refuses for ``requires_grad=False``; frozen parameters are marked as already
   hooked.

6. **SDPA kernels CUDA would use.** PyTorch's CPU flash kernel takes no dropout and needs one head size for
   queries, keys and values, so with attention dropout (GPT-2's ``attn_pdrop`` 0.1) or MLA's narrower values
   (DeepSeek: q/k 192, v 128) the CPU falls back to the math path and materialises ``[batch, heads, seq, seq]``
   scores and probabilities. CUDA (sm80+) runs flash attention there (half precision, no mask, equal head sizes
   up to 256; it regenerates the dropout mask from a Philox seed) or else the memory-efficient kernel, both
   keeping O(seq) state. With an explicit mask (sliding-window layers longer than the window, e.g. Phi-3) CUDA
   flash is out and the memory-efficient kernel runs (it keeps the mask as its ``attn_bias``, and its output is
   laid out [batch, seq, heads, dim], so transformers' transpose back needs no copy). In those cases the trace calls the CUDA kernels' fake implementations
   (``aten._scaled_dot_product_flash_attention`` / ``_scaled_dot_product_efficient_attention``; K/V heads are
   repeated for the latter under GQA). Otherwise the CPU flash kernel keeps what CUDA flash keeps (output and
   log-sum-exp) and is used as is. cuDNN attention, which PyTorch may prefer on Hopper, is not modelled.

7. **CUDA's autocast fp32 list** (``amp-*`` only; ``cuda_autocast_fp32()``). CUDA autocast runs ``pow``, ``rsqrt``,
   ``exp``, ``log``, ``softmax``, ``layer_norm`` and a few more in fp32 (``aten/src/ATen/autocast_mode.cpp``,
   ``fp32`` / ``fp32_set_opt_dtype`` lists); CPU autocast leaves them in bf16. It matters where a model applies one
   to a bf16 matmul output — GPT-2's ``gelu_new`` (``pow(x, 3)``) then keeps its MLP activations in fp32 on a GPU.
   During autocast the trace casts half-precision inputs of those functions to fp32, as CUDA autocast does.

8. **Dropout as CUDA runs it.** On a CUDA tensor ``torch.dropout`` calls the fused ``aten.native_dropout``
   (``aten/src/ATen/native/Dropout.cpp``, ``is_fused_kernel_acceptable``: CUDA/XPU input, 0 < p < 1), which keeps
   a one-byte bool mask for backward; on the CPU it multiplies by a noise tensor of the input's dtype (2 or 4 bytes
   per element). During training the trace routes ``F.dropout`` to ``native_dropout``, as CUDA does.

What the trace still cannot see: the CUDA context, cuBLAS / flash-attention workspaces, NCCL buffers, blocks the
caching allocator does not split (up to 1 MiB of a large segment, counted in ``max_memory_allocated``) and
fragmentation — the CUDA backend (``gpuplan verify --device cuda``) measures those.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

CUDA_MIN_BLOCK_BYTES = 512  # c10/cuda/CUDACachingAllocator.cpp: kMinBlockSize


def cuda_block_bytes(nbytes: int) -> int:
    """Bytes the CUDA caching allocator hands out for a request: ``ceil(n / 512) * 512`` (``round_size``);
    an empty storage takes no block."""
    if nbytes <= 0:
        return 0
    return -(-nbytes // CUDA_MIN_BLOCK_BYTES) * CUDA_MIN_BLOCK_BYTES


@contextlib.contextmanager
def trace_patches() -> Iterator[None]:
    """Apply patches 1 to 3, 6 and 8 of the module docstring for the duration of the block."""
    import torch
    from torch.distributed._tools import mem_tracker
    from transformers import masking_utils

    from transformers.integrations import moe

    saved_find = masking_utils.find_packed_sequence_indices
    saved_calc = mem_tracker._WeakRefInfo._calculate_mem_consumed
    saved_can_grouped = moe._can_use_grouped_mm

    def find_packed_sequence_indices(position_ids):  # noqa: ARG001 - same signature as the original
        return None

    def _calculate_mem_consumed(self) -> int:
        return cuda_block_bytes(self.size * self.element_size)

    def _can_use_grouped_mm(input, weight, offs):
        return weight.dtype == torch.bfloat16 and saved_can_grouped(input, weight, offs)

    saved_sdpa = torch.nn.functional.scaled_dot_product_attention
    cuda_sdpa = _cuda_sdpa_with_dropout(torch, saved_sdpa)

    masking_utils.find_packed_sequence_indices = find_packed_sequence_indices
    mem_tracker._WeakRefInfo._calculate_mem_consumed = _calculate_mem_consumed
    moe._can_use_grouped_mm = _can_use_grouped_mm
    torch.nn.functional.scaled_dot_product_attention = cuda_sdpa
    try:
        with cuda_dropout():
            yield
    finally:
        masking_utils.find_packed_sequence_indices = saved_find
        mem_tracker._WeakRefInfo._calculate_mem_consumed = saved_calc
        moe._can_use_grouped_mm = saved_can_grouped
        torch.nn.functional.scaled_dot_product_attention = saved_sdpa


@contextlib.contextmanager
def cuda_dropout() -> Iterator[None]:
    """Dropout as CUDA runs it (patch 8): ``native_dropout``, which keeps a 1-byte mask, where the CPU's path keeps
    a noise tensor in the input's dtype. Works on real and fake tensors."""
    import torch

    saved_dropout = torch.nn.functional.dropout

    def dropout(input, p=0.5, training=True, inplace=False):
        if training and 0.0 < p < 1.0 and input.numel() > 0 and not inplace:
            return torch.ops.aten.native_dropout(input, p, True)[0]
        return saved_dropout(input, p, training, inplace)

    torch.nn.functional.dropout = dropout
    try:
        yield
    finally:
        torch.nn.functional.dropout = saved_dropout


def _cuda_sdpa_with_dropout(torch, original):
    """``scaled_dot_product_attention`` that runs the kernel CUDA would pick where the CPU's differs (patch 6)."""

    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        masked = attn_mask is not None and query.shape[-3] == key.shape[-3] == value.shape[-3]
        if dropout_p <= 0.0 and query.shape[-1] == value.shape[-1] and not masked:
            return original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                            scale=scale, enable_gqa=enable_gqa)
        half = query.dtype in (torch.float16, torch.bfloat16)
        same = query.shape[-1] == key.shape[-1] == value.shape[-1]
        if attn_mask is None and half and same and query.shape[-1] <= 256:
            return torch.ops.aten._scaled_dot_product_flash_attention(
                query, key, value, dropout_p, is_causal, False, scale=scale)[0]
        if key.shape[-3] != query.shape[-3]:  # the memory-efficient kernel needs one K/V head per query head
            rep = query.shape[-3] // key.shape[-3]
            key, value = key.repeat_interleave(rep, dim=-3), value.repeat_interleave(rep, dim=-3)
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            attn_mask = torch.zeros_like(attn_mask, dtype=query.dtype).masked_fill_(~attn_mask, float("-inf"))
        return torch.ops.aten._scaled_dot_product_efficient_attention(
            query, key, value, attn_mask, True, dropout_p, is_causal, scale=scale)[0]

    return sdpa


@contextlib.contextmanager
def module_to_patch() -> Iterator[None]:
    """``torch.nn.Module.to`` that works on fake parameters (patch 4 in the module docstring)."""
    import torch

    saved = torch.nn.Module.to

    def to(self, *args, **kwargs):
        _device, dtype, _non_blocking, _fmt = torch._C._nn._parse_to(*args, **kwargs)
        if dtype is None:
            return self
        for owner in self.modules():
            for name, p in list(owner.named_parameters(recurse=False)):
                if p.is_floating_point() and p.dtype != dtype:
                    setattr(owner, name, torch.nn.Parameter(p.detach().to(dtype), requires_grad=p.requires_grad))
        return self

    torch.nn.Module.to = to
    try:
        yield
    finally:
        torch.nn.Module.to = saved


def cuda_autocast_fp32():
    """A TorchFunctionMode applying CUDA autocast's fp32 policy to functions CPU autocast leaves alone (patch 7)."""
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode
    from torch.utils._pytree import tree_map_only

    T = torch.Tensor
    funcs = {torch.pow, T.pow, T.__pow__, T.__rpow__, torch.rsqrt, T.rsqrt, torch.exp, T.exp, torch.log, T.log,
             torch.log1p, torch.expm1, torch.reciprocal, T.reciprocal, torch.cosh, torch.sinh, torch.tan,
             torch.acos, torch.asin, torch.erfinv, F.softplus, F.layer_norm, F.group_norm, torch.softmax,
             T.softmax, F.softmax, torch.log_softmax, T.log_softmax, F.log_softmax}
    half = (torch.bfloat16, torch.float16)

    class CudaAutocastFp32(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in funcs and torch.is_autocast_enabled("cpu"):
                args, kwargs = tree_map_only(T, lambda t: t.float() if t.dtype in half else t, (args, kwargs))
            return func(*args, **kwargs)

    return CudaAutocastFp32()


class _NoHandle:
    """Stands in for a hook handle on a frozen parameter; MemTracker calls ``remove()`` on exit."""

    def remove(self) -> None:
        return None


def skip_frozen_grad_hooks(tracker, model) -> int:
    """Mark every ``requires_grad=False`` parameter of ``model`` as hooked in ``tracker`` (patch 5); returns how
    many. Call before entering the tracker."""
    n = 0
    for p in model.parameters():
        if not p.requires_grad:
            tracker._param_to_grad_hook_handles[p] = (_NoHandle(), _NoHandle())
            n += 1
    return n


def quiet_transformers() -> None:
    """Silence transformers' advisory logging (random init, sdpa fallbacks) during verification."""
    from transformers.utils import logging

    logging.set_verbosity_error()
