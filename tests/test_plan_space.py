"""The planner's search space and its pruning rules."""

from gpuplan.compute.steptime import Layout
from gpuplan.model.resolve import spec_from_dims
from gpuplan.plan.space import (Pins, cp_options, layouts_for_shape, memory_dominates, most_frugal, shapes_for,
                                tp_options)


def test_tp_divides_heads_and_kv_heads_within_a_node():
    assert tp_options(spec_from_dims(layers=2, hidden=8192, heads=64, kv_heads=8), 8) == [1, 2, 4, 8]
    assert tp_options(spec_from_dims(layers=2, hidden=768, heads=12, kv_heads=4), 8) == [1, 2, 4]
    assert tp_options(spec_from_dims(layers=2, hidden=8192, heads=64, kv_heads=8), 4) == [1, 2, 4]


def test_cp_keeps_1024_tokens_per_rank():
    assert cp_options(4096) == [1, 2, 4]
    assert cp_options(2048) == [1, 2]
    assert cp_options(131072)[-1] == 128


def test_shapes_multiply_to_the_gpu_count():
    spec = spec_from_dims(layers=80, hidden=8192, heads=64, kv_heads=8)
    shapes = list(shapes_for(spec, 64, 4096, 8, Pins()))
    assert shapes and all(tp * cp * pp * dp == 64 for tp, cp, pp, dp in shapes)
    assert all(pp <= 80 for _, _, pp, _ in shapes)
    pinned = list(shapes_for(spec, 64, 4096, 8, Pins(tp=(8,), pp=(4,), cp=(1,))))
    assert pinned == [(8, 1, 4, 2)]


def test_layouts_split_the_global_batch():
    spec = spec_from_dims(layers=8, hidden=1024, heads=16)
    lays = list(layouts_for_shape(spec, 2, 1, 2, 4, 64, Pins()))
    assert lays
    for lay in lays:
        assert 64 % (lay.dp * lay.micro_batch) == 0
        m = 64 // (lay.dp * lay.micro_batch)
        assert lay.vpp == 1 or m % lay.pp == 0
    assert not list(layouts_for_shape(spec, 2, 1, 2, 3, 64, Pins()))  # dp 3 does not split 64


def test_no_zero_without_data_parallelism():
    spec = spec_from_dims(layers=8, hidden=1024, heads=16)
    assert {lay.zero for lay in layouts_for_shape(spec, 8, 1, 1, 1, 16, Pins())} == {0}


def test_memory_dominance():
    base = Layout(tp=2, pp=2, dp=4, zero=1, micro_batch=2, recompute="selective")
    assert memory_dominates(base, Layout(tp=2, pp=2, dp=4, zero=1, micro_batch=4, recompute="none"))
    assert memory_dominates(base, Layout(tp=2, pp=2, dp=4, zero=0, micro_batch=2, recompute="selective"))
    assert not memory_dominates(base, Layout(tp=2, pp=2, dp=4, zero=1, micro_batch=1, recompute="selective"))
    assert not memory_dominates(base, Layout(tp=2, pp=2, dp=4, zero=1, micro_batch=2, recompute="full"))
    assert not memory_dominates(base, Layout(tp=4, pp=2, dp=2, zero=1, micro_batch=2, recompute="none"))


def test_most_frugal_variant():
    lay = Layout(tp=2, pp=2, dp=4, vpp=2, zero=1, micro_batch=4, recompute="none")
    f = most_frugal(lay, Pins(), 64)
    assert (f.micro_batch, f.recompute, f.zero, f.vpp) == (1, "full", 3, 1)
    f2 = most_frugal(lay, Pins(zero=(0, 1), recompute=("none", "selective")), 64)
    assert (f2.zero, f2.recompute) == (1, "selective")
