"""The cluster bill (seed 004 §7.3 step 3): servers with spares, racks and power, network, storage, host memory,
and the cost of renting or buying — one small function per quantity, then :func:`estimate_cluster` that chains them
and explains each number (a :class:`~gpuplan.report.Term` with its formula and source).

Units inside: GPUs and servers are counts, power in W, energy in kWh, bytes, bytes/s, seconds, US dollars. Another
currency is a rate applied at the edge (:func:`to_currency`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gpuplan.compute.timecost import round_up_gpus
from gpuplan.errors import InputError
from gpuplan.report import Term
from gpuplan.units import SECONDS_PER_HOUR

SEED = "seed 004 §7.3 step 3"
DEFAULT_SPARE = 0.05
SPARE_SOURCE = "seed 004 §7.3 step 2: 864 GPUs + 5 % redundancy for failures and maintenance ≈ 907"
DEFAULT_RACK_KW = 40.0
RACK_SOURCE = "seed 004 §7.3 step 3: 40 kW per rack"
DEFAULT_SWITCH_RADIX = 64
RADIX_SOURCE = ("64 ports: NVIDIA Quantum-2 QM9700 (64x 400 Gb/s NDR) and 51.2 Tb/s Ethernet switches "
                "(64x 800G / 128x 400G); given as --switch-radix")
DEFAULT_STORAGE_GBPS = 100.0
STORAGE_SOURCE = "seed 004 §7.3 step 3: a parallel file system with at least 100 GB/s aggregate bandwidth"
DEFAULT_BYTES_PER_TOKEN = 4.0
BYTES_PER_TOKEN_SOURCE = ("assumed 4 bytes per token: a tokenized corpus stored as 32-bit ids (Megatron-LM "
                          "megatron/core/datasets/indexed_dataset.py DType.optimal_dtype: uint16 only below 65,500 "
                          "tokens of vocabulary, else int32), and about 4 characters of English text per token for "
                          "raw text (OpenAI's tokenizer guide)")
DATALOADER_WORKERS_PER_GPU = 2
DATALOADER_WORKER_BYTES = 2 * 1024**3
DATALOADER_SOURCE = ("Megatron-LM --num-workers default 2 per rank; 2 GiB per worker process ASSUMED (a forked "
                     "Python process with the tokenizer and the memory-mapped dataset index), not measured")
STAGING_SOURCE = ("asynchronous checkpointing copies each rank's model states to pinned host memory before "
                  "writing (PyTorch torch.distributed.checkpoint.async_save stages to CPU; Megatron-LM "
                  "--async-save); no layout gpuplan proposes offloads states to the CPU")
RING_SOURCE = ("rail-optimized fat tree (NVIDIA DGX SuperPOD reference architecture: NIC i of every node on rail "
               "i), non-blocking (half of each switch's ports down, half up); a k-port switch tree of 2 tiers holds "
               "k²/2 endpoints, of 3 tiers k³/4 (Al-Fares et al. 2008, 'A Scalable, Commodity Data Center Network "
               "Architecture')")
TRANSCEIVER_SOURCE = "assumed: every link optical, one transceiver at each end (in-rack copper cables would need none)"
ROUND_RULES = ("unit", "pow2", "node")


# --- servers --------------------------------------------------------------------------------------------------

def gpus_with_spares(gpus: int, spare: float) -> int:
    """GPUs with a spare margin: ceil(gpus × (1 + spare)). Seed 004 §7.3 step 2: 864 × 1.05 = 907.2 → 907 there
    (rounded to nearest), 908 here (a spare GPU is whole)."""
    if not 0 <= spare <= 1:
        raise InputError("--spare", spare, "must be a fraction from 0 to 1 (0.05 = 5 % spare GPUs)")
    return round_up_gpus(gpus * (1 + spare))


def parallel_unit(model_parallel: int, gpus_per_node: int) -> int:
    """The GPUs one more data-parallel replica takes in whole servers: lcm(TP·PP·CP, GPUs per node). Seed 004
    §7.3 step 2 uses one model replica (TP4 × PP4 = 16 GPUs, two 8-GPU servers)."""
    return math.lcm(model_parallel, gpus_per_node)


def round_cluster_gpus(gpus: int, unit: int, rule: str) -> int:
    """The cluster size for ``gpus`` under ``rule``:

    - ``unit``: the next multiple of ``unit`` (whole replicas in whole servers);
    - ``pow2``: the next unit × 2^k (a power of two when ``unit`` is one; seed 004 §7.3 step 2: 907 → 1,024,
      "to round up and ease the network topology");
    - ``node``: whole servers only (``unit`` is then the node size)."""
    if rule not in ROUND_RULES:
        raise InputError("--round", rule, "must be one of " + ", ".join(ROUND_RULES))
    n = round_up_gpus(gpus, unit)
    if rule == "pow2":
        n = unit
        while n < gpus:
            n *= 2
    return n


def servers_for(gpus: int, gpus_per_node: int) -> int:
    """Servers: ceil(GPUs / GPUs per node)."""
    return -(-gpus // gpus_per_node)


# --- power ----------------------------------------------------------------------------------------------------

def node_overhead_w(node_power_max_w: float, gpus_per_node: int, gpu_tdp_w: float) -> float:
    """A server's non-GPU power (CPUs, NICs, NVSwitches, fans, drives, supply losses): its datasheet maximum minus
    its GPUs' TDP (DGX H100: 10,200 − 8 × 700 = 4,600 W)."""
    return node_power_max_w - gpus_per_node * gpu_tdp_w


def node_power_w(gpus_per_node: int, gpu_w: float, overhead_w: float) -> float:
    """IT power of one server: GPUs per node × GPU power + the non-GPU overhead."""
    return gpus_per_node * gpu_w + overhead_w


def nodes_per_rack(rack_w: float, node_w: float) -> int:
    """Servers a rack's power budget holds: floor(rack budget / server IT power). The budget is IT power (what the
    rack's PDUs deliver); cooling, counted in PUE, is outside the rack."""
    n = int(rack_w // node_w)
    if n < 1:
        raise InputError("--rack-kw", rack_w / 1000, f"is below one server's power ({node_w / 1000:.2f} kW)")
    return n


def racks_for(servers: int, per_rack: int) -> int:
    """Racks: ceil(servers / servers per rack). Switches and storage are left out (they need racks of their own)."""
    return -(-servers // per_rack)


def facility_power_w(it_w: float, pue: float) -> float:
    """Facility power: IT power × PUE (The Green Grid, PUE = facility energy / IT equipment energy)."""
    return it_w * pue


def energy_kwh(power_w: float, seconds: float) -> float:
    """Energy: power × time, W·s → kWh."""
    return power_w * seconds / 3.6e6


# --- network --------------------------------------------------------------------------------------------------

def per_gpu_network_bytes_per_s(nics_per_node: int, nic_bits_per_s: float, gpus_per_node: int) -> float:
    """Per-GPU inter-node bandwidth, one direction: NICs × line rate / 8 / GPUs per node (8 × 400 Gb/s / 8 GPUs =
    50 GB/s)."""
    return nics_per_node * nic_bits_per_s / 8 / gpus_per_node


@dataclass(frozen=True)
class FatTree:
    """Switches, links and transceivers of a non-blocking rail-optimized fat tree."""

    tiers: int
    endpoints: int
    leaf_switches: int
    spine_switches: int
    core_switches: int
    links: int
    transceivers: int

    @property
    def switches(self) -> int:
        return self.leaf_switches + self.spine_switches + self.core_switches


def fat_tree(nodes: int, rails: int, radix: int) -> FatTree:
    """A rail-optimized non-blocking fat tree for ``nodes`` servers with ``rails`` NICs each and ``radix``-port
    switches (k = radix, h = k/2):

    - one tier when all endpoints fit one switch (nodes·rails ≤ k);
    - leaves: rails × ceil(nodes / h) (each leaf serves h nodes of one rail);
    - two tiers while leaves ≤ k: as many uplinks as NIC ports (1:1), spines = ceil(endpoints / k);
      links = 2 · endpoints;
    - three tiers while leaves ≤ k·h: pods of h leaves and h aggregation switches, aggregation = ceil(leaves/h)·h,
      core = ceil(endpoints / k); links = 3 · endpoints;
    - transceivers: two per link.
    """
    if not 4 <= radix <= 1024 or radix % 2:
        raise InputError("--switch-radix", radix, "must be an even number of ports from 4 to 1,024")
    endpoints = nodes * rails
    half = radix // 2
    if endpoints <= radix:
        return FatTree(1, endpoints, 1, 0, 0, endpoints, 2 * endpoints)
    leaves = rails * -(-nodes // half)
    if leaves <= radix:
        links = 2 * endpoints
        return FatTree(2, endpoints, leaves, -(-endpoints // radix), 0, links, 2 * links)
    if leaves <= radix * half:
        aggregation = -(-leaves // half) * half
        links = 3 * endpoints
        return FatTree(3, endpoints, leaves, aggregation, -(-endpoints // radix), links, 2 * links)
    raise InputError("--switch-radix", radix, f"a 3-tier fat tree of {radix}-port switches holds {radix**3 // 4:,} "
                     f"endpoints; {endpoints:,} need larger switches")


# --- storage and host memory ----------------------------------------------------------------------------------

def checkpoint_bytes(params_total: int, precision: str, framework: str) -> int:
    """One full checkpoint: weights + optimizer states + master weights (gradients are not saved), from the
    training-memory engine's model states with nothing sharded (AdamW; Megatron bf16: 2 + 8 + 4 = 14 bytes per
    parameter, the seed's 14·P)."""
    from gpuplan.train.config import TrainConfig
    from gpuplan.train.engine import estimate_training

    m = estimate_training(None, TrainConfig(precision=precision, optimizer="adamw", framework=framework),
                          params_total=params_total).memory
    return m.weights_bytes + m.optimizer_bytes + m.master_weights_bytes


def write_seconds(size_bytes: float, bytes_per_s: float) -> float:
    """Time to write ``size_bytes`` at an aggregate ``bytes_per_s`` (the file system's, not a node's)."""
    return size_bytes / bytes_per_s


def dataset_bytes(tokens: int, bytes_per_token: float) -> float:
    """Training data on disk: tokens × bytes per token."""
    return tokens * bytes_per_token


def host_memory_per_node_bytes(gpus_per_node: int, staged_per_gpu_bytes: float, offload_per_gpu_bytes: float,
                               workers_per_gpu: int, worker_bytes: float) -> float:
    """Host memory per server: per GPU, its model states staged in pinned memory for checkpointing, its states
    offloaded to the CPU (0 unless the layout offloads), and its dataloader workers."""
    return gpus_per_node * (staged_per_gpu_bytes + offload_per_gpu_bytes + workers_per_gpu * worker_bytes)


# --- money ----------------------------------------------------------------------------------------------------

def rent_usd(gpus: int, seconds: float, usd_per_gpu_hour: float) -> float:
    """Renting the whole cluster (spares included) for the run: GPUs × hours × price per GPU-hour."""
    return gpus * seconds / SECONDS_PER_HOUR * usd_per_gpu_hour


def capex_usd(servers: int, usd_per_server: float) -> float:
    """Buying the servers: servers × price per server (network, storage and facility left out)."""
    return servers * usd_per_server


def depreciation_usd(capex: float, seconds: float, years: float) -> float:
    """The run's share of the purchase, straight-line: capex × run time / (years × 365.25 days)."""
    return capex * seconds / (years * 365.25 * 86400)


def power_cost_usd(kwh: float, usd_per_kwh: float) -> float:
    """Electricity: kWh × price per kWh."""
    return kwh * usd_per_kwh


def to_currency(usd: float, fx: float) -> float:
    """USD → another currency at ``fx`` units per USD (conversion at the edge only)."""
    return usd * fx


# --- the bill -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClusterInputs:
    """Everything :func:`estimate_cluster` needs, in base units."""

    gpus: int  # GPUs the run uses (the layout's, or the time equation's)
    model_parallel: int  # TP·PP·CP of the layout (1 without one)
    gpus_per_node: int
    nics_per_node: int
    nic_bits_per_s: float
    node_power_max_w: float
    gpu_tdp_w: float
    gpu_power_w: float  # the GPU power counted (TDP unless given)
    host_memory_bytes: int
    system_name: str
    system_source: str
    checkpoint_bytes: int
    staged_per_gpu_bytes: float
    tokens: int | None
    seconds: float | None  # run time; None: the run-length parts are left out
    spare: float = DEFAULT_SPARE
    round_rule: str = "unit"
    rack_w: float = DEFAULT_RACK_KW * 1000
    pue: float = 1.1
    pue_source: str = ""
    switch_radix: int = DEFAULT_SWITCH_RADIX
    storage_bytes_per_s: float = DEFAULT_STORAGE_GBPS * 1e9
    bytes_per_token: float = DEFAULT_BYTES_PER_TOKEN
    usd_per_gpu_hour: float | None = None
    rent_source: str = ""
    usd_per_server: float | None = None
    server_source: str = ""
    usd_per_kwh: float = 0.08
    power_price_source: str = ""
    years: float = 5.0
    years_source: str = ""
    system_gpus_per_node: int | None = None  # the catalog server's GPU count, when --gpus-per-node differs


@dataclass
class ClusterBill:
    """The answer: every quantity in base units, and the explained terms."""

    gpus_run: int
    gpus_with_spares: int
    unit: int
    gpus: int
    servers: int
    node_w: float
    node_overhead_w: float
    nodes_per_rack: int
    racks: int
    it_w: float
    facility_w: float
    energy_kwh: float | None
    per_gpu_network_bytes_per_s: float
    network: FatTree
    checkpoint_bytes: int
    checkpoint_write_s: float
    dataset_bytes: float | None
    host_memory_per_node_bytes: float
    host_memory_available_bytes: int
    rent_usd: float | None
    capex_usd: float | None
    depreciation_usd: float | None
    power_cost_usd: float | None
    terms: list[Term] = field(default_factory=list)

    @property
    def purchase_usd(self) -> float | None:
        """The run's share of buying: depreciation + electricity."""
        if self.depreciation_usd is None or self.power_cost_usd is None:
            return None
        return self.depreciation_usd + self.power_cost_usd

    def as_dict(self) -> dict:
        return {
            "gpus_run": self.gpus_run, "gpus_with_spares": self.gpus_with_spares, "parallel_unit": self.unit,
            "gpus": self.gpus, "servers": self.servers, "node_power_w": self.node_w,
            "node_overhead_w": self.node_overhead_w, "nodes_per_rack": self.nodes_per_rack, "racks": self.racks,
            "it_power_w": self.it_w, "facility_power_w": self.facility_w, "energy_kwh": self.energy_kwh,
            "per_gpu_network_bytes_per_s": self.per_gpu_network_bytes_per_s,
            "network": {"tiers": self.network.tiers, "endpoints": self.network.endpoints,
                        "leaf_switches": self.network.leaf_switches, "spine_switches": self.network.spine_switches,
                        "core_switches": self.network.core_switches, "switches": self.network.switches,
                        "links": self.network.links, "transceivers": self.network.transceivers},
            "checkpoint_bytes": self.checkpoint_bytes, "checkpoint_write_s": self.checkpoint_write_s,
            "dataset_bytes": self.dataset_bytes, "host_memory_per_node_bytes": self.host_memory_per_node_bytes,
            "host_memory_available_bytes": self.host_memory_available_bytes, "rent_usd": self.rent_usd,
            "capex_usd": self.capex_usd, "depreciation_usd": self.depreciation_usd,
            "power_cost_usd": self.power_cost_usd, "purchase_usd": self.purchase_usd,
        }


def estimate_cluster(c: ClusterInputs) -> ClusterBill:
    """Chain the functions above for one run; each number becomes a Term with its formula and source."""
    for name, value, flag in (("rack_w", c.rack_w, "--rack-kw"), ("storage", c.storage_bytes_per_s, "--storage-gbps"),
                              ("bytes_per_token", c.bytes_per_token, "--bytes-per-token"), ("years", c.years, "--years"),
                              ("usd_per_kwh", c.usd_per_kwh, "--power-usd-per-kwh")):
        if not value > 0:
            raise InputError(flag, value, "must be > 0")
    if not c.pue >= 1:
        raise InputError("--pue", c.pue, "must be >= 1 (facility energy / IT energy)")
    spared = gpus_with_spares(c.gpus, c.spare)
    unit = c.gpus_per_node if c.round_rule == "node" else parallel_unit(c.model_parallel, c.gpus_per_node)
    gpus = round_cluster_gpus(spared, unit, c.round_rule)
    servers = servers_for(gpus, c.gpus_per_node)
    overhead = node_overhead_w(c.node_power_max_w, c.system_gpus_per_node or c.gpus_per_node, c.gpu_tdp_w)
    node_w = node_power_w(c.gpus_per_node, c.gpu_power_w, overhead)
    per_rack = nodes_per_rack(c.rack_w, node_w)
    racks = racks_for(servers, per_rack)
    it_w = servers * node_w
    fac_w = facility_power_w(it_w, c.pue)
    kwh = None if c.seconds is None else energy_kwh(fac_w, c.seconds)
    net_bw = per_gpu_network_bytes_per_s(c.nics_per_node, c.nic_bits_per_s, c.gpus_per_node)
    tree = fat_tree(servers, c.nics_per_node, c.switch_radix)
    write_s = write_seconds(c.checkpoint_bytes, c.storage_bytes_per_s)
    data = None if c.tokens is None else dataset_bytes(c.tokens, c.bytes_per_token)
    host = host_memory_per_node_bytes(c.gpus_per_node, c.staged_per_gpu_bytes, 0.0, DATALOADER_WORKERS_PER_GPU,
                                      DATALOADER_WORKER_BYTES)
    rent = (None if c.seconds is None or c.usd_per_gpu_hour is None
            else rent_usd(gpus, c.seconds, c.usd_per_gpu_hour))
    capex = None if c.usd_per_server is None else capex_usd(servers, c.usd_per_server)
    dep = None if capex is None or c.seconds is None else depreciation_usd(capex, c.seconds, c.years)
    power_cost = None if kwh is None else power_cost_usd(kwh, c.usd_per_kwh)
    system = f"{c.system_name}: {c.system_source}"
    terms = [
        Term("gpus_with_spares", spared, "ceil(GPUs × (1 + spare))", SPARE_SOURCE,
             {"gpus": c.gpus, "spare": c.spare}),
        Term("parallel_unit", unit, "whole servers" if c.round_rule == "node" else
             "lcm(TP·PP·CP, GPUs per node): one more data-parallel replica in whole servers", SEED,
             {"model_parallel": c.model_parallel, "gpus_per_node": c.gpus_per_node}),
        Term("cluster_gpus", gpus, {"unit": "next multiple of parallel_unit",
                                    "pow2": "parallel_unit × 2^k, the smallest >= gpus_with_spares",
                                    "node": "next multiple of GPUs per node"}[c.round_rule],
             "seed 004 §7.3 step 2: 864 → +5 % → 907 → 1,024 (a power of two, to ease the network topology)",
             {"rule": c.round_rule}),
        Term("servers", servers, "cluster_gpus / GPUs per node", system, {"gpus_per_node": c.gpus_per_node}),
        Term("node_overhead_w", overhead, "server max power − GPUs per node × GPU TDP", system,
             {"node_power_max_w": c.node_power_max_w, "gpu_tdp_w": c.gpu_tdp_w}),
        Term("node_power_w", node_w, "GPUs per node × GPU power + node_overhead_w", system,
             {"gpu_power_w": c.gpu_power_w}),
        Term("nodes_per_rack", per_rack, "floor(rack budget / node_power_w); cooling (PUE) is outside the rack",
             RACK_SOURCE, {"rack_w": c.rack_w}),
        Term("racks", racks, "ceil(servers / nodes_per_rack); network and storage racks not counted", RACK_SOURCE),
        Term("it_power_w", it_w, "servers × node_power_w (switches and storage not counted)", system),
        Term("facility_power_w", fac_w, "it_power_w × PUE", c.pue_source, {"pue": c.pue}),
    ]
    if kwh is not None:
        terms.append(Term("energy_kwh", kwh, "facility_power_w × run seconds / 3.6e6 (every server powered for the "
                          "whole run, spares included)", "", {"seconds": c.seconds}))
    terms += [
        Term("per_gpu_network_bytes_per_s", net_bw, "NICs per node × NIC bits/s / 8 / GPUs per node", system,
             {"nics_per_node": c.nics_per_node, "nic_bits_per_s": c.nic_bits_per_s}),
        Term("switches", tree.switches, f"{tree.tiers}-tier fat tree: {tree.leaf_switches} leaf + "
             f"{tree.spine_switches} spine/aggregation + {tree.core_switches} core", RING_SOURCE,
             {"endpoints": tree.endpoints, "radix": c.switch_radix}),
        Term("links", tree.links, "endpoints × tiers (non-blocking: as many uplinks as NIC ports at each level)",
             RING_SOURCE),
        Term("transceivers", tree.transceivers, "2 × links", TRANSCEIVER_SOURCE),
        Term("checkpoint_bytes", c.checkpoint_bytes, "weights + optimizer states + master weights (model states of "
             "the memory engine, unsharded; gradients are not saved)", "gpuplan.train.engine"),
        Term("checkpoint_write_s", write_s, "checkpoint_bytes / storage bytes/s", STORAGE_SOURCE,
             {"storage_bytes_per_s": c.storage_bytes_per_s}),
    ]
    if data is not None:
        terms.append(Term("dataset_bytes", data, "tokens × bytes per token", BYTES_PER_TOKEN_SOURCE,
                          {"tokens": c.tokens, "bytes_per_token": c.bytes_per_token}))
    terms.append(Term("host_memory_per_node_bytes", host, "GPUs per node × (staged model states per GPU + CPU "
                      "offload 0 + dataloader workers × bytes per worker)", f"{STAGING_SOURCE}; {DATALOADER_SOURCE}",
                      {"staged_per_gpu_bytes": c.staged_per_gpu_bytes, "workers_per_gpu": DATALOADER_WORKERS_PER_GPU,
                       "worker_bytes": DATALOADER_WORKER_BYTES, "host_memory_bytes": c.host_memory_bytes}))
    if rent is not None:
        terms.append(Term("rent_usd", rent, "cluster_gpus × run hours × USD per GPU-hour", c.rent_source,
                          {"usd_per_gpu_hour": c.usd_per_gpu_hour}))
    if capex is not None:
        terms.append(Term("capex_usd", capex, "servers × USD per server (network, storage, facility not counted)",
                          c.server_source, {"usd_per_server": c.usd_per_server}))
    if dep is not None:
        terms.append(Term("depreciation_usd", dep, "capex_usd × run seconds / (years × 365.25 days)",
                          c.years_source, {"years": c.years}))
    if power_cost is not None:
        terms.append(Term("power_cost_usd", power_cost, "energy_kwh × USD per kWh", c.power_price_source,
                          {"usd_per_kwh": c.usd_per_kwh}))
    return ClusterBill(gpus_run=c.gpus, gpus_with_spares=spared, unit=unit, gpus=gpus, servers=servers, node_w=node_w,
                       node_overhead_w=overhead, nodes_per_rack=per_rack, racks=racks, it_w=it_w, facility_w=fac_w,
                       energy_kwh=kwh, per_gpu_network_bytes_per_s=net_bw, network=tree,
                       checkpoint_bytes=c.checkpoint_bytes, checkpoint_write_s=write_s, dataset_bytes=data,
                       host_memory_per_node_bytes=host, host_memory_available_bytes=c.host_memory_bytes,
                       rent_usd=rent, capex_usd=capex, depreciation_usd=dep, power_cost_usd=power_cost, terms=terms)
