"""Per-rank estimates against the stored held-out parallel traces (``benchmarks/results/parallel_heldout.json``).

The held-out matrix of ``docs/accuracy-parallel.md``: FSDP2 and DTensor TP traces of configurations no rule of the
engine was written from (other families, shapes, vocabularies, batch x seq, world sizes), made once with
``python benchmarks/parallel_accuracy.py --trace --heldout``. No tracing here: each stored row carries its
config.json dict and layout, the estimate is recomputed (pure Python) and compared, for the allocated peak and for
each phase's peak, with the ±2 % the document states, and the median |error| of the peak with the 0.1 % bound it
states (a term lost or doubled for every layer moves the median long before a row leaves ±2 %).

(row, quantity) pairs outside ±2 % would be listed as expected failures with the reason found with ``--alive``
(strict: once the engine gets them right, they must be taken off the list); none are now. The rows whose error
came from a rule written after the matrix was traced are held to 0.1 % (``FIXED``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest

from gpuplan.model.hf_config import spec_from_config
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training

STORED = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "parallel_heldout.json"
TOLERANCE = 0.02  # docs/accuracy-parallel.md: "within ±2 %"
MEDIAN_BOUND = 0.001  # docs/accuracy-parallel.md: the held-out median |error| of the peak stays within 0.1 %
QUANTITIES = ("peak", "forward", "backward", "optimizer")
# measured precision (benchmarks/parallel_accuracy.py PRECISIONS) -> gpuplan --precision
PRECISION = {"bf16": "bf16", "fp32": "fp32", "fp32-shard/bf16-compute": "amp-bf16"}

# (row, quantity) pairs outside ±2 % with the reason found with --alive: none since the rules below
KNOWN_OUTSIDE: dict[tuple[str, str], str] = {}
# Rows whose error came from a rule missing when the matrix was traced (docs/accuracy-parallel.md lists the rules
# written from them): each quantity named now within FIXED_BOUND, so the rule cannot quietly go missing again
# while the row stays inside ±2 %. Before the rules: -2.01 / -1.88 / -1.40 / -1.56 / -0.46 % (Mistral: K/V
# repeated for the masked SDPA call, the window mask held under checkpointing and replicated under TP), -0.70 /
# -0.18 / -0.19 % (Gemma 2: feed-forward norms replicated under TP, both eager masks held under checkpointing),
# -0.12 % (Gemma 3: the window mask held), -2.83 % on the forward (FSDP2's root all-gather at the first layer's
# pre-forward), -0.57 % on the backward (the residual gradient at the embedding's backward), -0.435 % (a half-input
# RMSNorm's fifth fp32 backward temporary in a layer's norm backward).
FIXED_BOUND = 0.001
FIXED = (
    ("fsdp2 mistral-4096x2-sw1024 W8 bf16 noAC raf=True 1x4096", ("peak", "forward", "backward")),
    ("fsdp2 mistral-4096x2-sw1024 W8 bf16 AC raf=True 1x4096", ("peak", "forward", "backward")),
    ("fsdp2 mistral-4096x2-sw1024 W4 fp32-shard/bf16-compute noAC raf=False 1x4096", ("peak", "backward")),
    ("tp mistral-4096x2-sw1024 W4 bf16 noAC 1x4096", ("peak", "backward")),
    ("tp mistral-4096x2-sw1024 W8 bf16 AC 1x4096", ("peak", "backward")),
    ("tp gemma2-2304x2-v256000-tied W2 bf16 noAC 2x1024", ("peak", "backward")),
    ("tp gemma2-2304x2-v256000-tied W4 bf16 AC 1x4096", ("peak", "backward")),
    ("fsdp2 gemma2-2304x2-v256000-tied W8 fp32-shard/bf16-compute AC raf=True 1x4096", ("peak", "backward")),
    ("fsdp2 gemma3-1152x4-v262144-tied W4 bf16 AC raf=True 1x4096", ("peak", "backward")),
    ("fsdp2 qwen3-2048x4-v32768 W2 fp32 AC raf=True 4x512", ("forward",)),
    ("tp llama-4096x2-mha W4 fp32 AC 4x512", ("backward",)),
    ("fsdp2 llama-4096x2-mha W8 fp32-shard/bf16-compute AC raf=False 2x1024", ("peak", "backward")),
)


def _rows() -> list[dict]:
    return json.loads(STORED.read_text())["rows"]


def _case_id(r: dict) -> str:
    ac = "AC" if r["recompute"] else "noAC"
    shape = f"{r['batch']}x{r['seq']}"
    if r["layout"] == "tp":
        return f"tp {r['config']} W{r['world_size']} {r['precision']} {ac} {shape}"
    return f"fsdp2 {r['config']} W{r['world_size']} {r['precision']} {ac} raf={r['reshard_after_forward']} {shape}"


ROWS = {_case_id(r): r for r in _rows()}


@lru_cache(maxsize=None)
def _estimate(case: str) -> dict[str, int]:
    """Peak and phase peaks (forward; backward = the highest backward phase; optimizer step) of the estimate."""
    r = ROWS[case]
    common = dict(batch=r["batch"], seq=r["seq"], precision=PRECISION[r["precision"]], framework="torch",
                  recompute="full" if r["recompute"] else "none", attention=r["attention"])
    if r["layout"] == "fsdp2":
        cfg = TrainConfig(dp=r["world_size"], zero=3, reshard_after_forward=r["reshard_after_forward"], **common)
    else:
        cfg = TrainConfig(tp=r["world_size"], **common)
    rep = estimate_training(spec_from_config(dict(r["hf_config"]), name=r["config"]), cfg)
    ph = {p.name: p.bytes for p in rep.phases}
    return {"peak": rep.memory.allocated_peak_bytes, "forward": ph["forward"], "optimizer": ph["optimizer step"],
            "backward": max(v for k, v in ph.items() if k not in ("forward", "optimizer step"))}


def _params():
    for case in ROWS:
        for q in QUANTITIES:
            reason = KNOWN_OUTSIDE.get((case, q))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(case, q, id=f"{case} {q}", marks=marks)


def test_the_stored_matrix_is_the_documented_one():
    rows = _rows()
    assert len(ROWS) == len(rows) >= 24  # one row per case id
    assert {r["layout"] for r in rows} == {"fsdp2", "tp"}
    assert {r["world_size"] for r in rows} >= {2, 4, 8}
    for r in rows:
        assert r["traced"]["commit"] and r["traced"]["date"], _case_id(r)
        assert r["peak_bytes"] == max(r["phase_peak_bytes"].values()), _case_id(r)
    assert all(case in ROWS for case, _ in KNOWN_OUTSIDE)


@pytest.mark.parametrize("case,quantity", list(_params()))
def test_estimate_matches_stored_heldout_trace(case, quantity):
    r = ROWS[case]
    want = r["peak_bytes"] if quantity == "peak" else r["phase_peak_bytes"][quantity]
    got = _estimate(case)[quantity]
    assert abs(got - want) <= TOLERANCE * want, f"{case} {quantity}: estimate {got:,} B, trace {want:,} B " \
                                                f"({100.0 * (got - want) / want:+.2f} %)"


def test_median_heldout_error_stays_small():
    errors = sorted(abs(_estimate(case)["peak"] - r["peak_bytes"]) / r["peak_bytes"] for case, r in ROWS.items())
    median = errors[len(errors) // 2]
    assert median <= MEDIAN_BOUND, f"median |error| {100.0 * median:.3f} %"


@pytest.mark.parametrize("case,quantities", FIXED, ids=[c for c, _ in FIXED])
def test_rows_fixed_by_later_rules_stay_exact(case, quantities):
    r = ROWS[case]
    for q in quantities:
        want = r["peak_bytes"] if q == "peak" else r["phase_peak_bytes"][q]
        got = _estimate(case)[q]
        assert abs(got - want) <= FIXED_BOUND * want, f"{case} {q}: {100.0 * (got - want) / want:+.3f} %"
