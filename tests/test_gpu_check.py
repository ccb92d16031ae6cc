"""benchmarks/gpu_check.py, the prepared GPU run, rehearsed on the CPU: it writes its JSON and markdown, and one
configuration's failure is recorded while the others go on."""

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import gpu_check  # noqa: E402


def test_cpu_rehearsal_writes_the_tables_and_survives_a_failing_case(tmp_path, monkeypatch):
    real = gpu_check.measure

    def flaky(case, cfg, device):
        if case.id == "qwen-bf16-b8-s2048":
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(case, cfg, device)

    monkeypatch.setattr(gpu_check, "measure", flaky)
    rc = gpu_check.main(["--out", str(tmp_path), "--device", "cpu", "--quick",
                         "--only", "qwen-bf16-b8-s2048,qwen-prefill-b16-c4096"])
    assert rc == 0
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = {r["id"]: r for r in result["cases"]}
    assert "out of memory" in rows["qwen-bf16-b8-s2048"]["error"]
    prefill = rows["qwen-prefill-b16-c4096"]
    assert abs(prefill["error_pct"]["allocated"]) < 1.0  # the CPU trace: the estimate's own reference
    assert result["versions"]["torch"].startswith("2.")
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| qwen-bf16-b8-s2048 | error: RuntimeError" in md and "GEMM m x n x k" in md


def test_every_case_fits_one_80_gb_card_by_the_estimate():
    """The cases are sized to fit an H100 80 GB (79.2 GiB usable): the estimate's total, the allocator's reserve
    included (gpuplan.train.overheads), stays under 76 GiB, a margin for that reserve's error."""
    for case in gpu_check.CASES:
        est = gpu_check.estimate(case, gpu_check.CONFIGS[case.config], "5.23")
        assert est["total_bytes"] < 76 * 2**30, case.id
