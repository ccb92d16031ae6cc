"""Network bandwidths and collective-communication times for the step-time model.

Collectives use the ring (bus-bandwidth) cost model that nccl-tests reports against (NVIDIA nccl-tests
doc/PERFORMANCE.md): for n ranks and a buffer of B bytes per rank,

    all-reduce        2·(n−1)/n · B / bus_bandwidth
    all-gather        (n−1)/n · B_total / bus_bandwidth      (B_total: the gathered buffer)
    reduce-scatter    (n−1)/n · B_total / bus_bandwidth
    all-to-all        (n−1)/n · B / bus_bandwidth
    point-to-point    B / link_bandwidth

plus a fixed latency per collective. A group whose ranks all sit in one node uses the intra-node link (NVLink,
HCCS, Infinity Fabric: the catalog's per-GPU, one-direction figure); a group that spans nodes is limited by each
GPU's network interface (one NIC per GPU, rail-optimized, as DGX/HGX systems are built). Ignores: topology
above the leaf switch (oversubscription, congestion), NVLink SHARP in-network reduction, hierarchical algorithms.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuplan.errors import InputError

BUS_EFFICIENCY = 0.80
BUS_EFFICIENCY_SOURCE = ("nccl-tests all_reduce busbw on 8x A100 SXM4 NVLink: 230-250 GB/s of 300 GB/s (reference "
                         "table of docs.alayanew.com 'NCCL-tests in practice', 2026) -> 0.8; the same fraction is "
                         "assumed across nodes")
COLLECTIVE_LATENCY_S = 20e-6
COLLECTIVE_LATENCY_SOURCE = ("order of NCCL's small-message all-reduce time across nodes (tens of microseconds in "
                             "nccl-tests); matters only for tiny buffers")


@dataclass(frozen=True)
class Network:
    """Bandwidths (bytes/s, per GPU, one direction) and the node size."""

    gpus_per_node: int
    intra_node_bytes_per_s: float
    inter_node_bytes_per_s: float
    bus_efficiency: float = BUS_EFFICIENCY
    latency_s: float = COLLECTIVE_LATENCY_S
    intra_source: str = ""
    inter_source: str = ""

    def bandwidth(self, spans_nodes: bool) -> float:
        """Achievable bus bandwidth for a group inside one node or spanning nodes."""
        link = self.inter_node_bytes_per_s if spans_nodes else self.intra_node_bytes_per_s
        return link * self.bus_efficiency


def default_network(gpu, *, gpus_per_node: int = 8, inter_node_bytes_per_s: float | None = None,
                    intra_node_bytes_per_s: float | None = None, single_node: bool = False) -> Network:
    """The network of a ``gpu`` (GpuSpec) cluster: NVLink and the NIC from the catalog (``interconnect_GBps``,
    ``inter_node_GBps`` with the system it was read from). ``single_node``: no group leaves the node, so a GPU
    without a NIC figure needs none."""
    if gpus_per_node < 1:
        raise InputError("--gpus-per-node", gpus_per_node, "must be >= 1")
    intra = intra_node_bytes_per_s or gpu.interconnect_bytes_per_s
    intra_src = "given" if intra_node_bytes_per_s else f"{gpu.interconnect} per GPU, one direction ({gpu.source})"
    if inter_node_bytes_per_s is not None:
        inter, inter_src = inter_node_bytes_per_s, "given"
    elif getattr(gpu, "inter_node_bytes_per_s", None):
        inter, inter_src = gpu.inter_node_bytes_per_s, f"catalog: {gpu.inter_node_source}"
    elif single_node:
        inter, inter_src = intra, "unused: every group stays inside one node"
    else:
        raise InputError("--inter-node-gbps", None, f"has no default: the catalog entry of GPU {gpu.id!r} lacks "
                         "the field inter_node_GBps",
                         hint="give the per-GPU network bandwidth in GB/s, one direction (400 Gb/s NIC = 50)")
    return Network(gpus_per_node=gpus_per_node, intra_node_bytes_per_s=intra, inter_node_bytes_per_s=inter,
                   intra_source=intra_src, inter_source=inter_src)


def all_reduce_s(buffer_bytes: float, ranks: int, bandwidth: float, latency_s: float) -> float:
    """Ring all-reduce: 2·(n−1)/n · B / bw + latency (0 for one rank)."""
    if ranks <= 1 or buffer_bytes <= 0:
        return 0.0
    return 2 * (ranks - 1) / ranks * buffer_bytes / bandwidth + latency_s


def all_gather_s(total_bytes: float, ranks: int, bandwidth: float, latency_s: float) -> float:
    """Ring all-gather of a ``total_bytes`` result (each rank holds total/n): (n−1)/n · B / bw + latency."""
    if ranks <= 1 or total_bytes <= 0:
        return 0.0
    return (ranks - 1) / ranks * total_bytes / bandwidth + latency_s


def reduce_scatter_s(total_bytes: float, ranks: int, bandwidth: float, latency_s: float) -> float:
    """Ring reduce-scatter of a ``total_bytes`` input: (n−1)/n · B / bw + latency (same cost as all-gather)."""
    return all_gather_s(total_bytes, ranks, bandwidth, latency_s)


def all_to_all_s(buffer_bytes: float, ranks: int, bandwidth: float, latency_s: float) -> float:
    """All-to-all where each rank sends (n−1)/n of its ``buffer_bytes`` to the others."""
    if ranks <= 1 or buffer_bytes <= 0:
        return 0.0
    return (ranks - 1) / ranks * buffer_bytes / bandwidth + latency_s


def p2p_s(buffer_bytes: float, bandwidth: float, latency_s: float) -> float:
    """One point-to-point transfer (pipeline activations)."""
    return buffer_bytes / bandwidth + latency_s if buffer_bytes > 0 else 0.0


def group_spans_nodes(stride: int, size: int, gpus_per_node: int) -> bool:
    """Whether a process group of ``size`` ranks ``stride`` apart in the rank order crosses a node boundary.

    Ranks are laid out Megatron-style: tensor-parallel fastest, then context, then data, then pipeline
    (megatron/core/parallel_state.py, order "tp-cp-ep-dp-pp"); a group fits in a node when stride × size does.
    """
    return size > 1 and stride * size > gpus_per_node


def data_parallel_s(zero: int, grad_bytes: float, param_bytes: float, shard_ranks: int, replicas: int,
                    shard_bw: float, replica_bw: float, latency_s: float, hide_bwd_s: float, hide_fwd_s: float
                    ) -> tuple[float, float]:
    """Exposed data-parallel seconds (per micro-batch, once per step) for one rank's local parameters,
    ``grad_bytes`` / ``param_bytes`` of them in the gradient-reduction and gather formats; backward traffic hides
    behind ``hide_bwd_s``, gathers for forward behind ``hide_fwd_s``.

    - ZeRO-0: all-reduce of the gradients over the shard_ranks·replicas ranks once per step;
    - ZeRO-1: reduce-scatter + all-gather once per step; ZeRO-2: reduce-scatter every micro-batch, all-gather once;
      ZeRO-3: all-gather in forward and again in backward, reduce-scatter every micro-batch (DeepSpeed semantics);
    - hybrid sharding (``replicas`` > 1): those collectives run inside the shard group, and the reduced gradient
      shard (grad_bytes / shard_ranks) is all-reduced across the replicas with each reduce-scatter (FSDP2 HSDP:
      torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py ``foreach_reduce``; DeepSpeed MiCS:
      deepspeed/runtime/zero/mics.py ``allreduce_mics_shard_grads``; Megatron partial distributed optimizer:
      megatron/core/distributed/param_and_grad_buffer.py).
    Ignores: the hierarchical all-gather of MiCS (``mics_hierarchical_params_gather``). Not described: torch's
    ZeRO-1 over a shard group (``ZeroRedundancyOptimizer(process_group=...)`` beside DDP), whose gradients are
    still all-reduced over every rank (the planner does not propose it)."""
    rs = reduce_scatter_s(grad_bytes, shard_ranks, shard_bw, latency_s)
    rs += all_reduce_s(grad_bytes / shard_ranks, replicas, replica_bw, latency_s)
    ag = all_gather_s(param_bytes, shard_ranks, shard_bw, latency_s)
    if zero == 0:
        return 0.0, max(0.0, all_reduce_s(grad_bytes, shard_ranks * replicas, shard_bw, latency_s) - hide_bwd_s)
    if zero == 1:
        return 0.0, max(0.0, rs - hide_bwd_s) + max(0.0, ag - hide_fwd_s)
    if zero == 2:
        return max(0.0, rs - hide_bwd_s), max(0.0, ag - hide_fwd_s)
    return max(0.0, ag - hide_fwd_s) + max(0.0, ag + rs - hide_bwd_s), 0.0
