"""Chinese output: the catalogued names (memory components, phases, option values, table headers) never stay
English under ``--lang zh``, and Chinese sentences of the catalog use Chinese punctuation."""

from __future__ import annotations

import re

import pytest

from gpuplan.cli.main import main
from gpuplan.i18n import phase_label, strings

CJK = re.compile(r"[\u3400-\u9fff]")

COMMANDS = [
    ["train", "llama-2-7b-hf", "--gpu", "a100-80gb", "--gpus", "8", "--framework", "deepspeed"],
    ["train", "llama-3.1-8b", "--gpu", "h100-sxm", "--recompute", "full", "--method", "lora"],
    ["train", "llama-3.1-70b", "--gpus", "64", "--tp", "8", "--pp", "4", "--zero", "1", "--per-rank"],
    ["infer", "llama-3.1-8b", "--gpu", "h100-sxm"],
    ["infer", "llama-3.1-8b", "--gpu", "h100-sxm", "--engine", "vllm"],
    ["time", "llama-3.1-8b", "--tokens", "1T", "--gpus", "64", "--gpu", "h100-sxm"],
    ["params", "mixtral-8x7b-v0.1"],
]

# English catalog names that must not appear in Chinese output (whole words, case-sensitive)
NAME_PREFIXES = ("memory.", "phase.", "value.recompute.", "value.bound.")


def _english_names() -> set[str]:
    out = set()
    for key, entry in strings().items():
        if key.startswith(NAME_PREFIXES) and "{" not in entry["en"] and entry["en"] != entry["zh"]:
            if len(entry["en"]) > 4 or " " in entry["en"]:  # short words (none, full) also occur in flags
                out.add(entry["en"])
    return out


def _catalog_part(text: str) -> str:
    """The output without its source citations (the text after "来源：", quoted as written); the engines'
    assumptions and warnings are printed through the catalog too, so they are kept."""
    return "\n".join(re.sub(r"来源：.*?(?=）|$)", "", line) for line in text.splitlines())


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2] + a[-2:]))
def test_no_catalogued_english_name_in_chinese_output(argv, capsys):
    assert main(argv + ["--lang", "zh"]) in (0, 3)
    text = _catalog_part(capsys.readouterr().out)
    assert CJK.search(text)
    left = sorted(n for n in _english_names() if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text))
    assert not left, f"untranslated in `gpuplan {' '.join(argv)} --lang zh`: {left}"


def test_phase_names_translate_with_their_numbers():
    assert phase_label("stage 2: layer 31 backward", "zh") == "流水线第 2 段：第 31 层反向"
    assert phase_label("stage 2: layer 31 backward", "en") == "stage 2: layer 31 backward"
    assert phase_label("forward (recomputed layer)", "zh") == "前向（重计算的层）"
    assert phase_label("something new", "zh") == "something new"


def test_chinese_sentences_use_chinese_punctuation():
    """In a zh string with Chinese text: no ASCII comma, semicolon or colon followed by a space or a Chinese
    character, and no ASCII parentheses around Chinese text or closing right before it."""
    bad = []
    for key, entry in strings().items():
        zh = entry["zh"]
        if not CJK.search(zh):
            continue
        # ASCII parentheses around Chinese text, or closing right before it (a formula such as (p/2-1)/3 may stay)
        if re.search(r"[,;:](?= |[\u3400-\u9fff])", zh) or re.search(r"\([^()]*[\u3400-\u9fff][^()]*\)|\) ?[\u3400-\u9fff]", zh):
            bad.append(f"{key}: {zh}")
    assert not bad, "\n".join(bad)


def test_one_term_for_one_thing():
    """The glossary: KV cache is 'KV 缓存' everywhere (never 'KV Cache' beside it)."""
    assert not [k for k, e in strings().items() if "KV Cache" in e["zh"]]
