"""Why the winning layout wins, and why the obvious alternatives lose (they do not fit, or they are slower)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from gpuplan.compute.steptime import Layout
from gpuplan.plan.candidates import Candidate
from gpuplan.plan.search import SearchResult, best_where, hsdp_allowed
from gpuplan.plan.space import dp_shard_options
from gpuplan.units import GiB

PART_WORDS = {
    "compute": "GEMM and attention compute (smaller GEMMs run less efficiently)",
    "recompute": "activation recomputation",
    "bubble": "the pipeline bubble",
    "tp_comm": "tensor-parallel all-gathers/reduce-scatters",
    "ep_comm": "expert-parallel all-to-all",
    "cp_comm": "context-parallel ring exchange",
    "pp_comm": "pipeline send/receive",
    "dp_comm": "data-parallel gradient/parameter sync not hidden by compute",
    "optimizer": "the optimizer update",
}


@dataclass
class Alternative:
    label: str
    candidate: Candidate | None
    verdict: str

    def as_dict(self) -> dict:
        c = self.candidate
        return {"label": self.label, "verdict": self.verdict,
                "layout": None if c is None else layout_dict(c.layout),
                "memory_total_bytes": None if c is None else c.memory_total_bytes,
                "days": None if c is None else c.days, "gpus": None if c is None else c.gpus,
                "step_s": None if c is None else c.seconds_per_step}


def layout_dict(lay: Layout) -> dict:
    return {"dp": lay.dp, "tp": lay.tp, "pp": lay.pp, "ep": lay.ep, "cp": lay.cp, "vpp": lay.vpp, "zero": lay.zero,
            "micro_batch": lay.micro_batch, "recompute": lay.recompute, "dp_shard": lay.dp_shard}


def describe(lay: Layout) -> str:
    parts = [f"TP{lay.tp}", f"PP{lay.pp}" + (f"x{lay.vpp}" if lay.vpp > 1 else ""), f"DP{lay.dp}"]
    if lay.dp_shard is not None:
        parts.append(f"(HSDP {lay.dp_shard})")
    if lay.cp > 1:
        parts.append(f"CP{lay.cp}")
    if lay.ep > 1:
        parts.append(f"EP{lay.ep}")
    parts += [f"ZeRO-{lay.zero}", f"mb{lay.micro_batch}", f"recompute {lay.recompute}"]
    return " ".join(parts)


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / GiB:,.1f} GiB"


def why_winner(c: Candidate, result: SearchResult) -> list[str]:
    st = c.step
    share = sorted(((v / st.step_s, k) for k, v in st.parts.items() if v > 0), reverse=True)
    lines = [f"{describe(c.layout)} on {c.gpus:,} x {c.gpu_id}: step {st.step_s:.3f} s, MFU {c.mfu:.1%}, "
             f"{c.tokens_per_s_per_gpu:,.0f} tokens/s/GPU; memory {_gib(c.memory_total_bytes)} of "
             f"{_gib(c.capacity_bytes)} usable"]
    lines.append("step time: " + ", ".join(f"{PART_WORDS[k].split(' (')[0]} {f:.0%}" for f, k in share if f >= 0.005))
    if c.layout.pp > 1:
        sched = result.ctx.tune.schedule
        formula = {"zero-bubble": "zero-bubble ZB-H1 ((p-1)/3)/(m+(p-1)/3)",
                   "dualpipe": "DualPipe ((p/2-1)/3)/(m+(p/2-1)/3)"}.get(sched or "", "(p-1)/(v*m+p-1)")
        lines.append(f"pipeline: {c.layout.pp} stages x {c.layout.vpp} virtual, {st.microbatches} micro-batches -> "
                     f"bubble {formula} = {st.bubble_fraction:.1%}")
    ctx = result.ctx
    if ctx.target.gpus is not None:
        lines.append(f"the fastest of the layouts that fit: {result.pool.evaluated:,} layouts timed, "
                     f"{result.checker.calls} memory-engine calls, {result.pool.pruned} ruled out without a call")
    else:
        lines.append(f"the smallest GPU count meeting {ctx.target.days:g} days among {result.pool.evaluated:,} "
                     f"layouts timed ({result.checker.calls} memory-engine calls)")
    return lines


def _versus(alt: Candidate, win: Candidate, deadline: bool) -> str:
    if alt.memory_total_bytes is None and alt.memory_note:
        return alt.memory_note
    if alt.fits is False:
        return f"does not fit: needs {_gib(alt.memory_total_bytes)} per GPU, {_gib(alt.capacity_bytes)} usable"
    if deadline and alt.gpus != win.gpus:
        if alt.memory_forced:
            return (f"fits only from {alt.gpus:,} GPUs ({alt.gpus - win.gpus:+,}): fewer data-parallel replicas "
                    f"leave too much optimizer state per GPU; at that size {alt.days:.1f} days")
        return (f"fits, but needs {alt.gpus:,} GPUs ({alt.gpus - win.gpus:+,}) to meet the deadline"
                + (f" ({alt.days:.1f} days)" if alt.days else ""))
    slower = alt.seconds_per_step / win.seconds_per_step - 1
    if abs(slower) < 0.005:
        return f"fits and is as fast (step {alt.seconds_per_step:.3f} s, within 0.5 %)"
    diff = max(((alt.step.parts.get(k, 0) - win.step.parts.get(k, 0), k) for k in PART_WORDS), default=(0, ""))
    why = f"; mostly {PART_WORDS[diff[1]]}" if diff[0] > 0 else ""
    return f"fits, but {slower:+.1%} step time ({alt.seconds_per_step:.3f} s){why}"


def alternatives(win: Candidate, result: SearchResult, compare: tuple[dict, ...] = ()) -> list[Alternative]:
    """The obvious alternatives to ``win``: the fastest layout overall, no pipeline, no tensor parallelism,
    pure sharded data parallel (FSDP/ZeRO-3), the other recompute modes, and layouts the user asked about."""
    deadline = result.ctx.target.gpus is None
    out: list[Alternative] = []
    first = result.rejected[0] if result.rejected else None
    if first is not None:
        out.append(Alternative(f"faster on paper: {describe(first.layout)}", first, _versus(first, win, deadline)))
    w = win.layout
    top_zero = max(result.ctx.pins.zero or (0,))
    checks = [
        ("no pipeline parallelism (PP1)", lambda c: c.layout.pp == 1, w.pp > 1),
        ("no tensor parallelism (TP1)", lambda c: c.layout.tp == 1, w.tp > 1),
        (f"pure data parallel (TP1 PP1, ZeRO-{top_zero})",
         lambda c: c.layout.tp == 1 and c.layout.pp == 1 and c.layout.zero == top_zero,
         not (w.tp == 1 and w.pp == 1 and w.zero == top_zero)),
        ("tensor parallelism across the whole node (TP8)", lambda c: c.layout.tp == 8, w.tp != 8),
    ]
    for label, keep, wanted in checks:
        if not wanted:
            continue
        best, rejected = best_where(result, keep)
        if best is None:
            sized = [c.memory_total_bytes or c.known_bytes for c in rejected
                     if (c.memory_total_bytes or c.known_bytes) is not None]
            verdict = (f"none of the {len(rejected)} fastest layouts of this kind fits" if rejected
                       else "no layout of this kind meets the deadline (the global batch caps DP)" if deadline
                       else "no layout of this kind is in the search space")
            if sized:
                verdict += (f" (the least memory among them, or among variants that need less: {_gib(min(sized))}; "
                            f"{_gib(win.capacity_bytes)} usable)")
            out.append(Alternative(label, None, verdict))
        else:
            out.append(Alternative(f"{label}: {describe(best.layout)}", best, _versus(best, win, deadline)))
    out += _sharding_alternatives(win, result, deadline)
    for rc in ("none", "selective", "full"):
        if rc == w.recompute:
            continue
        c = _exact(result, replace(w, recompute=rc))
        out.append(Alternative(f"same layout, recompute {rc}", c, _versus(c, win, deadline)))
    for fields in compare:
        label = "requested " + ",".join(f"{k}={v}" for k, v in fields.items())
        best, rejected = best_where(result, lambda c, f=fields: all(getattr(c.layout, k) == v for k, v in f.items()),
                                    max_checks=200)
        if best is not None:
            out.append(Alternative(f"{label}: {describe(best.layout)}", best, _versus(best, win, deadline)))
        elif rejected:
            low = min(rejected, key=lambda c: c.memory_total_bytes or float("inf"))
            out.append(Alternative(f"{label}: {describe(low.layout)}", low,
                                   f"no such layout fits among the {len(rejected)} fastest; "
                                   + _versus(low, win, deadline)))
        elif "dp_shard" in fields and _valid_shard(w, fields):
            # a shard-group size the search did not time: the winner with it (and the other requested fields)
            c = _exact(result, replace(w, **fields))
            out.append(Alternative(f"{label}: {describe(c.layout)}", c, _versus(c, win, deadline)))
        else:
            out.append(Alternative(label, None, "no such layout in the search space (check the GPU count, the "
                                                "global batch and the --tp/--pp/... restrictions)"))
    return out


def _sharding_alternatives(win: Candidate, result: SearchResult, deadline: bool) -> list[Alternative]:
    """Full sharding instead of the winner's hybrid sharding, or hybrid sharding inside one node instead of the
    winner's full sharding (when the framework has it for this layout)."""
    w = win.layout
    if w.dp_shard is not None:
        c = _exact(result, replace(w, dp_shard=None))
        return [Alternative(f"full sharding instead of HSDP (ZeRO-{w.zero} states over all {w.dp * w.cp} "
                            f"data-parallel ranks)", c, _versus(c, win, deadline))]
    options = dp_shard_options(w, result.ctx.net.gpus_per_node) if hsdp_allowed(result.ctx, w) else []
    if not options:
        return []
    n = options[0]
    c = _exact(result, replace(w, dp_shard=n))
    return [Alternative(f"hybrid sharding instead of full sharding (HSDP {n}: shard groups of {n * w.cp} ranks, "
                        f"{w.dp // n} replicas)", c, _versus(c, win, deadline))]


def _valid_shard(w: Layout, fields: dict) -> bool:
    """Whether the winner with ``fields`` replaced is a hybrid-sharding layout on the same GPUs."""
    lay = replace(w, **fields)
    return (lay.gpus == w.gpus and lay.zero >= 1 and lay.dp_shard is not None and 1 <= lay.dp_shard <= lay.dp
            and lay.dp % lay.dp_shard == 0 and (lay.dp_shard * lay.cp * lay.tp) % lay.ep == 0)


def _exact(result: SearchResult, lay: Layout) -> Candidate:
    c = result.pool.candidate(lay)
    result.pool.memory(c)
    return c
