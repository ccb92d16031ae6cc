"""``gpuplan verify MODEL``: run the real model in PyTorch and compare measured memory with the estimate.

PyTorch and transformers (extra ``[verify]``) are imported only when the command runs, never for ``--help``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gpuplan.cli.common import (model_from_args, print_json,
                                render_table)
from gpuplan.errors import InputError
from gpuplan.i18n import headers, lang_of, localize, memory_label, message, t
from gpuplan.units import format_bytes
from gpuplan.verify.setup import (PrefillSetup, TrainSetup)
from gpuplan.cli.parsers import command_parser


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "verify")


def model_config(args: argparse.Namespace, spec) -> dict[str, Any]:
    """The config.json dict the model is built from: the preset's, the file's, the hub's, or one made from the
    raw dimensions."""
    from gpuplan.model.hf_config import load_config_file
    from gpuplan.model.presets import find_preset
    from gpuplan.verify.build import config_from_spec

    if not args.model:
        return config_from_spec(spec)
    preset = find_preset(args.model)
    if preset is not None:
        return dict(preset.config)
    from pathlib import Path

    path = Path(args.model).expanduser()
    if path.exists() or args.model.endswith(".json"):
        return load_config_file(path)
    from gpuplan.model.resolve import fetch_hub_config

    return fetch_hub_config(args.model)


def _setup(args: argparse.Namespace) -> TrainSetup | PrefillSetup:
    if args.workload == "infer":
        return PrefillSetup(batch=args.batch, context=args.context, dtype=args.weights, attention=args.attention)
    return TrainSetup(batch=args.batch, seq=args.seq, precision=args.precision, optimizer=args.optimizer,
                      optimizer_impl=args.optimizer_impl, recompute=args.recompute, attention=args.attention,
                      method=args.method, trainable=args.trainable, lora_rank=args.lora_rank,
                      lora_targets=args.lora_targets, keep_logits=args.keep_logits)


def _measure(config: dict, setup, device: str):
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise InputError("verify", "PyTorch", "is not installed", hint="pip install 'gpuplan[verify]'") from None
    if device == "cuda":
        from gpuplan.verify import cuda

        fn = cuda.measure_prefill_cuda if isinstance(setup, PrefillSetup) else cuda.measure_training_cuda
    else:
        from gpuplan.verify import trace

        fn = trace.measure_prefill if isinstance(setup, PrefillSetup) else trace.measure_training
    return fn(config, setup)


def _estimate(spec, setup, attention: str) -> tuple[dict[str, int] | None, str | None]:
    from gpuplan.verify.estimate import EstimateUnavailable, prefill_estimate, training_estimate

    try:
        if isinstance(setup, PrefillSetup):
            return prefill_estimate(spec, _with_attention(setup, attention)), None
        return training_estimate(spec, _with_attention(setup, attention)), None
    except EstimateUnavailable as exc:
        return None, str(exc)


def _with_attention(setup, attention: str):
    from dataclasses import replace

    return setup if setup.attention == attention else replace(setup, attention=attention)


def run(args: argparse.Namespace) -> int:
    from gpuplan.verify.compare import verify_payload

    spec = model_from_args(args)
    setup = _setup(args)
    config = model_config(args, spec)
    measured = _measure(config, setup, args.device)
    estimate, missing = _estimate(spec, setup, measured.extra.get("attention", setup.attention))
    detail = measured.as_dict()
    if missing:
        detail["notes"].append(message("verify.no_estimate", reason=missing))
    if args.json:
        if estimate is None:
            print_json({"estimate": None, "measured": measured.memory_dict(), "error_pct": None,
                        "backend": measured.backend, "detail": detail})
        else:
            print_json(verify_payload(estimate, measured.memory_dict(), measured.backend, detail))
        return 0
    lang = lang_of(args)
    print(render(spec, setup, measured, estimate, detail, lang))
    for note in detail["notes"]:
        if _to_stderr(note):
            print(t("verify.note", lang, note=localize(note, lang)), file=sys.stderr)
    return 0


def _to_stderr(note: str) -> bool:
    return getattr(note, "key", None) == "verify.no_estimate"


def render(spec, setup, measured, estimate: dict[str, int] | None, detail: dict[str, Any], lang: str) -> str:
    """The human-readable comparison in ``lang`` (the "no estimate" note is left to stderr)."""
    from gpuplan.verify.compare import compare_memory

    def label(key: str) -> str:  # English keeps the JSON key, other languages the component's name
        return key if lang == "en" else memory_label(key, lang)

    what = (t("verify.prefill", lang, batch=setup.batch, context=setup.context) if isinstance(setup, PrefillSetup)
            else t("verify.train_step", lang, batch=setup.batch, seq=setup.seq))
    lines = [t("verify.summary", lang, name=spec.name, what=what, backend=measured.backend,
               seconds=f"{measured.wall_s:.1f}")]
    if estimate is None:
        rows = [(label(k), "", format_bytes(v, digits=3), "") for k, v in measured.memory_dict().items() if v]
    else:
        rows = [(label(r.key), format_bytes(r.estimate_bytes, digits=3), format_bytes(r.measured_bytes, digits=3),
                 "" if r.error_pct is None else f"{r.error_pct:+.2f} %")
                for r in compare_memory(estimate, measured.memory_dict())]
    lines.append(render_table(headers("verify.header", ("component", "estimate", "measured", "error"), lang), rows))
    if measured.peak_phase:
        lines.append(t("verify.peak_phase", lang, phase=measured.peak_phase))
    for key in ("reserved_peak_bytes", "device_used_bytes"):
        if key in measured.extra:
            lines.append(f"{t('verify.' + key, lang)}: {format_bytes(measured.extra[key], digits=3)}")
    if "step_time_s" in measured.extra:
        lines.append(t("verify.step_time", lang, seconds=f"{measured.extra['step_time_s']:.3f}"))
    lines.extend(t("verify.note", lang, note=localize(note, lang)) for note in detail["notes"] if not _to_stderr(note))
    return "\n".join(lines)
