"""Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models" (arXiv:2205.05198).

Activation bytes per transformer layer for GPT-style layers in 16-bit with dropout and materialised attention
(section 4, Table 2), with s = sequence, b = micro-batch, h = hidden, a = heads, t = tensor-parallel size:

| setting | bytes per layer |
|---|---|
| no parallelism | s·b·h·(34 + 5·a·s/h) |
| tensor parallel | s·b·h·(10 + 24/t + 5·a·s/(h·t)) |
| tensor + sequence parallel | s·b·h·(34 + 5·a·s/h)/t |
| tensor parallel + selective recompute | s·b·h·(10 + 24/t) |
| tensor + sequence parallel + selective recompute | s·b·h·34/t |
| full recompute | 2·s·b·h (the layer input only) |

It ignores GQA, gated MLPs, fp32 norm statistics and flash attention, so for modern models it overestimates; it is
kept (``--activation-model korthikanti``) to reproduce the papers' tables.
"""

from __future__ import annotations

from gpuplan.model.spec import ModelSpec
from gpuplan.train.activations import Act


def korthikanti_layer(spec: ModelSpec, *, recompute: str, tp: int = 1, sp: bool = False) -> Act:
    """Per-layer activation bytes as ``Act`` (tok = bytes per token, sq = bytes per b·s² unit)."""
    h, a, t = spec.hidden_size, spec.num_heads, tp
    if recompute == "full":
        return Act(tok=2.0 * h / (t if sp else 1))
    if sp:
        linear_part = 34.0 * h / t
    else:
        linear_part = h * (10.0 + 24.0 / t)
    attn = 0.0 if recompute == "selective" else 5.0 * a / t
    return Act(tok=linear_part, sq=attn)
