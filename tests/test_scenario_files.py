"""Scenario files (--config): loading, checking against a command's options, merging under the command line,
round trip; and the i18n / progress helpers the human-readable output uses."""

from __future__ import annotations

import argparse
import importlib
import sys

import pytest

from gpuplan.errors import InputError
from gpuplan.options import command_options
from gpuplan.scenario import add_config_argument, dump_scenario, explicit_options, load_scenario, scenario_defaults


def command_parser(name: str) -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="gpuplan")
    sub = top.add_subparsers(dest="command")
    p = importlib.import_module(f"gpuplan.cli.cmd_{name}").add_parser(sub)
    add_config_argument(p)
    return top


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_toml_values_become_the_options(tmp_path):
    path = write(tmp_path, "s.toml", 'command = "params"\nmodel = "llama-3.1-8b"\njson = true\nhidden = "4k"\n')
    top = command_parser("params")
    # hidden and a MODEL together are refused later by the command; here only parsing is checked
    args = top.parse_args(["params", "--config", path])
    assert args.model == "llama-3.1-8b" and args.json is True and args.hidden == 4000


def test_command_line_wins_over_the_file(tmp_path):
    path = write(tmp_path, "s.toml", 'model = "llama-3.1-8b"\nheads = 32\njson = true\n')
    top = command_parser("params")
    args = top.parse_args(["params", "qwen2.5-7b", "--heads", "8", "--config", path])
    assert args.model == "qwen2.5-7b" and args.heads == 8 and args.json is True
    # the parser's own defaults are restored after a parse with a scenario
    plain = top.parse_args(["params", "x"])
    assert plain.heads is None and plain.json is False and plain.config is None


def test_option_spellings(tmp_path):
    path = write(tmp_path, "s.toml", '"--kv-heads" = 8\nhead_dim = 128\ntop-k = 2\n')
    args = command_parser("params").parse_args(["params", "--config", path])
    assert (args.kv_heads, args.head_dim, args.top_k) == (8, 128, 2)


@pytest.mark.parametrize("text, message", [
    ("hedas = 32\n", "did you mean heads"),
    ("json = 1\n", "is a flag"),
    ("heads = true\n", "is not a flag"),
    ("heads = -3\n", "heads=-3"),
    ("heads = 0\n", "must be >= 1"),
    ('command = "infer"\n', "is for `gpuplan infer`"),
    ("[section]\nheads = 3\n", "nested tables"),
    ("heads = ", "not valid TOML"),
])
def test_bad_scenarios_exit_2_with_the_key(tmp_path, capsys, text, message):
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(SystemExit) as exc:
        command_parser("params").parse_args(["params", "--config", path])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "bad.toml" in err


def test_suffix_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="must end in .toml"):
        load_scenario(write(tmp_path, "s.json", "{}"))
    with pytest.raises(InputError, match="cannot be read"):
        load_scenario(tmp_path / "nope.toml")


def test_yaml_scenario(tmp_path):
    pytest.importorskip("yaml")
    path = write(tmp_path, "s.yaml", "command: params\nname: eight billion\nmodel: llama-3.1-8b\njson: true\n")
    scenario = load_scenario(path)
    assert scenario.name == "eight billion" and scenario.command == "params"
    args = command_parser("params").parse_args(["params", "--config", path])
    assert args.model == "llama-3.1-8b" and args.json


def test_yaml_without_pyyaml_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml -> ImportError
    path = write(tmp_path, "s.yml", "model: x\n")
    with pytest.raises(InputError, match=r"gpuplan\[yaml\]"):
        load_scenario(path)


def test_model_path_is_relative_to_the_scenario(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text("{}")
    scenario = load_scenario(write(tmp_path, "s.toml", 'model = "cfg/config.json"\n'))
    assert scenario.options["model"] == str(tmp_path / "cfg" / "config.json")


def test_round_trip(tmp_path):
    top = command_parser("params")
    sub = top._subparsers._group_actions[0].choices["params"]
    explicit = top.parse_args(["params", "llama-3.1-8b", "--json", "--vocab", "128k", "--kv-heads", "8"])
    options = explicit_options(sub, explicit)
    assert options == {"model": "llama-3.1-8b", "json": True, "vocab": 128000, "kv-heads": 8}
    text = dump_scenario(options, command="params", name="round trip")
    path = write(tmp_path, "rt.toml", text)
    scenario = load_scenario(path)
    assert scenario.name == "round trip"
    assert scenario_defaults(command_options("params"), scenario, "params") == {"model": "llama-3.1-8b", "json": True, "vocab": 128000,
                                                          "kv_heads": 8}
    again = top.parse_args(["params", "--config", path])
    assert {k: v for k, v in vars(again).items() if k != "config"} == \
        {k: v for k, v in vars(explicit).items() if k != "config"}


def test_dump_refuses_what_toml_cannot_hold():
    with pytest.raises(InputError):
        dump_scenario({"mfu": float("nan")})
    with pytest.raises(InputError):
        dump_scenario({"x": {"a": 1}})


# --- i18n and progress -------------------------------------------------------------------------------------------

def test_every_string_has_both_languages_and_placeholders_match():
    import re

    from gpuplan.i18n import strings

    table = strings()
    assert len(table) > 50
    for key, entry in table.items():
        en, zh = entry["en"], entry["zh"]
        assert en and zh, key
        assert set(re.findall(r"{(\w+)}", en)) == set(re.findall(r"{(\w+)}", zh)), key


def test_language_from_locale_and_option():
    from gpuplan.i18n import default_lang, normalize_lang, t, tr_headers

    assert default_lang({"LANG": "zh_CN.UTF-8"}) == "zh"
    assert default_lang({"LC_ALL": "en_US.UTF-8", "LANG": "zh_CN.UTF-8"}) == "en"  # LC_ALL takes precedence
    assert default_lang({"GPUPLAN_LANG": "zh", "LC_ALL": "C"}) == "zh"
    assert default_lang({}) == "en"
    assert normalize_lang("zh-TW") == "zh"
    assert t("memory.optimizer_bytes", "zh") == "优化器状态"
    assert t("memory.optimizer_bytes", "en") == "optimizer states"
    assert t("no.such.key", "zh") == "no.such.key"
    assert tr_headers(["component", "unknown"], "zh") == ["组成", "unknown"]


def test_progress_draws_nothing_off_a_terminal(capsys):
    from gpuplan.progress import enabled, progress, track

    assert not enabled()  # pytest captures stdout: not a TTY
    with progress(3, "x") as advance:
        advance()
    assert list(track([1, 2, 3], "y")) == [1, 2, 3]
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_progress_with_rich_renders_to_stderr(monkeypatch):
    pytest.importorskip("rich")
    from gpuplan.progress import progress

    with progress(2, "work", show=True) as advance:  # forced on: must not raise off a terminal
        advance()
        advance()


def test_train_scenario_round_trip_through_the_cli(tmp_path):
    """A scenario written from explicit options gives `gpuplan train` exactly the same answer."""
    import contextlib
    import io
    import json

    from gpuplan.cli.main import main

    def train(argv):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(["train", *argv, "--json"]) == 0
        return json.loads(buf.getvalue())

    argv = ["llama-3.1-8b", "--gpu", "h100-sxm", "--method", "lora", "--lora-targets", "q_proj,v_proj",
            "--seq", "4k", "--recompute", "full", "--keep-logits"]
    explicit = train(argv)
    parser = command_parser("train")._subparsers._group_actions[0].choices["train"]
    options = explicit_options(parser, parser.parse_args(argv))
    path = write(tmp_path, "lora.toml", dump_scenario(options, command="train", name="LoRA"))
    assert train(["--config", path]) == explicit
    assert train(["--config", path, "--seq", "2048"])["memory"] != explicit["memory"]  # the command line wins
