"""A training config file's option values as ``gpuplan plan`` takes them: the layout pinned to the file's.

``train`` takes one value per parallel degree; ``plan`` takes the list of values its search may try, so each
degree becomes a one-item list and the search keeps only the file's layout. The global batch is the file's own
(``--global-batch-size``). Values ``plan`` has no option for are listed in the report as not used by ``plan``.
"""

from __future__ import annotations

from typing import Any

from gpuplan.configs.report import ConfigReport

_LISTS = {"tp": "tp", "pp": "pp", "cp": "cp", "ep": "ep", "vpp": "vpp", "zero": "zero", "batch": "micro_batch"}
_SAME = ("seq", "gpus", "layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab", "experts", "top_k")
# what plan assumes itself, so a file's value that agrees needs no option
_PLAN_FIXED = {"attention": ("flash", "plan's step-time and memory model uses flash attention"),
               "sp": (True, "plan always uses sequence parallelism with TP > 1 (Megatron's layouts)"),
               "stack": ("megatron", "plan's memory semantics come from --framework (megatron)")}


def plan_values(report: ConfigReport, values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name in _LISTS:
            out[_LISTS[name]] = [value]
        elif name in _SAME:
            out[name] = value
        elif name == "precision":
            out["precision"] = value
        elif name not in _PLAN_FIXED or _PLAN_FIXED[name][0] != value:
            report.ignore(f"({name})", "not a plan option: give it to `gpuplan train` for this layout's memory")
    if "global_batch" in report.batch_rule:
        out["global_batch"] = report.batch_rule["global_batch"]
    out.setdefault("vpp", [1])
    out.setdefault("cp", [1])
    out.setdefault("ep", [1])
    out.setdefault("tp", [1])
    out.setdefault("pp", [1])
    out["framework"] = "megatron"
    out["recompute"] = values.get("recompute", "none")
    out["no_hsdp"] = True  # the file's data-parallel sharding is over all data-parallel ranks
    if "sp" not in values and out["tp"] != [1]:
        report.ignore("(sp)", "the file has no --sequence-parallel, but plan always uses it with TP > 1")
    return out
