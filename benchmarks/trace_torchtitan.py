"""Trace one decoder layer of torchtitan's own Llama module on the CPU: the tensors it keeps for backward, next to
gpuplan's ``--model-impl torchtitan`` layer, for the torchtitan rows of the published set.

torchtitan is not a dependency. Unpack its wheel once and point the script at it:

    pip download torchtitan==0.1.0 --no-deps -d /tmp/torchtitan && (cd /tmp/torchtitan && unzip -q torchtitan-*.whl)
    PYTHONPATH=src python benchmarks/trace_torchtitan.py --torchtitan /tmp/torchtitan --dim 4096 --heads 32 \\
        --kv-heads 8 --batch 1 --seq 256

Only ``torchtitan/models/llama3/model/model.py``, its ``args.py`` and ``models/attention.py`` run; the modules they
import for training (tokenizer, job config, train spec, CUDA capability query) are replaced by empty stand-ins.
torchtitan 0.1.0's ``TransformerBlock`` uses ``nn.RMSNorm``, whose saved tensors depend on the PyTorch kernel (the
CPU's composite keeps an fp32 normalised copy, CUDA's fused kernel of recent releases only the input and rstd);
the December 2024 code the torchtitan stack profile follows (commit 004b3148, ``models/norms.py`` ``RMSNorm``:
``_norm(x.float()).type_as(x) * weight``) runs the same operations as transformers' ``LlamaRMSNorm``, which the
trace puts in the block's two norm slots. The attention (``repeat_kv`` before SDPA, RoPE through ``freqs_cis``) and
the feed-forward are torchtitan's own, unchanged between the two.

One ``TransformerBlock`` forward runs on real CPU tensors in bf16 under ``saved_tensors_hooks``; each storage handed
to autograd is counted once, without the block's parameters, ``freqs_cis`` or its input. With ``--op-sac`` the block
runs under torchtitan's op-level selective checkpointing policy instead and the outputs the policy saves (plus the
block input) are counted, against ``gpuplan.train.checkpointing.op_sac_kept``: the policy keeps matmul and attention
kernel outputs, so the K/V copies and the rotary temporaries are recomputed, never kept.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def _stub(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def _import_torchtitan(torchtitan_dir: str):
    """torchtitan's llama3 ``model`` and ``args`` modules from the unpacked wheel, without its training stack."""
    if "torchtitan.models.llama3.model.model" not in sys.modules:
        root = Path(torchtitan_dir) / "torchtitan"
        _stub("torchtitan").__path__ = [str(root)]
        for sub in ("models", "models.llama3", "models.llama3.model", "protocols", "components", "tools"):
            _stub(f"torchtitan.{sub}").__path__ = [str(root / sub.replace(".", "/"))]

        class BaseModelArgs:  # the train spec's base classes are typing aids only
            pass

        class ModelProtocol:
            pass

        _stub("torchtitan.protocols.train_spec", BaseModelArgs=BaseModelArgs, ModelProtocol=ModelProtocol)
        _stub("torchtitan.components.tokenizer", Tokenizer=object)
        _stub("torchtitan.config_manager", JobConfig=object)
        _stub("torchtitan.tools.utils", has_cuda_capability=lambda *a: False)
    return (importlib.import_module("torchtitan.models.llama3.model.model"),
            importlib.import_module("torchtitan.models.llama3.model.args"))


def layer_saved(torchtitan_dir: str, batch: int, seq: int, **args) -> tuple[int, object]:
    """Bytes one torchtitan ``TransformerBlock`` (bf16, real CPU tensors, December 2024 RMSNorm) keeps for backward.
    ``args``: ``TransformerModelArgs`` fields (dim, n_heads, n_kv_heads, multiple_of, ...). Returns (bytes, args)."""
    import torch
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    model_mod, args_mod = _import_torchtitan(torchtitan_dir)
    margs = args_mod.TransformerModelArgs(**args, max_seq_len=seq)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    try:
        block = model_mod.TransformerBlock(0, margs)
        block.attention_norm = LlamaRMSNorm(margs.dim, eps=margs.norm_eps)
        block.ffn_norm = LlamaRMSNorm(margs.dim, eps=margs.norm_eps)
    finally:
        torch.set_default_dtype(torch.float32)
    freqs_cis = model_mod.precompute_freqs_cis(margs.dim // margs.n_heads, seq, margs.rope_theta)
    x = torch.randn(batch, seq, margs.dim, dtype=torch.bfloat16, requires_grad=True)
    from gpuplan.verify.saved import saved_bytes

    kept = saved_bytes(lambda: block(x, freqs_cis), lambda: (*block.parameters(), freqs_cis, x))
    return kept, block


def op_sac_saved(torchtitan_dir: str, batch: int, seq: int, **args) -> tuple[int, object]:
    """Bytes torchtitan's op-level selective checkpointing keeps of the same block between forward and backward:
    the block runs in ``torch.utils.checkpoint`` with ``create_selective_checkpoint_contexts`` and the rule of
    torchtitan's policy (``_save_list``: mm and the SDPA kernels; every second mm recomputed; parallelize_llama.py,
    commit 004b3148), the CPU's flash kernel counted as CUDA's; returns (the saved outputs plus the block input,
    the block)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

    _, block = layer_saved(torchtitan_dir, batch, seq, **args)
    model_mod, _ = _import_torchtitan(torchtitan_dir)
    margs = block.attention
    freqs_cis = model_mod.precompute_freqs_cis(margs.head_dim, seq)
    mm = torch.ops.aten.mm.default
    kernels = {torch.ops.aten._scaled_dot_product_flash_attention.default,
               torch.ops.aten._scaled_dot_product_efficient_attention.default,
               torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default}
    seen = {"mm": 0, "bytes": 0}

    def saved(func) -> bool:
        return func in kernels or (func == mm and seen["mm"] % 2 == 1)

    def policy(ctx, func, *a, **k):
        if ctx.is_recompute:
            return CheckpointPolicy.PREFER_RECOMPUTE
        if func == mm:
            seen["mm"] += 1
        return CheckpointPolicy.MUST_SAVE if saved(func) else CheckpointPolicy.PREFER_RECOMPUTE

    class Observe(TorchDispatchMode):  # entered last, so it sees each op after the policy has counted it
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if saved(func):
                outs = out if isinstance(out, (tuple, list)) else (out,)
                seen["bytes"] += sum(t.untyped_storage().nbytes() for t in outs if isinstance(t, torch.Tensor))
            return out

    class Context:
        def __init__(self):
            self.inner, _ = create_selective_checkpoint_contexts(policy)
            self.observe = Observe()

        def __enter__(self):
            self.inner.__enter__()
            self.observe.__enter__()

        def __exit__(self, *exc):
            self.observe.__exit__(*exc)
            return self.inner.__exit__(*exc)

    def contexts():
        return Context(), create_selective_checkpoint_contexts(policy)[1]

    x = torch.randn(batch, seq, block.attention.wq.in_features, dtype=torch.bfloat16, requires_grad=True)
    checkpoint(block, x, freqs_cis, use_reentrant=False, context_fn=contexts)
    return seen["bytes"] + x.untyped_storage().nbytes(), block


def gpuplan_op_sac(block, batch: int, seq: int) -> int:
    """gpuplan's op-level kept set of the same layer (``gpuplan.train.checkpointing.op_sac_kept``), in bytes."""
    from gpuplan.train.checkpointing import op_sac_kept
    from gpuplan.train.config import TrainConfig
    from gpuplan.train.context import activation_context
    from gpuplan.train.precision import recipe_for

    spec = _spec(block)
    tc = TrainConfig(batch=batch, seq=seq, stack="torchtitan", precision="bf16", attention="flash")
    return op_sac_kept(spec, activation_context(tc, recipe_for(tc.precision, tc.framework), spec), 0).bytes(batch, seq)


def _spec(block):
    from gpuplan.model.resolve import spec_from_dims

    att, ff = block.attention, block.feed_forward
    return spec_from_dims(layers=1, hidden=att.wq.in_features, heads=att.n_heads, kv_heads=att.n_kv_heads,
                          ffn=ff.w1.out_features, head_dim=att.head_dim)


def gpuplan_layer(block, batch: int, seq: int) -> int:
    """gpuplan's ``--model-impl torchtitan`` saved set of the same layer (bf16, full training), in bytes."""
    from gpuplan.train.config import TrainConfig
    from gpuplan.train.context import activation_context
    from gpuplan.train.layers import decoder_layer
    from gpuplan.train.peft import layer_flags, trainability
    from gpuplan.train.precision import recipe_for

    spec = _spec(block)
    tc = TrainConfig(batch=batch, seq=seq, stack="torchtitan", recompute="none", precision="bf16",
                     optimizer_impl="foreach")
    c = activation_context(tc, recipe_for(tc.precision, tc.framework), spec)
    la = decoder_layer(spec, 0, c, dict(layer_flags(spec, trainability(spec, tc))[0]), True)
    return la.saved.bytes(batch, seq)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--torchtitan", required=True, help="folder holding the unpacked torchtitan wheel")
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--multiple-of", type=int, default=1024)
    ap.add_argument("--ffn-dim-multiplier", type=float, default=1.3)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--op-sac", action="store_true",
                    help="what torchtitan's op-level selective checkpointing keeps of the block instead")
    args = ap.parse_args(argv)
    if args.op_sac:
        traced, block = op_sac_saved(args.torchtitan, args.batch, args.seq, dim=args.dim, n_heads=args.heads,
                                     n_kv_heads=args.kv_heads, multiple_of=args.multiple_of,
                                     ffn_dim_multiplier=args.ffn_dim_multiplier)
        est = gpuplan_op_sac(block, args.batch, args.seq)
        print(f"torchtitan TransformerBlock under the op-level policy, {args.batch} x {args.seq}: keeps {traced:,} B, "
              f"gpuplan {est:,} B ({(est - traced) / traced:+.2%})")
        return 0
    traced, block = layer_saved(args.torchtitan, args.batch, args.seq, dim=args.dim, n_heads=args.heads,
                                n_kv_heads=args.kv_heads, multiple_of=args.multiple_of,
                                ffn_dim_multiplier=args.ffn_dim_multiplier)
    est = gpuplan_layer(block, args.batch, args.seq)
    print(f"torchtitan TransformerBlock dim {args.dim}, {args.heads}/{args.kv_heads} heads, {args.batch} x {args.seq}: "
          f"keeps {traced:,} B, gpuplan {est:,} B ({(est - traced) / traced:+.2%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
