"""The causal LM loss region of one transformers release, traced on the CPU: the forward and backward high-water marks
of a Llama step whose vocabulary dominates, in units of T·V (tokens × vocabulary entries), for the release rules of
``gpuplan.versions`` (``LOSS_IN_MODEL_FORWARD``, ``LOSS_SHIFT_COPY``).

transformers is installed per release beside the pinned one, and put first on the path:

    pip install --no-deps --target /tmp/tf447 transformers==4.47.1 "tokenizers>=0.21,<0.22"
    PYTHONPATH=/tmp/tf447 python benchmarks/trace_loss_releases.py bf16

Measured (PyTorch 2.13 CPU), forward / whole step in T·V: 4.44.2 12.16 / 12.16 (bf16) and 12.21 / 12.21 (fp32);
4.47.1 14.16 / 14.16 (bf16) and 12.21 / 12.21 (fp32); 5.23.0 10.19 / 12.19 (bf16) and 8.24 / 12.24 (fp32): the loss
backward holds 12·T·V in every release. The fractions above the whole numbers are the model's own weights and
gradients (one small layer).
"""

from __future__ import annotations

import sys


def main() -> None:
    import torch
    import transformers
    from torch.profiler import ProfilerActivity, profile, record_function
    from transformers import LlamaConfig, LlamaForCausalLM

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[sys.argv[1] if len(sys.argv) > 1 else "bf16"]
    batch, seq, vocab, hidden = 2, 256, 32000, 64
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=vocab, max_position_embeddings=1024)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(dtype)
    ids = torch.randint(0, vocab, (batch, seq))

    def step() -> None:
        out = model(input_ids=ids, labels=ids, use_cache=False)
        loss = out.loss
        del out  # the loop drops the outputs after taking the loss
        with record_function("backward"):
            loss.backward()

    step()  # the gradients exist from here on
    model.zero_grad(set_to_none=True)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = list(prof.profiler.kineto_results.events())
    t_bwd = next(e.start_ns() for e in events if e.name() == "backward")
    cur = peak = fwd = 0
    for e in sorted((e for e in events if e.name() == "[memory]"), key=lambda e: e.start_ns()):
        cur += e.nbytes()
        peak = max(peak, cur)
        if e.start_ns() < t_bwd:
            fwd = max(fwd, cur)
    tv = batch * seq * vocab
    print(f"transformers {transformers.__version__} {sys.argv[1] if len(sys.argv) > 1 else 'bf16'}: forward "
          f"{fwd / tv:.2f} T·V, whole step {peak / tv:.2f} T·V")


if __name__ == "__main__":
    main()
