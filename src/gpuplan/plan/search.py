"""The layout search: time every candidate with the step-time model (cheap, cached per stage), then check memory
with the training engine lazily, best first, skipping layouts a failed check already rules out.

Two questions:

* ``gpus`` fixed: every layout of that many GPUs; ranked by step time (cost and GPUs follow).
* a deadline (``tokens`` and ``days``): for every layout template (all degrees but DP) the smallest DP whose run
  meets the deadline and fits; ranked by GPUs (or cost, or time).

Memory is checked per layout in rank order, so the number of engine calls stays small: a layout is skipped
without a call when one with the same placement, a micro-batch no larger and no less recomputation did not fit.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from gpuplan.compute.schedules import schedule_allows
from gpuplan.compute.steptime import Layout, model_flops_utilization, step_time, step_time_floor
from gpuplan.errors import InputError
from gpuplan.plan.candidates import (RANKS, Candidate, Deferred, SearchContext, Untimed, describe_short,
                                     rank_key)
from gpuplan.plan.memory import MemoryChecker
from gpuplan.plan.space import (_allowed, cp_options, dp_shard_options, layouts_for_shape, memory_dominates,
                                most_frugal, placement, shapes_for, tp_options)
from gpuplan.units import SECONDS_PER_DAY


@dataclass(frozen=True)
class _Layout:
    """A layout not timed yet, as the ``keep`` filters of ``Pool.take`` see candidates (they read only
    ``layout``)."""

    layout: Layout


class Pool:
    """Candidates in rank order with lazy memory checks (and, in deadline mode, a next-larger-DP fallback)."""

    def __init__(self, ctx: SearchContext, checker: MemoryChecker) -> None:
        self.ctx, self.check = ctx, checker
        self.heap: list[tuple[tuple, int, Candidate]] = []
        self.failed: dict[tuple, list[Layout]] = {}
        self.failed_bytes: dict[Layout, int] = {}
        self.rejected_all: list[Candidate] = []
        self.probed: set[tuple] = set()
        self.frugal_bytes: dict[tuple, tuple[int, Layout]] = {}
        # (tp, pp, cp) -> (dp, ep) pairs whose most frugal layout did not fit: every layout of that shape with
        # dp' <= dp and ep' <= ep does not fit either (ZeRO shards over DP, EP shards the experts; fewer ranks
        # never lower per-GPU memory)
        self.dead: dict[tuple, list[tuple[int, int]]] = {}
        self.widest: dict[tuple, tuple[int, int]] = {}  # (tp, pp, cp) -> the largest (dp, ep) the search may use
        self.shape_probed: set[tuple] = set()
        self.next_dp: dict[Layout, Callable[[], Candidate | None]] = {}
        self.shards: dict[tuple, list[int]] = {}  # (tp, cp, dp, ep, zero) -> the dp_shard values searched
        self.evaluated = 0
        self.pruned = 0
        self._n = 0

    def candidate(self, lay: Layout) -> Candidate:
        ctx = self.ctx
        self.evaluated += 1
        st = step_time(ctx.spec, lay, ctx.work, ctx.dev, ctx.net, ctx.tune)
        tokens_step = ctx.work.global_batch * ctx.work.seq
        days = None
        if ctx.target.tokens:
            days = math.ceil(ctx.target.tokens / tokens_step) * st.step_s / SECONDS_PER_DAY
        mfu = model_flops_utilization(ctx.flop_per_token, ctx.work, st.step_s, lay.gpus, ctx.dev.peak_flop_per_s)
        return Candidate(lay, ctx.gpu.id, st, st.step_s, days, mfu, tokens_step / st.step_s / lay.gpus,
                         ctx.gpu.memory_usable_bytes)

    def push(self, c: Candidate) -> None:
        self._n += 1
        heapq.heappush(self.heap, (rank_key(c, self.ctx.rank), self._n, c))
        self.note_extent(c.layout.tp, c.layout.pp, c.layout.cp, c.layout.dp, c.layout.ep)

    def push_untimed(self, layouts: list[Layout]) -> None:
        """Queue layouts that differ only in their ZeRO stage at the lower bound of their step times
        (``Untimed``); ``take`` times them when it reaches the bound."""
        ctx = self.ctx
        floor = step_time_floor(ctx.spec, layouts[0], ctx.work, ctx.dev, ctx.net, ctx.tune)
        days = None
        if ctx.target.tokens:
            days = math.ceil(ctx.target.tokens / (ctx.work.global_batch * ctx.work.seq)) * floor / SECONDS_PER_DAY
        u = Untimed(layouts, floor, days)
        self._n += 1
        heapq.heappush(self.heap, (rank_key(u, ctx.rank), self._n, u))
        for lay in layouts:
            self.note_extent(lay.tp, lay.pp, lay.cp, lay.dp, lay.ep)

    def time_untimed(self, u: Untimed) -> None:
        """Time each layout of ``u`` and queue it, with its hybrid-sharding variants where they may help."""
        for lay in u.layouts:
            c = self.candidate(lay)
            self.push(c)
            if lay.zero and c.step.parts.get("dp_comm", 0.0) > 0:  # HSDP changes only exposed DP traffic
                key = (lay.tp, lay.cp, lay.dp, lay.ep, lay.zero)
                if key not in self.shards:
                    self.shards[key] = [v.dp_shard for v in hsdp_variants(self.ctx, lay)]
                if self.shards[key]:
                    self.defer(c, self.shards[key])

    def defer(self, base: Candidate, shards: list[int]) -> None:
        """Queue ``base``'s hybrid-sharding variants with these ``dp_shard`` values, each at a lower bound of its
        step time."""
        st, lay = base.step, base.layout
        bubble_slots = st.bubble_slots
        floor = st.step_s - st.parts.get("dp_comm", 0.0) * (1 + bubble_slots / st.microbatches)
        opt = st.parts.get("optimizer", 0.0)
        for n in shards:
            bound = floor + opt * (lay.dp / n - 1)
            d = Deferred(base, n, bound, None if base.days is None else base.days * bound / st.step_s)
            self._n += 1
            heapq.heappush(self.heap, (rank_key(d, self.ctx.rank), self._n, d))

    def note_extent(self, tp: int, pp: int, cp: int, dp: int, ep: int) -> None:
        w = self.widest.get((tp, pp, cp), (0, 0))
        self.widest[(tp, pp, cp)] = (max(w[0], dp), max(w[1], ep))

    def _ruled_out(self, lay: Layout) -> bool:
        if any(lay.dp <= dp and lay.ep <= ep for dp, ep in self.dead.get((lay.tp, lay.pp, lay.cp), ())):
            return True
        return any(memory_dominates(f, lay) for f in self.failed.get(placement(lay), ()))

    def _probe(self, lay: Layout, capacity: int) -> None:
        """Check the most frugal variant of ``lay``'s placement; record it when it does not fit."""
        frugal = most_frugal(lay, self.ctx.pins, self.ctx.work.global_batch)
        r = self.check(frugal)
        if r.total_bytes is not None and r.total_bytes > capacity:
            self.failed.setdefault(placement(frugal), []).append(frugal)
            self.failed_bytes[frugal] = r.total_bytes
            self.frugal_bytes[placement(frugal)] = (r.total_bytes, frugal)
            self.dead.setdefault((lay.tp, lay.pp, lay.cp), []).append((lay.dp, lay.ep))

    def memory(self, c: Candidate) -> bool:
        """Check ``c`` (engine call unless ruled out by a failed check); True when it fits. The first check of a
        placement checks its most memory-frugal layout first: when even that does not fit, one call rules out the
        whole placement; in deadline mode a (tp, pp, cp) shape is probed at its widest DP/EP first."""
        if c.memory_total_bytes is not None:
            return bool(c.fits)
        key = placement(c.layout)
        shape = (c.layout.tp, c.layout.pp, c.layout.cp)
        wdp, wep = self.widest.get(shape, (c.layout.dp, c.layout.ep))
        if shape not in self.shape_probed and (wdp, wep) != (c.layout.dp, c.layout.ep):
            # Probe the shape at its widest DP and EP first: if even that does not fit, no layout of it does.
            self.shape_probed.add(shape)
            self._probe(Layout(tp=c.layout.tp, pp=c.layout.pp, dp=wdp, cp=c.layout.cp, ep=wep), c.capacity_bytes)
        if key not in self.probed and not self._ruled_out(c.layout):
            self.probed.add(key)
            if most_frugal(c.layout, self.ctx.pins, self.ctx.work.global_batch) != c.layout:
                self._probe(c.layout, c.capacity_bytes)
        cached = getattr(self.check, "cached", None)
        if self._ruled_out(c.layout) and (cached is None or cached(c.layout) is None):
            self.pruned += 1
            c.memory_note = ("does not fit: a variant with the same placement and less memory (smaller micro-batch, "
                             "more recomputation, a higher ZeRO stage or more sharding) already does not")
            known = [(b, f) for f, b in self.failed_bytes.items() if memory_dominates(f, c.layout)]
            known = known or [(b, f) for f, b in self.failed_bytes.items() if f.tp == c.layout.tp
                              and f.pp == c.layout.pp and f.cp == c.layout.cp and f.dp >= c.layout.dp
                              and f.ep >= c.layout.ep and f.dp_shard is None]
            if known:
                need, f = min(known, key=lambda x: x[0])
                c.known_bytes = need
                c.memory_note = (f"does not fit: even {describe_short(f)} needs {need / 2**30:,.1f} GiB per GPU "
                                 f"({c.capacity_bytes / 2**30:,.1f} GiB usable)")
            return False
        r = self.check(c.layout)
        if r.total_bytes is None:
            c.memory_note = f"not modelled by the memory engine: {r.reason}"
            return False
        c.memory_total_bytes = r.total_bytes
        if not c.fits:
            self.failed.setdefault(key, []).append(c.layout)
            self.failed_bytes[c.layout] = r.total_bytes

        return bool(c.fits)

    def take(self, want: int, keep: Callable[[Candidate], bool] = lambda c: True, max_checks: int | None = None
             ) -> tuple[list[Candidate], list[Candidate]]:
        """Pop up to ``want`` fitting candidates satisfying ``keep`` in rank order; also return the rejected ones
        (does not fit / unsupported) met on the way. Candidates not taken are put back."""
        found, rejected, skipped = [], [], []
        checks = 0
        while self.heap and len(found) < want:
            item = heapq.heappop(self.heap)
            c = item[2]
            if isinstance(c, Untimed):  # reached the bound of its layouts: time them, they rank from here on
                if any(keep(_Layout(lay)) for lay in c.layouts):
                    self.time_untimed(c)
                else:  # none of them is asked for here (``keep`` reads only the layout): later takes time them
                    skipped.append(item)
                continue
            if not keep(c):
                skipped.append(item)
                continue
            if isinstance(c, Deferred):  # reached its bound: time it, it ranks from here on
                self.push(self.candidate(c.layout))
                continue
            if max_checks is not None and checks >= max_checks:
                skipped.append(item)
                break
            checks += 1
            if self.memory(c):
                found.append(c)
                skipped.append(item)
            else:
                rejected.append(c)
                self.rejected_all.append(c)
                nxt = self.next_dp.pop(c.layout, None)
                if nxt is not None:
                    n = nxt()  # the same template at the next larger DP (less memory with ZeRO)
                    if n is not None:
                        self.push(n)
        for item in skipped:
            heapq.heappush(self.heap, item)
        return found, rejected


def hsdp_allowed(ctx: SearchContext, lay: Layout) -> bool:
    """Whether ``lay`` gets hybrid-sharding variants: asked for, and a combination the framework has."""
    from gpuplan.plan.memory import engine_hsdp_support

    if not ctx.pins.hsdp:
        return False
    if ctx.opts.framework == "torch" and lay.zero == 1:
        # torch's ZeRO-1 over a shard group (ZeroRedundancyOptimizer) keeps DDP's gradient all-reduce over all
        # ranks, which the step-time model's hybrid collectives (reduce-scatter in the group, all-reduce of the
        # shard across replicas; gpuplan.compute.comm.data_parallel_s) do not describe: not proposed
        return False
    stages, with_ep = engine_hsdp_support(ctx.opts.framework)
    return lay.zero in stages and (lay.ep == 1 or with_ep)


def hsdp_variants(ctx: SearchContext, lay: Layout) -> list[Layout]:
    """``lay`` with each searched ``dp_shard`` (gpuplan.plan.space.dp_shard_options)."""
    if not hsdp_allowed(ctx, lay):
        return []
    return [replace(lay, dp_shard=n) for n in dp_shard_options(lay, ctx.net.gpus_per_node)]


def _fixed_gpus(ctx: SearchContext, pool: Pool) -> None:
    n = ctx.target.gpus
    assert n is not None
    for tp, cp, pp, dp in shapes_for(ctx.spec, n, ctx.work.seq, ctx.net.gpus_per_node, ctx.pins):
        variants: dict[tuple, list[Layout]] = {}  # (ep, micro-batch, vpp, recompute) -> its ZeRO stages
        for lay in layouts_for_shape(ctx.spec, tp, cp, pp, dp, ctx.work.global_batch, ctx.pins):
            variants.setdefault((lay.ep, lay.micro_batch, lay.vpp, lay.recompute), []).append(lay)
        for layouts in variants.values():
            pool.push_untimed(layouts)


def _dp_values(global_batch: int, mb: int, base: int, multiple: int, max_gpus: int) -> list[int]:
    """DP degrees that split the global batch and give a whole number of ``multiple``-GPU nodes."""
    out = []
    per = global_batch // mb if global_batch % mb == 0 else 0
    for dp in range(1, per + 1):
        if per % dp:
            continue
        gpus = base * dp
        if gpus > max_gpus:
            break
        if gpus % multiple == 0 or (gpus < multiple and multiple % gpus == 0):
            out.append(dp)
    return out


def _deadline(ctx: SearchContext, pool: Pool, max_gpus: int) -> None:
    """For each template (all degrees but DP), push its smallest-DP layout that meets the deadline."""
    from gpuplan.plan.space import MICRO_BATCHES, RECOMPUTE, VPP, ep_options

    spec, work, tgt = ctx.spec, ctx.work, ctx.target
    deadline_s = tgt.days * SECONDS_PER_DAY
    for tp in _allowed(tp_options(spec, ctx.net.gpus_per_node), ctx.pins.tp):
        for cp in _allowed(cp_options(work.seq), ctx.pins.cp):
            pps = sorted({p for p in range(1, spec.num_layers + 1)
                          if p & (p - 1) == 0 or spec.num_layers % p == 0} - {0})
            for pp in _allowed([p for p in pps if p <= min(spec.num_layers, 64)], ctx.pins.pp):
                base = tp * cp * pp
                for mb in _allowed(list(MICRO_BATCHES), ctx.pins.micro_batch):
                    dps = _dp_values(work.global_batch, mb, base, tgt.gpu_multiple, max_gpus)
                    if not dps:
                        continue
                    for vpp in _allowed([1] if pp == 1 else list(VPP), ctx.pins.vpp):
                        if vpp > 1 and spec.num_layers < pp * vpp:
                            continue
                        for zero in _allowed([0, 1, 2, 3], ctx.pins.zero):
                            for rc in _allowed(list(RECOMPUTE), ctx.pins.recompute):
                                for ep in _allowed(ep_options(spec, 0) if spec.moe is None else
                                                   [e for e in ep_options(spec, max(dps) * cp)], ctx.pins.ep):
                                    _push_template(ctx, pool, tp, cp, pp, mb, vpp, zero, rc, ep, dps, deadline_s)


def _push_template(ctx, pool, tp, cp, pp, mb, vpp, zero, rc, ep, dps, deadline_s) -> None:
    first = _template_candidate(ctx, pool, (tp, cp, pp, mb, vpp, zero, rc, ep, None), dps, 0, deadline_s)
    if first is not None:
        pool.push(first)
    # hybrid sharding inside one node: the template with dp_shard = the node's share of data-parallel ranks
    probe = Layout(tp=tp, cp=cp, dp=max(dps), ep=ep, zero=zero)
    if zero and hsdp_allowed(ctx, probe) and tp * cp <= ctx.net.gpus_per_node:
        n = ctx.net.gpus_per_node // (tp * cp)
        if n * cp > 1 and (n * cp * tp) % ep == 0:
            hsdp = _template_candidate(ctx, pool, (tp, cp, pp, mb, vpp, zero, rc, ep, n), dps, 0, deadline_s)
            if hsdp is not None:
                pool.push(hsdp)


def _template_candidate(ctx: SearchContext, pool: Pool, tpl: tuple, dps: list[int], start: int,
                        deadline_s: float, forced: bool = False) -> Candidate | None:
    """The template's layout at the smallest DP (from ``dps[start:]``) that meets the deadline, found by bisection
    (more DP never slows a run down in the model); registers the next larger DP as its fallback for when memory
    does not fit."""
    tp, cp, pp, mb, vpp, zero, rc, ep, shard = tpl
    if dps:
        pool.note_extent(tp, pp, cp, dps[-1], ep)
    dead = max((d for d, e in pool.dead.get((tp, pp, cp), ()) if ep <= e), default=0)
    ok = [dp for dp in dps[start:] if dp > dead and not ((vpp > 1 and (ctx.work.global_batch // (dp * mb)) % pp)
                                           or (zero > 0 and dp * cp == 1) or (dp * cp) % ep
                                           or (shard is not None and (dp % shard or dp <= shard))
                                           or not schedule_allows(ctx.pins.schedule, pp, vpp,
                                                                  ctx.work.global_batch // (dp * mb)))]
    made: dict[int, Candidate] = {}

    def cand(dp: int) -> Candidate:
        if dp not in made:
            made[dp] = pool.candidate(Layout(tp=tp, pp=pp, dp=dp, cp=cp, ep=ep, vpp=vpp, zero=zero,
                                             micro_batch=mb, recompute=rc, dp_shard=shard))
        return made[dp]

    def meets(dp: int) -> bool:
        c = cand(dp)
        return c.days is not None and c.days * SECONDS_PER_DAY <= deadline_s

    if not ok or not meets(ok[-1]):
        return None
    lo, hi = 0, len(ok) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if meets(ok[mid]):
            hi = mid
        else:
            lo = mid + 1
    c = cand(ok[lo])
    c.memory_forced = forced
    nxt = dps.index(ok[lo]) + 1
    pool.next_dp[c.layout] = lambda: _template_candidate(ctx, pool, tpl, dps, nxt, deadline_s, forced=True)
    return c


@dataclass
class SearchResult:
    plans: list[Candidate]
    rejected: list[Candidate]
    pool: Pool
    checker: MemoryChecker
    ctx: SearchContext


def search(ctx: SearchContext, top: int = 5, max_gpus: int = 1 << 20) -> SearchResult:
    """Run the search; ``plans`` are the best ``top`` layouts that fit, in rank order."""
    if ctx.rank not in RANKS:
        raise InputError("--rank", ctx.rank, f"must be one of {', '.join(RANKS)}")
    tgt = ctx.target
    if (tgt.gpus is None) == (tgt.days is None):
        raise InputError("--gpus", tgt.gpus, "give --gpus, or --days with --tokens (not both)")
    if tgt.days is not None and not tgt.tokens:
        raise InputError("--tokens", tgt.tokens, "is required with --days")
    from gpuplan.plan.memory import engine_zero_stages

    allowed = engine_zero_stages(ctx.opts.framework)
    zeros = tuple(z for z in (ctx.pins.zero or (0, 1, 2, 3)) if z in allowed)
    if not zeros:
        raise InputError("--zero", ",".join(map(str, ctx.pins.zero or ())),
                         f"the memory engine models ZeRO stages {', '.join(map(str, allowed))} for "
                         f"--framework {ctx.opts.framework}")
    ctx.pins = replace(ctx.pins, zero=zeros)
    from gpuplan.plan.memory import selective_saves_memory

    rcs = ctx.pins.recompute or ("none", "selective", "full")
    if "selective" in rcs and "none" in rcs and not selective_saves_memory(ctx.spec, ctx.work.seq, ctx.opts):
        # the same memory as no recomputation and more time: never the better choice, so not searched
        ctx.pins = replace(ctx.pins, recompute=tuple(r for r in rcs if r != "selective"))
    checker = MemoryChecker(ctx.spec, ctx.work.seq, ctx.work.global_batch, ctx.opts)
    pool = Pool(ctx, checker)
    if tgt.gpus is not None:
        _fixed_gpus(ctx, pool)
    else:
        _deadline(ctx, pool, max_gpus)
    plans: list[Candidate] = []
    rejected: list[Candidate] = []
    shown: set[tuple] = set()
    for _ in range(top):  # the best layout of each distinct placement (ZeRO/micro-batch/recompute variants fold)
        found, rej = pool.take(1, lambda c: (placement(c.layout), c.layout.vpp) not in shown)
        rejected += rej
        if not found:
            break
        plans.append(found[0])
        shown.add((placement(found[0].layout), found[0].layout.vpp))
    return SearchResult(plans, rejected, pool, checker, ctx)


def best_where(result: SearchResult, keep: Callable[[Candidate], bool], max_checks: int = 25
               ) -> tuple[Candidate | None, list[Candidate]]:
    """The best fitting candidate satisfying ``keep`` (for explanations), and the rejected ones satisfying it (met
    now or earlier in the search)."""
    before = [c for c in result.pool.rejected_all if keep(c)]
    found, rejected = result.pool.take(1, keep, max_checks)
    return (found[0] if found else None), before + rejected


def least_memory(result: SearchResult) -> tuple[int, Layout] | None:
    """Among the layouts whose memory was checked, the one needing the least: (bytes, layout)."""
    seen = [(c.memory_total_bytes, c.layout) for c in result.rejected if c.memory_total_bytes is not None]
    seen += list(result.pool.frugal_bytes.values())
    return min(seen, key=lambda x: x[0]) if seen else None
