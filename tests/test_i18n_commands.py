"""``--lang zh`` on params, models, gpus, time, plan and verify: Chinese headers, labels and fixed notes, no English
header left, English output unchanged, and the JSON identical in both languages."""

from __future__ import annotations

import json
import re

import pytest

from gpuplan.cli.main import main
from gpuplan.i18n import Message, localize, message, t

# A string-table key printed as it is (a key missing from strings.toml prints itself).
KEY_LEAK = re.compile(r"\b(?:params|models|gpus|prices|time|plan|verify|component|word|section)\.[a-z_]+\b")
TINY = ["--layers", "2", "--hidden", "128", "--heads", "4", "--kv-heads", "2", "--vocab", "1024"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def zh(capsys, *argv: str) -> str:
    code, out, err = run(capsys, *argv, "--lang", "zh")
    assert code == 0, err
    assert not KEY_LEAK.findall(out + err), KEY_LEAK.findall(out + err)
    return out


def en(capsys, *argv: str) -> str:
    code, out, err = run(capsys, *argv, "--lang", "en")
    assert code == 0, err
    return out


def header_line(text: str, after: str | None = None) -> str:
    """The header row of the first table (the line above the first ``---`` rule), after line ``after`` if given."""
    lines = text.splitlines()
    start = lines.index(after) + 1 if after else 0
    for i in range(start, len(lines)):
        if lines[i].startswith("---"):
            return lines[i - 1]
    raise AssertionError(f"no table in {text!r}")


def absent(words: list[str], text: str) -> None:
    for word in words:
        assert not re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text), (word, text)


def test_params(capsys):
    out = zh(capsys, "params", "deepseek-v3")
    assert "61 层" in out and "词表大小 129280" in out
    head = header_line(out)
    assert "组成" in head and "参数量" in head
    for label in ("词嵌入", "注意力", "专家（MoE）", "路由器", "总计", "每 token 激活参数量", "MTP 模块（不计入总计）"):
        assert label in out
    absent(["component", "parameters", "layers", "hidden", "heads", "vocab", "total", "embedding", "router",
            "active per token"], out)
    english = en(capsys, "params", "deepseek-v3")
    assert header_line(english).split() == ["component", "parameters"]
    assert "active per token" in english and "MTP modules (not in total)" in english


def test_params_tensors(capsys):
    out = zh(capsys, "params", *TINY, "--tensors")
    assert header_line(out).split() == ["张量", "形状", "组成", "参数量"]
    assert "model.embed_tokens.weight" in out and "词嵌入" in out  # checkpoint names stay as they are
    assert header_line(en(capsys, "params", *TINY, "--tensors")).split() == ["tensor", "shape", "component", "params"]


def test_models(capsys):
    out = zh(capsys, "models", "llama")
    head = header_line(out)
    for word in ("预设 ID", "Hugging Face 仓库 ID", "系列", "参数量", "激活参数量", "发布日期", "模态"):
        assert word in head
    absent(["id", "family", "params", "active", "released", "modality"], head)
    assert "meta-llama/Llama-3.1-8B" in out and "2024-07-23  文本" in out
    assert "视觉-语言" in zh(capsys, "models", "llama-4")
    assert zh(capsys, "models", "no-such-model").strip() == "没有与 'no-such-model' 匹配的预设"
    assert header_line(en(capsys, "models", "llama")).split() == ["id", "Hugging", "Face", "id", "family", "params",
                                                                  "active", "released", "modality"]


def test_gpus(capsys):
    out = zh(capsys, "gpus", "h100")
    head = header_line(out)
    for word in ("名称", "可用显存 GiB", "标称显存 GB", "显存带宽 GB/s", "卡间互联 GB/s（单向）", "功耗 TDP (W)"):
        assert word in head
    absent(["id", "name", "usable", "marketed", "interconnect", "one way", "TDP W"], head)
    assert "NVIDIA H100 SXM5 80GB" in out and "NVLink 4" in out
    assert "interconnect GB/s (one way)" in header_line(en(capsys, "gpus", "h100"))


TIME = ("time", "llama-3.1-8b", "--tokens", "15T", "--gpus", "1024", "--gpu", "h100-sxm")
TIME_EN_LABELS = ["FLOP per token", "total FLOPs (model)", "GPUs", "days", "GPU-hours", "tokens/s per GPU",
                  "achieved TFLOP/s per GPU", "energy (MWh)", "quantity", "value", "note",
                  "used", "given", "solved for", "dense", "attention", "of 989.4 peak"]


def test_time(capsys):
    out = zh(capsys, *TIME, "--explain", "--price", "table", "--co2-kg-per-kwh", "0.385")
    table = out.partition("\n- ")[0]  # the table, then the explained terms and the assumptions
    assert header_line(table).split() == ["指标", "数值", "说明"]
    for label in ("每 token FLOP", "总 FLOPs（模型）", "算力利用率 MFU", "GPU 数", "训练天数", "GPU 小时", "每卡 tokens/s",
                  "每卡实际 TFLOP/s", "成本（美元）", "能耗（MWh）", "CO2 排放（吨）", "硬件"):
        assert label in table, label
    absent(TIME_EN_LABELS + ["cost (USD)", "CO2 (t)", "range", "tokens on"], table)
    assert "- total_flop = 7.72056e+23: FLOP/token × tokens" in out  # formulas stay as they are
    assert "\n假设：\n" in out and "assumptions:" not in out
    assert "- 注意力项按序列长度 4096 计算（可用 --seq 指定）" in out and "- 注意力 FLOPs 口径：full" in out
    assert "- 价格 3 美元/GPU 小时：" in out and "（发布于 2026-03）" in out
    english = en(capsys, *TIME)
    for label in TIME_EN_LABELS + ["MFU"]:
        assert label in english
    assert "\nassumptions:\n" in english


def test_time_warning_and_list_prices(capsys):
    out = zh(capsys, "time", "llama-3.1-8b", "--tokens", "15T", "--gpus", "8", "--days", "1", "--gpu", "h100-sxm")
    assert "\n警告：无法实现：用 8 张 GPU 在 1 天内完成需要 MFU" in out and "warning" not in out
    out = zh(capsys, "time", "llama-3.1-405b", "--tokens", "15T", "--gpus", "8", "--gpu", "rtx-4090", "--mfu", "0.4")
    assert "\n警告：8 张 rtx-4090 放不下训练状态：权重、梯度和优化器状态（bf16，AdamW）共 3,023.84 GiB" in out
    assert "至少需要 128 张 GPU（尚未计入激活值）" in out and "- 算力利用率 MFU 0.4：由 --mfu 指定" in out
    prices = zh(capsys, "time", "--params", "7B", "--tokens", "1T", "--gpu", "h100-sxm", "--list-prices")
    assert header_line(prices).split() == ["ID", "GPU", "美元/GPU", "小时", "日期", "类型"]


PLAN = ("plan", "llama-3.1-8b", "--gpus", "16", "--gpu", "h100-sxm,a100-80gb", "--top", "3")


def test_plan(capsys):
    out = zh(capsys, *PLAN, "--explain")
    head = header_line(out)
    for word in ("并行方案", "GPU 数", "每卡 GiB", "单步耗时（s）", "MFU", "训练天数", "成本（美元）"):
        assert word in head
    absent(["layout", "gpu", "GPUs", "GiB/GPU", "step", "days", "cost", "USD"], head)
    assert "按训练时间排序" in out and "矩阵乘参数量" in out and "16 张 GPU" in out
    assert "\n为什么选它：\n" in out and "\n其他方案：\n" in out and "\n假设：\n" in out
    assert "a100-80gb 上的最优方案" in out and "最优方案的显存，用 gpuplan train 复算：" in out
    absent(["why it wins", "alternatives", "ranked by", "best on", "memory of the winner", "assumptions"], out)
    english = en(capsys, *PLAN, "--explain")
    assert header_line(english).split()[:4] == ["layout", "gpu", "GPUs", "GiB/GPU"]
    assert "why it wins:" in english and "ranked by time" in english


def test_plan_nothing_fits_message(capsys):
    argv = ("plan", "llama-3.1-70b", "--gpus", "8", "--gpu", "a100-40gb")
    code, _, err = run(capsys, *argv, "--lang", "zh")
    assert code == 2 and "8 张 a100-40gb 上没有放得下 llama-3.1-70b 的并行方案" in err and "能放得下的最少 GPU 数" in err
    code, _, err = run(capsys, *argv, "--lang", "zh", "--json")  # messages stay English with --json
    assert code == 2 and "no layout of 8 x a100-40gb fits llama-3.1-70b" in err


def test_verify(capsys):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    out = zh(capsys, "verify", *TINY, "--seq", "32")
    assert header_line(out).split() == ["组成", "估算", "实测", "误差"]
    assert "训练步 1x32" in out and "后端 cpu-trace" in out and "实测峰值出现在：" in out and "\n说明：" in out
    assert "权重" in out and "已分配峰值" in out
    absent(["estimate", "measured", "error", "weights_bytes"], out)
    absent(["training step", "back end"], out.splitlines()[0])  # the notes below are the tracer's own text
    english = en(capsys, "verify", *TINY, "--seq", "32")
    assert header_line(english).split() == ["component", "estimate", "measured", "error"]
    assert "allocated_peak_bytes" in english and "measured peak during:" in english


def _strip_timings(value):
    if isinstance(value, dict):
        return {k: _strip_timings(v) for k, v in value.items() if not k.endswith("wall_s")}
    if isinstance(value, list):
        return [_strip_timings(v) for v in value]
    return value


@pytest.mark.parametrize("argv", [
    ("params", "deepseek-v3"),
    ("params", *TINY, "--tensors"),
    ("models", "qwen"),
    ("gpus",),
    (*TIME, "--explain", "--price", "table"),
    ("time", "llama-3.1-405b", "--tokens", "15T", "--gpus", "8", "--gpu", "rtx-4090", "--mfu", "0.4"),
    ("time", "llama-3.1-8b", "--tokens", "15T", "--gpus", "8", "--days", "1", "--gpu", "h100-sxm"),
    PLAN,
    ("verify", *TINY, "--seq", "32"),
], ids=["params", "tensors", "models", "gpus", "time", "time-memory", "time-mfu", "plan", "verify"])
def test_json_is_the_same_in_both_languages(capsys, argv):
    if argv[0] == "verify":
        pytest.importorskip("torch")
        pytest.importorskip("transformers")
    out = {}
    for lang in ("en", "zh"):
        code, text, err = run(capsys, *argv, "--json", "--lang", lang)
        assert code == 0, err
        out[lang] = _strip_timings(json.loads(text))
    assert out["zh"] == out["en"]
    assert not re.search(r"[\u4e00-\u9fff]", json.dumps(out["zh"], ensure_ascii=False))


def test_message_is_english_text_that_localizes():
    m = message("time.assume.seq", seq=4096)
    assert isinstance(m, Message) and isinstance(m, str)
    assert m == "sequence length 4096 assumed for the attention term (pass --seq)"
    assert json.dumps([m]) == json.dumps(["sequence length 4096 assumed for the attention term (pass --seq)"])
    assert localize(m, "zh") == t("time.assume.seq", "zh", seq=4096) == "注意力项按序列长度 4096 计算（可用 --seq 指定）"
    nested = message("time.assume.mfu", mfu="0.4", source=message("time.assume.mfu_user"))
    assert nested == "MFU 0.4: --mfu given by the user"
    assert localize(nested, "zh") == "算力利用率 MFU 0.4：由 --mfu 指定"
    assert localize("free text from an engine", "zh") == "free text from an engine"


def test_train_lines_around_the_tables(capsys):
    argv = ("train", "llama-3.1-8b", "--gpu", "h100-sxm", "--gpus", "8", "--pp", "2", "--per-rank", "--max-batch",
            "--explain")
    out = zh(capsys, *argv)
    for text in ("参数量 8.03B，可训练 8.03B", "各组成部分是各自的大小", "每个 rank", "在途微批", "最大批大小：",
                 "各阶段显存："):
        assert text in out, text
    absent(["components are sizes", "per rank", "in flight", "max batch",
            "allocated"], out)
    english = en(capsys, *argv)
    assert "components are sizes; the peak is the highest phase, not their sum" in english
    assert "max batch: " in english and "phases:" in english


def test_infer_lines_around_the_table(capsys):
    argv = ("infer", "llama-3.1-70b", "--weights", "awq", "--engine", "vllm", "--gpu", "a100-80gb", "--tp", "2")
    out = zh(capsys, *argv)
    for text in ("vllm 推理", "每 token 的 KV 缓存", "个 KV 块", "最大批大小", "最长上下文", "首 token 延迟", "起受算力限制"):
        assert text in out, text
    absent(["serving", "KV cache per token", "max concurrency", "longest context", "decode", "compute-bound"], out)
    assert "KV cache per token: 163,840 bytes" in en(capsys, *argv)
