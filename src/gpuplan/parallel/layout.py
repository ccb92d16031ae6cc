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
- ZeRO / FSDP shard over the data-parallel ranks of a replica: ``dp · cp`` (CP ranks hold the same parameters).
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

    @property
    def world(self) -> int:
        return self.dp * self.tp * self.pp * self.cp

    @property
    def shard_degree(self) -> int:
        """Ranks a ZeRO/FSDP shard of a dense parameter is split over (dp x cp)."""
        return self.dp * self.cp

    @property
    def expert_shard_degree(self) -> int:
        """Ranks that hold the same routed experts: with EP the experts are split over ep of the dp·cp·tp ranks
        (and not tensor-split), so dp·cp·tp / ep ranks share each expert; without EP, dp·cp (like dense)."""
        return self.dp * self.cp * self.tp // self.ep if self.ep > 1 else self.shard_degree

    @property
    def is_single(self) -> bool:
        return self.world == 1 and self.ep == 1


def _degrees(cfg: TrainConfig, dp: int) -> str:
    return f"dp={dp}, tp={cfg.tp}, pp={cfg.pp}, cp={cfg.cp}, ep={cfg.ep}"


def resolve_layout(spec: ModelSpec | None, cfg: TrainConfig) -> Layout:
    """Infer dp from --gpus and check every rule; errors name every degree."""
    dp = cfg.dp
    inner = cfg.tp * cfg.pp * cfg.cp
    if cfg.gpus is not None:
        if cfg.dp == 1 and cfg.gpus % inner == 0:
            dp = cfg.gpus // inner
        if dp * inner != cfg.gpus:
            raise InputError("--gpus", cfg.gpus, f"must equal dp·tp·pp·cp ({_degrees(cfg, dp)} gives {dp * inner})",
                             hint="choose degrees whose product is the GPU count, or leave --dp out to infer it")
    if cfg.ep > 1:
        if spec is not None and spec.moe is None:
            raise InputError("--ep", cfg.ep, "expert parallelism needs a mixture-of-experts model")
        if (dp * cfg.cp * cfg.tp) % cfg.ep:
            raise InputError("--ep", cfg.ep, f"must divide dp·cp·tp = {dp * cfg.cp * cfg.tp} ({_degrees(cfg, dp)})",
                             hint="expert parallelism borrows data-, context- and tensor-parallel ranks (torchtitan)")
        if spec is not None and spec.moe is not None and spec.moe.num_experts % cfg.ep:
            raise InputError("--ep", cfg.ep, f"must divide the number of experts ({spec.moe.num_experts})")
    kv_rep = False
    if spec is not None and cfg.tp > 1:
        if spec.num_heads % cfg.tp:
            raise InputError("--tp", cfg.tp, f"must divide the attention heads ({spec.num_heads}) "
                             f"({_degrees(cfg, dp)})")
        if spec.num_kv_heads % cfg.tp:
            if cfg.tp % spec.num_kv_heads:
                raise InputError("--tp", cfg.tp, f"must divide the KV heads ({spec.num_kv_heads}) or be a multiple "
                                 "of them (then KV heads are replicated)")
            kv_rep = True
        ffn = spec.moe.expert_ffn_size if spec.moe and all(spec.moe.moe_layers) else spec.ffn_size
        if ffn % cfg.tp:
            raise InputError("--tp", cfg.tp, f"must divide the MLP width ({ffn})")
    if spec is not None:
        if cfg.pp * cfg.vpp > spec.num_layers:
            raise InputError("--pp", cfg.pp, f"pp·vpp = {cfg.pp * cfg.vpp} exceeds the {spec.num_layers} layers")
    if cfg.seq % cfg.cp:
        raise InputError("--cp", cfg.cp, f"must divide --seq {cfg.seq} (each rank takes seq/cp tokens)")
    micro = cfg.microbatches or (cfg.pp if cfg.pp > 1 else cfg.grad_accum)
    if cfg.vpp > 1 and micro % cfg.pp:
        raise InputError("--microbatches", micro, f"the interleaved schedule needs a multiple of --pp {cfg.pp}")
    if cfg.zero and cfg.framework == "megatron" and cfg.zero > 1:
        raise InputError("--zero", cfg.zero, "Megatron shards optimizer states only (distributed optimizer = --zero "
                         "1); use --framework deepspeed or torch for ZeRO-2/3")
    return Layout(dp=dp, tp=cfg.tp, pp=cfg.pp, cp=cfg.cp, ep=cfg.ep, vpp=cfg.vpp, sp=cfg.sp, zero=cfg.zero,
                  microbatches=micro, kv_replicated=kv_rep)
