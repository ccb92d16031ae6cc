"""Parallel degrees, validated the way torchtitan's ``ParallelDims`` validates them.

Glossary: a *degree* is how many ranks share one dimension of the work. ``dp`` data parallel (replicas, or shards
under ZeRO / FSDP), ``tp`` tensor parallel (Megatron column/row split of every layer), ``pp`` pipeline stages,
``cp`` context parallel (the sequence split), ``ep`` expert parallel (routed experts split across ranks), ``vpp``
virtual stages per pipeline rank (interleaved 1F1B).

Rules (torchtitan ``distributed/parallel_dims.py``; Megatron-LM ``parallel_state.initialize_model_parallel``):
- ``dp · tp · pp · cp == world size``; with ``--gpus N`` and no explicit ``--dp``, dp = N / (tp · pp · cp);
- EP borrows ranks of the other dimensions: ``ep`` divides ``dp · cp · tp`` (torchtitan) and the expert count;
- ``tp`` divides the attention heads and the MLP width; KV heads are split when ``tp`` divides them, else
  replicated when they divide ``tp`` (each rank keeps the KV heads its query heads need, as vLLM and
  transformers' TP plans do);
- ``pp · vpp <= layers``; the interleaved schedule needs ``microbatches % pp == 0`` (Megatron);
- ZeRO / FSDP shard over the data-parallel ranks of a replica: ``dp · cp`` (CP ranks hold the same parameters);
  with hybrid sharding (``--dp-shard N``: FSDP2 on a 2-D mesh, torchtitan's ``dp_replicate × dp_shard``; DeepSpeed
  MiCS; Megatron's partial distributed optimizer) over ``N · cp`` of them, replicated over ``dp / N`` groups:
  ``N`` divides ``dp``, and EP borrows ranks inside the shard group, ``ep`` divides ``N · cp · tp`` (torchtitan
  ``parallel_dims.py``: ``(dp_shard * cp * tp) % ep == 0``).
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuplan.errors import InputError
from gpuplan.model.spec import ModelSpec
from gpuplan.train.config import TrainConfig


@dataclass(frozen=True)
class Layout:
    dp: int
    tp: int
    pp: int
    cp: int
    ep: int
    vpp: int
    sp: bool
    zero: int
    microbatches: int
    kv_replicated: bool
    offload: str = "none"
    dp_shard: int = 0  # data-parallel ranks of one shard group (hybrid sharding); 0: all of dp

    @property
    def world(self) -> int:
        return self.dp * self.tp * self.pp * self.cp

    @property
    def dp_ranks(self) -> int:
        """Ranks that hold the same (dense) parameters and average their gradients: dp·cp."""
        return self.dp * self.cp

    @property
    def shard_dp(self) -> int:
        """Data-parallel ranks of one shard group: ``--dp-shard`` N, else dp (torchtitan ``dp_shard``)."""
        return self.dp_shard or self.dp

    @property
    def replicas(self) -> int:
        """Shard groups holding the same states under hybrid sharding: dp / N (torchtitan ``dp_replicate``,
        Megatron ``num_distributed_optimizer_instances``, DeepSpeed MiCS replication groups); 1 otherwise."""
        return self.dp // self.shard_dp

    @property
    def shard_degree(self) -> int:
        """Ranks a ZeRO/FSDP shard of a dense parameter is split over: N·cp (``--dp-shard`` N, default dp), as
        torchtitan's ``dp_shard_cp`` mesh dimension (torchtitan/distributed/parallel_dims.py)."""
        return self.shard_dp * self.cp

    @property
    def expert_shard_degree(self) -> int:
        """Ranks that hold the same routed experts and shard them: with EP the experts are split over ep of the
        shard group's N·cp·tp ranks (and not tensor-split), so N·cp·tp / ep ranks share each expert (torchtitan
        ``dp_shard_in_ep`` with etp = 1; Megatron: expert data-parallel size / optimizer instances); without EP,
        N·cp like dense tensors."""
        return self.shard_degree * self.tp // self.ep if self.ep > 1 else self.shard_degree

    @property
    def is_single(self) -> bool:
        """One GPU with none of the data-parallel machinery: ZeRO stages and offload (ZeRO-Offload's single-GPU
        case) take the per-rank path even at world size 1."""
        return self.world == 1 and self.ep == 1 and self.zero == 0 and self.offload == "none"


def _degrees(cfg: TrainConfig, dp: int, micro: int) -> str:
    """Every degree of the layout, as torchtitan's ParallelDims errors print them."""
    world = dp * cfg.tp * cfg.pp * cfg.cp
    return (f"dp={dp}, tp={cfg.tp}, pp={cfg.pp}, cp={cfg.cp}, ep={cfg.ep}, vpp={cfg.vpp}, microbatches={micro}, "
            f"world size={world}" + (f", --gpus={cfg.gpus}" if cfg.gpus is not None else "")
            + (f", --dp-shard={cfg.dp_shard}" if cfg.dp_shard is not None else ""))


def resolve_layout(spec: ModelSpec | None, cfg: TrainConfig) -> Layout:
    """Infer dp from --gpus and check every rule; every error lists all the degrees."""
    dp = cfg.dp
    inner = cfg.tp * cfg.pp * cfg.cp
    if cfg.gpus is not None and cfg.dp == 1 and cfg.gpus % inner == 0:
        dp = cfg.gpus // inner
    micro = cfg.microbatches or (cfg.pp if cfg.pp > 1 else cfg.grad_accum)

    def refuse(field: str, value: object, rule: str, hint: str | None = None) -> InputError:
        return InputError(field, value, f"{rule} (layout: {_degrees(cfg, dp, micro)})", hint=hint)

    if cfg.gpus is not None and dp * inner != cfg.gpus:
        raise refuse("--gpus", cfg.gpus, f"must equal dp·tp·pp·cp = {dp * inner}",
                     hint="choose degrees whose product is the GPU count, or leave --dp out to infer it")
    if cfg.dp_shard is not None and dp % cfg.dp_shard:
        divisors = ", ".join(str(d) for d in range(1, dp + 1) if dp % d == 0)
        raise refuse("--dp-shard", cfg.dp_shard, f"must divide dp = {dp} (one of {divisors})",
                     hint="the shard groups tile the data-parallel ranks: dp = shard groups × --dp-shard")
    shard_dp = cfg.dp_shard or dp
    if cfg.ep > 1:
        if spec is not None and spec.moe is None:
            raise refuse("--ep", cfg.ep, "expert parallelism needs a mixture-of-experts model",
                         hint="leave --ep at 1 for a dense model")
        if (shard_dp * cfg.cp * cfg.tp) % cfg.ep:
            what = "--dp-shard·cp·tp" if cfg.dp_shard is not None else "dp·cp·tp"
            raise refuse("--ep", cfg.ep, f"must divide {what} = {shard_dp * cfg.cp * cfg.tp}",
                         hint="expert parallelism borrows data-, context- and tensor-parallel ranks of a shard "
                              "group (torchtitan)")
        if spec is not None and spec.moe is not None and spec.moe.num_experts % cfg.ep:
            raise refuse("--ep", cfg.ep, f"must divide the number of experts ({spec.moe.num_experts})")
    kv_rep = False
    if spec is not None and cfg.tp > 1:
        if spec.num_heads % cfg.tp:
            raise refuse("--tp", cfg.tp, f"must divide the attention heads ({spec.num_heads})")
        if spec.num_kv_heads % cfg.tp:
            if cfg.tp % spec.num_kv_heads:
                raise refuse("--tp", cfg.tp, f"must divide the KV heads ({spec.num_kv_heads}) or be a multiple "
                             "of them (then KV heads are replicated)")
            kv_rep = True
        ffn = spec.moe.expert_ffn_size if spec.moe and all(spec.moe.moe_layers) else spec.ffn_size
        if ffn % cfg.tp:
            raise refuse("--tp", cfg.tp, f"must divide the MLP width ({ffn})")
    if spec is not None and cfg.pp * cfg.vpp > spec.num_layers:
        raise refuse("--pp", cfg.pp, f"pp·vpp = {cfg.pp * cfg.vpp} exceeds the {spec.num_layers} layers")
    if cfg.seq % cfg.cp:
        raise refuse("--cp", cfg.cp, f"must divide --seq {cfg.seq} (each rank takes seq/cp tokens)")
    if cfg.vpp > 1 and micro % cfg.pp:
        raise refuse("--microbatches", micro, f"the interleaved schedule needs a multiple of --pp {cfg.pp}")
    if cfg.offload != "none":
        need = 3 if cfg.offload == "optimizer+params" else (2 if cfg.framework == "torch" else 1)
        if cfg.framework == "megatron" and cfg.offload == "optimizer+params":
            raise refuse("--offload", cfg.offload, "Megatron offloads optimizer states only",
                         hint="use --offload optimizer with --zero 1 (distributed optimizer)")
        if cfg.zero < need:
            what = {3: "parameter offload is ZeRO-3's (DeepSpeed offload_param, FSDP2 CPUOffloadPolicy)",
                    2: "PyTorch offloads through FSDP2 (CPUOffloadPolicy of fully_shard)",
                    1: "optimizer offload runs on ZeRO's partitioned optimizer (ZeRO-Offload)"}[need]
            raise refuse("--offload", cfg.offload, f"needs --zero {need} or more: {what}",
                         hint=f"add --zero {need if cfg.framework != 'megatron' else 1}")
    if cfg.zero and cfg.framework == "megatron" and cfg.zero > 1:
        raise refuse("--zero", cfg.zero, "Megatron shards optimizer states only (distributed optimizer = --zero 1)",
                     hint="use --framework deepspeed or torch for ZeRO-2/3")
    return Layout(dp=dp, tp=cfg.tp, pp=cfg.pp, cp=cfg.cp, ep=cfg.ep, vpp=cfg.vpp, sp=cfg.sp, zero=cfg.zero,
                  microbatches=micro, kv_replicated=kv_rep, offload=cfg.offload,
                  dp_shard=cfg.dp_shard if cfg.dp_shard is not None else 0)
