"""The layouts the planner considers, and the rules that prune the rest (each rule is written down here).

* TP: powers of two up to the node size (TP traffic needs the intra-node link) that divide the attention heads
  and the KV heads (Megatron: ``num_query_groups % tp == 0``).
* CP: powers of two with at least 1,024 tokens per rank and ``seq % (2·cp) == 0`` (Megatron's load-balanced
  causal split cuts each sequence into 2·cp chunks).
* PP: any degree up to the number of layers that divides the GPUs left (uneven stages allowed, as Llama 3 ran 126
  layers on 16 stages); VPP (interleaving) 2 or 4 when each virtual stage keeps at least one layer and the
  micro-batch count is a multiple of PP (Megatron's interleaved-schedule requirement).
* DP is what is left: GPUs / (TP·PP·CP); the global batch must split into dp × micro-batch × micro-batches.
* EP (MoE only): divides the routed experts and dp·cp.
* A pinned pipeline schedule (``--schedule``) keeps the layouts that can run it (gpuplan.compute.schedules).
* ZeRO 0-3 (only 0 without data parallelism); micro-batch 1, 2, 4, 8, 16 (or the pinned ones); recompute none,
  selective, full.
* Hybrid sharding (HSDP, ``--dp-shard N``; ZeRO >= 1, dp > 1, where the framework has it): ZeRO/FSDP states sharded
  over a group of N·cp ranks and replicated over dp/N groups. N is the largest divisor of dp whose shard group stays
  inside one node (tp·cp·N <= GPUs per node: its reduce-scatters and all-gathers use NVLink, only the replicas'
  all-reduce of 1/N of the gradients crosses the network; torchtitan ``data_parallel_shard_degree`` = one node; 1
  when tp·cp fills a node), then 2 and 4 times that (a shard group of a few nodes), each below dp, sharding over
  more than one rank and, with EP, with ep dividing N·cp·tp. A layout's HSDP variants are timed only when its
  full-sharding layout leaves data-parallel traffic exposed (they change only that traffic and the optimizer
  update, which runs on a larger shard, and they need more memory), and only once the search reaches a lower bound
  of their step time (gpuplan.plan.candidates.Deferred). With a deadline (``--days``) the one-node N is searched.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterator

from gpuplan.compute.schedules import schedule_allows
from gpuplan.compute.steptime import Layout
from gpuplan.model.spec import ModelSpec

MIN_TOKENS_PER_CP_RANK = 1024
MICRO_BATCHES = (1, 2, 4, 8, 16)
RECOMPUTE = ("none", "selective", "full")
VPP = (1, 2, 4)


@dataclass(frozen=True)
class Pins:
    """Degrees the user fixed (None = search). Each is a tuple of allowed values."""

    tp: tuple[int, ...] | None = None
    pp: tuple[int, ...] | None = None
    cp: tuple[int, ...] | None = None
    ep: tuple[int, ...] | None = None
    vpp: tuple[int, ...] | None = None
    zero: tuple[int, ...] | None = None
    micro_batch: tuple[int, ...] | None = None
    recompute: tuple[str, ...] | None = None
    hsdp: bool = True  # also search hybrid sharding (dp_shard); False: ZeRO states over all data-parallel ranks
    schedule: str | None = None  # pipeline schedule (gpuplan.compute.schedules): only layouts that can run it


def check_pins(spec: ModelSpec, pins: Pins, seq: int, gpus_per_node: int) -> None:
    """Refuse a pinned degree that no layout can have, naming the option and the rule (rather than answering that
    no layout fits): TP by the rules above, CP by the sequence, EP on a dense model or not dividing the experts,
    PP or VPP above the layer count, a ZeRO stage that does not exist (a pinned micro-batch or VPP is searched
    whatever its value)."""
    from gpuplan.errors import InputError

    rules = [
        ("--tp", pins.tp, tp_options(spec, gpus_per_node),
         f"must be a power of two up to the GPUs per node ({gpus_per_node}) dividing the attention heads "
         f"({spec.num_heads}) and KV heads ({spec.num_kv_heads})"),
        ("--cp", pins.cp, cp_options(seq),
         f"must be a power of two with seq % (2·cp) == 0 and at least {MIN_TOKENS_PER_CP_RANK} tokens per rank "
         f"(seq {seq})"),
        ("--ep", pins.ep, [1] if spec.moe is None else _divisors(spec.moe.num_experts),
         "must be 1: the model is dense (no experts)" if spec.moe is None else
         f"must divide the routed experts ({spec.moe.num_experts if spec.moe else 0})"),
        ("--pp", pins.pp, range(1, spec.num_layers + 1), f"must be from 1 to the {spec.num_layers} layers"),
        ("--vpp", pins.vpp, range(1, spec.num_layers + 1), f"must be from 1 to the {spec.num_layers} layers"),
        ("--zero", pins.zero, (0, 1, 2, 3), "must be 0, 1, 2 or 3"),
    ]
    for flag, pinned, allowed, rule in rules:
        bad = [v for v in pinned or () if v not in allowed]
        if bad:
            raise InputError(flag, bad[0], rule)


def _pow2_upto(n: int) -> list[int]:
    out, v = [], 1
    while v <= n:
        out.append(v)
        v *= 2
    return out


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(n ** 0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def tp_options(spec: ModelSpec, gpus_per_node: int) -> list[int]:
    return [t for t in _pow2_upto(gpus_per_node) if spec.num_heads % t == 0 and spec.num_kv_heads % t == 0]


def cp_options(seq: int) -> list[int]:
    return [c for c in _pow2_upto(seq // MIN_TOKENS_PER_CP_RANK or 1) if seq % (2 * c) == 0 or c == 1]


def ep_options(spec: ModelSpec, dp_cp: int) -> list[int]:
    if spec.moe is None:
        return [1]
    return [e for e in _divisors(spec.moe.num_experts) if dp_cp % e == 0]


HSDP_NODE_MULTIPLES = (1, 2, 4)  # shard groups of one node, and of 2 and 4 times that


def dp_shard_options(lay: Layout, gpus_per_node: int) -> list[int]:
    """The hybrid-sharding degrees searched for ``lay`` (see the module docstring): the largest divisor N of dp with
    tp·cp·N <= ``gpus_per_node`` (shard group inside one node), then 2N and 4N, keeping those that divide dp, are
    below dp (dp itself is full sharding), shard over more than one rank (N·cp > 1) and let EP borrow ranks of one
    shard group (ep divides N·cp·tp, as the memory engine requires). Empty without ZeRO or data parallelism."""
    if lay.zero < 1 or lay.dp <= 1:
        return []
    node = max(d for d in _divisors(lay.dp) if lay.tp * lay.cp * d <= gpus_per_node or d == 1)
    out = []
    for k in HSDP_NODE_MULTIPLES:
        n = node * k
        if n < lay.dp and lay.dp % n == 0 and n * lay.cp > 1 and (n * lay.cp * lay.tp) % lay.ep == 0:
            out.append(n)
    return out


def shard_ranks(lay: Layout) -> int:
    """Data-parallel ranks one ZeRO shard spans (1 without ZeRO): dp_shard, else dp."""
    return 1 if lay.zero == 0 else (lay.dp_shard or lay.dp)


def _allowed(values: list, pin: tuple | None) -> list:
    return values if pin is None else [v for v in values if v in pin]


def micro_batches(pins: Pins) -> list[int]:
    """The searched micro-batches, or the pinned ones whatever their value (a published run may use 6)."""
    return sorted(pins.micro_batch) if pins.micro_batch else list(MICRO_BATCHES)


def virtual_stages(pins: Pins) -> list[int]:
    """The searched virtual-stage counts, or the pinned ones (Megatron takes any count the layers allow)."""
    return sorted(pins.vpp) if pins.vpp else list(VPP)


def shapes_for(spec: ModelSpec, gpus: int, seq: int, gpus_per_node: int, pins: Pins
               ) -> Iterator[tuple[int, int, int, int]]:
    """(tp, cp, pp, dp) for a fixed GPU count."""
    for tp in _allowed(tp_options(spec, gpus_per_node), pins.tp):
        if gpus % tp:
            continue
        for cp in _allowed(cp_options(seq), pins.cp):
            if (gpus // tp) % cp:
                continue
            rest = gpus // (tp * cp)
            for pp in _allowed([p for p in _divisors(rest) if p <= spec.num_layers], pins.pp):
                yield tp, cp, pp, rest // pp


def layouts_for_shape(spec: ModelSpec, tp: int, cp: int, pp: int, dp: int, global_batch: int, pins: Pins
                      ) -> Iterator[Layout]:
    """Every (ep, vpp, zero, micro-batch, recompute) completion of a shape that the global batch allows."""
    if global_batch % dp:
        return
    per_dp = global_batch // dp
    zeros = _allowed([0, 1, 2, 3] if dp * cp > 1 else [0], pins.zero)
    for ep in _allowed(ep_options(spec, dp * cp), pins.ep):
        for mb in [b for b in micro_batches(pins) if per_dp % b == 0]:
            m = per_dp // mb
            vpps = [1] if pp == 1 else [v for v in virtual_stages(pins)
                                        if v == 1 or (m % pp == 0 and spec.num_layers >= pp * v)]
            for vpp in [v for v in _allowed(vpps, pins.vpp) if schedule_allows(pins.schedule, pp, v, m)]:
                for zero in zeros:
                    for rc in _allowed(list(RECOMPUTE), pins.recompute):
                        yield Layout(tp=tp, pp=pp, dp=dp, cp=cp, ep=ep, vpp=vpp, zero=zero, micro_batch=mb,
                                     recompute=rc)


RECOMPUTE_ORDER = {"none": 0, "selective": 1, "full": 2}


def placement(lay: Layout) -> tuple[int, int, int, int, int]:
    """The degrees that place the model on GPUs: (tp, pp, dp, cp, ep) (the ZeRO shard group, like the ZeRO stage,
    is a variant of a placement)."""
    return lay.tp, lay.pp, lay.dp, lay.cp, lay.ep


def memory_dominates(failed: Layout, other: Layout) -> bool:
    """True when ``other`` needs at least the memory of ``failed``, so that if ``failed`` does not fit neither does
    ``other``: the same placement, a micro-batch at least as large, no more recomputation, a ZeRO stage no higher,
    ZeRO states sharded over no more ranks (hybrid sharding keeps dp/dp_shard copies) and at least as much
    interleaving (interleaving adds micro-batches in flight, it never frees memory)."""
    return placement(failed) == placement(other) and (
        other.micro_batch >= failed.micro_batch
        and RECOMPUTE_ORDER[other.recompute] <= RECOMPUTE_ORDER[failed.recompute]
        and other.zero <= failed.zero and shard_ranks(other) <= shard_ranks(failed) and other.vpp >= failed.vpp)


def most_frugal(lay: Layout, pins: Pins, global_batch: int) -> Layout:
    """The layout of ``lay``'s placement that needs the least memory among those the search allows: the smallest
    micro-batch, the most recomputation, the highest ZeRO stage over all data-parallel ranks, no interleaving."""
    per_dp = global_batch // lay.dp
    mbs = [b for b in micro_batches(pins) if per_dp % b == 0] or [lay.micro_batch]
    rcs = _allowed(list(RECOMPUTE), pins.recompute) or [lay.recompute]
    zeros = _allowed([0, 1, 2, 3] if lay.dp * lay.cp > 1 else [0], pins.zero) or [lay.zero]
    vpps = _allowed([1], pins.vpp) or [lay.vpp]
    if pins.schedule == "interleaved" and lay.pp > 1:
        vpps = [lay.vpp]
    return Layout(tp=lay.tp, pp=lay.pp, dp=lay.dp, cp=lay.cp, ep=lay.ep, vpp=min(vpps), zero=max(zeros),
                  micro_batch=min(mbs), recompute=max(rcs, key=RECOMPUTE_ORDER.__getitem__))


def empty_reason(spec: ModelSpec, gpus: int, seq: int, global_batch: int, gpus_per_node: int, pins: Pins) -> str:
    """Why a fixed GPU count has no layout at all (before any memory check): the first constraint that empties the
    search, with the values involved — the degrees that divide the GPUs, the global batch over data parallelism,
    the micro-batch, or a pin that no remaining layout can have."""
    from dataclasses import replace

    shapes = list(shapes_for(spec, gpus, seq, gpus_per_node, pins))
    if not shapes:
        return (f"divisibility: no tp x cp x pp with tp in {_allowed(tp_options(spec, gpus_per_node), pins.tp)}, "
                f"cp in {_allowed(cp_options(seq), pins.cp)} and pp <= {spec.num_layers} layers"
                f"{' in ' + str(list(pins.pp)) if pins.pp else ''} divides {gpus} GPUs")
    dps = sorted({dp for *_, dp in shapes})
    fitting = [dp for dp in dps if global_batch % dp == 0]
    if not fitting:
        return f"divisibility: the global batch {global_batch} is not a multiple of any data-parallel degree {dps}"
    per = sorted({global_batch // dp for dp in fitting})
    if not any(p % b == 0 for p in per for b in micro_batches(pins)):
        what = "the pin --micro-batch" if pins.micro_batch else "divisibility: micro-batch"
        return (f"{what} {','.join(map(str, micro_batches(pins)))} divides none of the {per} sequences per "
                f"data-parallel rank (global batch {global_batch} / dp {fitting})")
    for name in ("schedule", "vpp", "zero", "ep", "recompute", "micro_batch"):
        value = getattr(pins, name)
        if value is None:
            continue
        relaxed = replace(pins, **{name: None})
        if any(True for tp, cp, pp, dp in shapes_for(spec, gpus, seq, gpus_per_node, relaxed)
               for _ in layouts_for_shape(spec, tp, cp, pp, dp, global_batch, relaxed)):
            shown = value if isinstance(value, str) else ",".join(map(str, value))
            return (f"the pin --{name.replace('_', '-')} {shown}: no layout of {gpus} GPUs can have it with the "
                    f"other options (global batch {global_batch}; interleaving needs micro-batches per pipeline a "
                    f"multiple of pp, DualPipe an even pp and 2·pp micro-batches)")
    return "no layout satisfies the pinned options together"
