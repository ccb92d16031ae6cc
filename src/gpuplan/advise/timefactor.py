"""What a change costs in speed: GPU-seconds for the same work, relative to the current setup (``time_factor``).

``time_factor`` = (GPU-seconds per trained token after the change) / (GPU-seconds per token before), or per
generated token for inference. It equals the wall-clock ratio when the GPU count stays the same, and the GPU-hour
(cost) ratio when it changes; a value below 1 means faster or cheaper.

Training uses the step-time model of ``gpuplan plan`` (:func:`gpuplan.compute.steptime.step_time`: GEMMs on a
roofline, recomputation, TP/PP/DP/ZeRO communication, pipeline bubble) for the layout, micro-batch and recompute
mode; what that model does not see is applied on top: LoRA/QLoRA/freezing scale it by the ratio of hardware FLOPs
(``gpuplan.compute.flops.training_flops``: 4·P for frozen weights vs 6·P), and CPU offload adds its transfer and CPU
optimizer time (below). Where the step-time model cannot answer (a GPU without a network default beyond one node,
no model dimensions), the FLOP-ratio estimate below is used alone:

Training, per GPU and step (tokens per step = micro-batch × seq × accumulation × dp):

* compute = hardware FLOPs per token (``gpuplan.compute.flops.training_flops``: 6·P_trainable + 4·P_frozen +
  attention, plus the recomputed forward: full recompute ≈ 4/3, selective ≈ 1 + attention share; Korthikanti et al.
  2022 §5) × tokens / (dense peak of the GPU × ``EFFICIENCY``). The efficiency cancels unless the GPU type changes.
* pipeline bubble: × (m + p − 1)/m, m micro-batches per step (Narayanan et al. 2021, arXiv:2104.04473 §2.2.1).
* tensor parallel: 4 all-reduces of b·s·h activations per layer per micro-batch (2 forward, 2 backward; 6 with full
  recompute), ring cost 2(t−1)/t × bytes / link bandwidth, not overlapped (Shoeybi et al. 2019 §3; Megatron-LM).
* data parallel: gradient all-reduce 2Ψ (DDP, ZeRO-1/2) or 3Ψ (ZeRO-3/FSDP: an extra parameter all-gather, and one
  all-gather per micro-batch in forward and backward) bytes × (N−1)/N / bandwidth, overlapped with compute, so a
  step takes max(compute, communication) (Rajbhandari et al. 2020, ZeRO §7; Zhao et al. 2023, PyTorch FSDP §3.3).
* CPU offload: gradients down and parameters up over the host link each step, the optimizer step on the CPU at
  memory bandwidth, not overlapped (Ren et al. 2021, ZeRO-Offload §4); parameter offload adds a fetch of the
  weights per micro-batch, forward and backward (Rajbhandari et al. 2021, ZeRO-Infinity §5).
* micro-batch + accumulation and 8-bit optimizers: same FLOPs, factor 1 (Dettmers et al. 2022, 8-bit optimizers:
  speed on par with 32-bit Adam); smaller GEMMs are less efficient, which this estimate does not see.

Inference, per decode step (memory-bound roofline; Pope et al. 2022, "Efficiently Scaling Transformer Inference"
§2): every GPU reads its weights and KV cache once per step, step = (weights + KV) / HBM bandwidth, plus 2 TP
all-reduces per layer of batch·h activations; GPU-seconds per token = step × GPUs / batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from gpuplan.hardware.catalog import GpuSpec
from gpuplan.model.spec import ModelSpec

GPUS_PER_NODE = 8  # NVIDIA DGX/HGX A100, H100, H200, B200 baseboards hold 8 GPUs joined by NVLink
NETWORK_BYTES_PER_S_PER_GPU = 50e9  # 400 Gb/s InfiniBand NDR / ConnectX-7 per GPU (DGX H100 user guide)
HOST_LINK_BYTES_PER_S = 25e9  # PCIe 4.0 x16 host<->device with pinned memory (NVIDIA bandwidthTest, ~25 GB/s)
CPU_MEMORY_BYTES_PER_S = 100e9  # one server socket of DDR4/DDR5 (8 channels x 3200-4800 MT/s x 8 B = 205-307 GB/s
#                                 peak; STREAM reaches about half on the optimizer's streaming access)
CPU_ADAM_BYTES_PER_PARAM = 28  # fp32 param, grad, m, v read (16 B) + param, m, v written (12 B)
EFFICIENCY = 0.4  # fraction of dense peak reached by the GEMMs; cancels between setups on the same GPU type
ACT_BYTES = 2  # bf16 activations and gradients on the wire

ASSUMPTIONS = (
    "time factor = GPU-seconds for the same tokens relative to the current setup (GPU-hours when the GPU count "
    "changes), from the step-time model of `gpuplan plan` (gpuplan.compute.steptime) with its default "
    "efficiencies and network; LoRA/QLoRA/freeze scaled by hardware FLOPs (frozen weights 4·P, trainable 6·P)",
    f"where the step-time model cannot answer: FLOP-ratio estimate with compute at {EFFICIENCY:.0%} of the dense "
    "peak",
    f"{GPUS_PER_NODE} GPUs per node on the GPU's own link; beyond that the catalog's network per GPU "
    f"(inter_node_GBps; {NETWORK_BYTES_PER_S_PER_GPU / 1e9:.0f} GB/s, 400 Gb/s InfiniBand, where it has none)",
    f"CPU offload: host link {HOST_LINK_BYTES_PER_S / 1e9:.0f} GB/s (PCIe 4.0 x16), CPU optimizer at "
    f"{CPU_MEMORY_BYTES_PER_S / 1e9:.0f} GB/s memory bandwidth, not overlapped",
    "data-parallel communication overlapped with compute; tensor-parallel communication not overlapped",
    "smaller micro-batches are taken to run at the same efficiency (optimistic for micro-batch x seq below ~4k "
    "tokens)",
)

INFER_ASSUMPTIONS = (
    "time factor = GPU-seconds per generated token relative to the current setup (GPU-hours when the GPU count "
    "changes), from `gpuplan infer`'s decode speed (aggregate tokens/s at the batch) when it reports one",
    "decode is memory-bound: each step reads every GPU's weights and whole allocated KV cache once at the HBM "
    "bandwidth (Pope et al. 2022); dequantization and prefill are not counted",
    f"tensor-parallel all-reduces on the GPU's own link inside a node of {GPUS_PER_NODE}",
)


@dataclass(frozen=True)
class TrainPoint:
    """What the time estimate needs of one training setup (from its options and its `gpuplan train` JSON)."""

    gpu: GpuSpec
    hardware_flop_per_token: float
    trainable_params: int
    total_params: int
    batch: int
    seq: int
    grad_accum: int
    dp: int
    tp: int
    pp: int
    cp: int
    zero: int
    offload: str
    recompute: str
    microbatches: int | None
    precision: str


def _dtype(precision: str) -> str:
    return {"fp32": "tf32", "fp8": "fp8"}.get(precision, "fp16" if "fp16" in precision else "bf16")


def _peak(gpu: GpuSpec, precision: str) -> float:
    return (gpu.peak_flop_per_s_for(_dtype(precision)) or gpu.peak_flop_per_s_for("bf16")
            or gpu.peak_flop_per_s_for("fp16") or 1.0)


def _link(gpu: GpuSpec, group_span: int) -> float:
    """Bandwidth of a collective spanning ``group_span`` consecutive GPUs (inside one node or not)."""
    network = getattr(gpu, "inter_node_bytes_per_s", None) or NETWORK_BYTES_PER_S_PER_GPU
    return gpu.interconnect_bytes_per_s if group_span <= GPUS_PER_NODE else min(gpu.interconnect_bytes_per_s, network)


def train_gpu_seconds_per_token(spec: ModelSpec, p: TrainPoint) -> float:
    """GPU-seconds per trained token of setup ``p`` (see the module docstring for each term)."""
    world = p.dp * p.tp * p.pp * p.cp
    m = p.microbatches or p.grad_accum
    tokens_per_micro = p.batch * p.seq  # per data-parallel rank, before CP splits the sequence
    tokens_per_step = tokens_per_micro * m * p.dp
    compute_s = p.hardware_flop_per_token * tokens_per_step / world / (_peak(p.gpu, p.precision) * EFFICIENCY)
    if p.pp > 1:
        compute_s *= (m + p.pp - 1) / m
    tp_s = 0.0
    if p.tp > 1:
        per_layer = 6 if p.recompute == "full" else 4
        layers_here = spec.num_layers / p.pp
        msg = tokens_per_micro / p.cp * spec.hidden_size * ACT_BYTES
        tp_s = m * layers_here * per_layer * 2 * (p.tp - 1) / p.tp * msg / _link(p.gpu, p.tp)
    dp_s = 0.0
    shard_params = p.trainable_params / (p.tp * p.pp)
    if p.dp > 1:  # gradients: reduce-scatter + all-gather (= all-reduce); ZeRO-3: weights gathered per micro-batch
        gathered = 2 * m * p.total_params / (p.tp * p.pp) if p.zero == 3 else shard_params
        volume = (shard_params + gathered) * ACT_BYTES * (p.dp - 1) / p.dp
        dp_s = volume / _link(p.gpu, world)
    step_s = max(compute_s + tp_s, dp_s) + offload_seconds_per_step(p)
    return step_s * world / tokens_per_step


def offload_seconds_per_step(p: TrainPoint) -> float:
    """CPU offload per optimizer step: gradients down and parameters up over the host link, Adam on the CPU at
    memory bandwidth (ZeRO-Offload §4), and with parameter offload the weights fetched per micro-batch for forward
    and backward (ZeRO-Infinity §5); not overlapped."""
    if p.offload == "none":
        return 0.0
    m = p.microbatches or p.grad_accum
    shard_params = p.trainable_params / (p.tp * p.pp)
    local = shard_params / (p.dp if p.zero >= 1 else 1)
    seconds = 2 * local * ACT_BYTES / HOST_LINK_BYTES_PER_S + local * CPU_ADAM_BYTES_PER_PARAM / CPU_MEMORY_BYTES_PER_S
    if "params" in p.offload:
        seconds += m * 2 * (p.total_params / (p.tp * p.pp * p.dp)) * ACT_BYTES / HOST_LINK_BYTES_PER_S
    return seconds


def steptime_gpu_seconds_per_token(spec: ModelSpec, p: TrainPoint, full_flop_per_token: float) -> float:
    """GPU-seconds per token from :func:`gpuplan.compute.steptime.step_time` for the layout, scaled by
    hardware FLOPs of the method vs full training, plus offload. Raises InputError where that model cannot
    answer."""
    from gpuplan.compute.comm import default_network
    from gpuplan.compute.steptime import Layout, Workload, make_device, step_time

    m = p.microbatches or p.grad_accum
    world = p.dp * p.tp * p.pp * p.cp
    lay = Layout(tp=p.tp, pp=p.pp, dp=p.dp, cp=p.cp, zero=p.zero, micro_batch=p.batch, recompute=p.recompute,
                 sp=None)
    work = Workload(seq=p.seq, global_batch=p.batch * m * p.dp)
    dev, _ = make_device(p.gpu, _dtype(p.precision) if p.precision != "fp32" else "tf32")
    net = default_network(p.gpu, single_node=world <= GPUS_PER_NODE)
    st = step_time(spec, lay, work, dev, net)
    method_ratio = p.hardware_flop_per_token / full_flop_per_token if full_flop_per_token else 1.0
    step_s = st.step_s * method_ratio + offload_seconds_per_step(p)
    return step_s * world / (work.global_batch * p.seq)


def infer_gpu_seconds_per_token(spec: ModelSpec | None, gpu: GpuSpec, memory: Mapping[str, Any], *, batch: int,
                                tp: int, gpus: int) -> float:
    """GPU-seconds per generated token at decode: (weights + KV cache) / HBM bandwidth per step, plus TP
    all-reduces, times GPUs, divided by the sequences decoded together."""
    read_bytes = memory.get("weights_bytes", 0) + memory.get("kv_cache_bytes", 0)
    step_s = read_bytes / gpu.hbm_bandwidth_bytes_per_s
    if tp > 1 and spec is not None:
        msg = batch * spec.hidden_size * ACT_BYTES
        step_s += spec.num_layers * 2 * 2 * (tp - 1) / tp * msg / _link(gpu, tp)
    return step_s * gpus / max(batch, 1)
