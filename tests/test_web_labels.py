"""What forms show of each option (``GET /api/v1/options``): a human label in English and Chinese, help in both, the
unit of the typed number, the known values of free-text options; derived for an option declared without them."""

from __future__ import annotations

import re

import pytest

from gpuplan.commands.registry import describe, load_commands
from gpuplan.options import Option
from gpuplan.options.labels import HELP, LABELS, UNITS, derived_label, label_of

FORM_COMMANDS = ("train", "infer", "time", "plan", "sweep")
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def described():
    return describe(load_commands().values())


def test_every_option_of_every_form_has_a_label_and_help_in_both_languages(described):
    for command in FORM_COMMANDS:
        for o in described[command]["options"]:
            where = f"{command} {o['name']}"
            assert o["label"] and o["label_zh"], where
            assert not o["label"].startswith("-") and "_" not in o["label"], where  # words, not a flag or a key
            assert o["help"] and o.get("help_zh"), f"{where}: no help for the form"


def test_common_options_have_written_labels_and_chinese_ones():
    for name in ("batch", "seq", "grad_accum", "method", "precision", "engine", "weights", "kv_dtype", "gpus", "tp",
                 "cuda_context", "workspace", "tokens", "days", "price", "global_batch"):
        en, zh = LABELS[name]
        assert en and CJK.search(zh), name
    assert LABELS["grad_accum"][0] == "Gradient accumulation steps"


def test_a_new_option_gets_a_derived_label_at_once():
    assert derived_label("kv_block_count") == "KV block count"
    assert derived_label("max_gpus_per_node") == "Max GPUs per node"
    assert label_of("some_new_option") == ("Some new option", "Some new option")
    opt = Option("some_new_option", "count", "--some-new-option", help="h", help_zh="帮助")
    d = opt.as_dict()
    assert d["label"] == "Some new option" and d["flag"] == "--some-new-option"
    own = Option("x", "count", "--x", title="Own label", title_zh="自己的标签").as_dict()
    assert (own["label"], own["label_zh"]) == ("Own label", "自己的标签")


def test_units_of_typed_numbers(described):
    train = {o["name"]: o for o in described["train"]["options"]}
    infer = {o["name"]: o for o in described["infer"]["options"]}
    assert train["cuda_context"]["unit"] == "MiB" and train["workspace"]["unit"] == "MiB"
    assert train["allocator_reserve"]["unit"] == "fraction"
    assert train["seq"]["unit"] == "tokens"
    for name in ("gpu_memory_gib", "non_torch_gib", "cuda_graph_gib", "cuda_context_gib"):
        assert infer[name]["unit"] == "GiB", name
    assert "unit" not in train["batch"]
    assert set(UNITS) <= {o["name"] for c in FORM_COMMANDS for o in described[c]["options"]}


def test_free_text_options_offer_their_known_values(described):
    infer = {o["name"]: o for o in described["infer"]["options"]}
    assert infer["engine"]["suggest"] == ["hf", "vllm"]
    assert {"auto", "bf16", "fp8", "int4", "awq", "gptq"} <= set(infer["weights"]["suggest"])
    assert {"auto", "bf16", "fp8", "int8", "int4"} <= set(infer["kv_dtype"]["suggest"])
    for name in ("engine", "weights", "kv_dtype"):
        assert infer[name]["default"] in infer[name]["suggest"], name
    # every known value is one the command accepts
    from gpuplan.api import infer as run_infer

    for w in infer["weights"]["suggest"]:
        assert run_infer("llama-3.1-8b", weights=w)["memory"]["total_bytes"] > 0, w


def test_form_help_fills_only_options_without_their_own():
    for command in FORM_COMMANDS:
        for opt in load_commands()[command].options:
            shown = opt.as_dict()
            if opt.help:
                assert shown["help"] == opt.help and shown.get("help_zh") == opt.help_zh
            else:
                assert shown["help"] == HELP[opt.name][0]
