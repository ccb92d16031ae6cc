"""The accuracy suite: gpuplan's memory estimate against what PyTorch allocates, on real model sizes.

For each configuration the real Hugging Face model is traced on the CPU (``gpuplan.verify``: fake tensors,
MemTracker, the CUDA allocator's 512-byte rounding; steady-state second training step or prefill + one decode
step), gpuplan estimates the same step, and accelerate, DeepSpeed and Megatron-LM give their answers where they
can (``accuracy_peers.py``). Writes ``benchmarks/results/accuracy.json`` (raw bytes, one entry per configuration,
saved as it goes) and ``docs/accuracy.md``.

    python benchmarks/accuracy.py                 # the whole matrix (about 5 minutes on 2 cores)
    python benchmarks/accuracy.py --only llama    # configurations whose id matches a regex
    python benchmarks/accuracy.py --report-only   # rewrite docs/accuracy.md from the saved JSON

Needs ``pip install -e '.[verify,bench]'``. FSDP2 / TP rows need ``gpuplan.verify.distributed``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import re
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
RESULTS = ROOT / "benchmarks" / "results" / "accuracy.json"
DOC = ROOT / "docs" / "accuracy.md"

T, I, F, P, V = "train", "infer", "fsdp2", "tp", "vision"  # noqa: E741 (one letter per kind reads best)
# (id, preset, kind, options). Train options are gpuplan.verify.TrainSetup fields; infer: PrefillSetup fields;
# fsdp2 / tp: world, batch, seq, recompute; vision: height, width (one image through the tower and projector, bf16).
MATRIX: list[tuple[str, str, str, dict]] = [
    ("qwen2.5-0.5b bf16 b4 s1024", "qwen2.5-0.5b", T, dict(batch=4, seq=1024)),
    ("qwen2.5-0.5b fp32 b2 s1024", "qwen2.5-0.5b", T, dict(batch=2, seq=1024, precision="fp32")),
    ("qwen2.5-0.5b amp-bf16 b2 s1024", "qwen2.5-0.5b", T, dict(batch=2, seq=1024, precision="amp-bf16")),
    ("qwen3-0.6b bf16 b8 s1024", "qwen3-0.6b", T, dict(batch=8, seq=1024)),
    ("qwen2.5-1.5b bf16 fused b2 s2048", "qwen2.5-1.5b", T, dict(batch=2, seq=2048, optimizer_impl="fused")),
    ("llama-3.2-1b bf16 b1 s2048", "llama-3.2-1b", T, dict(batch=1, seq=2048)),
    ("llama-3.2-1b bf16 for-loop b1 s2048", "llama-3.2-1b", T, dict(batch=1, seq=2048, optimizer_impl="for-loop")),
    ("llama-3.2-1b amp-bf16 b1 s2048", "llama-3.2-1b", T, dict(batch=1, seq=2048, precision="amp-bf16")),
    ("llama-3.2-1b bf16 recompute b8 s2048", "llama-3.2-1b", T, dict(batch=8, seq=2048, recompute="full")),
    ("llama-3.2-1b eager b2 s1024", "llama-3.2-1b", T, dict(batch=2, seq=1024, attention="eager")),
    ("llama-3.2-1b sgd b4 s2048", "llama-3.2-1b", T, dict(batch=4, seq=2048, optimizer="sgd")),
    ("llama-3.2-1b sgdm b4 s2048", "llama-3.2-1b", T, dict(batch=4, seq=2048, optimizer="sgdm")),
    ("llama-3.2-3b bf16 b1 s4096", "llama-3.2-3b", T, dict(batch=1, seq=4096)),
    ("llama-3.2-3b lora all-linear b2 s2048", "llama-3.2-3b", T, dict(batch=2, seq=2048, method="lora")),
    ("llama-2-7b bf16 b2 s2048 (MHA)", "llama-2-7b-hf", T, dict(batch=2, seq=2048)),
    ("llama-3.1-8b bf16 b1 s2048", "llama-3.1-8b", T, dict(batch=1, seq=2048)),
    ("llama-3.1-8b bf16 recompute b4 s4096", "llama-3.1-8b", T, dict(batch=4, seq=4096, recompute="full")),
    ("llama-3.1-8b lora q,k,v,o b1 s2048", "llama-3.1-8b", T,
     dict(batch=1, seq=2048, method="lora", lora_targets=("q_proj", "k_proj", "v_proj", "o_proj"))),
    ("llama-3.1-8b freeze last 4 layers b1 s2048", "llama-3.1-8b", T,
     dict(batch=1, seq=2048, method="freeze", trainable=("model.layers.2[89].*", "model.layers.3[01].*",
                                                         "model.norm.weight", "lm_head.weight"))),
    ("llama-3.1-8b fp32 fused b1 s1024", "llama-3.1-8b", T, dict(batch=1, seq=1024, precision="fp32",
                                                                 optimizer_impl="fused")),
    ("mistral-7b-v0.3 bf16 b1 s2048", "mistral-7b-v0.3", T, dict(batch=1, seq=2048)),
    ("mistral-7b-v0.3 amp-bf16 b1 s1024", "mistral-7b-v0.3", T, dict(batch=1, seq=1024, precision="amp-bf16")),
    ("qwen2.5-7b bf16 b1 s2048", "qwen2.5-7b", T, dict(batch=1, seq=2048)),
    ("qwen2.5-7b lora all-linear b2 s1024", "qwen2.5-7b", T, dict(batch=2, seq=1024, method="lora")),
    ("qwen3-8b bf16 b1 s2048", "qwen3-8b", T, dict(batch=1, seq=2048)),
    ("phi-3-mini bf16 b1 s2048", "phi-3-mini-4k-instruct", T, dict(batch=1, seq=2048)),
    ("gemma-2-2b bf16 b1 s2048 (eager)", "gemma-2-2b", T, dict(batch=1, seq=2048, attention="eager")),
    ("gemma-2-9b bf16 recompute b2 s2048 (eager)", "gemma-2-9b", T,
     dict(batch=2, seq=2048, recompute="full", attention="eager")),
    ("gpt2 fp32 b8 s1024", "gpt2", T, dict(batch=8, seq=1024, precision="fp32")),
    ("gpt2-medium amp-bf16 b4 s1024", "gpt2-medium", T, dict(batch=4, seq=1024, precision="amp-bf16")),
    ("gpt2-xl bf16 b2 s1024", "gpt2-xl", T, dict(batch=2, seq=1024)),
    ("mixtral-8x7b bf16 b1 s2048", "mixtral-8x7b-v0.1", T, dict(batch=1, seq=2048)),
    ("mixtral-8x7b lora q,v b1 s2048", "mixtral-8x7b-v0.1", T,
     dict(batch=1, seq=2048, method="lora", lora_targets=("q_proj", "v_proj"))),
    ("mixtral-8x7b lora all-linear b1 s2048", "mixtral-8x7b-v0.1", T, dict(batch=1, seq=2048, method="lora")),
    ("qwen3-30b-a3b bf16 recompute b1 s2048", "qwen3-30b-a3b", T, dict(batch=1, seq=2048, recompute="full")),
    ("deepseek-v2-lite bf16 b1 s2048", "deepseek-v2-lite", T, dict(batch=1, seq=2048)),
    ("deepseek-v2-lite bf16 recompute b2 s2048", "deepseek-v2-lite", T, dict(batch=2, seq=2048, recompute="full")),
    ("llama-3.1-70b bf16 recompute b1 s2048", "llama-3.1-70b", T, dict(batch=1, seq=2048, recompute="full")),
    ("llama-3.1-70b lora q,v recompute b1 s2048", "llama-3.1-70b", T,
     dict(batch=1, seq=2048, recompute="full", method="lora", lora_targets=("q_proj", "v_proj"))),
    # architectures traced at real width with a few layers (``layers``: num_hidden_layers of the traced config)
    ("deepseek-v2-lite 4 layers bf16 b4 s2048 (MLA)", "deepseek-v2-lite", T, dict(batch=4, seq=2048, layers=4)),
    ("deepseek-v2-lite 4 layers lora all-linear b2 s2048", "deepseek-v2-lite", T,
     dict(batch=2, seq=2048, method="lora", layers=4)),
    ("olmo-2-7b 4 layers bf16 b2 s4096", "olmo-2-1124-7b", T, dict(batch=2, seq=4096, layers=4)),
    ("olmo-2-7b 4 layers amp-bf16 b2 s2048", "olmo-2-1124-7b", T, dict(batch=2, seq=2048, precision="amp-bf16",
                                                                        layers=4)),
    ("phi-3-mini 4 layers bf16 b4 s4096 (window mask)", "phi-3-mini-4k-instruct", T, dict(batch=4, seq=4096, layers=4)),
    ("phi-3-mini 4 layers bf16 b8 s1024", "phi-3-mini-4k-instruct", T, dict(batch=8, seq=1024, layers=4)),
    ("gpt-neox-20b 4 layers bf16 b2 s2048", "gpt-neox-20b", T, dict(batch=2, seq=2048, layers=4)),
    ("falcon-7b 4 layers bf16 b2 s2048 (MQA, math SDPA)", "falcon-7b", T, dict(batch=2, seq=2048, layers=4)),
    ("gemma-2-2b 4 layers amp-bf16 b2 s2048 (eager)", "gemma-2-2b", T,
     dict(batch=2, seq=2048, precision="amp-bf16", attention="eager", layers=4)),
    ("qwen3-30b-a3b 4 layers lora all-linear b2 s2048", "qwen3-30b-a3b", T,
     dict(batch=2, seq=2048, method="lora", layers=4)),
    # the newest families at real width: GLM-4.5, gpt-oss, Llama 4, Qwen3-Next, DeepSeek-V3 / Kimi K2
    ("glm-4.5-air 4 layers bf16 b1 s2048", "glm-4.5-air", T, dict(batch=1, seq=2048, layers=4)),
    ("gpt-oss-20b 4 layers bf16 b1 s2048", "gpt-oss-20b", T, dict(batch=1, seq=2048, layers=4)),
    ("llama-4-scout 4 layers bf16 b1 s2048", "llama-4-scout-17b-16e", T, dict(batch=1, seq=2048, layers=4)),
    ("qwen3-next-80b 4 layers bf16 b1 s2048", "qwen3-next-80b-a3b-instruct", T, dict(batch=1, seq=2048, layers=4)),
    # DeepSeek-V3's architecture (Kimi K2's too): three dense layers, then the 256-expert MoE with MLA
    ("deepseek-v3 4 layers bf16 b1 s2048", "deepseek-v3", T, dict(batch=1, seq=2048, layers=4)),
    # Mistral Small 3.1's language model (mistral3's text_config: head_dim 128 beside hidden 5120 / 32 heads)
    ("mistral-small-3.1 text 4 layers bf16 b1 s2048", "mistral-small-3.1-24b-instruct-2503", T,
     dict(batch=1, seq=2048, layers=4, text_only=True)),
    # Gemma 3's language model (gemma3 text_config: 5 sliding-window layers of 1,024 tokens to 1 global)
    ("gemma-3-27b text 6 layers bf16 b1 s2048", "gemma-3-27b-pt", T, dict(batch=1, seq=2048, layers=6,
                                                                          text_only=True)),
    # Qwen2.5-VL's and Qwen3-VL's language models, which transformers builds only inside the image-text model
    # (gpuplan.verify.build.build_vl_text: the tower removed, multimodal rotary positions kept)
    ("qwen2.5-vl-7b text 4 layers bf16 b1 s2048", "qwen2.5-vl-7b-instruct", T,
     dict(batch=1, seq=2048, layers=4, text_only=True)),
    ("qwen3-vl-8b text 4 layers bf16 b1 s2048", "qwen3-vl-8b-instruct", T,
     dict(batch=1, seq=2048, layers=4, text_only=True)),
    ("qwen3-vl-30b-a3b text 4 layers bf16 b1 s2048", "qwen3-vl-30b-a3b-instruct", T,
     dict(batch=1, seq=2048, layers=4, text_only=True)),
    # MPT at real width (its config.json names the depth n_layers)
    ("mpt-7b 4 layers bf16 b2 s2048", "mpt-7b", T, dict(batch=2, seq=2048, layers=4)),
    # encoders as released (masked-LM heads) and StarCoder2 (GQA with biases, LayerNorm, GELU c_fc / c_proj)
    ("bert-large-uncased fp32 b4 s512 (eager, MLM head)", "bert-large-uncased", T,
     dict(batch=4, seq=512, precision="fp32", attention="eager")),
    ("roberta-base amp-bf16 b8 s512 (MLM head)", "roberta-base", T, dict(batch=8, seq=512, precision="amp-bf16")),
    ("starcoder2-3b 4 layers bf16 b2 s2048", "starcoder2-3b", T, dict(batch=2, seq=2048, layers=4)),
    ("starcoder 4 layers bf16 b2 s2048 (MQA)", "starcoder", T, dict(batch=2, seq=2048, layers=4)),
    ("infer llama-3.1-8b b1 ctx8192", "llama-3.1-8b", I, dict(batch=1, context=8192)),
    ("infer llama-3.1-8b b8 ctx2048", "llama-3.1-8b", I, dict(batch=8, context=2048)),
    ("infer qwen2.5-7b b4 ctx4096", "qwen2.5-7b", I, dict(batch=4, context=4096)),
    ("infer mistral-7b-v0.3 b2 ctx8192", "mistral-7b-v0.3", I, dict(batch=2, context=8192)),
    ("infer gemma-2-9b b1 ctx8191 (eager)", "gemma-2-9b", I, dict(batch=1, context=8191, attention="eager")),
    ("infer mixtral-8x7b b1 ctx4096", "mixtral-8x7b-v0.1", I, dict(batch=1, context=4096)),
    ("infer deepseek-v2-lite b1 ctx4096", "deepseek-v2-lite", I, dict(batch=1, context=4096)),
    ("infer qwen3-30b-a3b b2 ctx4096", "qwen3-30b-a3b", I, dict(batch=2, context=4096)),
    ("infer llama-3.1-70b b1 ctx4096", "llama-3.1-70b", I, dict(batch=1, context=4096)),
    ("infer gpt2 b16 ctx1023 fp32", "gpt2", I, dict(batch=16, context=1023, dtype="fp32")),
    ("infer glm-4.5-air b1 ctx4096", "glm-4.5-air", I, dict(batch=1, context=4096)),
    ("infer gpt-oss-20b b1 ctx4096", "gpt-oss-20b", I, dict(batch=1, context=4096)),
    ("infer qwen3-next-80b b1 ctx4096", "qwen3-next-80b-a3b-instruct", I, dict(batch=1, context=4096)),
    ("infer llama-4-scout b1 ctx4096", "llama-4-scout-17b-16e", I, dict(batch=1, context=4096)),
    ("infer mpt-7b b2 ctx2047", "mpt-7b", I, dict(batch=2, context=2047)),
    ("infer starcoder2-3b b2 ctx4096", "starcoder2-3b", I, dict(batch=2, context=4096)),
    ("infer starcoder b1 ctx4096", "starcoder", I, dict(batch=1, context=4096)),
    ("infer mistral-small-3.1 text b1 ctx4096", "mistral-small-3.1-24b-instruct-2503", I,
     dict(batch=1, context=4096, text_only=True)),
    ("infer gemma-3-27b text b1 ctx4096", "gemma-3-27b-pt", I, dict(batch=1, context=4096, text_only=True)),
    ("infer qwen2.5-vl-7b text b1 ctx4096", "qwen2.5-vl-7b-instruct", I, dict(batch=1, context=4096, text_only=True)),
    ("infer qwen3-vl-8b text b1 ctx4096", "qwen3-vl-8b-instruct", I, dict(batch=1, context=4096, text_only=True)),
    ("fsdp2 llama-3.2-1b world 4 b2 s2048", "llama-3.2-1b", F, dict(world=4, batch=2, seq=2048)),
    # vision towers at their real widths and depths: what training saves while one image is encoded
    # (gpuplan.verify.vision, real bf16 tensors on the CPU: minutes per row)
    ("vision qwen2.5-vl-7b tower 448x448", "qwen2.5-vl-7b-instruct", V, dict(height=448, width=448)),
    ("vision qwen3-vl-8b tower 448x448", "qwen3-vl-8b-instruct", V, dict(height=448, width=448)),
    ("vision gemma-3-27b SigLIP 448x448", "gemma-3-27b-pt", V, dict(height=448, width=448)),
    ("vision mistral-small-3.1 Pixtral 448x448", "mistral-small-3.1-24b-instruct-2503", V,
     dict(height=448, width=448)),
    ("vision llama-4-scout tower 336x336", "llama-4-scout-17b-16e", V, dict(height=336, width=336)),
    ("fsdp2 llama-3.2-1b world 8 b2 s2048", "llama-3.2-1b", F, dict(world=8, batch=2, seq=2048)),
    ("fsdp2 qwen2.5-1.5b world 8 recompute b4 s2048", "qwen2.5-1.5b", F,
     dict(world=8, batch=4, seq=2048, recompute=True)),
    ("tp2 llama-3.2-1b b2 s2048", "llama-3.2-1b", P, dict(world=2, batch=2, seq=2048)),
    ("tp4 llama-3.1-8b b1 s2048", "llama-3.1-8b", P, dict(world=4, batch=1, seq=2048)),
]

# Rough trace cost (layers x experts-ish) to start the slowest configurations first.
_HEAVY = ("vision", "70b", "30b", "mixtral", "gemma-2-9b", "8b", "7b", "fsdp2", "tp4")


def _order(entries):
    return sorted(entries, key=lambda e: next((i for i, k in enumerate(_HEAVY) if k in e[0]), len(_HEAVY)))


def _estimate(spec, kind: str, opts: dict, attention: str) -> dict[str, int]:
    from gpuplan.verify.estimate import prefill_estimate, training_estimate
    from gpuplan.verify.setup import PrefillSetup, TrainSetup

    if kind == V:  # measured alongside the trace (gpuplan.verify.vision): same spec, same patches
        raise AssertionError("vision rows carry their estimate from the trace")

    if kind == T:
        return training_estimate(spec, TrainSetup(**{**opts, "attention": attention}))
    if kind == I:
        return prefill_estimate(spec, PrefillSetup(**{**opts, "attention": attention}))
    from gpuplan.train.config import TrainConfig
    from gpuplan.train.engine import estimate_training

    w = opts["world"]
    layout = dict(dp=w, zero=3) if kind == F else dict(tp=w)
    cfg = TrainConfig(batch=opts["batch"], seq=opts["seq"], recompute="full" if opts.get("recompute") else "none",
                      gpus=w, **layout)
    return estimate_training(spec, cfg).memory.memory_dict()


def _measure(config: dict, kind: str, opts: dict) -> tuple[dict[str, int], dict]:
    from gpuplan.verify import PrefillSetup, TrainSetup, measure_prefill, measure_training

    if kind in (T, I):
        m = (measure_training(config, TrainSetup(**opts)) if kind == T
             else measure_prefill(config, PrefillSetup(**opts)))
        return m.memory_dict(), {"peak_phase": m.peak_phase, "attention": m.extra.get("attention"),
                                 "trace_s": round(m.wall_s, 1), "params_trainable": m.params_trainable}
    if kind == V:
        from gpuplan.verify.vision import measure_vision_saved

        r = measure_vision_saved(config, height=opts["height"], width=opts["width"])
        return ({"allocated_peak_bytes": r["saved_bytes"], "activations_bytes": r["saved_bytes"]},
                {"peak_phase": f"{r['patches']} patches", "trace_s": r["wall_s"],
                 "estimate": {"allocated_peak_bytes": r["estimate_bytes"], "activations_bytes": r["estimate_bytes"]}})
    from gpuplan.verify import distributed

    t0 = time.perf_counter()
    kw = dict(world_size=opts["world"], batch=opts["batch"], seq=opts["seq"], recompute=bool(opts.get("recompute")))
    r = distributed.measure_fsdp2_step(config, **kw) if kind == F else distributed.measure_tp_step(config, **kw)
    return {"allocated_peak_bytes": int(r["peak_bytes"])}, {"peak_phase": r.get("peak_phase", ""),
                                                            "attention": "sdpa", "at_peak": r.get("at_peak"),
                                                            "trace_s": round(time.perf_counter() - t0, 1)}


def _peers(config: dict, spec, kind: str, opts: dict) -> dict[str, int | None]:
    import accuracy_peers as peers

    from gpuplan.model.params import count_params

    total_fp32, largest_fp32 = peers.model_sizes(config)
    params = count_params(spec).total
    full = opts.get("method", "full") == "full"
    precision = opts.get("precision", opts.get("dtype", "bf16"))
    world = opts.get("world", 1)
    seq = opts.get("seq", opts.get("context", 0))
    return {
        "accelerate": peers.accelerate_bytes(total_fp32, kind, precision) if full else None,
        "deepspeed": peers.deepspeed_bytes(params, largest_fp32 // 4, kind, world) if full else None,
        "megatron": peers.megatron_bytes(params, kind=kind, batch=opts.get("batch", 1), seq=seq,
                                         hidden=spec.hidden_size, layers=spec.num_layers, vocab=spec.vocab_size,
                                         tp=world if kind == P else 1) if full else None,
    }


def _text_config(config: dict) -> dict:
    """A multimodal config's text_config; a flat one (Qwen2.5-VL as transformers 4 wrote it) through transformers'
    own config class, whose text_config collects the top-level text keys."""
    if isinstance(config.get("text_config"), dict):
        return dict(config["text_config"])
    from transformers import AutoConfig

    flat = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
    return AutoConfig.for_model(config["model_type"], **flat).get_text_config().to_dict()


def run_one(entry: tuple[str, str, str, dict]) -> dict:
    """Measure, estimate and ask the peers for one configuration; errors are recorded, not raised."""
    import gc

    from gpuplan.model.presets import find_preset

    cid, preset_id, kind, opts = entry
    preset = find_preset(preset_id)
    config, spec = dict(preset.config), preset.spec()
    out: dict = {"id": cid, "model": preset_id, "kind": kind, "options": opts}
    opts = dict(opts)
    if opts.pop("text_only", False):  # a multimodal preset's language model, as its text_config builds it
        from gpuplan.model.hf_config import spec_from_config

        config = _text_config(config)
        spec = spec_from_config(config, preset_id)
    layers = opts.pop("layers", None)
    if layers:  # the same model with fewer layers: real widths, a fast trace
        from gpuplan.model.hf_config import spec_from_config

        # the key the family's config.json uses (GPT-2 n_layer, MPT n_layers): both sides must see the same depth
        key = next((k for k in ("num_hidden_layers", "n_layer", "n_layers", "num_layers") if k in config),
                   "num_hidden_layers")
        config[key] = layers
        if isinstance(config.get("layer_types"), list):
            config["layer_types"] = config["layer_types"][:layers]
        spec = spec_from_config(config, preset_id)
    t0 = time.perf_counter()
    try:
        out["measured"], info = _measure(config, kind, opts)
        out.update(info)
    except Exception as exc:  # recorded in the table as a failed row
        out["error"] = f"trace: {type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc(limit=6)
        return out
    finally:
        gc.collect()
    if kind == V:
        out["wall_s"] = round(time.perf_counter() - t0, 1)
        return out
    try:
        out["estimate"] = _estimate(spec, kind, opts, out.get("attention") or opts.get("attention", "sdpa"))
        if kind in (F, P):  # does the estimate see the layout at all?
            one = _estimate(spec, T, {"batch": opts["batch"], "seq": opts["seq"],
                                      "recompute": "full" if opts.get("recompute") else "none"}, "sdpa")
            out["layout_ignored"] = one["allocated_peak_bytes"] == out["estimate"]["allocated_peak_bytes"]
    except Exception as exc:
        out["estimate_error"] = f"{type(exc).__name__}: {exc}"
    try:
        out["peers"] = _peers(config, spec, kind, opts)
    except Exception as exc:
        out["peers_error"] = f"{type(exc).__name__}: {exc}"
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def _load() -> dict[str, dict]:
    if RESULTS.exists():
        return {r["id"]: r for r in json.loads(RESULTS.read_text())["results"]}
    return {}


def _save(results: dict[str, dict], meta: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    ordered = [results[cid] for cid, *_ in MATRIX if cid in results]
    RESULTS.write_text(json.dumps({"meta": meta, "results": ordered}, indent=1) + "\n")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "peft", "accelerate", "deepspeed"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="regex over configuration ids")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--resume", action="store_true", help="skip configurations already measured without error")
    args = ap.parse_args(argv)
    from accuracy_report import write_report

    results = _load()
    meta = json.loads(RESULTS.read_text())["meta"] if RESULTS.exists() else {}
    if not args.report_only:
        todo = [e for e in MATRIX if (not args.only or re.search(args.only, e[0]))
                and not (args.resume and e[0] in results and "error" not in results[e[0]])]
        # earlier runs stay listed only while some of their rows remain (a partial re-run with --only / --resume)
        full = not args.only and not args.resume
        runs = [r for r in meta.get("runs", []) if r["rows"]] if results and not full else []
        run = {"started": time.strftime("%Y-%m-%d %H:%M"), "s": 0, "rows": len(todo), "workers": args.workers}
        versions = _versions()
        if not full:  # a partial re-run keeps the release the other rows' peer columns were measured with
            versions.update({k: v for k, v in meta.get("versions", {}).items() if versions.get(k) == "not installed"})
        meta = {"versions": versions, "runs": runs + [run]}
        t0 = time.perf_counter()
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool:
            futures = {pool.submit(run_one, e): e for e in _order(todo)}
            for fut in cf.as_completed(futures):
                r = fut.result()
                results[r["id"]] = r
                run["s"] = round(time.perf_counter() - t0)
                _save(results, meta)
                status = r.get("error") or r.get("estimate_error") or "ok"
                print(f"[{time.perf_counter() - t0:6.0f}s] {r['id']}: {status}", flush=True)
    write_report(list(_load().values()), meta, DOC, MATRIX)
    print(f"wrote {DOC.relative_to(ROOT)} and {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
