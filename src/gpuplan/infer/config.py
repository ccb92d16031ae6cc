"""The typed question and answer of ``estimate_inference`` (``InferConfig``, ``InferReport``) and the per-question
context its stages and searches share (``EstimateContext``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gpuplan.hardware.catalog import GpuSpec
from gpuplan.infer.engines import HfProfile, VllmProfile
from gpuplan.infer.llamacpp import LlamaCppProfile
from gpuplan.infer.parallel import ServingLayout
from gpuplan.infer.quant import WeightBytes, WeightFormat
from gpuplan.infer.speed import SpeedAssumptions
from gpuplan.model.spec import ModelSpec
from gpuplan.report import MemoryReport


@dataclass(frozen=True)
class InferConfig:
    """One serving question. ``prompt`` (prefill length) defaults to ``context`` (the worst case)."""

    batch: int = 1
    context: int = 4096
    prompt: int | None = None
    weights: WeightFormat = field(default_factory=lambda: WeightFormat("bf16", "float"))
    kv_dtype: str | None = None  # None: the weights' unquantized dtype
    engine: str = "hf"
    layout: ServingLayout = field(default_factory=ServingLayout)
    gpu: GpuSpec | None = None
    gpu_memory_bytes: int | None = None  # device total as the process sees it; default the catalog's usable memory
    max_context: int | None = None  # longest context the model serves; None: spec.max_position
    max_context_source: str = ""
    hf: HfProfile = field(default_factory=HfProfile)
    vllm: VllmProfile = field(default_factory=VllmProfile)
    llamacpp: LlamaCppProfile = field(default_factory=LlamaCppProfile)
    speed: SpeedAssumptions = field(default_factory=SpeedAssumptions)
    search: bool = True  # compute max_batch and the longest context when a GPU is given


@dataclass
class InferReport:
    memory: MemoryReport
    kv_cache_bytes_per_token: int
    kv_cache_bytes_per_sequence: int
    fits: bool | None
    max_batch: int | None = None
    max_context: int | None = None
    params_total: int = 0
    params_active: int = 0
    weights: dict[str, Any] = field(default_factory=dict)
    layout: dict[str, int] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)
    speed: dict[str, Any] | None = None
    engine_split: Any = None  # llama.cpp's GPU/host split (gpuplan.infer.llamacpp.Split), for the speed model

    def as_dict(self) -> dict[str, Any]:
        m = self.memory
        out: dict[str, Any] = {
            "memory": m.memory_dict(),
            "params": {"total": self.params_total, "active": self.params_active, "trainable": 0},
            "fits": self.fits,
            "peak_phase": m.peak_phase,
            "kv_cache_bytes_per_token": self.kv_cache_bytes_per_token,
            "kv_cache_bytes_per_sequence": self.kv_cache_bytes_per_sequence,
        }
        if self.max_batch is not None:
            out["max_batch"] = self.max_batch
        if self.max_context is not None:
            out["max_context"] = self.max_context
        out.update(weights=self.weights, layout=self.layout, engine=self.engine, speed=self.speed,
                   assumptions=m.assumptions, warnings=m.warnings)
        return out


@dataclass
class EstimateContext:
    """What does not change when only the batch or the context changes (so searches are cheap)."""

    spec: ModelSpec
    cfg: InferConfig
    engine: str
    kv_dtype: str
    dtype_bytes: float
    wb: WeightBytes
    stage_weights: list[int]
    stages: list[range]
    capacity: int | None
    profile: str = ""  # the engine by name (engine is "vllm" for every paged engine: vllm, sglang, trtllm)

    @property
    def kv_engine(self) -> str:
        """The KV layout the engine uses: transformers' DynamicCache (hf) or a preallocated cache (the others)."""
        return "hf" if self.engine == "hf" else "vllm"
