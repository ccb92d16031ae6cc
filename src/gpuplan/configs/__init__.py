"""Configs people already have, read into gpuplan's options: a torchtitan TOML job config or a torchtune,
axolotl, LLaMA-Factory or TRL / Trainer YAML recipe as MODEL (``gpuplan train llama3_8b.toml``; readers in
torchtitan.py and recipes.py), a DeepSpeed JSON or an accelerate config YAML next to a named model (``--from
ds_config.json``), a Megatron-LM argument list or launch script as MODEL of ``train`` and ``plan``, a pasted ``vllm
serve`` command line as MODEL of ``infer``.

A file is taken as a stack's config only when its extension and its content both say so (:func:`detect`);
anything else stays what MODEL always was (a preset, a Hugging Face id, a config.json). Each reader returns the
option values and a :class:`ConfigReport` accounting for every key: the option it set, or why it was ignored.
Options given explicitly win over the file's values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from gpuplan.configs.report import ConfigReport
from gpuplan.errors import InputError

__all__ = ["ConfigReport", "detect", "read_config", "apply_files"]

FORMATS = ("torchtitan", "deepspeed", "torchtune", "axolotl", "llama-factory", "trl", "megatron", "vllm", "accelerate")
# text files holding a command line: the formats each command reads as MODEL
TEXT_SUFFIXES = (".sh", ".bash", ".txt", ".args", ".cmd")
MODEL_FORMATS = {"train": ("torchtitan", "megatron"), "plan": ("megatron",), "infer": ("vllm",)}
_TITAN_SECTIONS = ("training", "parallelism", "activation_checkpoint")
_DS_KEYS = ("zero_optimization", "train_micro_batch_size_per_gpu", "train_batch_size", "gradient_accumulation_steps")


def detect_data(data: Mapping[str, Any], suffix: str) -> str | None:
    """The format a parsed file is in, or None when its content is not one a reader knows."""
    recipe = _detect_recipe(data, suffix)
    if recipe is not None:
        return recipe
    if suffix == ".toml" and isinstance(data.get("model"), dict) and any(isinstance(data.get(s), dict)
                                                                         for s in _TITAN_SECTIONS):
        return "torchtitan"
    if suffix == ".json" and any(k in data for k in _DS_KEYS) and "model_type" not in data:
        return "deepspeed"
    if suffix in (".yaml", ".yml") and "distributed_type" in data:
        return "accelerate"
    return None


def detect_text(text: str) -> str | None:
    """The format of a command-line text file: a ``vllm serve`` command, or Megatron-LM arguments."""
    import re

    if re.search(r"(^|\s)vllm\s+serve\s|vllm\.entrypoints\.openai\.api_server", text):
        return "vllm"
    if re.search(r"pretrain_\w+\.py|--tensor-model-parallel-size|--num-layers\s", text):
        return "megatron"
    return None


def _detect_recipe(data: Mapping[str, Any], suffix: str) -> str | None:
    """The YAML training recipes (TrainingArguments also as JSON), by the keys only each project has."""
    from gpuplan.configs.recipes import detect_recipe

    return detect_recipe(data, suffix)


def detect(path: str | None) -> str | None:
    """The format of the file at ``path`` (by extension, then content), or None: a preset name, a config.json
    or a scenario is never taken for a stack's config."""
    if not path or not isinstance(path, str):
        return None
    p = Path(path).expanduser()
    try:
        if p.suffix.lower() not in (".toml", ".json", ".yaml", ".yml", *TEXT_SUFFIXES) or not p.is_file():
            return None
    except (OSError, ValueError):  # a name no file system accepts (too long, a NUL byte) is not a config file
        return None
    from gpuplan.configs.files import parse, read_text, yaml_missing

    if p.suffix.lower() in TEXT_SUFFIXES:
        try:
            return detect_text(read_text(p, "MODEL"))
        except InputError:
            return None
    if yaml_missing(p):  # read_config then says that YAML needs PyYAML
        return "yaml"

    try:
        data = parse(p, "MODEL")
    except InputError:
        return None
    return detect_data(data, p.suffix.lower())


def read_config(source: str | Mapping[str, Any], role: str, field: str,
                command: str = "train") -> tuple[ConfigReport, str | None]:
    """(report, model preset or None) for a file path, or for an already parsed DeepSpeed config (a dict: the
    web API's pasted ``from_file``). ``role`` is 'model' or 'from'; ``field`` names the option in errors."""
    from gpuplan.configs import deepspeed, recipes, torchtitan
    from gpuplan.configs.files import parse

    folder = None
    if isinstance(source, str) and Path(source).suffix.lower() in TEXT_SUFFIXES:
        return _read_text_config(source, role, field, command)
    if isinstance(source, Mapping):
        data, name, suffix = dict(source), "(pasted)", ".json"
    else:
        p = Path(source).expanduser()
        data, name, suffix, folder = parse(p, field), p.name, p.suffix.lower(), p.parent
    fmt = detect_data(data, suffix)
    if fmt is None:
        raise InputError(field, str(source) if not isinstance(source, Mapping) else "(object)",
                         "is not a config gpuplan reads: a torchtitan TOML (with [model] and [training]), a "
                         "DeepSpeed JSON (with zero_optimization or the batch sizes), an accelerate config YAML "
                         "(with distributed_type), or a torchtune, axolotl, LLaMA-Factory or TRL / Trainer YAML "
                         "recipe")
    report = ConfigReport(path=str(source) if not isinstance(source, Mapping) else name, format=fmt, role=role)
    model = None
    if fmt == "torchtitan":
        model = torchtitan.read(data, name, report)
    elif fmt in recipes.READERS:
        model = recipes.read(fmt, data, name, report, folder)
        if role == "model" and not model:
            raise InputError(field, report.path, "is a training recipe that names no model",
                             hint="give the model and the file with --from: gpuplan train MODEL --from FILE")
    elif fmt == "accelerate":
        if role == "model":
            raise InputError(field, report.path, "is an accelerate config, which names no model",
                             hint="give the model and the file with --from: gpuplan train MODEL --from FILE")
        from gpuplan.configs import accelerate

        accelerate.read(data, name, report)
    else:
        if role == "model":
            raise InputError(field, report.path, "is a DeepSpeed config, which names no model",
                             hint="give the model and the file with --from: gpuplan train MODEL --from FILE")
        deepspeed.read(data, name, report)
    if role == "from" and model is not None:
        for key in [m.key for m in report.mapped if m.option == "model"]:
            report.ignore(key, "MODEL names the model")
        report.mapped = [m for m in report.mapped if m.option != "model"]
        model = None
    return report, model


def _read_text_config(source: str, role: str, field: str, command: str) -> tuple[ConfigReport, str | None]:
    """A Megatron-LM argument list or a ``vllm serve`` command line, as MODEL of the commands that read it."""
    from gpuplan.configs import megatron, vllm
    from gpuplan.configs.files import read_text
    from gpuplan.configs.shell import parse_script

    p = Path(source).expanduser()
    text = read_text(p, field)
    fmt = detect_text(text)
    if fmt is None:
        raise InputError(field, source, "is not a config gpuplan reads: a Megatron-LM argument list (pretrain_*.py "
                         "or --num-layers ...) or a `vllm serve MODEL ...` command line")
    if role != "model" or fmt not in MODEL_FORMATS.get(command, ()):
        takes = [c for c, fmts in MODEL_FORMATS.items() if fmt in fmts]
        raise InputError(field, source, f"is a {fmt} command line, which `gpuplan {command}` does not read",
                         hint=f"give it as MODEL of gpuplan {' or '.join(takes)}")
    report = ConfigReport(path=source, format=fmt, role=role)
    script = parse_script(text, p.name)
    model = (megatron.read if fmt == "megatron" else vllm.read)(script, p.name, report)
    return report, model


def resolve(report: ConfigReport, values: Any) -> None:
    """Rules of a file that need the data-parallel degree (known once the options are complete)."""
    if report.format == "deepspeed":
        from gpuplan.configs.deepspeed import resolve_batch

        resolve_batch(report, values)
    elif report.format in ("megatron", "torchtitan"):
        from gpuplan.configs.megatron import resolve_batch as rule

        if report.format == "megatron":
            rule(report, values)
        else:
            rule(report, values, "training.global_batch_size", microbatches=False)


def file_values(report: ConfigReport, command: str) -> dict[str, Any]:
    """The report's option values, checked and converted by the command's declared options."""
    from gpuplan.options import command_options

    spec = command_options(command)
    values = {k: v for k, v in report.values.items() if k != "model"}
    if command == "plan":
        if report.format == "megatron":  # a Megatron argument list carries the model's dimensions and its layout
            from gpuplan.configs.toplan import plan_values as megatron_plan_values

            values = megatron_plan_values(report, values)
        else:  # a recipe or job config: the model preset and the settings that pin the search
            from gpuplan.configs.plan_values import plan_values

            values = plan_values(report)
    try:
        return spec.check(values)
    except InputError as exc:
        key = next((m.key for m in report.mapped if m.option == exc.field), exc.field)
        raise InputError(f"{Path(report.path).name}: {key}", exc.value, exc.rule, exc.hint) from None


def apply_files(command: str, model: str | None, given: dict[str, Any]
                ) -> tuple[str | None, dict[str, Any], ConfigReport | None]:
    """For the Python and web APIs: MODEL as a stack's config file, or ``from_file``, read and laid under the
    ``given`` values (which win). Returns (model, values, report or None)."""
    source = given.pop("from_file", None)
    role = "from"
    if source is None and detect(model):
        source, role = model, "model"
    if source is None:
        return model, given, None
    report, preset = read_config(source, role, "model" if role == "model" else "from_file", command)
    values = file_values(report, command)
    report.overridden = [k for k in values if k in given and given[k] != values[k]]
    return (preset if role == "model" else model), {**values, **given}, report


def hook_files(parser: Any, command: str) -> None:
    """Make ``parser`` read MODEL (when it is a stack's config file) and ``--from FILE``: a first parse finds
    them, the file's values become the parser's defaults, and a second parse lets the explicit options win."""
    original = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):  # type: ignore[no-untyped-def]
        ns, rest = original(args, namespace)
        source, role = getattr(ns, "from_file", None), "from"
        if source is None and detect(getattr(ns, "model", None)):
            source, role = ns.model, "model"
        if source is None:
            return ns, rest
        try:
            report, preset = read_config(source, role, "MODEL" if role == "model" else "--from", command)
            values = file_values(report, command)
        except InputError as exc:
            parser.error(str(exc))
        saved = dict(parser._defaults)
        try:
            parser.set_defaults(**values)
            ns, rest = original(args, None)
        finally:
            parser._defaults.clear()
            parser._defaults.update(saved)
        report.overridden = [k for k, v in values.items() if getattr(ns, k, v) != v]
        if role == "model":
            ns.model = preset
        ns.config_file = report
        return ns, rest

    parser.parse_known_args = parse_known_args
