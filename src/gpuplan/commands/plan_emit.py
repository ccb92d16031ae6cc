"""``gpuplan plan --emit FORMAT``: the winning layout as a stack's launch config, read back and checked.

The text comes from :func:`gpuplan.configs.emit.emit`. Before it is shown, it is read back by the same reader
``gpuplan train FILE`` uses, and the memory of that read is compared with ``gpuplan train`` of the layout itself
under the format's stack (the plan's ``train_command`` plus ``--stack``): a file that would estimate differently
is an InputError naming the first memory key that differs, never a file shown as the plan's.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gpuplan.configs.emit import SUFFIX, EmitInput, emit, stack_for
from gpuplan.errors import InputError


def _train_options(values: Any, r: SimpleNamespace, fmt: str) -> tuple[str | None, dict[str, Any]]:
    """MODEL and the ``gpuplan train`` options of the winning layout (its ``train_command``), with the stack."""
    lay, opts = r.win.layout, r.win_res.ctx.opts
    m = r.global_batch // (lay.dp * lay.micro_batch)
    dims = {k: getattr(values, k) for k in ("layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab",
                                            "experts", "top_k") if getattr(values, k, None)}
    kw = dict(batch=lay.micro_batch, seq=r.seq, grad_accum=m, precision=opts.precision, framework=opts.framework,
              optimizer=opts.optimizer, attention=opts.attention, recompute=lay.recompute, gpus=lay.gpus, dp=lay.dp,
              tp=lay.tp, pp=lay.pp, ep=lay.ep, cp=lay.cp, vpp=lay.vpp, sp=lay.seq_parallel, zero=lay.zero,
              microbatches=m, stack=stack_for(fmt, opts.framework), **dims)
    if lay.dp_shard is not None:
        kw["dp_shard"] = lay.dp_shard
    return (r.spec.name if values.model else None), kw


def emit_launch(values: Any, r: SimpleNamespace) -> dict[str, Any]:
    """{"format", "text", "stack", "train_command"} for ``values.emit``; InputError when the format cannot
    express the layout or the written file would not read back to the same memory."""
    from gpuplan import api
    from gpuplan.plan.explain import describe

    fmt = values.emit
    lay, opts = r.win.layout, r.win_res.ctx.opts
    summary = (f"gpuplan plan: {r.spec.name}, {describe(lay)} on {lay.gpus:,} x {r.win.gpu_id}, seq {r.seq}, "
               f"global batch {r.global_batch}")
    text = emit(fmt, EmitInput(layout=lay, spec=r.spec, model=values.model or r.spec.name, seq=r.seq,
                               global_batch=r.global_batch, precision=opts.precision, framework=opts.framework,
                               gpus_per_node=values.gpus_per_node, summary=summary))
    model, kw = _train_options(values, r, fmt)
    expected = api.train(model, **kw)["memory"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"launch{SUFFIX[fmt]}"
        path.write_text(text, encoding="utf-8")
        try:
            dims = {k: v for k, v in kw.items() if k in ("layers", "hidden", "heads", "kv_heads", "head_dim", "ffn",
                                                           "vocab", "experts", "top_k")}
            if fmt == "deepspeed":
                got = api.train(model, from_file=json.loads(text), gpus=lay.gpus, seq=r.seq, **dims)["memory"]
            elif fmt == "accelerate":  # the batch lives in the training script: given as options
                extra = {} if opts.framework == "deepspeed" else {"grad_accum": kw["grad_accum"]}
                got = api.train(model, from_file=str(path), gpus=lay.gpus, seq=r.seq, batch=lay.micro_batch,
                                **extra, **dims)["memory"]
            else:
                got = api.train(str(path), gpus=lay.gpus)["memory"]
        except InputError as exc:
            raise InputError("--emit", fmt, f"the written config does not read back ({exc})") from None
    diff = next((k for k in expected if expected[k] != got.get(k)), None)
    if diff is not None:
        raise InputError("--emit", fmt, f"cannot express this layout exactly: read back, it estimates "
                         f"{diff} = {got.get(diff):,} instead of {expected[diff]:,}")
    stack = stack_for(fmt, opts.framework)
    command = r.plan_dict(r.win)["train_command"] + f" --stack {stack}"
    return {"format": fmt, "text": text, "stack": stack, "train_command": command}
