"""Time of the compute kernels of one decoder layer on one GPU: GEMMs on a roofline, FlashAttention, elementwise.

    GEMM [M,K]×[K,N]:  t = max(2·M·N·K / (peak · gemm_eff),  e·(M·K + K·N + M·N) / (HBM · hbm_eff))

so a GEMM's efficiency depends on its size: large square GEMMs run at ``gemm_eff`` of peak (the measured
"maximum achievable matmul FLOPS"), thin ones — a small micro-batch, or a hidden size cut eight ways by tensor
parallelism — become memory-bound. On GPUs whose SM count is known the compute time is further divided by
the tile/wave quantization efficiency (NVIDIA Deep Learning Performance Guide, "Matrix Multiplication
Background": output tiles of 128×256 are spread over the SMs in waves; a partial last wave leaves SMs idle).
Attention matmuls run at ``attention_eff`` (FlashAttention kernels), the elementwise work (norms, residual adds,
SwiGLU, RoPE, cross-entropy) at HBM bandwidth. Ignores: kernel launch
gaps, the overlap of elementwise work with GEMMs in fused kernels, split-K and stream-K kernels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cached_property

# Fraction of dense peak that large BF16 GEMMs reach (cuBLAS via torch.matmul, best shape of a sweep): Stas Bekman,
# ml-engineering compute/accelerator/README.md "Maximum Achievable Matmul FLOPS comparison table".
GEMM_EFFICIENCY = {
    "ampere-sxm": (0.859, "ml-engineering MAMF table: A100 SXM 267.9 of 312 TFLOP/s (85.9 %), CUDA 12.1"),
    "hopper-sxm": (0.801, "ml-engineering MAMF table: H100 SXM 792.1 of 989 TFLOP/s (80.1 %), CUDA 12.1"),
}
# FP8 GEMMs with fine-grained scaling (1x128 activation tiles, 128x128 weight blocks, FP32 promotion every 128 of K:
# DeepSeek-V3 report, arXiv:2412.19437, section 3.3) run against the FP8 tensor-core peak (twice the BF16 one on
# Hopper); attention, norms, the output head and the rest stay in BF16. The efficiencies are what DeepSeek's own
# training kernels reach in the published profile of a DualPipe forward/backward chunk pair of DeepSeek-V3 at its
# pre-training layout (github.com/deepseek-ai/profile-data, train.json, Feb 2025: EP64, TP1, 4K tokens, H800, the
# all-to-all kernels on 20 of the 132 SMs): FLOPs of each kernel class over its kernel time, against the FP8 peak on
# the 112 SMs left, as the step-time model times them (with its wave quantization). Per MoE layer:
# forward + data-gradient GEMMs 9.56 TFLOP in 10.44 ms, weight-gradient GEMMs (FP32 accumulation into the main
# gradient) 4.78 TFLOP in 8.19 ms. `python benchmarks/deepseek_profile.py` prints the comparison.
FP8_GEMM_EFFICIENCY = {
    "hopper-sxm": (0.576, "DeepSeek-V3 training profile (deepseek-ai/profile-data train.json, H800, Feb 2025): forward "
                          "and data-gradient FP8 GEMMs, 9.56 TFLOP per MoE layer in 10.44 ms on the 112 SMs the "
                          "all-to-all leaves -> 0.576 of the 1,979 TFLOP/s FP8 peak (DeepGEMM's 'up to 1350+ TFLOPS' "
                          "is its best inference shape)"),
}
FP8_WGRAD_EFFICIENCY = {
    "hopper-sxm": (0.367, "DeepSeek-V3 training profile (deepseek-ai/profile-data train.json): weight-gradient FP8 "
                          "GEMMs accumulating into the FP32 gradient, 4.78 TFLOP per MoE layer in 8.19 ms on 112 SMs "
                          "-> 0.367 of the FP8 peak"),
}
# Fine-grained FP8 quantizes every BF16 GEMM operand it produces with a memory-bound kernel (read 2 B, write 1 B and a
# 4-byte scale per 128 elements): the inputs in the forward, the output gradients for the data gradient, and both
# again transposed (128x1 tiles) for the weight gradient (arXiv:2412.19437 section 3.3.2; per_token_cast_to_fp8 and
# per_channel_cast_and_transpose in DeepSeek's published profile).
FP8_CAST_BYTES_PER_ELEM = 2 + 1 + 4 / 128
FP8_GEMM_EFFICIENCY_FALLBACK = (0.60, "no published FP8 GEMM measurement for this GPU: 0.60 assumed; pass "
                                      "--gemm-efficiency")
GEMM_EFFICIENCY_FALLBACK = (0.75, "no published MAMF for this GPU: 0.75 assumed (MI250X measures 76.7 % in the same "
                                  "table); pass --gemm-efficiency")
ATTENTION_EFFICIENCY = (0.50, "FlashAttention-2 (Dao 2023, arXiv:2307.08691): forward 50-73 % of A100 peak, backward "
                              "lower; FlashAttention-3 (Shah et al. 2024, arXiv:2407.08608): forward up to 75 % of "
                              "H100 FP16 peak; 0.50 taken for forward + backward")
ATTENTION_BACKWARD_FACTOR = 2.5  # FlashAttention backward: 5 matmuls (recomputes QKᵀ) vs 2 in the forward
# Streaming multiprocessors per GPU, for wave quantization (NVIDIA A100 and H100 architecture whitepapers: A100 108
# SMs, H100 SXM5 132 SMs; A800/H800/H200 use the same dies and SM counts).
SM_COUNT = {"a100-40gb": 108, "a100-80gb": 108, "a800": 108, "h100-sxm": 132, "h800": 132, "h200": 132}
GEMM_TILE = (128, 256)  # output tile (M x N) of cuBLAS's large bf16 kernels (CUTLASS 128x256x64 on SM80/SM90)
HBM_EFFICIENCY = (0.90, "STREAM-like copy kernels reach about 90 % of datasheet HBM bandwidth (e.g. 3.57 of 3.94 "
                        "TB/s measured on H100 NVL in public measurements); 0.90 assumed for elementwise kernels")


@dataclass(frozen=True)
class Device:
    """What the kernel model needs of a GPU: dense peak for the compute dtype, HBM bandwidth, efficiencies."""

    peak_flop_per_s: float
    hbm_bytes_per_s: float
    gemm_eff: float
    attention_eff: float
    hbm_eff: float
    elem_bytes: int = 2  # bf16/fp16 activations
    sms: int | None = None  # SM count for wave quantization; None = not modelled
    gemm_peak_flop_per_s: float | None = None  # FP8 GEMMs: the FP8 peak (None: peak_flop_per_s)
    gemm_elem_bytes: int | None = None  # bytes per GEMM operand element (None: elem_bytes)
    wgrad_eff: float | None = None  # weight-gradient GEMMs (None: gemm_eff)
    bf16_gemm_eff: float | None = None  # FP8 devices: the BF16 GEMMs that stay unquantized (the output head)

    @cached_property
    def wgrad_device(self) -> Device:
        """The same device timing weight-gradient GEMMs."""
        return self if self.wgrad_eff is None else replace(self, gemm_eff=self.wgrad_eff, wgrad_eff=None)

    @cached_property
    def bf16_device(self) -> Device:
        """The same device timing BF16 GEMMs (an FP8 device's output head: arXiv:2412.19437 section 3.3)."""
        if self.gemm_peak_flop_per_s is None:
            return self
        return replace(self, gemm_peak_flop_per_s=None, gemm_elem_bytes=None, wgrad_eff=None,
                       gemm_eff=self.bf16_gemm_eff or self.gemm_eff, bf16_gemm_eff=None)


def wave_efficiency(m: float, n: float, sms: int | None) -> float:
    """Useful fraction of the SM-tile slots a GEMM occupies: m·n / (waves · SMs · tile), waves =
    ceil(ceil(m/tm)·ceil(n/tn) / SMs). 1.0 when the SM count is unknown."""
    if not sms:
        return 1.0
    tm, tn = GEMM_TILE
    tiles = math.ceil(m / tm) * math.ceil(n / tn)
    waves = math.ceil(tiles / sms)
    return min(1.0, m * n / (waves * sms * tm * tn))


def gemm_s(m: float, n: float, k: float, dev: Device) -> float:
    """Roofline time of one [m,k]×[k,n] GEMM in the compute dtype, with wave quantization (FP8 GEMMs: against the
    FP8 peak, ``gemm_peak_flop_per_s``, at the FP8 efficiency)."""
    if m <= 0 or n <= 0 or k <= 0:
        return 0.0
    peak = dev.gemm_peak_flop_per_s or dev.peak_flop_per_s
    compute = 2.0 * m * n * k / (peak * dev.gemm_eff * wave_efficiency(m, n, dev.sms))
    memory = (dev.gemm_elem_bytes or dev.elem_bytes) * (m * k + k * n + m * n) / (dev.hbm_bytes_per_s * dev.hbm_eff)
    return max(compute, memory)


def attention_fwd_s(flop: float, dev: Device) -> float:
    """FlashAttention forward at ``attention_eff`` of peak (the parameter-free QKᵀ and attention·V matmuls)."""
    return flop / (dev.peak_flop_per_s * dev.attention_eff)


# Unfused attention (Megatron-LM before FlashAttention): scores [b, heads/tp, s, s] are materialized. Bytes moved
# per score element by the elementwise kernels, from the tensors Korthikanti et al. 2022 (section 4.1, the 5·a·s²·b
# term) list: forward writes the fp16 scores (2), the fused scale-mask-softmax reads and writes them (2 + 2), attention
# dropout reads (2), writes its output (2) and a 1-byte mask (1) = 11; backward reads the output gradient and mask
# and writes the dropout gradient (2 + 1 + 2), the softmax backward reads that and the probabilities and writes its
# gradient (2 + 2 + 2), and the mask/scale backward passes it on (2) = 13.
UNFUSED_SCORE_BYTES_FWD = 11
UNFUSED_SCORE_BYTES_BWD = 13


def unfused_attention_s(batch: float, heads: float, seq_q: float, seq_k: float, d_qk: int, d_v: int,
                        dev: Device) -> tuple[float, float]:
    """(forward, backward) seconds of materialized attention for ``heads`` heads: QKᵀ and P·V as batched GEMMs on
    the roofline (per head [s_q, d]×[d, s_k]) plus the score-sized elementwise traffic."""
    n = batch * heads
    gemm_f = n * (gemm_s(seq_q, seq_k, d_qk, dev) + gemm_s(seq_q, d_v, seq_k, dev))
    scores = n * seq_q * seq_k
    fwd = gemm_f + elementwise_s(scores * UNFUSED_SCORE_BYTES_FWD, dev)
    bwd = 2 * gemm_f + elementwise_s(scores * UNFUSED_SCORE_BYTES_BWD, dev)
    return fwd, bwd


def dropout_bytes_per_elem() -> float:
    """Hidden dropout: forward reads and writes the activation and writes a 1-byte mask (5 bytes per bf16
    element); backward reads the gradient and the mask and writes the gradient (5)."""
    return 10.0


def elementwise_s(n_bytes: float, dev: Device) -> float:
    """Memory-bound kernels: bytes moved / (HBM × hbm_eff)."""
    return n_bytes / (dev.hbm_bytes_per_s * dev.hbm_eff)


def layer_elementwise_elems_per_token(h: int, q_dim: int, kv_dim: int, ffn: int, tp: int, sp: bool,
                                      gated: bool) -> float:
    """Elements read + written per token by one layer's forward elementwise kernels on one TP rank, counted op by
    op for a Llama layer: 2 RMSNorms (read h, write h), 2 residual adds (read 2h, write h), RoPE on q and k (read
    and write), SwiGLU (read 2·ffn, write ffn; GELU: read and write ffn). Norms and residuals run on 1/tp of the
    tokens with sequence parallelism, on all of them without; the rest is split by TP."""
    replicated = 2 * 2 * h + 2 * 3 * h
    sharded = 2 * (q_dim + kv_dim) + (3 * ffn if gated else 2 * ffn)
    return replicated / (tp if sp else 1) + sharded / tp


def moe_permute_elems_per_token(h: int, top_k: int, tp: int) -> float:
    """Elements read + written per token by the MoE token permutation around the expert GEMMs (Megatron-Core
    ``moe_utils.permute`` / ``unpermute``): the gather reads and writes one h-vector per selected expert (2·k·h),
    the weighted un-permutation reads them back and writes the token (k·h + h)."""
    return (3 * top_k * h + h) / tp


def loss_elems_per_token(vocab: int, tp: int) -> float:
    """Cross-entropy over vocab-parallel logits in fp32: about four passes over [tokens, vocab/tp] (upcast,
    softmax statistics, gradient write, read for the head's backward), counted as bf16-element equivalents."""
    return 4 * 2 * vocab / tp


def fp8_cast_bytes(linears: Iterable[tuple[float, float, float, int]]) -> tuple[float, float]:
    """(forward, backward) bytes the FP8 quantization kernels move for GEMMs given as (rows, out, in, how many): the
    forward quantizes each input [rows, in]; the backward the output gradient [rows, out] for the data gradient and,
    transposed, the input and the output gradient for the weight gradient (``FP8_CAST_BYTES_PER_ELEM`` each)."""
    fwd = bwd = 0.0
    for rows, n, k, count in linears:
        fwd += count * rows * k
        bwd += count * rows * (2 * n + k)
    return fwd * FP8_CAST_BYTES_PER_ELEM, bwd * FP8_CAST_BYTES_PER_ELEM
