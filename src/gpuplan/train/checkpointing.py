"""Activation-checkpointing policies of real training stacks beyond Hugging Face's whole-layer checkpointing.

torchtitan's op-level selective activation checkpointing (``selective_ac_option = 'op'``; torchtitan
``parallelisms/parallelize_llama.py`` ``_apply_ac_to_transformer_block``, commit 004b3148, Dec 2024) wraps each
decoder layer in ``checkpoint_wrapper`` with ``create_selective_checkpoint_contexts`` (torch/utils/checkpoint.py) and
a policy that marks MUST_SAVE the outputs of the ops in ``_save_list`` = {``aten.mm``, SDPA flash / memory-efficient
attention, ``_c10d_functional.reduce_scatter_tensor``}, except every second ``aten.mm`` of the layer's forward (the
count restarts in each checkpointed layer); everything else is PREFER_RECOMPUTE. During backward the layer's forward
runs again, the saved outputs are handed back instead of recomputed, and the layer holds its full saved set.

What a layer keeps between forward and backward is therefore (per token, e = compute dtype size, r = residual):

    r·h  (the checkpoint's input)  +  e·Σ out_features of the odd-numbered bias-free projections
    +  e·q_dim + 4·heads  (the attention kernel's output and fp32 logsumexp, when SDPA runs flash / efficient)

A projection with a bias runs ``addmm`` (``aten::linear`` folds the bias into the GEMM), which is not in the list
and does not advance the count; routed experts run grouped GEMMs, also not counted. Under tensor parallelism the
column-split outputs and the attention output are 1/tp per rank, a row-split projection's ``mm`` output is the
whole hidden size (partial sums before the reduction), and with sequence parallelism the reduce-scatter outputs
(h/tp, both row projections) are saved too and the layer input is 1/tp.

The CPU can show this policy: ``torch.utils.checkpoint`` with the same policy under fake tensors
(tests/test_stacks.py traces a Llama layer and compares the saved bytes).
"""

from __future__ import annotations

from gpuplan.model.spec import ModelSpec
from gpuplan.model.tensors import tensor_table
from gpuplan.train.activations import Act, ActContext


def op_sac_projections(spec: ModelSpec, layer: int) -> tuple[tuple[str, int, str, bool], ...]:
    """The layer's projections in forward order: (module, out_features, tp kind, saved by the 'op' policy)."""
    table = [t for t in tensor_table(spec) if t.layer == layer and t.expert is None]
    biased = {t.name.removesuffix(".bias") for t in table if t.is_bias}
    out, mm = [], 0
    for t in table:
        if not t.linear or t.is_bias:
            continue
        if t.name.removesuffix(".weight") in biased:
            out.append((t.module, t.shape[0], t.tp, False))  # addmm: neither saved nor counted
            continue
        mm += 1
        out.append((t.module, t.shape[0], t.tp, mm % 2 == 1))
    return tuple(out)


def op_sac_kept(spec: ModelSpec, c: ActContext, layer: int, tp: int = 1, sp: bool = False) -> Act:
    """Bytes per token one decoder layer keeps under torchtitan's op-level policy, on one tensor-parallel rank
    (formula in the module docstring)."""
    h = spec.hidden_size
    tok = c.r * h / (tp if sp else 1)  # the checkpoint's input
    rows = 0.0
    for _, out_f, kind, saved in op_sac_projections(spec, layer):
        if saved:
            rows += out_f / tp if kind == "column" else out_f
        if sp and kind == "row":
            rows += h / tp  # the reduce-scatter output, in the save list
    tok += c.e * rows
    if c.attention in ("sdpa", "flash"):
        tok += c.e * spec.num_heads * spec.head_dim / tp + 4 * spec.num_heads / tp
    return Act(tok=float(tok))


def offloaded_inputs(kept_bytes: tuple[int, ...], offload: bool) -> tuple[tuple[int, ...], int]:
    """(per layer, what stays on the GPU between a checkpointed layer's forward and backward; bytes in host memory).

    Unsloth's offloaded gradient checkpointing (``use_gradient_checkpointing="unsloth"``; unsloth_zoo
    gradient_checkpointing.py ``Unsloth_Offloaded_Gradient_Checkpointer``, first released in unsloth/models/
    _utils.py, April 2024) copies each decoder layer's input to the CPU (``hidden_states.to("cpu",
    non_blocking=True)``), runs the layer under ``no_grad`` and saves only the CPU copy; its backward copies it
    back to the GPU and recomputes the layer there. So under full recomputation the layer inputs (``kept_bytes``)
    move to host memory, and only the layer being recomputed holds its input on the GPU again (the rebuilt set's
    input, which the engine counts already). The CPU can show the saved set (a CPU tensor instead of a device
    one) but not the device residency, so this follows the source."""
    if not offload:
        return kept_bytes, 0
    return (0,) * len(kept_bytes), sum(kept_bytes)
