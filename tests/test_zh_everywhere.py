"""``--lang zh`` everywhere a person reads: every command's text output holds no line of English prose (the rule is
in tests/zh_prose.py), the engines' free text goes through one catalog (strings.toml messages, the glossary and the
pattern table strings_patterns.toml), the JSON and the English text stay English, and the glossary gives one Chinese
term per concept."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from gpuplan.cli.main import main
from gpuplan.i18n import glossary, localize, patterns, strings, translate_line
from gpuplan.cli.render import display_width

sys.path.insert(0, str(Path(__file__).parent))
from zh_prose import CJK, english_lines, prose_runs  # noqa: E402

DS_CONFIG = "tests/data/configs/dsexamples_zero_offload.json"
TINY = ["--layers", "2", "--hidden", "128", "--heads", "4", "--kv-heads", "2", "--vocab", "1024"]

COMMANDS = [
    ["models", "llama"],
    ["gpus"],
    ["params", "mixtral-8x7b-v0.1"],
    ["train", "llama-3.1-8b", "--gpu", "h100-sxm"],
    ["train", "llama-3.1-70b", "--gpus", "64", "--tp", "8", "--pp", "4", "--zero", "1", "--per-rank",
     "--gpu", "h100-sxm"],
    ["train", "llama-3.1-8b", "--gpu", "a100-80gb", "--method", "lora"],
    ["train", "llama-3.1-8b", "--gpu", "a100-80gb", "--method", "qlora", "--recompute", "selective"],
    ["train", "llama-3.1-8b", "--gpu", "a100-40gb", "--advise"],
    ["train", "llama-3.1-8b", "--gpu", "h100-sxm", "--explain"],
    ["train", *TINY, "--stack", "litgpt", "--method", "lora", "--explain"],
    ["train", "gpt2", "--stack", "litgpt", "--seq", "128"],
    ["train", *TINY, "--stack", "torchtitan", "--recompute", "none"],
    ["train", "llama-3.1-8b", "--from", DS_CONFIG, "--gpus", "8"],
    ["infer", "llama-3.1-8b", "--gpu", "h100-sxm"],
    ["infer", "llama-3.1-8b", "--gpu", "h100-sxm", "--engine", "vllm", "--explain"],
    ["infer", "llama-3.1-8b", "--gpu", "h100-sxm", "--explain"],
    ["infer", "llama-3.1-70b", "--gpu", "a100-40gb", "--advise"],
    ["time", "llama-3.1-8b", "--tokens", "1T", "--gpus", "64", "--gpu", "h100-sxm"],
    ["plan", "llama-3.1-8b", "--gpu", "h100-sxm", "--gpus", "8", "--explain"],
    ["time", "--params", "70B", "--tokens", "2T", "--gpu", "a800", "--days", "90", "--mfu", "0.4", "--gpu-multiple", "16",
     "--cluster"],
    ["plan", "llama-3.1-70b", "--serve", "--rps", "20", "--prompt", "2000", "--output", "500", "--ttft", "1",
     "--tpot", "0.05", "--gpu", "h100-sxm,a100-80gb", "--explain"],
    ["infer", "llama-3.1-8b", "--engine", "sglang", "--gpu", "h100-sxm"],
    ["infer", "llama-3.1-8b", "--engine", "llamacpp", "--weights", "q4_k_m", "--gpu", "rtx-4090", "--n-gpu-layers", "20"],
    ["sweep", "llama-3.1-8b", "--gpu", "h100-sxm", "--over", "batch", "--values", "1,2,4"],
    # a family without rules, traced (gpuplan.commands.generic)
    ["params", "tests/data/families/cohere2-tiny.json"],
    ["infer", "tests/data/families/olmoe-tiny.json", "--context", "128", "--gpu", "h100-sxm"],
]


def _zh(capsys, argv: list[str]) -> str:
    assert main(argv + ["--lang", "zh"]) in (0, 3)
    captured = capsys.readouterr()
    return captured.out + captured.err


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a))
def test_no_english_prose_in_chinese_output(argv, capsys):
    out = _zh(capsys, argv)
    assert CJK.search(out)
    left = english_lines(out)
    assert not left, f"English left in `gpuplan {' '.join(argv)} --lang zh`:\n" + "\n".join(left)


def test_compare_of_two_scenarios(capsys, tmp_path):
    a, b = tmp_path / "full.toml", tmp_path / "lora.toml"
    a.write_text('command = "train"\nmodel = "llama-3.1-8b"\ngpu = "a100-80gb"\n', encoding="utf-8")
    b.write_text('command = "train"\nmodel = "llama-3.1-8b"\ngpu = "a100-80gb"\nmethod = "lora"\n', encoding="utf-8")
    out = _zh(capsys, ["compare", str(a), str(b)])
    assert "LoRA" in out or "lora" in out
    assert not english_lines(out), english_lines(out)


def test_verify_text():
    """verify's text (the part that needs no PyTorch: the comparison of a measurement with the estimate), with the
    notes the CPU tracer writes (gpuplan.verify.trace)."""
    from gpuplan.cli.cmd_verify import render
    from gpuplan.model.presets import load_presets
    from gpuplan.verify.result import Breakdown, Measurement
    from gpuplan.verify.setup import TrainSetup

    spec = load_presets()["llama-3.2-1b"].spec()
    setup = TrainSetup(batch=1, seq=32)
    notes = (f"second training step of 1x32 tokens, {setup.precision}, {setup.optimizer} ({setup.optimizer_impl}), "
             f"recompute {setup.recompute}, {setup.method}",
             "146 Adam step counters excluded: PyTorch keeps them on the CPU (non-fused Adam)")
    components = {"weights_bytes": 2 << 30, "gradients_bytes": 2 << 30, "allocated_peak_bytes": 9 << 30}
    measured = Measurement(backend="cpu-trace", kind="train", allocated_peak_bytes=9 << 30, peak_phase="optimizer",
                           at_peak=Breakdown(), phases={}, components=components, params_total=1, params_trainable=1,
                           wall_s=1.0, notes=notes)
    out = render(spec, setup, measured, {k: v + (1 << 20) for k, v in components.items()},
                 {"notes": list(notes)}, "zh")
    assert "实测峰值出现在：优化器更新" in out and "第二个训练步" in out
    assert not english_lines(out), english_lines(out)
    english = render(spec, setup, measured, None, {"notes": list(notes)}, "en")
    assert "measured peak during: optimizer" in english and notes[0] in english


def test_the_checker_finds_english():
    """The rule is strict: an English sentence, an English label or two English words on a line without Chinese
    fail; names, numbers, flags and a quoted source pass."""
    assert prose_runs("  - the loop drops the logits")
    assert prose_runs("  ignored:")
    assert prose_runs("    formula: Σ tensors")
    assert prose_runs("损失：standard cross-entropy on fp32 logits, which the loop drops")
    assert not prose_runs("精度 bf16（来源：torch/optim/adamw.py states per element of the parameter dtype）")
    assert not prose_runs("  --gpu h100-sxm --optimizer adamw --recompute none")
    assert not prose_runs("h100-sxm     NVIDIA GB200 (one Blackwell GPU of a GB200 superchip)   184.3")
    assert not prose_runs("    输入： tokens=2,048; vocab=128,256; impl=standard")
    assert prose_runs("中文 the user's pool keeps every block of Megatron's run")  # apostrophes are not quotes
    assert not prose_runs("    公式： 2 x kv_heads_per_gpu x head_dim x b x layers")
    assert not prose_runs("vLLM 启动时会失败（报错：'No available memory for the cache blocks'）")


def test_json_and_english_text_unchanged_by_the_catalog(capsys):
    """The engines still write English: the JSON is the same under --lang zh, and English text is never rewritten."""
    argv = ["train", "llama-3.1-8b", "--gpu", "h100-sxm", "--json"]
    main(argv + ["--lang", "en"])
    english = capsys.readouterr().out
    main(argv + ["--lang", "zh"])
    assert capsys.readouterr().out == english
    assert "steady state (second and later steps)" in english
    line = "offloaded to host memory per GPU: 15.0 GiB (host_bytes)"
    assert localize(line, "en") == line
    assert localize(line, "zh") == "每卡卸载到主机内存：15.0 GiB（host_bytes）"


def test_pattern_groups_translate_in_turn():
    """A group is a line of its own (a phase, an option value, a glossary term); a source group stays as written."""
    assert translate_line("max over phases; peak in 'optimizer step'", "zh") == "各阶段的最大值；峰值在“优化器更新”"
    assert translate_line("same layout, recompute full", "zh") == "同一布局，重计算 完整"
    assert translate_line("stack deepspeed set optimizer-impl = fused (deepspeed/ops/adam/fused_adam.py FusedAdam)",
                          "zh") == "框架 deepspeed 设定 optimizer-impl = fused（来源：deepspeed/ops/adam/fused_adam.py FusedAdam）"
    assert translate_line("a line no pattern knows", "zh") == "a line no pattern knows"


def test_patterns_are_well_formed():
    """Every template names exactly its regex's groups (checked on load), and no two patterns share an English
    regex."""
    regexes = [r.pattern for r, _ in patterns()]
    assert len(regexes) == len(set(regexes))
    assert len(regexes) > 50


def _zh_texts() -> list[tuple[str, str, str]]:
    """(where, English, Chinese) of every catalog entry and every pattern."""
    out = [(f"strings.toml {k}", e["en"], e["zh"]) for k, e in strings().items()]
    out += [(f"strings_patterns.toml {r.pattern}", r.pattern, zh) for r, zh in patterns()]
    return out


def test_pattern_table_uses_chinese_punctuation():
    """The rule of test_zh_output for the catalog, for the Chinese templates of the pattern table."""
    bad = []
    for regex, zh in patterns():
        if not CJK.search(zh):
            continue
        if re.search(r"[,;:](?= |[\u3400-\u9fff])", zh) or re.search(r"[\u3400-\u9fff] ?\(|\) ?[\u3400-\u9fff]", zh):
            bad.append(zh)
    assert not bad, "\n".join(bad)


def test_glossary_one_chinese_term_per_english_term():
    """Wherever the English of a catalog entry or pattern uses a glossary term, its Chinese uses the glossary's
    Chinese term (never a second translation of it)."""
    bad = []
    for en_term, zh_term in glossary().items():
        word = re.compile(rf"(?<![\w-]){re.escape(en_term)}(?:e?s)?(?![\w-])")
        for where, en, zh in _zh_texts():
            if word.search(en.replace("\\", "")) and CJK.search(zh) and zh_term not in zh:
                bad.append(f"{where}: {en_term!r} -> {zh!r} (glossary: {zh_term})")
    assert not bad, "\n".join(bad)


def test_glossary_has_the_source_documents_terms():
    zh_terms = set(glossary().values())
    for term in ("显存", "梯度", "优化器状态", "激活值", "张量并行", "流水线并行", "数据并行", "专家并行", "上下文并行",
                 "激活重计算", "预填充", "解码", "主权重", "分片", "卸载"):
        assert term in zh_terms


def test_advice_headings_in_the_right_order(capsys):
    """A setup that fits never gets the heading of what to do when memory runs out; one that does not fit does."""
    from gpuplan.i18n import t

    not_enough = t("section.advice", "zh")
    out = _zh(capsys, ["train", "llama-3.1-8b", "--gpu", "h100-sxm", "--method", "lora", "--advise"])
    assert t("section.advice_fits", "zh") in out and not_enough not in out
    out = _zh(capsys, ["train", "llama-3.1-8b", "--gpu", "a100-40gb", "--advise"])
    assert not_enough in out


@pytest.mark.parametrize("argv", [
    ["train", "llama-3.1-8b", "--gpu", "a100-40gb", "--advise"],
    ["train", "llama-3.1-70b", "--gpus", "64", "--tp", "8", "--pp", "4", "--zero", "1", "--per-rank"],
], ids=["advice", "per-rank"])
def test_tables_with_chinese_stay_aligned(argv, capsys):
    """In every row of a table the two-space gaps between columns fall on the same terminal columns as in the rule
    under the header (Chinese characters take two columns)."""
    lines = _zh(capsys, argv).splitlines()
    rules = [i for i, line in enumerate(lines) if re.fullmatch(r"-+(  -+)+", line)]
    assert rules
    for i in rules:
        gaps = [m.end() for m in re.finditer(r"-+", lines[i])][:-1]
        rows = [lines[i - 1]]
        for row in lines[i + 1:]:
            if "  " not in row.strip():
                break  # the table ended
            rows.append(row)
        assert len(rows) > 1
        for row in rows:
            cells = _by_column(row)
            for g in gaps:
                assert cells.get(g, " ") == " " and cells.get(g + 1, " ") == " ", (row, g)


def _by_column(row: str) -> dict[int, str]:
    """The character at each terminal column of ``row`` (a wide character fills two)."""
    out, col = {}, 0
    for ch in row:
        for _ in range(display_width(ch)):
            out[col] = ch
            col += 1
    return out
