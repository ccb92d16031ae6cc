"""Trace one steady-state training step of litgpt's own GPT module on the CPU (fake tensors), for the litgpt rows of
the published set: what its modelling code keeps, next to gpuplan's estimate for the same step.

litgpt is not a dependency. Unpack its wheel once and point the script at it:

    pip download litgpt==0.5.3 --no-deps -d /tmp/litgpt && (cd /tmp/litgpt && unzip -q litgpt-0.5.3-*.whl)
    PYTHONPATH=src python benchmarks/trace_litgpt.py --litgpt /tmp/litgpt --model tiny-llama-1.1b --batch 4 --seq 512

Only ``litgpt/config.py`` and ``litgpt/model.py`` run; ``litgpt.utils`` (which imports Lightning) is replaced by the
one helper they use. The step is litgpt/finetune/full.py's: ``logits = model(input_ids)``, ``chunked_cross_entropy(
logits[..., :-1, :], targets[..., 1:])`` (chunks of 128 rows), ``loss.backward()``, AdamW (foreach, as
``torch.optim.AdamW`` on CUDA) in bf16-true (parameters and states in bf16), ``--grad-accum`` micro-batches per
optimizer step.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
GiB = 1 << 30


def _find_multiple(n: int, k: int) -> int:
    return n if n % k == 0 else n + k - n % k


def _chunked_cross_entropy(logits, targets, chunk_size: int = 128):
    """litgpt.utils.chunked_cross_entropy for an unchunked lm_head (litgpt 0.5.3): cross-entropy per chunk of rows."""
    import torch

    logits = logits.reshape(-1, logits.size(-1))
    targets = targets.reshape(-1)
    losses = [torch.nn.functional.cross_entropy(a, b, ignore_index=-100, reduction="none")
              for a, b in zip(logits.split(chunk_size), targets.split(chunk_size))]
    n = (targets != -100).sum()
    return torch.cat(losses).sum() / n.maximum(torch.ones_like(n))


def trace(litgpt_dir: str, name: str, batch: int, seq: int, grad_accum: int = 1) -> dict[str, int]:
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from gpuplan.verify.trace import _PeakTracker

    sys.path.insert(0, litgpt_dir)
    utils = types.ModuleType("litgpt.utils")
    utils.find_multiple = _find_multiple
    sys.modules["litgpt.utils"] = utils
    pkg = types.ModuleType("litgpt")
    pkg.__path__ = [str(Path(litgpt_dir) / "litgpt")]
    sys.modules["litgpt"] = pkg
    from litgpt.config import Config
    from litgpt.model import GPT

    cfg = Config.from_name(name)
    with FakeTensorMode():
        torch.set_default_dtype(torch.bfloat16)  # bf16-true: Fabric builds the module in bf16
        model = GPT(cfg)
        model.max_seq_length = seq
        torch.set_default_dtype(torch.float32)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
        ids = torch.randint(0, cfg.vocab_size, (batch, seq))

        snaps: list[dict] = []

        def step(mt=None):
            for _ in range(grad_accum):  # full.py: fabric.no_backward_sync while accumulating, one GPU
                logits = model(ids)
                loss = _chunked_cross_entropy(logits[..., :-1, :], ids[..., 1:])
                loss.backward()  # full.py keeps ``logits`` bound through backward (rebound next iteration)
                if mt is not None:  # MemTracker's running peak, read and reset per micro-batch
                    snaps.append(dict(next(iter(mt.get_tracker_snapshot("peak").values()))))
                    mt.reset_mod_stats()
            opt.step()
            opt.zero_grad()
            if mt is not None:
                snaps.append(dict(next(iter(mt.get_tracker_snapshot("peak").values()))))

        step()  # creates the optimizer states
        mt = _PeakTracker()
        mt.track_external(model, opt, ids)
        with mt:
            step(mt)
        snap = max(snaps, key=lambda d: d["Total"])
    return {str(getattr(k, "name", k)): int(v) for k, v in snap.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--litgpt", required=True, help="folder holding the unpacked litgpt wheel (its litgpt/ package)")
    ap.add_argument("--model", default="tiny-llama-1.1b", help="a litgpt config name")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    args = ap.parse_args(argv)
    snap = trace(args.litgpt, args.model, args.batch, args.seq, args.grad_accum)
    for key, value in snap.items():
        print(f"{key:>8}  {value / GiB:8.3f} GiB  ({value / 1e9:.2f} GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
