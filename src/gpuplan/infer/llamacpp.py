"""llama.cpp's split of a model between GPU and host (``--engine llamacpp``, ``--n-gpu-layers N``), and the speed of
a partially offloaded model.

Placement (``data/engines/llamacpp.toml``, from llama.cpp ``load_tensors``): the last ``n_gpu_layers`` repeating
layers run on the GPU, the output layer too when ``n_gpu_layers > n_layer``, the token embedding always stays on the
host. Each layer's KV cache sits with its layer. llama.cpp allocates the whole context at start-up: ``--batch``
parallel slots x ``--context`` tokens (llama-server ``-np`` x per-slot context).

Decode reads every weight and the KV once per token: the GPU part at HBM bandwidth, the host part at the host's
DRAM bandwidth (``--host-bandwidth-gbps``), one after the other (llama.cpp runs the layers in order):

    decode_s = (gpu weights + gpu KV) / (HBM x 0.8) + (host weights + host KV) / (host bandwidth x 0.6)

(the token embedding is a row lookup: it sits on the host but is not read whole).

Prefill runs on the GPU for every layer (op offload: ggml-backend copies host weights to the GPU for batches of 32
tokens and more), so a host-resident byte crosses PCIe once per ubatch of 512 tokens:

    prefill_s = GPU prefill + ceil(prompt / n_ubatch) x host weights / PCIe bandwidth
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpuplan.errors import InputError
from gpuplan.infer.engine_profiles import load_engine_profile
from gpuplan.model.spec import ModelSpec
from gpuplan.model.tensors import tensor_table

_P = load_engine_profile("llamacpp")


@dataclass(frozen=True)
class LlamaCppProfile:
    n_gpu_layers: int | None = None  # None: every layer and the output (llama.cpp -ngl 999)
    n_ubatch: int = _P.value("n_ubatch")
    host_bandwidth_bytes_per_s: float = _P.value("host_bandwidth_gbps") * 1e9
    host_bandwidth_efficiency: float = _P.value("host_bandwidth_efficiency")
    pcie_bytes_per_s: float = _P.value("pcie_bandwidth_gbps") * 1e9
    kv_offload: bool = True

    def gpu_layers(self, spec: ModelSpec) -> int:
        """Repeating layers on the GPU (capped at the model's), after validating ``n_gpu_layers``."""
        if self.n_gpu_layers is None:
            return spec.num_layers
        if self.n_gpu_layers < 0:
            raise InputError("--n-gpu-layers", self.n_gpu_layers, "must be >= 0")
        return min(self.n_gpu_layers, spec.num_layers)

    def output_on_gpu(self, spec: ModelSpec) -> bool:
        return self.n_gpu_layers is None or self.n_gpu_layers > spec.num_layers


@dataclass(frozen=True)
class Split:
    gpu_layers: int
    output_on_gpu: bool
    gpu_weight_bytes: int
    host_weight_bytes: int
    gpu_kv_bytes: int
    host_kv_bytes: int
    host_embedding_bytes: int = 0  # token_embd: a row lookup per token, not read whole in decode


def split_bytes(spec: ModelSpec, per_tensor: dict[str, int], profile: LlamaCppProfile, *,
                kv_bytes_per_token_layer: float, kv_tokens: int) -> Split:
    """Weights and KV cache on the GPU and on the host for ``profile.n_gpu_layers``."""
    n_gpu = profile.gpu_layers(spec)
    first_gpu = spec.num_layers - n_gpu
    out_gpu = profile.output_on_gpu(spec)
    gpu = host = embed = 0
    for t in tensor_table(spec):
        b = per_tensor[t.name]
        if t.layer is not None:
            on_gpu = t.layer >= first_gpu
        elif t.component == "embedding":
            on_gpu = False
            embed += b
        else:  # final norm and output head
            on_gpu = out_gpu
        if on_gpu:
            gpu += b
        else:
            host += b
    kv_layer = kv_bytes_per_token_layer * kv_tokens
    gpu_kv_layers = n_gpu if profile.kv_offload else 0
    return Split(n_gpu, out_gpu, gpu, host, int(kv_layer * gpu_kv_layers),
                 int(kv_layer * (spec.num_layers - gpu_kv_layers)), embed)


def compute_buffer_bytes(spec: ModelSpec, n_ubatch: int) -> int:
    """The GPU compute buffer, approximated (data/engines/llamacpp.toml rules.compute_buffer: UNCERTAIN)."""
    return int(n_ubatch * (spec.vocab_size * 4 + 8 * spec.hidden_size * 4))


def host_decode_s(split: Split, profile: LlamaCppProfile, *, batch: int, kv_seq_host_bytes: float) -> float:
    """Seconds a decode step spends reading the host's weights (the embedding table only by rows) and KV."""
    return ((split.host_weight_bytes - split.host_embedding_bytes + batch * kv_seq_host_bytes)
            / (profile.host_bandwidth_bytes_per_s * profile.host_bandwidth_efficiency))


def host_prefill_s(split: Split, profile: LlamaCppProfile, *, prompt_tokens: int) -> float:
    """Seconds prefill spends copying host weights (not the embedding lookup) to the GPU, once per ubatch."""
    moved = split.host_weight_bytes - split.host_embedding_bytes
    return math.ceil(prompt_tokens / profile.n_ubatch) * moved / profile.pcie_bytes_per_s
