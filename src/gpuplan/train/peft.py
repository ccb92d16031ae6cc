r"""Which parameters train: full, freezing by glob, LoRA adapters, QLoRA's 4-bit NF4 base.

Globs are matched against Hugging Face checkpoint names of the tensor table with ``fnmatch`` rules (``*`` matches
across dots, ``[0-5]`` one character), e.g. ``model.layers.[0-5].block_sparse_moe.experts.[01].*``.
LoRA targets follow PEFT's ``target_modules``: a module is targeted when its leaf name is listed
(``q_proj``, ``w1``); ``all-linear`` targets every linear layer but the output head
(peft/tuners/tuners_utils.py ``_maybe_include_all_linear_layers``).

``modules_to_save`` (``--lora-modules-to-save``) follows PEFT's ``ModulesToSaveWrapper`` (peft/utils/other.py): the
named module keeps its frozen original and runs a trainable ``copy.deepcopy`` of it, so its weights exist twice and
the copy alone gets gradients and optimizer states. A name matches a module whose dotted path contains it as whole
components, as PEFT's ``_get_submodules`` check (``(^|.*\.)NAME($|\..*)``). PEFT keeps each copy separate even
when the model ties its embeddings (tying the copies takes ``ensure_weight_tying=True``), so the trained model runs
untied: ``saved_spec`` clears ``tie_embeddings`` and the shared frozen original is held once.
"""

from __future__ import annotations

from dataclasses import dataclass
import re
from dataclasses import replace
from fnmatch import fnmatchcase
from functools import lru_cache

from gpuplan.errors import InputError
from gpuplan.model.spec import ModelSpec
from gpuplan.model.tensors import TensorInfo, tensor_table
from gpuplan.train.config import TrainConfig

# QLoRA (Dettmers et al. 2023, arXiv:2305.14314, section 3): NF4 with block size 64; double quantization stores the
# first-level absmax in 8 bits with one fp32 second-level constant per 256 blocks: 4 + 8/64 + 32/(64*256) = 4.127 bits.
NF4_BITS = 4
DQ_SECOND_BLOCK = 256


@dataclass(frozen=True, eq=False)
class Trainability:
    """Per tensor of the table: does the base weight train, does a LoRA adapter sit on it. Compared and hashed by
    identity: ``trainability`` returns one cached object per (model, method, globs, targets), so caches keyed on it
    stay cheap for models with tens of thousands of tensors."""

    base_trainable: tuple[bool, ...]
    lora: tuple[bool, ...]
    quantized: tuple[bool, ...]
    copied: tuple[bool, ...] = ()  # modules_to_save: a frozen original of this tensor is held beside it


@lru_cache(maxsize=64)
def layer_flags(spec: ModelSpec, tr: Trainability) -> tuple[tuple[tuple[str, tuple[bool, bool]], ...], ...]:
    """Per layer: sorted (module leaf name, (any base tensor of it trains, LoRA on it)); routed experts are keyed
    ``experts.<leaf>`` (all experts of a layer together)."""
    per: list[dict[str, tuple[bool, bool]]] = [{} for _ in range(spec.num_layers)]
    for t, rg, lo in zip(tensor_table(spec), tr.base_trainable, tr.lora):
        if t.layer is None:
            continue
        key = _module_key(t)
        old = per[t.layer].get(key, (False, False))
        per[t.layer][key] = (old[0] or rg, old[1] or lo)
    return tuple(tuple(sorted(d.items())) for d in per)


def _module_key(t: TensorInfo) -> str:
    """Module path inside a layer, e.g. ``self_attn.q_proj`` or ``experts`` (all experts of a layer together)."""
    if t.expert is not None:
        return f"experts.{t.module}"
    return t.module


# PEFT >= 0.19 on transformers 5 MoE models whose experts are fused 3-D parameters
# (peft/utils/transformers_weight_conversion.py ``_MOE_TARGET_MODULE_MAPPING`` / ``_MOE_FUSED_TARGETS`` and
# transformers ``conversion_mapping._MODEL_TO_CONVERSION_PATTERN``): the checkpoint-era module names in
# ``target_modules`` become ``target_parameters`` -- the router weight and the stacked ``gate_up_proj`` /
# ``down_proj`` of each layer's experts -- each adapted by a ``ParamWrapper`` with lora_A [r·E, in] and
# lora_B [out, r·E]; ``gate_up_proj`` fuses two projections, so its rank (and alpha) is doubled. The names are
# dropped from ``target_modules``, so plain Linear layers of the same name (shared experts, dense MLP layers of
# Qwen2-MoE-style models) get no adapter.
PEFT_FUSED_MOE: dict[str, dict[str, str]] = {
    "mixtral": {"w1": "gate_up", "w3": "gate_up", "w2": "down", "gate": "router"},
    **{f: {"gate_proj": "gate_up", "up_proj": "gate_up", "down_proj": "down", "gate": "router"}
       for f in ("qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3", "olmoe")},
}


def peft_fused_moe(spec: ModelSpec) -> dict[str, str] | None:
    """PEFT's renaming of LoRA targets for this model (None: plain ``lora.Linear`` modules everywhere)."""
    return PEFT_FUSED_MOE.get(spec.family) if spec.moe else None


def param_wrapped(spec: ModelSpec, t: TensorInfo) -> str | None:
    """``gate_up``, ``down`` or ``router`` when PEFT adapts this tensor through a ``ParamWrapper``."""
    return wrapped_module(spec.family if spec.moe else None, t)


def wrapped_module(family: str | None, t: TensorInfo) -> str | None:
    """``param_wrapped`` from the family of an MoE model (None for a dense one)."""
    m = PEFT_FUSED_MOE.get(family) if family else None
    if m is None or t.component not in ("experts", "router"):
        return None
    return m.get(t.module)


def lora_target_match(t: TensorInfo, targets: tuple[str, ...], fused: dict[str, str] | None = None) -> bool:
    if not t.linear or t.is_bias:
        return False
    if fused is not None and t.module in fused and t.component not in ("experts", "router"):
        return False  # PEFT moved this name to target_parameters (fused experts): the Linear gets no adapter
    if "all-linear" in targets:
        return t.component != "lm_head"
    return t.module in targets


def saved_match(t: TensorInfo, names: tuple[str, ...]) -> bool:
    """Does one of PEFT's ``modules_to_save`` names own this tensor (whole dotted components of its module path)?"""
    path = t.name.rsplit(".", 1)[0]
    return any(re.fullmatch(rf"(.*\.)?{re.escape(n)}(\..*)?", path) for n in names)


def saved_spec(spec: ModelSpec, cfg: TrainConfig) -> ModelSpec:
    """The model as the stack trains it. litgpt's own module never ties its output head to the embedding
    (litgpt/model.py ``GPT.__init__`` builds ``lm_head`` and ``transformer.wte`` as separate parameters, and
    scripts/convert_hf_checkpoint.py copies ``wte`` into ``lm_head`` for checkpoints without one), so a tied model
    holds both matrices there. With PEFT, a tied embedding or head among ``modules_to_save`` runs separate copies
    (PEFT ties them only with ``ensure_weight_tying=True``), so the estimate takes it untied."""
    # litgpt runs Phi-3 as its Llama block (litgpt config.py Phi-3 entries: LLaMAMLP, RMSNorm, no bias): the same
    # parameters under the Llama layout's names, which its LoRA flags (query, key, value, mlp) address
    if cfg.model_impl == "litgpt" and spec.layout == "phi3":
        spec = replace(spec, layout="llama")
    # every family: the untied head is litgpt's GPT itself, also where gpuplan models the layers with
    # transformers' code (gpuplan.train.context.model_impl)
    if spec.tie_embeddings and cfg.model_impl == "litgpt":
        return replace(spec, tie_embeddings=False, litgpt_untied=True)
    if not (spec.tie_embeddings and cfg.method in ("lora", "qlora") and cfg.lora_modules_to_save):
        return spec
    untied = replace(spec, tie_embeddings=False, peft_untied=True)
    if any(saved_match(t, cfg.lora_modules_to_save) for t in tensor_table(untied)
           if t.component in ("embedding", "lm_head") and t.tp == "vocab"):
        return untied
    return spec


def trainability(spec: ModelSpec, cfg: TrainConfig) -> Trainability:
    saved = cfg.lora_modules_to_save if cfg.method in ("lora", "qlora") else ()
    return _trainability(spec, cfg.method, cfg.trainable, cfg.lora_targets, saved, bool(cfg.qlora_head))


@lru_cache(maxsize=64)
def _trainability(spec: ModelSpec, method: str, globs: tuple[str, ...], targets: tuple[str, ...],
                  saved: tuple[str, ...] = (), quantized_head: bool = False) -> Trainability:
    table = tensor_table(spec)
    n = len(table)
    if method == "full":
        return Trainability((True,) * n, (False,) * n, (False,) * n)
    if method == "freeze":
        rg = tuple(any(fnmatchcase(t.name, g) for g in globs) for t in table)
        if not any(rg):
            example = table[min(len(table) - 1, 3)].name
            raise InputError("--trainable", ",".join(globs), "matches no parameter of this model",
                             hint=f"names look like {example!r}; list them with `gpuplan params MODEL --tensors`")
        return Trainability(rg, (False,) * n, (False,) * n)
    fused = peft_fused_moe(spec)
    lora = tuple(lora_target_match(t, targets, fused) for t in table)
    if not any(lora):
        names = sorted({t.module for t in table if t.linear})
        raise InputError("--lora-targets", ",".join(targets), "matches no linear module of this model",
                         hint=f"modules: {', '.join(names)} or all-linear")
    # the output head stays unquantized unless the stack quantizes every Linear (--qlora-head on: litgpt)
    quant = tuple(method == "qlora" and not t.is_bias
                  and ((t.linear and t.component not in ("router", "lm_head"))
                       or (quantized_head and t.component == "lm_head" and len(t.shape) == 2)) for t in table)
    full = tuple(saved_match(t, saved) for t in table)
    missing = [m for m in saved if not any(saved_match(t, (m,)) for t in table)]
    if missing:
        raise InputError("--lora-modules-to-save", ",".join(missing), "matches no module of this model",
                         hint="e.g. embed_tokens, lm_head (module names of `gpuplan params MODEL --tensors`)")
    # the untied head's frozen original is the shared embedding matrix, already in the table
    copied = tuple(f and not (spec.peft_untied and t.component == "lm_head") for t, f in zip(table, full))
    return Trainability(full, lora, tuple(q and not f for q, f in zip(quant, full)), copied)


def lora_params(t: TensorInfo, rank: int, wrapped: str | None = None) -> int:
    """LoRA A [r, in] and B [out, r]: r * (in + out) parameters (Hu et al. 2021, arXiv:2106.09685, section 4.1).
    One expert's share of PEFT's fused ``gate_up_proj`` adapter (``wrapped`` "gate_up": rank 2r over in and the
    fused 2·out): r·(in + 2·out) for each of the gate and up tensors, 2r·(in + 2·out) per expert in all."""
    out_f, in_f = t.shape[0], t.shape[-1]
    if wrapped == "gate_up":
        return rank * (in_f + 2 * out_f)
    return rank * (in_f + out_f)


def lora_shapes(t: TensorInfo, rank: int, wrapped: str | None = None) -> list[tuple[int, int]]:
    """Shapes of the adapter tensors, per checkpoint tensor (the optimizer's per-tensor temporaries)."""
    out_f, in_f = t.shape[0], t.shape[-1]
    if wrapped == "gate_up":
        return [(rank, in_f), (2 * out_f, rank)]
    return [(rank, in_f), (out_f, rank)]


def nf4_bytes(numel: int, block: int = 64, double_quant: bool = True) -> int:
    """Bytes of an NF4-quantized weight: 4-bit codes plus block absmax (8-bit + fp32 per 256 blocks when double
    quantized, else fp32), QLoRA paper section 3 (bitsandbytes ``quantize_4bit``)."""
    blocks = -(-numel // block)
    codes = -(-numel * NF4_BITS // 8)
    if double_quant:
        return codes + blocks + 4 * -(-blocks // DQ_SECOND_BLOCK)
    return codes + 4 * blocks


def peft_adapter_params(spec: ModelSpec, cfg: TrainConfig) -> int:
    """Trainable parameters PEFT really creates: as ``trainable_params`` but with fused experts' gate_up at rank
    2r (the LoRA adapters plus the trainable copies of ``modules_to_save``)."""
    spec = saved_spec(spec, cfg)
    tr = trainability(spec, cfg)
    table = tensor_table(spec)
    return (sum(lora_params(t, cfg.lora_rank, param_wrapped(spec, t)) for t, lo in zip(table, tr.lora) if lo)
            + sum(t.numel for t, rg in zip(table, tr.base_trainable) if rg))


def trainable_params(spec: ModelSpec, cfg: TrainConfig) -> int:
    """Trainable parameters: matched base tensors plus LoRA adapters, counted per expert for MoE models (the
    source documents' convention; ``peft_adapter_params`` gives PEFT's own count for fused experts)."""
    spec = saved_spec(spec, cfg)
    saved = cfg.lora_modules_to_save if cfg.method in ("lora", "qlora") else ()
    return _trainable_params(spec, cfg.method, cfg.trainable, cfg.lora_targets, cfg.lora_rank, saved)


@lru_cache(maxsize=64)
def _trainable_params(spec: ModelSpec, method: str, globs: tuple[str, ...], targets: tuple[str, ...],
                      rank: int, saved: tuple[str, ...] = ()) -> int:
    """Cached: a layout search asks for the same count once per layout (45,000 tensors for DeepSeek-V3)."""
    table = tensor_table(spec)
    tr = _trainability(spec, method, globs, targets, saved)
    base = sum(t.numel for t, rg in zip(table, tr.base_trainable) if rg)
    adapters = sum(lora_params(t, rank) for t, lo in zip(table, tr.lora) if lo)
    return base + adapters
