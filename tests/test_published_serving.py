"""docs/accuracy-serving.md is what benchmarks/published_serving.py prints, and its rows keep their accuracy."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("published_serving", ROOT / "benchmarks" / "published_serving.py")
bench = importlib.util.module_from_spec(spec)
sys.modules["published_serving"] = bench  # dataclasses look their module up there
spec.loader.exec_module(bench)


def _doc_table() -> str:
    text = (ROOT / "docs" / "accuracy-serving.md").read_text(encoding="utf-8")
    start = text.index("<!-- published_serving:begin -->\n") + len("<!-- published_serving:begin -->\n")
    return text[start:text.index("\n<!-- published_serving:end -->")]


def test_doc_matches_the_script():
    rows = bench.rows()
    assert _doc_table() == bench.markdown(rows), "run: python benchmarks/published_serving.py (and paste it)"
    assert len(rows) >= 10
    for r in rows:
        assert r["measured"] > 0 and r["estimate"] > 0
        assert r["source"] and r["command"].startswith("gpuplan ")
        if abs(r["error_pct"]) > bench.TOLERANCE_PCT:
            assert r["reason"], f"{r['id']}: beyond +-10 % without a reason"


def test_kv_and_low_concurrency_rows_stay_within_ten_percent():
    rows = {r["id"]: r for r in bench.rows()}
    for key in ("vllm-pr2031-llama2-7b", "vllm-pr2031-llama2-70b-tp4", "vllm-pr10511-llama3-8b", "musgrave-a100-c1",
                "rahman-4090-c4-throughput", "rahman-4090-c8-throughput", "rahman-4090-c4-ttft",
                "lambda-a100-mistral7b-tpot"):
        assert abs(rows[key]["error_pct"]) <= 10, key


ENGINE_LOG_ROWS = {  # row -> the error docs/accuracy-serving.md states for it, in per cent
    "sglang-docs-llama31-8b-h100": 10, "sglang-qwq32b-4xl4-tp4": 10, "sglang-qwen3-235b-fp8-4xh100": 10,
    "sglang-r1qwen7b-3090": 10.5, "trtllm-bench-llama2-7b-fp8-h100": 12.5,
}


def test_sglang_and_trtllm_log_rows_stay_within_the_stated_error():
    rows = {r["id"]: r for r in bench.rows()}
    for key, bound in ENGINE_LOG_ROWS.items():
        assert abs(rows[key]["error_pct"]) <= bound, (key, rows[key]["error_pct"])


def test_engine_log_rows_commands_print_the_estimate(capsys):
    """The command shown in each SGLang / TensorRT-LLM row gives, on the command line, the estimate of the table."""
    import json
    import shlex

    from gpuplan.cli.main import main

    cases = {c.id: c for c in bench.CASES}
    for key in ENGINE_LOG_ROWS:
        case = cases[key]
        argv = shlex.split(bench.command_line(case))[1:] + ["--json"]
        assert main(argv) == 0
        got = bench._dig(json.loads(capsys.readouterr().out), case.key) * case.scale
        assert got == bench.estimate(case), key
