"""A QLoRA step with bitsandbytes' NF4 ``Linear4bit`` on the CPU, with and without PEFT's
``prepare_model_for_kbit_training``, beside gpuplan's estimate (``gpuplan.train.kbit``).

    pip install bitsandbytes          # its CPU backend runs the NF4 matmuls
    python benchmarks/trace_kbit.py [--seq 1024 2048] [--hidden 256] [--layers 2] [--vocab 8000]

The model is a transformers Llama built from a config, its decoder linears replaced by ``Linear4bit`` (NF4, double
quantization, bf16 compute) as transformers' bitsandbytes integration does, then PEFT LoRA (rank 8 on every
projection) with gradient checkpointing (non-reentrant). Memory is PyTorch's ``MemTracker`` peak over a steady-state
step (the second of two), AdamW foreach.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def config(hidden: int, layers: int, vocab: int) -> dict:
    return dict(model_type="llama", hidden_size=hidden, intermediate_size=hidden * 11 // 4, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, vocab_size=vocab, max_position_embeddings=8192,
                tie_word_embeddings=False)


def traced_peak(cfg: dict, seq: int, prepare: bool) -> int:
    import bitsandbytes as bnb
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from torch.distributed._tools.mem_tracker import MemTracker
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    hf = AutoConfig.for_model(**cfg)
    hf._attn_implementation = "sdpa"
    model = AutoModelForCausalLM.from_config(hf).to(torch.bfloat16)

    def quantize(module) -> None:
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=torch.bfloat16, quant_type="nf4", compress_statistics=True)
                q.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, quant_type="nf4",
                                             compress_statistics=True)
                setattr(module, name, q)
            else:
                quantize(child)

    quantize(model.model.layers)  # the head stays unquantized (transformers' get_keys_to_not_convert)
    model = model.to("cpu")  # Params4bit quantizes on its move to a device
    model.is_loaded_in_4bit = True
    kwargs = {"use_reentrant": False}
    if prepare:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                                gradient_checkpointing_kwargs=kwargs)
    else:
        for p in model.parameters():
            p.requires_grad_(False)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=list(TARGETS), lora_dropout=0.0,
                                             task_type="CAUSAL_LM"))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, foreach=True)
    ids = torch.randint(0, cfg["vocab_size"], (1, seq))
    # MemTracker hooks every parameter; frozen ones take no gradient hook
    hook, post = torch.Tensor.register_hook, torch.Tensor.register_post_accumulate_grad_hook

    class _NoHook:
        def remove(self) -> None:
            pass

    torch.Tensor.register_hook = lambda self, h: hook(self, h) if self.requires_grad else _NoHook()
    torch.Tensor.register_post_accumulate_grad_hook = lambda self, h: post(self, h) if self.requires_grad \
        else _NoHook()
    try:
        tracker = MemTracker()
        tracker.track_external(model, optimizer)
        with tracker:
            for step in range(2):
                if step == 1:
                    tracker.reset_mod_stats()
                loss = model(input_ids=ids, labels=ids, use_cache=False).loss
                loss.backward()
                del loss
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        snap = tracker.get_tracker_snapshot("peak")
    finally:
        torch.Tensor.register_hook, torch.Tensor.register_post_accumulate_grad_hook = hook, post
    return int(snap[next(iter(snap))]["Total"])


def estimated_peak(cfg: dict, seq: int, prepare: bool) -> int:
    from gpuplan.model.hf_config import spec_from_config
    from gpuplan.train.config import TrainConfig
    from gpuplan.train.engine import estimate_training

    run = TrainConfig(batch=1, seq=seq, precision="bf16", method="qlora", lora_rank=8, lora_targets=TARGETS,
                      recompute="full", kbit_prepare=prepare, optimizer_impl="foreach", attention="sdpa")
    return estimate_training(spec_from_config(dict(cfg)), run).memory.allocated_peak_bytes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, nargs="+", default=[1024, 2048])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=8000)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    cfg = config(args.hidden, args.layers, args.vocab)
    print(f"{'seq':>6} {'kbit prepare':>12} {'traced B':>14} {'gpuplan B':>14} {'error':>8}")
    for seq in args.seq:
        for prepare in (False, True):
            traced, est = traced_peak(cfg, seq, prepare), estimated_peak(cfg, seq, prepare)
            print(f"{seq:>6} {'on' if prepare else 'off':>12} {traced:>14,} {est:>14,} {100 * (est / traced - 1):>+7.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
