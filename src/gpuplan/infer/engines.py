"""Serving engine profiles: what Hugging Face transformers and vLLM allocate besides the weights.

``HfProfile``: ``model.generate`` with the default ``DynamicCache`` and SDPA attention; the device additionally
holds the CUDA context and what the caching allocator keeps reserved beyond the allocated peak.

``VllmProfile``: vLLM's start-up arithmetic (``Worker.determine_num_available_blocks`` in V0,
``Worker.determine_available_memory`` in V1, memory profiling as reworked in vLLM PR #10511):

    available_kv = total_gpu_memory x gpu_memory_utilization - weights - non_torch_memory - torch_activation_peak
    num_gpu_blocks = available_kv // (block_size x KV bytes per token of the GPU's layers)

and at most ``num_gpu_blocks`` x ``block_size`` tokens are cached; a request of ``context`` tokens needs
ceil(context / block_size) blocks per full-attention layer group, so concurrency at ``context`` is
num_gpu_blocks // blocks_per_request (capped by ``max_num_seqs``). CUDA graphs are captured after the KV cache is
allocated and take memory beyond the budget (vLLM logs "Graph capturing finished ..., took X GiB").
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuplan.errors import InputError
from gpuplan.infer.engine_profiles import load_engine_profile
from gpuplan.units import GiB, MiB

PAGED_ENGINES = ("vllm", "sglang", "trtllm")  # paged KV pools sized at start-up
ENGINES = ("hf", *PAGED_ENGINES, "llamacpp")
_VLLM = load_engine_profile("vllm")  # data/engines/vllm.toml: each default with its source


@dataclass(frozen=True)
class HfProfile:
    """Assumptions for ``--engine hf`` (named inputs, each with its source)."""

    cuda_context_bytes: int = GiB // 2
    """CUDA context + cuBLAS/cuDNN handles of a PyTorch process: 0.4-0.6 GiB on CUDA 12 with lazy module loading
    (nvidia-smi of a process that has only run ``torch.cuda.init()``; vLLM logs its non-torch memory at 0.1-0.6
    GiB on top of a context that is already there)."""
    cuda_module_loading: str = "lazy"
    """``CUDA_MODULE_LOADING``: lazy (PyTorch >= 2.0 sets it) or eager (older PyTorch: every kernel of the library
    is loaded with the context, 1343 MiB; ``gpuplan.train.overheads``), which sized the default context."""
    allocator_reserve_fraction: float = 0.05
    """Share of the allocated peak above the weights that the PyTorch caching allocator keeps reserved but unused
    (block rounding and fragmentation from the cache's repeated ``torch.cat``; weights are loaded once into
    exact-size segments): ``memory_reserved - max_memory_allocated`` relative to the transient part."""
    logits_fp32_copies: int = 3
    """fp32 [batch, vocab] tensors of one sampling step: generate's logits copy, processed scores, probabilities."""


@dataclass(frozen=True)
class VllmProfile:
    """vLLM engine arguments and the start-up overheads it subtracts (defaults: vLLM EngineArgs, v0.6 - v0.10)."""

    gpu_memory_utilization: float = _VLLM.value("gpu_memory_utilization")
    block_size: int = _VLLM.value("block_size")
    max_num_seqs: int = _VLLM.value("max_num_seqs")
    max_num_batched_tokens: int = _VLLM.value("max_num_batched_tokens")
    """Tokens of the profiling run. Chunked prefill (V1 default, online serving): 8192; without chunked prefill
    (V0 before 0.7) vLLM used max(max_model_len, 2048) -- pass that to compare with logs of those versions."""
    non_torch_bytes: int | None = None
    """Memory vLLM measures outside PyTorch's allocator (``non_torch_memory`` in its log). None: 0.5 GiB at TP=1,
    1.5 GiB with TP > 1 (NCCL and custom all-reduce buffers); published logs show 0.11-1.79 GiB at TP=1 and
    1.4-3.6 GiB at TP 2-4 (vLLM PR #10511, issue #5711-era logs)."""
    cuda_graph_bytes: int = int(_VLLM.value("cuda_graph_gib") * GiB)
    """CUDA graph pool, captured after the KV cache is allocated (outside the utilization budget); logs report
    0.27-0.69 GiB for 7-14B models at the default capture sizes. 0 with --enforce-eager."""
    sampler_bytes_per_logit: float = 32.0
    """Bytes per vocabulary entry per row of the profiling sampler run: fp32 logits (4), top-k/top-p sort values (4)
    and int64 indices (8), softmax and cumulative sum (4 + 4), probabilities and logprobs (4 + 4)."""
    enforce_eager: bool = False
    memory_fraction: float | None = None
    """SGLang's ``--mem-fraction-static`` or TensorRT-LLM's ``free_gpu_memory_fraction`` when given; None: the
    engine's own default (``sglang_mem_fraction_static``; 0.9 for TensorRT-LLM, data/engines/trtllm.toml)."""
    legacy_allreduce_hold: bool = _VLLM.value("legacy_allreduce_hold")
    """vLLM v0.2.6 and older (before PR #2151): the profiling run keeps every collective's input allocated at
    TP > 1 (``legacy_allreduce_held_bytes``, ``legacy_gather_held_bytes``) and the pool is sized from the whole
    device's use (``legacy_non_torch_bytes``); sources in data/engines/vllm.toml."""

    def non_torch_for(self, tp: int) -> int:
        if self.non_torch_bytes is not None:
            return self.non_torch_bytes
        if self.legacy_allreduce_hold:
            return legacy_non_torch_bytes(tp)
        return int(_VLLM.value("non_torch_gib_tp1" if tp == 1 else "non_torch_gib_tp") * GiB)

    def validate(self) -> None:
        if not 0 < self.gpu_memory_utilization <= 1:
            raise InputError("--gpu-memory-utilization", self.gpu_memory_utilization, "must be in (0, 1]")
        for name in ("block_size", "max_num_seqs", "max_num_batched_tokens"):
            value = getattr(self, name)
            if value < 1:
                raise InputError("--" + name.replace("_", "-"), value, "must be >= 1")
        if self.memory_fraction is not None and not 0 < self.memory_fraction <= 1:
            raise InputError("--memory-fraction", self.memory_fraction, "must be in (0, 1]")
        if self.block_size not in (1, 8, 16, 32, 64, 128):
            raise InputError("--block-size", self.block_size, "vLLM supports block sizes 1, 8, 16, 32, 64, 128")


def vllm_v1_serving_defaults(gpu) -> tuple[int, int, str]:
    """(max_num_batched_tokens, max_num_seqs, why) that vLLM V1 picks for an online server on ``gpu``
    (``EngineArgs.get_batch_defaults``, v0.9 and later): 8192 and 1024 on a device of at least 70 GiB that is not
    an A100, 2048 and 256 on every other GPU. The device memory is the CUDA-runtime total vLLM reads
    (``memory_usable_bytes``); sources in data/engines/vllm.toml."""
    large = (gpu.memory_usable_bytes >= _VLLM.value("v1_large_gpu_min_gib") * GiB
             and "a100" not in f"{gpu.id} {gpu.name}".lower())
    kind = "large" if large else "other"
    tokens = _VLLM.value(f"v1_{kind}_gpu_max_num_batched_tokens")
    seqs = _VLLM.value(f"v1_{kind}_gpu_max_num_seqs")
    why = (f"vLLM V1 online-serving defaults for {gpu.id} (EngineArgs.get_batch_defaults: "
           + ("at least 70 GiB, not an A100" if large else "under 70 GiB or an A100")
           + f"): max_num_batched_tokens {tokens}, max_num_seqs {seqs}")
    return tokens, seqs, why


def check_engine(engine: str) -> str:
    key = engine.strip().lower()
    if key not in ENGINES:
        raise InputError("--engine", engine, f"must be one of {', '.join(ENGINES)}")
    return key


def pool_block_tokens(engine: str, vllm_block_size: int) -> int:
    """Tokens per KV block: vLLM's --block-size, SGLang's page_size (1), TensorRT-LLM's tokens_per_block (32)."""
    if engine == "sglang":
        return int(load_engine_profile("sglang").value("page_size"))
    if engine == "trtllm":
        return int(load_engine_profile("trtllm").value("tokens_per_block"))
    return vllm_block_size


def paged_non_torch_bytes(engine: str, tp: int) -> int:
    """CUDA context and communicator memory outside PyTorch, from the engine's profile."""
    prof = load_engine_profile(engine)
    return int(prof.value("non_torch_gib_tp1" if tp == 1 else "non_torch_gib_tp") * GiB)


def _sglang_memory_class(gpu_memory_bytes: int, tp: int) -> tuple[int, int]:
    """SGLang's chunked_prefill_size and cuda_graph_max_bs for a GPU of this memory (data/engines/sglang.toml)."""
    gib = gpu_memory_bytes / GiB
    for below, chunk, graph_bs, graph_bs_tp4 in load_engine_profile("sglang").value("gpu_memory_classes"):
        if gib < below:
            return int(chunk), int(graph_bs if tp < 4 else graph_bs_tp4)
    raise AssertionError("the last class covers every size")


def sglang_chunked_prefill_size(gpu_memory_bytes: int, tp: int) -> int:
    """SGLang's default chunked_prefill_size on this GPU: the tokens of its largest prefill forward."""
    return _sglang_memory_class(gpu_memory_bytes, tp)[0]


def sglang_mem_fraction_static(gpu_memory_bytes: int, tp: int, pp: int) -> float:
    """SGLang's default mem_fraction_static: round((gpu_mem - reserved) / gpu_mem, 3) with, in MiB, reserved = 512 +
    1.5 x max(chunked_prefill_size, 2048) + 2 x cuda_graph_max_bs + 128 x tp x pp, at least 10 GiB above 60 GiB
    (sglang/srt/server_args.py ``_handle_gpu_memory_settings``; values in data/engines/sglang.toml)."""
    prof = load_engine_profile("sglang")
    chunk, graph_bs = _sglang_memory_class(gpu_memory_bytes, tp)
    gpu_mib = gpu_memory_bytes / MiB
    reserved = (prof.value("reserved_base_mib") + prof.value("reserved_mib_per_prefill_token") * max(chunk, 2048)
                + prof.value("reserved_mib_per_graph_batch") * graph_bs + prof.value("reserved_mib_per_rank") * tp * pp)
    above_gib, floor_mib = prof.value("reserved_floor_mib")
    if gpu_mib > above_gib * 1024:
        reserved = max(reserved, floor_mib)
    return round((gpu_mib - reserved) / gpu_mib, 3)


def sglang_available_kv_bytes(*, free_before_weights_bytes: int, fraction: float, weights_bytes: int) -> int:
    """SGLang ``profile_max_num_token``: free after the weights - free before x (1 - fraction)
    = free before x fraction - weights."""
    return int(free_before_weights_bytes * fraction) - weights_bytes


def trtllm_available_kv_bytes(*, total_gpu_bytes: int, non_torch_bytes: int, weights_bytes: int,
                              activation_peak_bytes: int, fraction: float) -> int:
    """TensorRT-LLM: free_gpu_memory_fraction of what is free after the weights and the activations."""
    free = total_gpu_bytes - non_torch_bytes - weights_bytes - activation_peak_bytes
    return int(free * fraction) if free > 0 else free


def vllm_available_kv_bytes(*, total_gpu_bytes: int, utilization: float, weights_bytes: int, non_torch_bytes: int,
                            activation_peak_bytes: int) -> int:
    """total x utilization - weights - non-torch - activation peak (vLLM ``determine_available_memory``)."""
    return int(total_gpu_bytes * utilization) - weights_bytes - non_torch_bytes - activation_peak_bytes


def vllm_num_blocks(available_kv_bytes: int, block_bytes: float) -> int:
    """vLLM's ``num_gpu_blocks = available // block bytes`` (0 when nothing is left)."""
    if available_kv_bytes <= 0 or block_bytes <= 0:
        return 0
    return int(available_kv_bytes // block_bytes)


def legacy_allreduce_held_bytes(*, layers: int, tokens: int, hidden: int, dtype_bytes: float, tp: int) -> int:
    """All-reduce inputs the profiling forward of old vLLM keeps allocated (record_stream, vLLM issue #2248):
    two per layer (attention output, MLP down projection) of tokens x hidden each; 0 at TP = 1."""
    if tp <= 1:
        return 0
    return int(2 * layers * tokens * hidden * dtype_bytes)


def legacy_gather_held_bytes(*, rows: int, vocab: int, dtype_bytes: float, tp: int) -> int:
    """The logits all-gather of old vLLM's sampler (``tensor_model_parallel_all_gather`` in ``_get_logits``, v0.2.x)
    under the same record_stream rule: its input (rows x vocab / tp) and output (rows x vocab); 0 at TP = 1."""
    if tp <= 1:
        return 0
    return int(rows * vocab * (1 + 1 / tp) * dtype_bytes)


def legacy_non_torch_bytes(tp: int) -> int:
    """Device memory outside the allocator's peak that vLLM v0.2.x subtracted (total - free after the profile run,
    vLLM PR #2031): its TP = 1 measurement (context, handles, allocator slack) plus, at TP > 1, one NCCL
    communicator per process group that ran a collective before the profile (world and tensor-parallel groups)
    at NCCL's measured size on A100 NVLink (688 MiB, 544 MiB for 2 ranks). Values and sources: data/engines/vllm.toml.
    """
    base = int(_VLLM.value("legacy_non_torch_mib_tp1") * MiB)
    if tp <= 1:
        return base
    per_comm = _VLLM.value("nccl_communicator_mib_2_ranks" if tp == 2 else "nccl_communicator_mib")
    return base + int(_VLLM.value("legacy_nccl_communicators") * per_comm * MiB)


def blocks_per_request(tokens: int, block_size: int) -> int:
    return -(-tokens // block_size)
