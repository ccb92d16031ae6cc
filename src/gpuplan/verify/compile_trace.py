"""CPU trace of one transformers Llama decoder layer, eager or under ``torch.compile`` (Inductor).

The fake-tensor trace of ``gpuplan.verify.trace`` cannot follow a compiled graph: Inductor's generated code
allocates its buffers itself (``empty_strided`` from C++ or its Python wrapper) and runs fused kernels that no
``TorchDispatchMode`` sees. This trace runs real (small) tensors on the CPU instead and measures two things:

- **saved for backward**: ``torch.autograd.graph.saved_tensors_hooks``' pack hook receives every tensor autograd
  keeps, eager nodes' and the compiled graph's alike (AOTAutograd's ``CompiledFunction`` stores its saved set
  with ``ctx.save_for_backward``); storages are counted once, parameters left out;
- **the step's high-water mark**: the profiler's CPU allocator events (``torch.profiler.profile(profile_memory=
  True)``, every ``c10`` CPU allocation and free with its size, Inductor's buffers included), summed in time order
  from the start of the forward; the start of backward is marked with ``record_function``.

Used by ``tests/test_train_compile.py`` (the compiled saved set against ``gpuplan.train.compiled``) and
``benchmarks/trace_compile.py``. Needs torch, transformers, a C++ compiler for Inductor's CPU kernels and, for
LoRA, peft.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerTrace:
    saved_bytes: int  # distinct storages saved for backward, parameters and the layer's own input excluded
    input_saved: bool  # the layer input (the checkpoint's input under recompute) is among the saved tensors
    forward_peak_bytes: int  # high-water mark of the forward above what existed before it
    backward_start_bytes: int  # allocated above the start when backward begins (saved set, output, its gradient)
    peak_bytes: int  # high-water mark of forward + backward above the start
    grad_bytes: int  # gradients at the end (trainable parameters and the input's)
    tokens: int


def compiler_available() -> bool:
    """Inductor's CPU back end needs a C++ compiler."""
    import shutil

    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))


def trace_layer(batch: int, seq: int, hidden: int, heads: int, kv_heads: int, ffn: int, *, compiled: bool,
                checkpoint: bool = False, lora_rank: int = 0, lora_targets: tuple[str, ...] = (),
                dtype: str = "bf16") -> LayerTrace:
    """Run one forward and backward of a Llama decoder layer (transformers ``LlamaDecoderLayer``, SDPA attention,
    rotary cos/sin passed in as the model passes them) on the CPU and measure it (module docstring).

    ``compiled``: the layer's forward goes through ``torch.compile`` (Inductor, default options, as torchtune's
    ``training.compile_model`` compiles each decoder layer); ``checkpoint``: the (compiled) layer runs inside
    non-reentrant ``torch.utils.checkpoint`` (torchtune's activation checkpointing wraps each layer outside the
    compiled module). ``lora_rank`` > 0 freezes the base weights and adds LoRA adapters on ``lora_targets``
    (peft ``inject_adapter_in_model``: adapters in the layer's dtype, as torchtune builds them; no dropout)."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

    dt = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[dtype]
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=kv_heads,
                      intermediate_size=ffn, num_hidden_layers=1, vocab_size=128)
    cfg._attn_implementation = "sdpa"
    layer = LlamaDecoderLayer(cfg, 0).to(dt)
    if lora_rank:
        from peft import LoraConfig, inject_adapter_in_model

        layer.requires_grad_(False)
        layer = inject_adapter_in_model(LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank,
                                                   target_modules=list(lora_targets)), layer)
        layer.to(dt)
    rope = LlamaRotaryEmbedding(cfg)
    x = torch.randn(batch, seq, hidden, dtype=dt, requires_grad=True)
    pos = torch.arange(seq)[None].expand(batch, seq)
    cos, sin = (t.to(dt) for t in rope(x, pos))

    def run(x, cos, sin):
        out = layer(x, position_embeddings=(cos, sin), attention_mask=None)
        return out[0] if isinstance(out, tuple) else out

    fn = torch.compile(run) if compiled else run
    if checkpoint:
        from torch.utils.checkpoint import checkpoint as ckpt

        def step(x, cos, sin):
            return ckpt(fn, x, cos, sin, use_reentrant=False)
    else:
        step = fn

    def clear():
        x.grad = None
        layer.zero_grad(set_to_none=True)

    y = step(x, cos, sin)  # compile (and warm) outside the measurement
    y.backward(torch.ones_like(y))
    clear()
    del y

    params = {p.untyped_storage().data_ptr() for p in layer.parameters()}
    shared = {t.untyped_storage().data_ptr() for t in (cos, sin)}
    x_ptr = x.untyped_storage().data_ptr()
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        seen.setdefault(st.data_ptr(), st.nbytes())
        return t

    def unpack(t):
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        y = step(x, cos, sin)
    if checkpoint:  # the saved set is the recomputed one: run backward to see it
        y.backward(torch.ones_like(y))
    del y
    clear()
    saved = sum(n for p, n in seen.items() if p not in params and p not in shared and p != x_ptr)

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        y = step(x, cos, sin)
        g = torch.ones_like(y)
        with record_function("gpuplan_backward"):
            y.backward(g)
        del y, g
    events = list(prof.profiler.kineto_results.events())
    t_bwd = next(e.start_ns() for e in events if e.name() == "gpuplan_backward")
    mem = sorted((e for e in events if e.name() == "[memory]"), key=lambda e: e.start_ns())
    cur = peak = fwd_peak = 0
    at_bwd = None
    for e in mem:
        if at_bwd is None and e.start_ns() >= t_bwd:
            at_bwd = cur
        cur += e.nbytes()
        peak = max(peak, cur)
        if at_bwd is None:
            fwd_peak = max(fwd_peak, cur)
    grads = sum(p.grad.untyped_storage().nbytes() for p in [x, *layer.parameters()] if p.grad is not None)
    return LayerTrace(saved_bytes=saved, input_saved=x_ptr in seen, forward_peak_bytes=fwd_peak,
                      backward_start_bytes=at_bwd or 0, peak_bytes=peak, grad_bytes=grads, tokens=batch * seq)
