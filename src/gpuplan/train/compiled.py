"""``torch.compile``'s effect on one decoder layer's training memory (PyTorch 2.13, Inductor).

Under ``torch.compile`` a layer's forward and backward are one joint graph that AOTAutograd splits with its
min-cut rematerialization partitioner (``torch/_functorch/partitioners.py``,
``min_cut_rematerialization_partition``, the default for training): what crosses from the forward graph to the
backward graph is a minimum cut of the joint graph in which matmuls and attention kernels may not be recomputed
(``is_compute_intensive`` / the ban list: ``aten.mm``, ``_scaled_dot_product_*_attention``) while pointwise ops,
casts and views may (``is_recomputable``). Compared with eager autograd (``gpuplan.train.activations``), for a
Llama-style decoder layer (pre-norm RMSNorm, rotary, SDPA, gated SiLU MLP):

- **RMSNorm**: eager keeps the fp32 upcast of the input and the bf16 normalised tensor before the weight (for the
  weight's gradient); the compiled layer keeps the norm's input at its own dtype and the fp32 ``rsqrt`` and
  recomputes the upcast and the normalisation in backward. For the first norm the input is the layer input
  itself; for the second, the residual ``h1 = x + o_proj(attn)`` is recomputed from the saved o_proj output.
- **SiLU**: the activation's output is recomputed from the saved gate output; gate's and up's outputs and their
  product (down's input) stay saved, as matmul inputs and outputs.
- **rotary, attention**: the kernel's q, k, v, output and logsumexp stay saved (the attention kernel is never
  recomputed), as in eager; the rotated q and k are its inputs.
- **LoRA adapters**: a cast of the adapter's input to the adapters' dtype (PEFT's fp32 adapters) is recomputed
  from the input at its own dtype; the rank-r intermediate stays saved.

So a layer saves, per token, in bytes with e the compute dtype size, r the residual stream's (traced:
``gpuplan.verify.compile_trace``, transformers 5.23 ``LlamaDecoderLayer``, bf16, three shapes, exact):

    full training:  r·h (its input) + e·(5h + 2·kv_dim + 3·ffn) + 4·heads + 8

against eager's ``e·(10h + 2·kv_dim + 4·ffn) + 4·heads + 8`` with its fp32 norm copies — for Llama 3.1 8B in bf16
that is 139,400 B a token compiled (its input included) against 200,840 B eager.

Inductor also fuses the forward's and the backward's pointwise chains into single kernels, so the backward's
high-water mark above the saved set is that of the matmul gradients alone (``compiled_bwd_extra``); the norm
backward's fp32 temporaries of eager autograd are not materialised.

For LoRA the effect is smaller than the saved sets suggest: the adapters' input casts (PEFT's fp32 adapters) go,
and the rest of the saved set shrinks as above, but the fused backward holds more ffn-wide gradients
(``compiled_bwd_extra``). With adapters in the layer's dtype (torchtune's) a traced layer with torchtune's Llama 3.1
targets peaks 0.9 % lower compiled than eager (2 × 300 tokens, h 256, ffn 704: 8,448,960 against 8,525,800 B),
while full training peaks 34 % lower (6,211,648 against 9,437,248 B).

Under full activation checkpointing (torchtune: ``checkpoint_wrapper`` around each layer, the compiled module
inside it; ``training.compile_model`` compiles each ``TransformerSelfAttentionLayer``) the forward keeps the
checkpoint's input only, and backward reruns the compiled forward: the recomputed layer holds the compiled saved
set above, its input being the checkpoint's own (traced: the checkpointed compiled layer's step peaks exactly where
the uncheckpointed one does, 6,211,648 B full training and 8,448,960 B LoRA at 2 × 300 tokens, h 256, ffn 704).

The compiled loss (torchtune ``training.compile_loss``: each chunk's ``cross_entropy(logits.float(), labels)``
compiled) is traced but not modelled: per chunk it saves only per-row fp32 statistics (16 B a token) where eager
autograd keeps every chunk's fp32 log-softmax output until backward (4·T·V), materialises no fp32 copy of a chunk
in forward, and its backward writes each chunk's logits gradient in the logits' dtype (traced: 1,024 tokens in 4
chunks, V 8,192: saved 16,384 B compiled against 33,562,640 B eager; backward peak 8·chunk·V, the bf16 gradients,
against 24·chunk·V). The engine's loss region (``gpuplan.train.logits``) stays eager's, an upper bound for a
compiled loss.

Layouts other than the Llama-style dense layer (MoE blocks, LayerNorm, plain or fused MLPs, Gemma/OLMo-2 norms)
keep the eager saved set, with a warning.
"""

from __future__ import annotations

from gpuplan.model.spec import ModelSpec

# Layouts whose dense decoder layer the compiled saved set was traced for (Llama-style: pre-norm RMSNorm, separate
# q/k/v projections, rotary, gated SiLU MLP)
COMPILED_LAYOUTS = ("llama", "mistral", "qwen2", "qwen3")


COMPILE_ASSUMPTION = ("torch.compile: each decoder layer saves what AOTAutograd's min-cut partitioner keeps (matmul "
                      "inputs and outputs, the attention kernel's tensors, the norm inputs) and recomputes the norms' "
                      "fp32 upcasts and the SiLU output in backward; Inductor fuses the backward's pointwise ops "
                      "(gpuplan.train.compiled)")
COMPILE_UNSUPPORTED = ("torch.compile is modelled for Llama-style dense decoder layers only: this model's layers are "
                       "estimated as eager autograd runs them")
COMPILE_MODES = ("torch.compile is modelled with --recompute none or full and without tensor parallelism: this run's "
                 "layers are estimated as eager autograd runs them")


def compiled_supported(spec: ModelSpec) -> bool:
    """Whether the compiled saved set applies to every decoder layer of ``spec``."""
    return (spec.layout in COMPILED_LAYOUTS and spec.norm == "rmsnorm" and spec.moe is None and spec.mla is None
            and not spec.qk_norm and not spec.learned_positions)


def compile_modelled(spec: ModelSpec, act_mode: str, tp: int) -> bool:
    """Whether a run with ``--compile on`` gets the compiled saved set: a supported layout, no recompute or whole-layer
    recompute (the traced cases; selective policies and tensor-parallel graphs were not traced)."""
    return compiled_supported(spec) and act_mode in ("none", "full") and tp == 1


def compiled_norm(name: str, x_key: str, in_bytes: int, x_rg: bool, w_rg: bool, width: int, rows: int
                  ) -> tuple[tuple[str, float], ...]:
    """A compiled RMSNorm's saved tensors: its input at its own dtype (``in_bytes``·width, kept for either
    gradient) and the fp32 ``rsqrt`` (4·rows) when the input needs a gradient; the upcast, the normalised tensor
    and the weight product are recomputed in backward (``torch/_functorch/partitioners.py``: pointwise ops are
    recomputable). The second norm's input h1 is recomputed from the o_proj output it saves instead, the same
    size when the residual stream is in the compute dtype. Returns (key, bytes per token) pairs."""
    out: list[tuple[str, float]] = []
    if x_rg or w_rg:
        out.append((x_key, float(in_bytes * width)))
    if x_rg:
        out.append((f"{name}.rstd", 4.0 * rows))
    return tuple(out)


def compiled_drops(key: str) -> bool:
    """Eager saved tensors the compiled layer recomputes: the gated MLP's activation output (SiLU of the saved gate
    output, one fused pointwise kernel in backward)."""
    return key.endswith(".act_out")


def compiled_layer_per_token(h: int, kv_dim: int, ffn: int, heads: int, e: int = 2, r: int = 2) -> int:
    """Bytes per token one compiled Llama-style layer saves for backward in full training, its input included:
    r·h + e·(5h + 2·kv_dim + 3·ffn) + 4·heads + 8 (module docstring; the input, the first norm's output, q after
    rotary, the attention output, the o_proj output, the second norm's output; k, v; gate, up and their
    product; the fp32 logsumexp per head and two fp32 rsqrt)."""
    return r * h + e * (5 * h + 2 * kv_dim + 3 * ffn) + 4 * heads + 8


def eager_layer_per_token(h: int, kv_dim: int, ffn: int, heads: int, e: int = 2) -> int:
    """The same for eager autograd in bf16 (``gpuplan.train.activations`` module docstring): two fp32 norm upcasts
    (4h each), their bf16 normalised tensors, the norm outputs, q, the attention output, k, v, gate, up, the SiLU
    output and the product: e·(10h + 2·kv_dim + 4·ffn) + 4·heads + 8 with e = 2 (the fp32 copies counted as 4h)."""
    return e * (10 * h + 2 * kv_dim + 4 * ffn) + 4 * heads + 8


def compiled_bwd_extra(e: int, ffn: int, mlp_adapters: int = 0) -> float:
    """The compiled layer's backward high-water mark beyond its saved set, per token, when down_proj's gradients
    exist (the first the backward writes): ffn-wide tensors in the compute dtype around Inductor's fused
    SiLU-and-product backward kernel, once down's input (the product) is released after its last use.

    - full training: e·ffn — the gradient of down's input and the kernel's gate/up gradients, one of which reuses
      that gradient's buffer (eager autograd holds two more there, ``gpuplan.train.layers``);
    - LoRA on gate, up and down (torchtune's Llama 3.1 targets): 4·e·ffn — the adapter path of down's input
      gradient is a second matmul output, and the ``* scaling`` of gate's and up's adapter outputs gives each its
      own scaled gradient beside the plain one: one ffn-wide tensor more per adapted MLP projection
      (``mlp_adapters``).

    The later points (the norms', the attention core's) stay lower: the compiled backward frees each saved tensor
    after its last use and writes each norm's gradient in one fused kernel, without eager's fp32 temporaries.
    Traced (``gpuplan.verify.compile_trace``, bf16): 2 × 300 tokens, h 256, ffn 704, full training 844,800 B =
    600 · 2 · 704 beside down's 360,448 B weight gradient, LoRA rank 8 on q, v, o, gate, up, down 4 × 844,800 B
    beside down's adapter gradients; Llama 3.1 8B's ratios at 1/8 width (512 tokens, h 512, ffn 1792), full
    training exact, LoRA -0.11 %. Not covered: a layer whose weight gradients outweigh its activations (tokens
    below h), where Inductor's order of the weight-gradient matmuls sets the peak (traced at 128
    tokens, h 256, ffn 512: 749,568 B above the backward's start against 393,216 B modelled)."""
    return float(e * ffn * (1 + mlp_adapters))
