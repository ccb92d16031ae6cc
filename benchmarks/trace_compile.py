"""Saved-for-backward bytes and the step's high-water mark of one transformers Llama decoder layer, eager and under
torch.compile, on the CPU (``gpuplan.verify.compile_trace``), beside gpuplan's model (``gpuplan.train.compiled``).

    python benchmarks/trace_compile.py --batch 2 --seq 64 --hidden 256 --heads 8 --kv-heads 2 --ffn 512 [--lora 8]
        [--checkpoint] [--eager]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gpuplan.verify.compile_trace import trace_layer  # noqa: E402

LORA_TARGETS = ("q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # torchtune's Llama 3.1 LoRA


def model_layer(batch: int, seq: int, hidden: int, heads: int, kv_heads: int, ffn: int, compiled: bool, lora: int):
    """gpuplan's layer model as the trace runs it (bf16, SDPA, the input requiring grad, adapters in bf16)."""
    from gpuplan.model.hf_config import spec_from_config
    from gpuplan.train.activations import ActContext
    from gpuplan.train.layers import decoder_layer

    spec = spec_from_config({"model_type": "llama", "hidden_size": hidden, "intermediate_size": ffn,
                             "num_hidden_layers": 1, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
                             "vocab_size": 128, "max_position_embeddings": 4096})
    c = ActContext(e=2, r=2, attention="sdpa", lora_rank=lora or 16, lora_bytes=2, batched=batch > 1,
                   compiled=compiled)
    mods = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "input_layernorm",
            "post_attention_layernorm")
    flags = {m: (False, m in LORA_TARGETS) for m in mods} if lora else {m: (True, False) for m in mods}
    return decoder_layer(spec, 0, c, flags, True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("batch", 2), ("seq", 64), ("hidden", 256), ("heads", 8), ("kv-heads", 2), ("ffn", 512),
                          ("lora", 0)):
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--checkpoint", action="store_true", help="the layer inside torch.utils.checkpoint")
    ap.add_argument("--eager", action="store_true", help="also trace the eager layer")
    a = ap.parse_args(argv)
    for compiled in ([False] if a.eager else []) + [True]:
        t = trace_layer(a.batch, a.seq, a.hidden, a.heads, a.kv_heads, a.ffn, compiled=compiled,
                        checkpoint=a.checkpoint, lora_rank=a.lora, lora_targets=LORA_TARGETS if a.lora else ())
        la = model_layer(a.batch, a.seq, a.hidden, a.heads, a.kv_heads, a.ffn, compiled, a.lora)
        x = 2 * a.hidden * a.batch * a.seq  # the layer input, counted apart by the trace
        m = la.saved.bytes(a.batch, a.seq) - (x if "x" in dict(la.items) else 0)
        label = "compiled" if compiled else "eager"
        if a.checkpoint:
            print(f"{label:8s} (checkpointed) peak {t.peak_bytes:,} B above the step's start, "
                  f"grads {t.grad_bytes:,} B")
            continue
        err = 100.0 * (m - t.saved_bytes) / t.saved_bytes if t.saved_bytes else 0.0
        print(f"{label:8s} saved {t.saved_bytes:,} B (model {m:,} B, {err:+.2f} %); "
              f"backward peak {t.peak_bytes - t.backward_start_bytes:,} B above its start; "
              f"forward peak {t.forward_peak_bytes:,} B; grads {t.grad_bytes:,} B")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
