"""The command-line surface, frozen: the set of commands, each command's positionals and option strings.

The literal below is the surface as it stands. A new command or option makes this test fail until the literal
(and docs/interface.md) is updated on purpose; a removed one breaks users' scripts and needs a deprecation path
(docs/interface.md: "change a name here only with a deprecation path"). The second half checks that every option
the promised interface names in its option lists exists in the parser, with the values it lists.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import NamedTuple

import pytest

from gpuplan.cli.main import build_parser

INTERFACE_MD = Path(__file__).resolve().parents[1] / "docs" / "interface.md"


class Surface(NamedTuple):
    positionals: tuple[str, ...]
    options: frozenset[str]


# A model from raw dimensions: the same options on every command that takes a MODEL.
DIMENSIONS = frozenset({
    "--layers", "--hidden", "--heads", "--kv-heads", "--head-dim", "--ffn", "--vocab", "--experts", "--top-k",
    "--params",
})

# The cluster bill (--cluster): the same block on time and plan (plan adds --pue, which time already has).
CLUSTER = frozenset({
    "--bytes-per-token", "--cluster", "--currency", "--fx", "--power-usd-per-kwh", "--rack-kw", "--round",
    "--server-usd", "--spare", "--storage-gbps", "--switch-radix", "--xlsx", "--years",
})

SURFACE = {
    "models": Surface(
        positionals=("query",),
        options=frozenset({
            "--family", "--json", "--lang", "--newest"
        }),
    ),
    "gpus": Surface(
        positionals=("query",),
        options=frozenset({
            "--json", "--lang"
        }),
    ),
    "params": Surface(
        positionals=("model",),
        options=DIMENSIONS | frozenset({
            "--json", "--lang", "--tensors"
        }),
    ),
    "train": Surface(
        positionals=("model",),
        options=DIMENSIONS | frozenset({
            "--activation-model", "--advise", "--allocator-reserve", "--attention", "--batch", "--check",
            "--config", "--cp", "--cuda-context", "--cuda-module-loading", "--dp", "--dp-shard", "--dropout", "--ep", "--explain",
            "--framework",
            "--gpu", "--gpus", "--grad-accum", "--image-size", "--images", "--json", "--keep-logits", "--zero-grad", "--lang", "--lora-dropout",
            "--lora-modules-to-save", "--lora-rank", "--lora-targets", "--loss", "--loss-chunk", "--loss-parallel", "--max-batch", "--max-seq",
            "--method", "--microbatches", "--no-reshard", "--fsdp-embedding-groups", "--bitsandbytes-version", "--torch-version", "--kbit-prepare", "--qlora-head", "--stable-embedding", "--qlora-double-quant", "--offload", "--optimizer", "--optimizer-impl",
            "--optimizer-in-backward", "--compile", "--per-rank", "--plot", "--pp", "--precision", "--recompute",
            "--selective-policy", "--seq", "--sp", "--stack", "--target-seq", "--tp", "--trainable",
            "--transformers-version", "--vpp", "--workspace", "--zero", "--qlora-base", "--qlora-group-size",
            "--recompute-offload", "--ds-reduce-bucket", "--ds-overlap-comm", "--ds-contiguous-gradients",
            "--ds-prefetch-bucket", "--ds-max-live-params", "--from", "--model-impl", "--lora-dtype"
        }),
    ),
    "infer": Surface(
        positionals=("model",),
        options=DIMENSIONS | frozenset({
            "--advise", "--allreduce-latency-us", "--bandwidth-efficiency", "--batch", "--block-size", "--check",
            "--compute-efficiency", "--config", "--context", "--cuda-context-gib", "--cuda-graph-gib",
            "--cuda-module-loading", "--dp", "--dtype",
            "--enforce-eager", "--engine", "--ep", "--explain", "--gpu", "--gpu-memory-gib",
            "--gpu-memory-utilization", "--group-size", "--json", "--kv-dtype", "--lang",
            "--max-num-batched-tokens", "--max-num-seqs", "--memory-fraction", "--non-torch-gib", "--plot", "--pp",
            "--prompt", "--target-seq", "--image-size", "--images",
            "--rope-scaling", "--tp", "--weights", "--vllm-legacy-allreduce", "--n-gpu-layers",
            "--host-bandwidth-gbps"
        }),
    ),
    "time": Surface(
        positionals=("model",),
        options=DIMENSIONS | frozenset({
            "--attention-flops", "--check", "--co2-kg-per-kwh", "--config", "--days", "--explain", "--gpu",
            "--gpu-multiple", "--gpu-power-w", "--gpus", "--json", "--lang", "--list-prices", "--lora-rank",
            "--lora-targets", "--method", "--mfu", "--peak-tflops", "--precision", "--price", "--pue",
            "--recompute", "--seq", "--target-seq", "--tokens", "--tokens-per-gpu-s", "--trainable-params"
        }) | CLUSTER,
    ),
    "plan": Surface(
        positionals=("model",),
        options=DIMENSIONS | frozenset({
            "--attention-efficiency", "--attention-flops", "--check", "--compare", "--config", "--cp", "--days",
            "--dp-overlap", "--emit", "--emit-out", "--ep", "--explain", "--framework", "--from", "--gemm-efficiency",
            "--global-batch", "--gpu",
            "--gpu-multiple", "--gpus", "--gpus-per-node", "--inter-node-gbps", "--intra-node-gbps", "--json",
            "--lang", "--micro-batch", "--no-hsdp", "--pp", "--precision", "--price", "--rank", "--recompute",
            "--seq", "--tokens", "--top", "--tp", "--tp-overlap", "--vpp", "--zero",
            # serving plan (--serve)
            "--serve", "--rps", "--concurrency", "--prompt", "--output", "--prefix-hit", "--ttft", "--tpot", "--e2e",
            "--percentile", "--weights", "--max-num-batched-tokens", "--max-num-seqs", "--engine", "--disaggregate",
            "--stack", "--schedule", "--attention-impl", "--compile",
        }) | CLUSTER | {"--pue"},
    ),
    "verify": Surface(
        positionals=("model",),
        options=DIMENSIONS | frozenset({
            "--attention", "--batch", "--config", "--context", "--device", "--json", "--keep-logits", "--reserved", "--lang",
            "--lora-rank", "--lora-targets", "--method", "--optimizer", "--optimizer-impl", "--precision",
            "--recompute", "--seq", "--trainable", "--weights", "--workload"
        }),
    ),
    "serve": Surface(
        positionals=(),
        options=frozenset({
            "--host", "--hub", "--lang", "--log-level", "--max-queue", "--port", "--time-limit", "--workers"
        }),
    ),
    "sweep": Surface(
        positionals=("model",),
        options=DIMENSIONS | frozenset({
            "--activation-model", "--allocator-reserve", "--allreduce-latency-us", "--attention",
            "--bandwidth-efficiency", "--batch",
            "--block-size", "--compute-efficiency", "--config", "--context", "--cp", "--cuda-context",
            "--cuda-context-gib", "--cuda-graph-gib", "--dp", "--dp-shard", "--dropout", "--dtype",
            "--enforce-eager",
            "--engine", "--ep", "--framework", "--gpu", "--gpu-memory-gib", "--gpu-memory-utilization",
            "--gpus", "--grad-accum", "--image-size", "--images", "--group-size", "--json", "--keep-logits", "--zero-grad", "--kv-dtype", "--lang",
            "--lora-dropout", "--lora-modules-to-save", "--lora-rank", "--lora-targets", "--loss", "--loss-chunk",
            "--max-num-batched-tokens", "--max-num-seqs", "--memory-fraction", "--method", "--microbatches", "--mode",
            "--no-reshard", "--fsdp-embedding-groups", "--bitsandbytes-version", "--torch-version", "--kbit-prepare", "--qlora-head", "--stable-embedding", "--qlora-double-quant", "--non-torch-gib", "--offload", "--optimizer", "--optimizer-impl", "--over",
            "--plot", "--pp", "--precision", "--prompt", "--recompute", "--rope-scaling", "--seq", "--sp", "--target-seq",
            "--tp", "--trainable", "--transformers-version", "--values", "--vllm-legacy-allreduce", "--n-gpu-layers", "--host-bandwidth-gbps", "--vpp",
            "--weights", "--workspace",
            "--zero", "--cuda-module-loading", "--loss-parallel", "--optimizer-in-backward", "--compile",
            "--selective-policy",
            "--stack", "--qlora-base", "--qlora-group-size", "--recompute-offload", "--ds-reduce-bucket",
            "--ds-overlap-comm", "--ds-contiguous-gradients", "--ds-prefetch-bucket", "--ds-max-live-params",
            "--model-impl", "--lora-dtype"
        }),
    ),
    "compare": Surface(
        positionals=("scenarios",),
        options=frozenset({
            "--command", "--json", "--lang"
        }),
    ),
}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


@pytest.fixture(scope="module")
def subparsers() -> dict[str, argparse.ArgumentParser]:
    return _subparsers()


def _surface(p: argparse.ArgumentParser) -> Surface:
    options = frozenset(o for a in p._actions for o in a.option_strings if o not in ("-h", "--help"))
    positionals = tuple(a.dest for a in p._actions if not a.option_strings)
    return Surface(positionals, options)


def test_the_set_of_commands_is_frozen(subparsers):
    assert list(subparsers) == list(SURFACE)


@pytest.mark.parametrize("command", list(SURFACE))
def test_each_commands_options_are_frozen(subparsers, command):
    actual = _surface(subparsers[command])
    expected = SURFACE[command]
    assert actual.positionals == expected.positionals
    added = sorted(actual.options - expected.options)
    removed = sorted(expected.options - actual.options)
    assert not added and not removed, (
        f"gpuplan {command}: options added {added}, removed {removed}; if on purpose, update SURFACE here and "
        "docs/interface.md")


# --- the promised interface's option lists ------------------------------------------------------------------

def _interface_sections() -> dict[str, str]:
    """The text of docs/interface.md's "Common options", "Training options", "Inference options" and "Time options"
    lists (the promised part of the file)."""
    text = INTERFACE_MD.read_text(encoding="utf-8")
    marks = ["Common options:", "Training options include", "Inference options include", "Time options include",
             "Counts accept"]
    starts = [text.index(m) for m in marks]
    assert starts == sorted(starts), "the option lists of docs/interface.md are no longer in the expected order"
    return {name: text[starts[i]:starts[i + 1]]
            for i, name in enumerate(("common", "training", "inference", "time"))}


def _named_options(section: str) -> dict[str, set[str]]:
    """Every `--option [VALUE|VALUE]` inside backticks: option -> the values listed with it (may be empty)."""
    named: dict[str, set[str]] = {}
    for span in re.findall(r"`([^`]*)`", section):
        current = None
        for token in span.split():
            if token.startswith("--"):
                current = token
                named.setdefault(current, set())
            elif current is not None:
                named[current].update(token.split("|"))
    return named


# Which commands each promised list applies to: the common options to the two memory commands (time has --check
# but no --advise; docs/interface.md's second part has the table per command).
SECTION_COMMANDS = {"common": ("train", "infer"), "training": ("train",), "inference": ("infer",),
                    "time": ("time",)}


def test_interface_lists_are_found():
    sections = _interface_sections()
    assert {"--gpu", "--json", "--explain", "--check", "--advise"} <= set(_named_options(sections["common"]))
    assert {"--precision", "--zero", "--per-rank"} <= set(_named_options(sections["training"]))
    assert {"--engine", "--kv-dtype"} <= set(_named_options(sections["inference"]))
    assert {"--tokens", "--mfu", "--price"} <= set(_named_options(sections["time"]))


@pytest.mark.parametrize("section", list(SECTION_COMMANDS))
def test_every_option_the_interface_names_exists(subparsers, section):
    named = _named_options(_interface_sections()[section])
    assert named
    for command in SECTION_COMMANDS[section]:
        actions = {o: a for a in subparsers[command]._actions for o in a.option_strings}
        missing = sorted(set(named) - set(actions))
        assert not missing, f"docs/interface.md ({section}) names {missing}, which `gpuplan {command}` lacks"
        for option, values in named.items():
            choices = actions[option].choices
            if choices is None or not values:
                continue  # free-form value (an id, a glob, a metavar such as ID)
            allowed = {str(c) for c in choices}
            assert values <= allowed, (
                f"docs/interface.md ({section}) lists {option} {sorted(values - allowed)}, which `gpuplan "
                f"{command}` does not accept (choices: {sorted(allowed)})")
