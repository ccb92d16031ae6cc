"""Training stacks (``--stack NAME``): the defaults a real training stack applies, as data.

Each stack is one TOML file under ``gpuplan/data/stacks/``::

    name = "torchtitan"
    title = "torchtitan"
    version = "the release or commit the defaults were read from"
    url = "https://..."

    [defaults.loss_parallel]          # one table per TrainConfig field the stack sets
    value = true
    source = "the stack's own config file, docs or code, with version"

    [supports.parallel]               # optional: the parallel axes the stack implements (others are refused)
    values = ["dp", "zero", "tp", "sp", "pp", "cp", "ep", "dp_shard", "offload"]
    source = "..."

``supports`` may also list ``optimizers`` (gpuplan optimizer names) and ``methods`` (full, freeze, lora, qlora).
An option the user gives explicitly always wins over a stack default (``TrainConfig`` resolves ``None`` fields
through the stack); an option the stack has no implementation of is an ``InputError`` naming both.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from gpuplan.errors import InputError

# TrainConfig fields a stack may set, with the type of their value.
DEFAULT_KEYS: dict[str, type | tuple[type, ...]] = {
    "framework": str, "optimizer": str, "optimizer_impl": str, "recompute": str, "selective_policy": str,
    "loss_impl": str, "loss_chunk_tokens": int, "loss_parallel": bool, "optimizer_in_backward": bool,
    "compile": bool, "cuda_module_loading": str, "recompute_offload": bool, "ds_reduce_bucket": int,
    "ds_overlap_comm": str, "ds_contiguous_gradients": bool, "ds_prefetch_bucket": int, "ds_max_live_params": int,
    "model_impl": str, "lora_dtype": str, "fsdp_embedding_groups": bool,
    "kbit_prepare": bool,
    "qlora_head": bool,
    "lora_dropout": float,
    "stable_embedding": bool,
}
# Step-time behaviours a stack decides (read by ``gpuplan plan``, not TrainConfig fields).
STEP_KEYS: dict[str, type] = {"pipeline_schedule": str, "attention_impl": str}
SUPPORT_KEYS = ("parallel", "optimizers", "methods")
PARALLEL_AXES = ("dp", "zero", "tp", "sp", "pp", "cp", "ep", "dp_shard", "offload")
TOP_KEYS = ("name", "title", "version", "url", "defaults", "supports")


@dataclass(frozen=True)
class StackDefault:
    key: str
    value: Any
    source: str
    methods: tuple[str, ...] = ()  # applies only to these fine-tuning methods (empty: all)
    single_gpu: bool | None = None  # applies only to one-GPU (True) or multi-GPU (False) runs (None: both)

    def applies(self, method: str, single_gpu: bool) -> bool:
        return ((not self.methods or method in self.methods)
                and (self.single_gpu is None or self.single_gpu == single_gpu))


@dataclass(frozen=True)
class StackSupport:
    key: str
    values: tuple[Any, ...]
    source: str


@dataclass(frozen=True)
class Stack:
    name: str
    title: str
    version: str
    url: str
    defaults: tuple[StackDefault, ...]
    supports: tuple[StackSupport, ...]

    def default(self, key: str, method: str = "full", single_gpu: bool = True) -> StackDefault | None:
        """The default for ``key`` that applies to this method and GPU count (the first that does)."""
        for d in self.defaults:
            if d.key == key and d.applies(method, single_gpu):
                return d
        return None

    def support(self, key: str) -> StackSupport | None:
        for s in self.supports:
            if s.key == key:
                return s
        return None


def _stack_dir():
    return resources.files("gpuplan").joinpath("data", "stacks")


@lru_cache(maxsize=1)
def stack_names() -> tuple[str, ...]:
    """Every stack shipped, in file-name order, ``torch`` first (the default)."""
    names = sorted(p.name.removesuffix(".toml") for p in _stack_dir().iterdir() if p.name.endswith(".toml"))
    return tuple(sorted(names, key=lambda n: n != "torch"))


@lru_cache(maxsize=32)
def load_stack(name: str) -> Stack:
    """The stack ``name``, validated; InputError for an unknown name."""
    if name not in stack_names():
        raise InputError("--stack", name, f"must be one of {', '.join(stack_names())}")
    text = _stack_dir().joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return parse_stack(tomllib.loads(text), f"{name}.toml")


def parse_stack(data: dict[str, Any], where: str) -> Stack:
    """Validate one stack file's tables: known keys only, typed values, a source for every default and support."""
    def bad(msg: str) -> ValueError:
        return ValueError(f"stack file {where}: {msg}")

    unknown = set(data) - set(TOP_KEYS)
    if unknown:
        raise bad(f"unknown top-level keys {sorted(unknown)}")
    for k in ("name", "title", "version"):
        if not isinstance(data.get(k), str) or not data[k]:
            raise bad(f"'{k}' must be a non-empty string")
    defaults = []
    for key, entries in data.get("defaults", {}).items():
        if key not in DEFAULT_KEYS and key not in STEP_KEYS:
            raise bad(f"unknown default '{key}' (known: {', '.join([*DEFAULT_KEYS, *STEP_KEYS])})")
        # one table, or an array of tables with conditions (methods, single_gpu), the first that applies wins
        for entry in entries if isinstance(entries, list) else [entries]:
            defaults.append(_default(key, entry, bad))
    supports = []
    for key, entry in data.get("supports", {}).items():
        if key not in SUPPORT_KEYS:
            raise bad(f"unknown support '{key}' (known: {', '.join(SUPPORT_KEYS)})")
        if not isinstance(entry, dict) or set(entry) != {"values", "source"} or not isinstance(entry["values"], list):
            raise bad(f"support '{key}' needs exactly a 'values' list and a 'source'")
        if not isinstance(entry["source"], str) or len(entry["source"]) < 10:
            raise bad(f"support '{key}' needs a source")
        if key == "parallel" and set(entry["values"]) - set(PARALLEL_AXES):
            raise bad(f"support 'parallel': unknown axes {sorted(set(entry['values']) - set(PARALLEL_AXES))}")
        supports.append(StackSupport(key, tuple(entry["values"]), entry["source"]))
    return Stack(data["name"], data["title"], data["version"], data.get("url", ""), tuple(defaults), tuple(supports))


def _default(key: str, entry: Any, bad) -> StackDefault:
    if not isinstance(entry, dict) or not {"value", "source"} <= set(entry) <= {"value", "source", "methods",
                                                                                 "single_gpu"}:
        raise bad(f"default '{key}' needs 'value' and 'source' (and optionally 'methods', 'single_gpu')")
    if not isinstance(entry["source"], str) or len(entry["source"]) < 10:
        raise bad(f"default '{key}' needs a source")
    value = entry["value"]
    want = {**DEFAULT_KEYS, **STEP_KEYS}[key]
    if want is int and (isinstance(value, bool) or not isinstance(value, int)) or not isinstance(value, want):
        raise bad(f"default '{key}' must be of type {want}")
    methods = entry.get("methods", [])
    single = entry.get("single_gpu")
    if not isinstance(methods, list) or set(methods) - {"full", "freeze", "lora", "qlora"}:
        raise bad(f"default '{key}': 'methods' must list full, freeze, lora or qlora")
    if single is not None and not isinstance(single, bool):
        raise bad(f"default '{key}': 'single_gpu' must be true or false")
    return StackDefault(key, value, entry["source"], tuple(methods), single)


def stack_value(stack: str | None, key: str, method: str = "full", single_gpu: bool = True) -> Any:
    """The value ``key`` takes when not given: the stack's default, else the ``torch`` stack's (None if neither)."""
    for name in (stack or "torch", "torch"):
        d = load_stack(name).default(key, method, single_gpu)
        if d is not None:
            return d.value
    return None


# the option each parallel axis is given by, and whether a configuration uses it
_AXIS_FLAG = {"dp": "--dp", "zero": "--zero", "tp": "--tp", "sp": "--sp", "pp": "--pp", "cp": "--cp", "ep": "--ep",
              "dp_shard": "--dp-shard", "offload": "--offload"}


def check_support(stack: Stack, used_axes: dict[str, Any], optimizer: str, method: str) -> None:
    """InputError when the configuration uses a parallel axis, an optimizer or a fine-tuning method that the
    stack has no implementation of (per the ``supports`` tables and their sources)."""
    par = stack.support("parallel")
    if par is not None:
        for axis, value in used_axes.items():
            if axis not in par.values:
                raise InputError(_AXIS_FLAG[axis], value, f"--stack {stack.name} has no implementation of this "
                                 f"({par.source})", hint=f"{stack.title} supports: {', '.join(par.values)}")
    opt = stack.support("optimizers")
    if opt is not None and optimizer not in opt.values:
        raise InputError("--optimizer", optimizer, f"--stack {stack.name} has no implementation of this "
                         f"({opt.source})", hint=f"one of {', '.join(opt.values)}")
    meth = stack.support("methods")
    if meth is not None and method not in meth.values:
        raise InputError("--method", method, f"--stack {stack.name} has no implementation of this "
                         f"({meth.source})", hint=f"one of {', '.join(meth.values)}")
