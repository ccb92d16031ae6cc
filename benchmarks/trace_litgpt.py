"""Trace one steady-state training step of litgpt's own GPT module on the CPU (fake tensors), for the litgpt rows of
the published set: what its modelling code keeps, next to gpuplan's estimate for the same step.

litgpt is not a dependency. Unpack its wheel once and point the script at it:

    pip download litgpt==0.5.3 --no-deps -d /tmp/litgpt && (cd /tmp/litgpt && unzip -q litgpt-0.5.3-*.whl)
    PYTHONPATH=src python benchmarks/trace_litgpt.py --litgpt /tmp/litgpt --model tiny-llama-1.1b --batch 4 --seq 512

Only ``litgpt/config.py`` and ``litgpt/model.py`` run; ``litgpt.utils`` (which imports Lightning) is replaced by the
one helper they use. The step is litgpt/finetune/full.py's: ``logits = model(input_ids)``, ``chunked_cross_entropy(
logits[..., :-1, :], targets[..., 1:])`` (chunks of 128 rows), ``loss.backward()``, AdamW (foreach, as
``torch.optim.AdamW`` on CUDA) in bf16-true (parameters and states in bf16), ``--grad-accum`` micro-batches per
optimizer step. With ``--lora`` the step is litgpt/finetune/lora.py's: litgpt's ``lora.GPT`` with adapters on the
query and value (``--lora-r``), ``mark_only_lora_as_trainable``, ``model(input_ids, lm_head_chunk_size=128)``.

``--layer`` instead runs one litgpt ``Block`` forward on real CPU tensors under ``saved_tensors_hooks`` and prints the
bytes of the tensors it keeps for backward (each storage once, parameters and the rotary buffers left out), next to
gpuplan's ``--model-impl litgpt`` layer for the same shape.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
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


def _import_litgpt(litgpt_dir: str):
    """litgpt's ``model`` and ``lora`` modules from the unpacked wheel, with ``litgpt.utils`` (which imports Lightning)
    replaced by the helpers they use."""
    import importlib

    if "litgpt" not in sys.modules:
        utils = types.ModuleType("litgpt.utils")
        utils.find_multiple = _find_multiple
        utils.map_old_state_dict_weights = lambda state_dict, mapping, prefix: state_dict
        sys.modules["litgpt.utils"] = utils
        pkg = types.ModuleType("litgpt")
        pkg.__path__ = [str(Path(litgpt_dir) / "litgpt")]
        pkg.utils = utils
        sys.modules["litgpt"] = pkg
    return importlib.import_module("litgpt.model"), importlib.import_module("litgpt.lora")


def _config(lora_mod, name: str, lora_r: int, lora_dropout: float = 0.0, **overrides):
    """litgpt's config ``name`` (``lora.Config`` with adapters on the query and value when ``lora_r``)."""
    if lora_r:
        return lora_mod.Config.from_name(name, lora_r=lora_r, lora_alpha=2 * lora_r, lora_dropout=lora_dropout,
                                         lora_query=True, lora_value=True, **overrides)
    return lora_mod.BaseConfig.from_name(name, **overrides)


def layer_saved(litgpt_dir: str, name: str, batch: int, seq: int, lora_r: int = 0, lora_dropout: float = 0.0,
                **overrides) -> tuple[int, object]:
    """Bytes one litgpt ``Block`` (bf16, real CPU tensors) keeps for backward: every tensor its forward hands to
    autograd, each storage once, without its parameters, buffers, the rotary tables or its input. Returns (bytes, config)."""
    import torch

    model_mod, lora_mod = _import_litgpt(litgpt_dir)
    cfg = _config(lora_mod, name, lora_r, lora_dropout, n_layer=1, **overrides)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # bf16-true: parameters (adapters included) in bf16
    try:
        block = (lora_mod if lora_r else model_mod).Block(cfg, 0)
    finally:
        torch.set_default_dtype(torch.float32)
    if lora_r:
        lora_mod.mark_only_lora_as_trainable(block)
    cos, sin = model_mod.build_rope_cache(seq, cfg.rope_n_elem, base=cfg.rope_base)
    x = torch.randn(batch, seq, cfg.n_embd, dtype=torch.bfloat16, requires_grad=True)
    from gpuplan.verify.patches import cuda_dropout
    from gpuplan.verify.saved import saved_bytes

    # LoRAQKVLinear registers its index buffer (lora_ind) on the first forward: excluded once the block has run.
    # Dropout as CUDA runs it (native_dropout keeps a 1-byte mask; the CPU's keeps a noise tensor)
    with cuda_dropout():
        kept = saved_bytes(lambda: block(x, cos, sin), lambda: (*block.parameters(), *block.buffers(), cos, sin, x))
    return kept, cfg


def gpuplan_layer(cfg, batch: int, seq: int, lora_r: int = 0, lora_dropout: float = 0.0) -> int:
    """gpuplan's ``--model-impl litgpt`` saved set of one layer of litgpt config ``cfg`` (bf16, adapters on query and
    value when ``lora_r``, their input dropped with ``lora_dropout``), in bytes."""
    from gpuplan.model.resolve import spec_from_dims
    from gpuplan.train.config import TrainConfig
    from gpuplan.train.context import activation_context
    from gpuplan.train.layers import decoder_layer
    from gpuplan.train.peft import layer_flags, trainability
    from gpuplan.train.precision import recipe_for

    spec = spec_from_dims(layers=1, hidden=cfg.n_embd, heads=cfg.n_head, kv_heads=cfg.n_query_groups,
                          ffn=cfg.intermediate_size, vocab=cfg.padded_vocab_size, head_dim=cfg.head_size)
    if getattr(cfg, "sliding_window_size", None):  # Mistral's and Phi-3's configs: the mask every layer builds
        spec = replace(spec, sliding_window=cfg.sliding_window_size)
    kw = dict(method="lora", lora_rank=lora_r, lora_targets=("q_proj", "v_proj"), lora_dropout=lora_dropout) \
        if lora_r else {}
    tc = TrainConfig(batch=batch, seq=seq, stack="litgpt", **kw)
    c = activation_context(tc, recipe_for(tc.precision, tc.framework), spec)
    la = decoder_layer(spec, 0, c, dict(layer_flags(spec, trainability(spec, tc))[0]), True)
    return la.saved.bytes(batch, seq)


def _chunked_cross_entropy_list(logits: list, targets):
    """litgpt.utils.chunked_cross_entropy for a chunked lm_head (litgpt 0.5.3): cross-entropy per logits chunk."""
    import torch

    chunks = [c.reshape(-1, c.size(-1)) for c in logits]
    t_chunks = [t.reshape(-1) for t in targets.split(logits[0].size(1), dim=1)]
    losses = [torch.nn.functional.cross_entropy(a, b, ignore_index=-100, reduction="none")
              for a, b in zip(chunks, t_chunks)]
    n = (targets != -100).sum()
    return torch.cat(losses).sum() / n.maximum(torch.ones_like(n))


def trace(litgpt_dir: str, name: str, batch: int, seq: int, grad_accum: int = 1, lora_r: int = 0) -> dict[str, int]:
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from gpuplan.verify.patches import skip_frozen_grad_hooks
    from gpuplan.verify.trace import _PeakTracker

    model_mod, lora_mod = _import_litgpt(litgpt_dir)
    cfg = _config(lora_mod, name, lora_r)
    with FakeTensorMode():
        torch.set_default_dtype(torch.bfloat16)  # bf16-true: Fabric builds the module in bf16
        model = (lora_mod if lora_r else model_mod).GPT(cfg)
        model.max_seq_length = seq
        torch.set_default_dtype(torch.float32)
        if lora_r:
            lora_mod.mark_only_lora_as_trainable(model)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, foreach=True)
        ids = torch.randint(0, cfg.vocab_size, (batch, seq))

        snaps: list[dict] = []

        def step(mt=None):
            for _ in range(grad_accum):  # full.py: fabric.no_backward_sync while accumulating, one GPU
                if lora_r:  # lora.py: the 128-token chunked head, the last chunk shifted
                    logits = model(ids, lm_head_chunk_size=128)
                    logits[-1] = logits[-1][..., :-1, :]
                    loss = _chunked_cross_entropy_list(logits, ids[..., 1:])
                else:
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
        skip_frozen_grad_hooks(mt, model)
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
    ap.add_argument("--lora", type=int, default=0, metavar="R",
                    help="LoRA of rank R on the query and value (litgpt/finetune/lora.py) instead of full training")
    ap.add_argument("--layer", action="store_true",
                    help="one Block's saved tensors (real CPU tensors) against gpuplan's --model-impl litgpt layer")
    args = ap.parse_args(argv)
    if args.layer:
        traced, cfg = layer_saved(args.litgpt, args.model, args.batch, args.seq, args.lora)
        est = gpuplan_layer(cfg, args.batch, args.seq, args.lora)
        print(f"{args.model} one Block, {args.batch} x {args.seq}{f', LoRA r{args.lora} on q, v' if args.lora else ''}:"
              f" litgpt keeps {traced:,} B, gpuplan {est:,} B ({(est - traced) / traced:+.2%})")
        return 0
    snap = trace(args.litgpt, args.model, args.batch, args.seq, args.grad_accum, args.lora)
    for key, value in snap.items():
        print(f"{key:>8}  {value / GiB:8.3f} GiB  ({value / 1e9:.2f} GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
