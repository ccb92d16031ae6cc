"""Weight formats for serving: bytes of every tensor as each format really stores it.

A format quantizes the weight matrices of Linear layers (``TensorInfo.linear``) of the attention, MLP and expert
components; embeddings, the output head (``lm_head``), norms, biases and MoE routers stay in the unquantized dtype,
as the quantization tools leave them (AutoGPTQ / AutoAWQ skip ``lm_head``; llm-compressor's FP8 and W8A8 recipes
``ignore=["lm_head"]`` and MoE ``gate``; transformers' bitsandbytes integration converts only ``nn.Linear``).
GGUF is the exception: llama.cpp quantizes the token embedding and the output matrix too (see ``gguf.py``).

Storage per [out, in] weight matrix of n = out x in weights:
- fp8 (e4m3, per tensor): n bytes + fp32 weight scale + fp32 input scale (llm-compressor FP8 checkpoints).
- fp8-block: n bytes + fp32 ``weight_scale_inv`` per 128 x 128 block (DeepSeek-V3 ``weight_block_size``).
- int8 (weight-only, W8A16 per channel): n bytes + bf16 scale per output channel.
- w8a8 (SmoothQuant, per-channel weights, per-token activations): n bytes + fp32 scale per output channel; the
  smoothing factors are folded into the preceding norm, so they cost nothing.
- gptq (AutoGPTQ layout): qweight int32 [in*b/32, out] + qzeros int32 [in/g, out*b/32] + fp16 scales [in/g, out]
  + g_idx int32 [in].  awq (AutoAWQ GEMM layout): the same without g_idx.
- nf4 (bitsandbytes Linear4bit): n/2 bytes + fp32 absmax per block of 64; with double quantization the absmax is
  8-bit with an fp32 second-level absmax per 256 blocks (QLoRA paper, arXiv:2305.14314, section 3).
- bnb-int8 (LLM.int8, arXiv:2208.07339): n bytes + fp32 row scale ``SCB`` per output row.
- nvfp4: n/2 bytes + e4m3 scale per 16 weights + fp32 global scale (NVIDIA ModelOpt NVFP4).
- mxfp4: n/2 bytes + e8m0 scale per 32 weights (OCP Microscaling spec v1.0).
Ignored: alignment padding and per-tensor metadata (< 0.01 %); Marlin repacking changes layout, not size.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from gpuplan.errors import InputError
from gpuplan.infer import gguf
from gpuplan.model.spec import ModelSpec
from gpuplan.model.tensors import TensorInfo, tensor_table

DTYPE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0}
_DTYPE_ALIASES = {"float32": "fp32", "float": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}

FAMILIES = ("float", "fp8", "fp8-block", "int8", "w8a8", "gptq", "awq", "nf4", "bnb-int8", "gguf", "nvfp4", "mxfp4")

WEIGHT_CHOICES = ("fp32", "bf16", "fp16", "fp8", "fp8-block", "int8", "w8a8", "int4", "gptq", "gptq-int8", "awq",
                  "nf4", "nf4-dq", "bnb-int8", "nvfp4", "mxfp4", *(m.lower() for m in gguf.GGUF_MIXES))


@dataclass(frozen=True)
class WeightFormat:
    """How the weights are stored. ``dtype`` is the unquantized dtype (and compute dtype of weight-only formats)."""

    name: str
    family: str
    dtype: str = "bf16"
    bits: int = 16
    group_size: int = 128  # gptq/awq; -1 = one group per column (per-channel)
    block: tuple[int, int] = (128, 128)  # fp8-block
    double_quant: bool = False  # nf4
    skip: tuple[str, ...] = ()  # module names or globs kept unquantized (quantization_config)
    source: str = ""

    def __post_init__(self) -> None:
        if self.family == "float" and self.name in DTYPE_BYTES and self.dtype != self.name:
            object.__setattr__(self, "dtype", self.name)  # WeightFormat("fp32", "float") stores fp32
        if self.family == "float":
            object.__setattr__(self, "bits", int(DTYPE_BYTES[self.dtype] * 8))
        if self.family not in FAMILIES:
            raise InputError("--weights", self.name, f"unknown format family {self.family!r}")
        if self.dtype not in DTYPE_BYTES:
            raise InputError("--dtype", self.dtype, "must be fp32, bf16 or fp16")
        if self.family not in ("float", "gguf") and not 1 <= self.bits <= 16:
            raise InputError("bits", self.bits, "must be a bit width from 1 to 16")
        if self.group_size != -1 and self.group_size < 1:
            raise InputError("group_size", self.group_size, "must be a positive integer or -1 (per channel)")
        if len(self.block) != 2 or any(b < 1 for b in self.block):
            raise InputError("weight_block_size", list(self.block), "must be two positive integers [rows, columns]")

    @property
    def compute_dtype(self) -> str:
        """The dtype the matmuls run in: what the GPU's peak FLOP/s should be read for."""
        return {"fp8": "fp8", "fp8-block": "fp8", "w8a8": "int8", "nvfp4": "fp4"}.get(self.family, self.dtype)


def normalize_dtype(name: str, field_name: str = "--dtype") -> str:
    key = _DTYPE_ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in DTYPE_BYTES:
        raise InputError(field_name, name, "must be fp32, bf16 or fp16")
    return key


def parse_weights(text: str, *, dtype: str = "bf16", group_size: int | None = None) -> WeightFormat:
    """``--weights`` value -> WeightFormat. Unknown names raise InputError listing the known ones."""
    key = text.strip().lower()
    key = _DTYPE_ALIASES.get(key, key)
    if key in DTYPE_BYTES:
        return WeightFormat(key, "float", dtype=key, bits=int(DTYPE_BYTES[key] * 8))
    mix = gguf.parse_mix(key)
    if mix is not None:
        return WeightFormat(f"gguf:{mix}", "gguf", dtype=dtype, bits=0, source="llama.cpp GGUF")
    g = 128 if group_size is None else group_size
    if g != -1 and g < 1:
        raise InputError("--group-size", g, "must be a positive integer or -1 (per channel)")
    simple = {
        "fp8": ("fp8", 8), "fp8-e4m3": ("fp8", 8), "fp8-block": ("fp8-block", 8), "int8": ("int8", 8),
        "w8a16": ("int8", 8), "w8a8": ("w8a8", 8), "smoothquant": ("w8a8", 8), "int4": ("awq", 4),
        "gptq": ("gptq", 4), "gptq-int4": ("gptq", 4), "gptq-int8": ("gptq", 8), "awq": ("awq", 4),
        "nf4": ("nf4", 4), "nf4-dq": ("nf4", 4), "bnb-nf4": ("nf4", 4), "bnb-int8": ("bnb-int8", 8),
        "llm.int8": ("bnb-int8", 8), "nvfp4": ("nvfp4", 4), "mxfp4": ("mxfp4", 4),
    }
    if key not in simple:
        raise InputError("--weights", text, "unknown weight format",
                         hint="known: " + ", ".join(WEIGHT_CHOICES) + " (GGUF types case-insensitive)")
    family, bits = simple[key]
    return WeightFormat(key, family, dtype=dtype, bits=bits, group_size=g, double_quant=key == "nf4-dq")


def format_from_quantization_config(qc: dict[str, Any], dtype: str = "bf16") -> WeightFormat:
    """Read a config.json ``quantization_config`` (pre-quantized checkpoints) into a WeightFormat.

    Understood ``quant_method`` values: gptq, awq, fp8 (transformers finegrained FP8 / DeepSeek
    ``weight_block_size``), compressed-tensors (llm-compressor: FP8, W8A8, W8A16, W4A16, NVFP4 schemes),
    bitsandbytes, mxfp4 (gpt-oss), modelopt (NVFP4 / FP8).
    """
    if not isinstance(qc, dict):
        raise InputError("quantization_config", type(qc).__name__, "must be a JSON object")
    method = str(qc.get("quant_method", "")).lower()
    skipped = qc.get("modules_to_not_convert") or qc.get("ignore") or ()
    if not isinstance(skipped, (list, tuple)):
        raise InputError("quantization_config.modules_to_not_convert", skipped, "must be a list of module names")
    skip = tuple(str(s) for s in skipped)
    src = f"config.json quantization_config (quant_method={method})"
    if method in ("gptq", "awq"):
        bits = _qc_int(qc, "bits", "w_bit", default=4)
        g = _qc_int(qc, "group_size", "q_group_size", default=128)
        if not 1 <= bits <= 16:
            raise InputError("quantization_config.bits", bits, "must be a bit width from 1 to 16")
        if g != -1 and g < 1:
            raise InputError("quantization_config.group_size", g, "must be a positive integer or -1 (per channel)")
        return WeightFormat(method, method, dtype=dtype, bits=bits, group_size=g, skip=skip, source=src)
    if method == "fp8":
        blk = qc.get("weight_block_size")
        if blk:
            return WeightFormat("fp8-block", "fp8-block", dtype=dtype, bits=8,
                                block=_block(blk, "quantization_config.weight_block_size"), skip=skip, source=src)
        return WeightFormat("fp8", "fp8", dtype=dtype, bits=8, skip=skip, source=src)
    if method == "bitsandbytes":
        if qc.get("load_in_8bit"):
            return WeightFormat("bnb-int8", "bnb-int8", dtype=dtype, bits=8, skip=skip, source=src)
        return WeightFormat("nf4", "nf4", dtype=dtype, bits=4, double_quant=bool(qc.get("bnb_4bit_use_double_quant")),
                            skip=skip, source=src)
    if method == "mxfp4":
        return WeightFormat("mxfp4", "mxfp4", dtype=dtype, bits=4, skip=skip, source=src)
    if method == "modelopt":
        inner = qc.get("quantization") if isinstance(qc.get("quantization"), dict) else {}
        algo = str(qc.get("quant_algo", inner.get("quant_algo", ""))).upper()
        fam = "nvfp4" if "FP4" in algo else "fp8"
        return WeightFormat(fam, fam, dtype=dtype, bits=4 if fam == "nvfp4" else 8, skip=skip, source=src)
    if method == "compressed-tensors":
        return _compressed_tensors(qc, dtype, skip, src)
    raise InputError("quantization_config.quant_method", method or None, "is not a supported pre-quantized format",
                     hint="supported: gptq, awq, fp8, compressed-tensors, bitsandbytes, mxfp4, modelopt; "
                          "or pass --weights explicitly")


def _qc_int(qc: dict[str, Any], *keys: str, default: int, where: str = "quantization_config") -> int:
    """An integer field of a quantization config (the first of ``keys`` present), named in the error when it is
    not one; ranges are checked by WeightFormat."""
    for key in keys:
        value = qc.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{where}.{key}", value, "must be an integer")
        return value
    return default


def _block(value: Any, where: str) -> tuple[int, int]:
    """A [rows, columns] block size of block-wise fp8 scales."""
    if not isinstance(value, (list, tuple)) or len(value) != 2 or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
        raise InputError(where, value, "must be two positive integers [rows, columns], e.g. [128, 128]")
    return int(value[0]), int(value[1])


def _compressed_tensors(qc: dict[str, Any], dtype: str, skip: tuple[str, ...], src: str) -> WeightFormat:
    groups = qc.get("config_groups") or {}
    scheme = next(iter(groups.values()), {}) if isinstance(groups, dict) else {}
    scheme = scheme if isinstance(scheme, dict) else {}
    w = scheme.get("weights") or {}
    a = scheme.get("input_activations") or {}
    if not isinstance(w, dict):
        raise InputError("quantization_config.config_groups.weights", w, "must be an object")
    where = "quantization_config.config_groups.weights"
    bits, wtype = _qc_int(w, "num_bits", default=8, where=where), str(w.get("type", "int"))
    if wtype == "float" and bits == 4:
        return WeightFormat("nvfp4", "nvfp4", dtype=dtype, bits=4, skip=skip, source=src)
    if wtype == "float" and bits == 8:
        if str(w.get("strategy")) == "block":
            blk = _block(w.get("block_structure") or [128, 128], f"{where}.block_structure")
            return WeightFormat("fp8-block", "fp8-block", dtype=dtype, bits=8, block=blk, skip=skip, source=src)
        return WeightFormat("fp8", "fp8", dtype=dtype, bits=8, skip=skip, source=src)
    if bits == 8:
        fam = "w8a8" if a else "int8"
        return WeightFormat(fam, fam, dtype=dtype, bits=8, skip=skip, source=src)
    g = _qc_int(w, "group_size", default=-1, where=where) or -1
    return WeightFormat(f"int{bits}", "gptq", dtype=dtype, bits=bits, group_size=g, skip=skip, source=src)


def _skipped(t: TensorInfo, fmt: WeightFormat) -> bool:
    """Whether a ``modules_to_not_convert`` / ``ignore`` entry names this tensor's module or one of its parents
    (globs such as ``model.layers.*.self_attn``, full names, or a bare module name such as ``gate``)."""
    if not fmt.skip:
        return False
    parts = t.name.rsplit(".", 1)[0].split(".")
    ancestors = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pat in fmt.skip:
        pat = pat.removeprefix("re:")
        if pat in parts or any(fnmatch.fnmatchcase(a, pat) or a.endswith("." + pat) for a in ancestors):
            return True
    return False


def is_quantized(t: TensorInfo, fmt: WeightFormat, *, hf_bnb_fused_experts: bool = False) -> bool:
    """Whether ``fmt`` stores ``t`` quantized (GGUF handled separately). Routers, embeddings, lm_head, norms and
    biases never are. ``hf_bnb_fused_experts``: transformers 5 keeps MoE experts as fused 3-D parameters that its
    bitsandbytes integration (which replaces only ``nn.Linear``) leaves unquantized."""
    if fmt.family == "float" or not t.linear or t.component not in ("attention", "mlp", "experts"):
        return False
    if hf_bnb_fused_experts and t.component == "experts" and fmt.family in ("nf4", "bnb-int8"):
        return False
    return not _skipped(t, fmt)


def quantized_matrix_bytes(fmt: WeightFormat, out_f: int, in_f: int) -> int:
    """Bytes of one [out_f, in_f] weight matrix in a non-GGUF quantized format (layouts in the module doc)."""
    n = out_f * in_f
    fam = fmt.family
    if fam == "fp8":
        return n + 8
    if fam == "fp8-block":
        bo, bi = fmt.block
        return n + (-(-out_f // bo)) * (-(-in_f // bi)) * 4
    if fam == "int8":
        return n + 2 * out_f
    if fam == "w8a8":
        return n + 4 * out_f
    if fam in ("gptq", "awq"):
        b = fmt.bits
        groups = 1 if fmt.group_size == -1 else -(-in_f // fmt.group_size)
        packed = -(-(n * b) // 32) * 4
        zeros = groups * (-(-(out_f * b) // 32)) * 4
        scales = groups * out_f * 2
        g_idx = in_f * 4 if fam == "gptq" else 0
        return packed + zeros + scales + g_idx
    if fam == "nf4":
        blocks = -(-n // 64)
        absmax = blocks + (-(-blocks // 256)) * 4 + 256 * 4 + 4 if fmt.double_quant else blocks * 4
        return -(-n // 2) + absmax + 16 * 4
    if fam == "bnb-int8":
        return n + 4 * out_f
    if fam == "nvfp4":
        return -(-n // 2) + -(-n // 16) + 8
    if fam == "mxfp4":
        return -(-n // 2) + -(-n // 32)
    raise InputError("--weights", fmt.name, "has no matrix layout")  # pragma: no cover - guarded by parse


def _matrix_dims(t: TensorInfo) -> tuple[int, int]:
    """(out, in) of a Linear weight; GPT-2's Conv1D weights are stored [in, out]."""
    if t.module in ("c_attn", "c_proj", "c_fc"):
        return t.shape[1], t.shape[0]
    return t.shape[0], t.shape[1]


@dataclass
class WeightBytes:
    """Weight bytes of the whole model by component, plus the bytes of tensors kept unquantized."""

    by_component: dict[str, int] = field(default_factory=dict)
    per_tensor: dict[str, int] = field(default_factory=dict)
    gguf_types: dict[str, int] = field(default_factory=dict)  # ggml type -> tensor count (GGUF only)
    quantized_params: int = 0
    unquantized_params: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_component.values())


def weight_bytes(spec: ModelSpec, fmt: WeightFormat, *, engine: str = "vllm") -> WeightBytes:
    """Bytes of every tensor of ``spec`` stored in ``fmt`` (``engine`` matters for the hf bitsandbytes rule)."""
    table = tensor_table(spec)
    out = WeightBytes()
    unq = DTYPE_BYTES[fmt.dtype]
    gctx = _gguf_context(spec, fmt) if fmt.family == "gguf" else None
    for t in table:
        if gctx is not None:
            nbytes, gtype = _gguf_tensor_bytes(spec, t, gctx)
            out.gguf_types[gtype] = out.gguf_types.get(gtype, 0) + 1
            quant = gtype not in ("F32", "F16", "BF16")
        elif is_quantized(t, fmt, hf_bnb_fused_experts=engine == "hf"):
            nbytes, quant = quantized_matrix_bytes(fmt, *_matrix_dims(t)), True
        else:
            nbytes, quant = int(t.numel * unq), False
        out.per_tensor[t.name] = nbytes
        out.by_component[t.component] = out.by_component.get(t.component, 0) + nbytes
        if quant:
            out.quantized_params += t.numel
        else:
            out.unquantized_params += t.numel
    return out


def _gguf_context(spec: ModelSpec, fmt: WeightFormat) -> gguf.MixContext:
    mix = fmt.name.split(":", 1)[1]
    n_ffn_down = 0
    for i in range(spec.num_layers):
        n_ffn_down += 1
        if spec.is_moe_layer(i) and spec.moe and spec.moe.shared_expert_ffn_size:
            n_ffn_down += 1
    n_expert = spec.moe.num_experts if spec.moe else 0
    return gguf.MixContext(mix=mix, n_attention_v=spec.num_layers, n_ffn_down=n_ffn_down, n_expert=n_expert,
                           n_gqa=spec.num_heads // spec.num_kv_heads, is_70b=spec.num_layers == 80 and not spec.moe,
                           is_falcon=spec.family == "falcon")


def _gguf_tensor_bytes(spec: ModelSpec, t: TensorInfo, ctx: gguf.MixContext) -> tuple[int, str]:
    """One checkpoint tensor in a GGUF file. Experts of one layer are one fused 3-D GGUF tensor; the per-layer
    index llama.cpp uses is the layer number. 1-D tensors (norms, biases) and routers are F32; other
    unquantizable 2-D tensors (GPT-2 position table) F16."""
    if len(t.shape) < 2 or t.is_bias:
        return t.numel * 4, "F32"
    if t.component == "router":
        return t.numel * 4, "F32"
    if t.component == "embedding" and t.tp == "replicated":  # learned position table: not quantized
        return t.numel * 2, "F16"
    out_f, in_f = _matrix_dims(t) if t.linear else (t.shape[0], t.shape[1])
    cat = gguf.category(t.module, t.component)
    index = t.layer if t.layer is not None else 0  # llama.cpp's running counters equal the layer number here
    gtype = gguf.choose_type(ctx, cat, index, in_f, spec.tie_embeddings)
    return gguf.tensor_bytes(gtype, out_f, in_f), gtype
