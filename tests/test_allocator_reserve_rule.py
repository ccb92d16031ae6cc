"""The allocator reserve of training estimates (gpuplan.train.overheads): the flat fraction, the segment rule for
the loss region's tensors and FSDP2's side-stream pools (gpuplan.parallel.buffers.side_stream_pools). The rule's
figures against replayed CPU traces are checked in tests/test_allocator_replay.py."""

from __future__ import annotations

import json

from gpuplan.cli.main import main
from gpuplan.parallel.buffers import side_stream_pools
from gpuplan.train.config import Overheads
from gpuplan.train.overheads import (DEFAULT_WORKSPACE_BYTES, SegmentInputs, allocator_reserve, overhead_bytes,
                                     segment_rule_note)

GiB = 1 << 30


def test_the_larger_of_the_flat_fraction_and_the_segment_rule():
    assert allocator_reserve(100 * GiB, 0.05) == 5 * GiB
    # 1.05 x 80 + 30 = 114 GiB reserved: 14 GiB above a 100 GiB peak
    assert allocator_reserve(100 * GiB, 0.05, SegmentInputs(80 * GiB, 30 * GiB)) == 14 * GiB
    # a small loss region: the flat 5 % is larger
    assert allocator_reserve(100 * GiB, 0.05, SegmentInputs(95 * GiB, 1 * GiB)) == 5 * GiB
    # side-stream pools add to the segment rule
    assert allocator_reserve(100 * GiB, 0.05, SegmentInputs(80 * GiB, 30 * GiB, 2 * GiB)) == 16 * GiB


def test_a_given_fraction_replaces_both_rules():
    seg = SegmentInputs(80 * GiB, 30 * GiB)
    default = overhead_bytes(Overheads(), 100 * GiB, segments=seg)
    assert default.allocator_reserve_bytes == 14 * GiB and default.segments == seg
    assert segment_rule_note(default) and "14.00 GiB" in segment_rule_note(default)[0]
    given = overhead_bytes(Overheads(allocator_reserve_fraction=0.05), 100 * GiB, segments=seg)
    assert given.allocator_reserve_bytes == 5 * GiB and given.segments is None and segment_rule_note(given) == []
    flat = overhead_bytes(Overheads(), 100 * GiB, segments=SegmentInputs(95 * GiB, GiB))
    assert flat.segments is None  # the flat fraction sized it


def test_side_stream_pools_add_what_the_layer_backward_does_not_count():
    # root result (4) beside a layer's (1), the root's reduce-scatter input (8); one layer's gather (1) and
    # reduce-scatter input (2) are already in the allocated peak
    assert side_stream_pools(1 * GiB, 2 * GiB, 2 * GiB, 4 * GiB, 8 * GiB) == (5 + 8 - 1 - 2) * GiB
    # frozen root (LoRA): no reduce-scatter of it
    assert side_stream_pools(1 * GiB, 0, 2 * GiB, 4 * GiB, 0) == (5 + 0 - 1 - 2) * GiB
    # no root group: two layers' gathers in flight, one of them counted in the peak
    assert side_stream_pools(1 * GiB, 2 * GiB, 2 * GiB, 0, 0) == 1 * GiB


def _train(capsys, *args: str) -> dict:
    assert main(["train", "llama-3.1-8b", "--batch", "2", "--seq", "8192", "--precision", "amp-bf16", "--recompute",
                 "full", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_long_sequence_reserves_the_loss_region_on_top(capsys):
    """Llama 3.1 8B at 2 x 8192 on one GPU: the optimizer step is the allocated peak and the 23.5 GiB loss region
    comes on top of it in the reserve (the replay of this step's CPU trace: 177.03 GiB reserved)."""
    d = _train(capsys)
    m = d["memory"]
    assert m["reserved_bytes"] - DEFAULT_WORKSPACE_BYTES > 1.15 * m["allocated_peak_bytes"]
    assert any(a.startswith("allocator reserve ") and "loss region" in a for a in d["assumptions"])
    flat = _train(capsys, "--allocator-reserve", "0.05")["memory"]
    assert flat["allocated_peak_bytes"] == m["allocated_peak_bytes"]
    assert flat["reserved_bytes"] == int(m["allocated_peak_bytes"] * 0.05) + m["allocated_peak_bytes"] + \
        DEFAULT_WORKSPACE_BYTES
    assert flat["total_bytes"] < m["total_bytes"]


def test_the_fsdp2_rank_adds_its_side_stream_pools(capsys):
    d = _train(capsys, "--gpus", "8", "--zero", "3", "--stack", "torchtitan")
    line = next(a for a in d["assumptions"] if a.startswith("allocator reserve "))
    assert "FSDP2 all-gather and reduce-scatter stream pools" in line
