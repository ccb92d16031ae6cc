"""CUDA back end: the same step as the trace, for real, on the current GPU (random weights).

Reads what the device reports: ``torch.cuda.max_memory_allocated()`` (tensor memory, the number the trace and the
estimate's ``allocated_peak_bytes`` predict), ``max_memory_reserved()`` (plus the caching allocator's cached
blocks) and the device's used memory (NVML via ``torch.cuda.device_memory_used``, else ``cudaMemGetInfo``:
total - free, which adds the CUDA context and library workspaces), and the wall time of the step.

Components are differences of ``memory_allocated()`` between instants of the step: weights after building, the
optimizer states after the first step, gradients at the end of backward, activations at the end of forward (before
the head: a forward pre-hook on the output embedding), as in the trace.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from gpuplan.errors import InputError
from gpuplan.verify.result import Breakdown, Measurement
from gpuplan.verify.setup import PrefillSetup, TrainSetup


class CudaUnavailable(InputError):
    """``--device cuda`` on a machine where PyTorch sees no CUDA device."""


def require_cuda():
    """Import torch and check a CUDA device is usable; raise CudaUnavailable with the reason otherwise."""
    import torch

    if not torch.cuda.is_available():
        build = ("a CPU-only PyTorch build" if torch.version.cuda is None
                 else f"PyTorch built for CUDA {torch.version.cuda}")
        raise CudaUnavailable("--device", "cuda", f"no CUDA device is available ({build}, torch {torch.__version__})",
                              hint="run without --device to use the CPU trace, which needs no GPU")
    return torch


def _device_used_bytes(torch) -> int:
    try:
        return int(torch.cuda.device_memory_used())
    except Exception:  # no NVML binding: fall back to the driver's view
        free, total = torch.cuda.mem_get_info()
        return int(total - free)


def _sync_allocated(torch) -> int:
    torch.cuda.synchronize()
    return int(torch.cuda.memory_allocated())


def measure_training_cuda(config: dict[str, Any], setup: TrainSetup, *, timed_steps: int = 3) -> Measurement:
    """Run the training step of ``setup`` on the GPU and measure it (the third step is the one reported)."""
    torch = require_cuda()
    from gpuplan.verify.build import build_model, prepare_for_training
    from gpuplan.verify.patches import quiet_transformers
    from gpuplan.verify.trace import _host_step_bytes, _optimizer

    quiet_transformers()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base_alloc = _sync_allocated(torch)
    t0 = time.perf_counter()
    with torch.device("cuda"):
        base = build_model(config, dtype=setup.param_dtype, attention=setup.attention)
    head = base.get_output_embeddings()
    model = prepare_for_training(base, setup)
    weights = _sync_allocated(torch) - base_alloc
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(trainable, setup)
    vocab = base.config.get_text_config().vocab_size
    ids = torch.randint(0, vocab, (setup.batch, setup.seq), device="cuda")
    labels = ids.clone()
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if setup.precision == "amp-bf16"
                else contextlib.nullcontext())
    marks: dict[str, int] = {}
    handle = head.register_forward_pre_hook(lambda m, a: marks.setdefault("head", int(torch.cuda.memory_allocated())))
    phases: dict[str, int] = {}
    step_s = []
    for step in range(max(2, timed_steps)):
        marks.clear()
        start = _sync_allocated(torch)
        torch.cuda.reset_peak_memory_stats()
        t_step = time.perf_counter()
        with autocast:
            out = model(input_ids=ids, labels=labels, use_cache=False)
        loss = out.loss
        if not setup.keep_logits:
            del out
        phases["forward_end"] = _sync_allocated(torch)
        phases["forward_peak"] = int(torch.cuda.max_memory_allocated())
        loss.backward()
        del loss
        out = None
        phases["backward_end"] = _sync_allocated(torch)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        phases["optimizer_end"] = _sync_allocated(torch)
        step_s.append(time.perf_counter() - t_step)
        if step == 0:
            states = phases["optimizer_end"] - start
    handle.remove()
    peak = int(torch.cuda.max_memory_allocated())
    reserved = int(torch.cuda.max_memory_reserved())
    used = _device_used_bytes(torch)
    n_steps, host_bytes = _host_step_bytes(optimizer, setup)
    activations = marks.get("head", phases["forward_end"]) - start
    components = {
        "weights_bytes": weights, "buffers_bytes": buffers, "gradients_bytes": phases["backward_end"] - start,
        "optimizer_bytes": states, "master_weights_bytes": 0, "activations_bytes": activations,
        "logits_bytes": phases["forward_end"] - start - activations, "kv_cache_bytes": 0,
        "allocated_peak_bytes": peak - base_alloc, "total_bytes": used,
    }
    zero = Breakdown()
    notes = [f"step {max(2, timed_steps)} on {torch.cuda.get_device_name()}; device used memory includes the CUDA "
             "context and anything else on the GPU"]
    if n_steps:
        notes.append(f"{n_steps} Adam step counters live on the CPU (non-fused Adam)")
    return Measurement(
        backend="cuda", kind="train", allocated_peak_bytes=peak - base_alloc, peak_phase="", at_peak=zero,
        phases={}, components=components, params_total=sum(p.numel() for p in model.parameters()),
        params_trainable=sum(p.numel() for p in trainable), wall_s=time.perf_counter() - t0, notes=tuple(notes),
        extra={"reserved_peak_bytes": reserved - base_alloc, "device_used_bytes": used,
               "step_time_s": min(step_s[1:]), "device_name": torch.cuda.get_device_name(),
               "phase_allocated_bytes": {k: v - base_alloc for k, v in phases.items()}})


def measure_prefill_cuda(config: dict[str, Any], setup: PrefillSetup) -> Measurement:
    """Run one prefill of ``setup`` on the GPU and measure it."""
    torch = require_cuda()
    from transformers import DynamicCache

    from gpuplan.verify.build import build_model
    from gpuplan.verify.patches import cuda_block_bytes, quiet_transformers

    quiet_transformers()
    torch.cuda.empty_cache()
    base_alloc = _sync_allocated(torch)
    t0 = time.perf_counter()
    with torch.device("cuda"):
        model = build_model(config, dtype=setup.dtype, attention=setup.attention)
    model.eval()
    weights = _sync_allocated(torch) - base_alloc
    ids = torch.randint(0, model.config.get_text_config().vocab_size, (setup.batch, setup.context), device="cuda")
    times = []
    for _ in range(2):
        cache = DynamicCache(config=model.config)
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        with torch.no_grad():
            out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        peak = int(torch.cuda.max_memory_allocated()) - base_alloc
    kv = sum(cuda_block_bytes(t.numel() * t.element_size()) for layer in cache.layers
             for t in (layer.keys, layer.values) if t is not None and t.numel())
    logits = cuda_block_bytes(out.logits.numel() * out.logits.element_size())
    used = _device_used_bytes(torch)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    components = {"weights_bytes": weights, "buffers_bytes": buffers, "kv_cache_bytes": kv, "logits_bytes": logits,
                  "gradients_bytes": 0, "optimizer_bytes": 0, "master_weights_bytes": 0,
                  "activations_bytes": max(0, peak - weights - kv - logits), "allocated_peak_bytes": peak,
                  "total_bytes": used}
    return Measurement(
        backend="cuda", kind="prefill", allocated_peak_bytes=peak, peak_phase="prefill", at_peak=Breakdown(),
        phases={}, components=components, params_total=sum(p.numel() for p in model.parameters()),
        params_trainable=0, wall_s=time.perf_counter() - t0,
        notes=(f"prefill on {torch.cuda.get_device_name()}",),
        extra={"reserved_peak_bytes": int(torch.cuda.max_memory_reserved()) - base_alloc, "device_used_bytes": used,
               "step_time_s": min(times), "device_name": torch.cuda.get_device_name()})
