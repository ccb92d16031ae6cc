"""gpuplan.api: the commands as Python functions, equal to the CLI's JSON; docs/python-api.md runs as written."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from gpuplan import api
from gpuplan.cli.main import main
from gpuplan.errors import InputError

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def cli_json(argv: list[str]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*argv, "--json"]) in (0, None)
    return json.loads(out.getvalue())


@pytest.mark.parametrize("command, model, options, argv", [
    ("train", "llama-3.1-8b", {"batch": 4, "seq": 4096, "gpu": "h100-sxm", "recompute": "full"},
     ["--batch", "4", "--seq", "4096", "--gpu", "h100-sxm", "--recompute", "full"]),
    ("train", "qwen2.5-7b", {"method": "lora", "lora_targets": ["q_proj", "v_proj"], "keep_logits": True},
     ["--method", "lora", "--lora-targets", "q_proj,v_proj", "--keep-logits"]),
    ("infer", "llama-3.1-70b", {"weights": "awq", "context": "32k", "gpu": "a100-80gb", "tp": 2},
     ["--weights", "awq", "--context", "32k", "--gpu", "a100-80gb", "--tp", "2"]),
    ("time", "llama-3.1-8b", {"tokens": "15T", "gpus": 1024, "gpu": "h100-sxm", "price": 2.0},
     ["--tokens", "15T", "--gpus", "1024", "--gpu", "h100-sxm", "--price", "2.0"]),
    ("params", None, {"layers": 2, "hidden": 64, "heads": 4}, ["--layers", "2", "--hidden", "64", "--heads", "4"]),
])
def test_equals_cli_json(command, model, options, argv):
    assert api.run(command, model, **options) == cli_json([command, *([model] if model else []), *argv])


def test_shortcuts_and_listings():
    assert api.params("llama-3.1-8b")["total"] == 8_030_261_248
    assert api.models("llama") == cli_json(["models", "llama"])
    assert api.gpus("h100") == cli_json(["gpus", "h100"])
    names = [o["name"] for o in api.options("train")]
    assert "batch" in names and "zero" in names
    assert not {"plot", "config", "json", "check", "lang"} & set(names)  # files and printed text only


@pytest.mark.parametrize("options, field, words", [
    ({"batch": 0}, "batch", "between 1 and"),
    ({"precision": "fp64"}, "precision", "must be one of"),
    ({"bacth": 2}, "bacth", "did you mean batch"),
    ({"keep_logits": "yes"}, "keep_logits", "True or False"),
])
def test_bad_options_name_field_and_value(options, field, words):
    with pytest.raises(InputError) as err:
        api.train("llama-3.1-8b", **options)
    assert err.value.field == field and err.value.value == options[field]
    assert words in str(err.value)


def test_model_rules():
    with pytest.raises(InputError, match="takes no model"):
        api.run("models", "llama-3.1-8b")
    with pytest.raises(InputError, match="must be one of"):
        api.run("serve")


def test_documented_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 2
    for block in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, str(DOC), "exec"), {})
        assert out.getvalue()


def test_sweep_equals_its_points():
    from gpuplan import api

    got = api.sweep("llama-3.1-8b", over="batch", values="1,4", gpu="h100-sxm", seq=1024)
    for row in got["rows"]:
        point = api.train("llama-3.1-8b", batch=row["value"], gpu="h100-sxm", seq=1024)
        assert row["memory"] == point["memory"] and row["fits"] == point["fits"]
