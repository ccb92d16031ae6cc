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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("batch", 2), ("seq", 64), ("hidden", 256), ("heads", 8), ("kv-heads", 2), ("ffn", 512),
                          ("lora", 0)):
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--checkpoint", action="store_true", help="the layer inside torch.utils.checkpoint")
    ap.add_argument("--eager", action="store_true", help="also trace the eager layer")
    a = ap.parse_args(argv)
    from gpuplan.train.compiled import model_layer_bytes

    modes = ([False] if a.eager else []) + [True]
    for compiled in modes:
        t = trace_layer(a.batch, a.seq, a.hidden, a.heads, a.kv_heads, a.ffn, compiled=compiled,
                        checkpoint=a.checkpoint, lora_rank=a.lora, lora_targets=LORA_TARGETS if a.lora else ())
        m = model_layer_bytes(a.batch, a.seq, a.hidden, a.heads, a.kv_heads, a.ffn, compiled=compiled,
                              lora_rank=a.lora, lora_targets=LORA_TARGETS if a.lora else ())
        err = 100.0 * (m - t.saved_bytes) / t.saved_bytes if t.saved_bytes else 0.0
        print(f"{'compiled' if compiled else 'eager':8s} saved {t.saved_bytes:>12,d} B (model {m:>12,d} B, "
              f"{err:+.2f} %)  input saved {t.input_saved}  forward peak {t.forward_peak_bytes:>12,d}  "
              f"at backward {t.backward_start_bytes:>12,d}  peak {t.peak_bytes:>12,d}  grads {t.grad_bytes:>12,d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
