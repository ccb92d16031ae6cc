"""Peak of real (not fake) CPU tensor memory from the PyTorch profiler's allocation events.

Used to check inference estimates against ``model.generate`` on small real models, where fake tensors cannot run
the sampling loop. torch is imported inside the functions.
"""

from __future__ import annotations


def cpu_peak_bytes(fn) -> int:
    """Peak of CPU tensor memory allocated while ``fn`` runs, above what was allocated before, from the PyTorch
    profiler's allocation events (the CPU counterpart of ``torch.cuda.max_memory_allocated`` minus the start).

    oneDNN is switched off while ``fn`` runs: on CPUs with AVX512-BF16 or AMX, PyTorch sends bf16 matmuls through
    oneDNN, whose reordered weight copies and scratch buffers (weight-sized for small models) have no CUDA
    counterpart and would make the peak depend on the machine; without it every CPU runs ATen's own kernels."""
    import warnings

    import torch
    from torch.profiler import ProfilerActivity, profile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the flag's note about TF32 on Intel GPUs
        with torch.backends.mkldnn.flags(enabled=False), profile(activities=[ProfilerActivity.CPU],
                                                                  profile_memory=True) as prof:
            fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    current = peak = 0
    for e in events:
        current += e.nbytes()
        peak = max(peak, current)
    return peak


def created_peak_bytes(fn, held=()) -> int:
    """Peak bytes of the tensor storages that operators create while ``fn`` runs (real CPU tensors): what a CUDA
    caching allocator would be asked for, without the CPU kernels' own scratch buffers (oneDNN reorders, the CPU
    attention kernels' blocks), which the profiler's allocation events (``cpu_peak_bytes``) include. Storages of
    the tensors in ``held`` (the model's parameters and buffers, the inputs) existed before and are not counted,
    nor are views of them. A storage counts from the operator that returns it until it is freed."""
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    known = {t.untyped_storage().data_ptr() for t in held}
    live: dict[int, int] = {}
    state = {"now": 0, "peak": 0}

    def freed(key: int) -> None:
        state["now"] -= live.pop(key, 0)

    class Created(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if not isinstance(t, torch.Tensor):
                    continue
                storage = t.untyped_storage()
                key, n = storage.data_ptr(), storage.nbytes()
                if n == 0 or key in known or key in live:
                    continue
                live[key] = n
                state["now"] += n
                state["peak"] = max(state["peak"], state["now"])
                weakref.finalize(storage, freed, key)
            return out

    with Created():
        fn()
    return state["peak"]


def generate_peak_bytes(model, batch: int, prompt: int, new_tokens: int) -> int:
    """Peak tensor bytes of ``model.generate`` (greedy, DynamicCache, logits_to_keep=1) above the weights."""
    import torch

    vocab = model.config.get_text_config().vocab_size
    torch.manual_seed(1)
    ids = torch.randint(1, vocab, (batch, prompt))

    def run():
        with torch.no_grad():
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, do_sample=False)

    return cpu_peak_bytes(run)
