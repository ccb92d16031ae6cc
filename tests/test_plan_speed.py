"""What keeps the layout search fast without changing its answer: the lower bound that lets ZeRO stages wait
untimed, and the routed experts folded into groups in the memory engine's per-stage tensors."""

from dataclasses import replace

import pytest

from gpuplan.compute.comm import default_network
from gpuplan.compute.steptime import Layout, Tuning, Workload, make_device, step_time, step_time_floor
from gpuplan.hardware.catalog import get_gpu
from gpuplan.model.presets import find_preset
from gpuplan.model.resolve import resolve_model
from gpuplan.model.tensors import tensor_table
from gpuplan.parallel.layout import Layout as RankLayout
from gpuplan.parallel.shard import stage_layers, stage_shards
from gpuplan.plan.space import dp_shard_options


def _spec(name):
    assert find_preset(name) is not None
    return resolve_model(name)


@pytest.mark.parametrize("schedule", [None, "dualpipe"])
@pytest.mark.parametrize("tp,pp,dp,ep,mb,rc", [(1, 16, 128, 64, 1, "none"), (4, 4, 128, 128, 2, "full"),
                                               (8, 1, 256, 256, 1, "selective"), (2, 8, 128, 32, 1, "none")])
def test_floor_bounds_every_zero_stage_and_shard_group(tp, pp, dp, ep, mb, rc, schedule):
    """step_time_floor is below the step time of every ZeRO stage and hybrid-sharding degree of a layout (the
    search queues them at that bound and times them only when it is reached), and equal to it less the
    data-parallel and optimizer seconds."""
    spec, gpu = _spec("deepseek-v3"), get_gpu("h800")
    dev, _ = make_device(gpu, "fp8")
    net, work, tune = default_network(gpu), Workload(4096, 15360), Tuning(schedule=schedule)
    base = Layout(tp=tp, pp=pp, dp=dp, ep=ep, micro_batch=mb, recompute=rc)
    floor = step_time_floor(spec, base, work, dev, net, tune)
    assert floor > 0
    for zero in (0, 1, 2, 3):
        lay = Layout(tp=tp, pp=pp, dp=dp, ep=ep, micro_batch=mb, recompute=rc, zero=zero)
        for shard in [None] + dp_shard_options(lay, net.gpus_per_node):
            st = step_time(spec, replace(lay, dp_shard=shard), work, dev, net, tune)
            assert st.step_s >= floor
            no_dp = sum(st.parts[k] for k in ("compute", "recompute", "tp_comm", "ep_comm", "cp_comm", "pp_comm"))
            assert floor == pytest.approx(no_dp * (st.microbatches + st.bubble_slots) / st.microbatches, rel=1e-9)


@pytest.mark.parametrize("name,pp,tp,ep", [("deepseek-v3", 16, 1, 64), ("deepseek-v3", 4, 2, 1),
                                           ("deepseek-v3", 61, 1, 256), ("mixtral-8x7b-v0.1", 4, 2, 4),
                                           ("llama-3.1-8b", 4, 2, 1)])
def test_folded_experts_expand_to_the_tensors_each_stage_holds(name, pp, tp, ep):
    """A stage's groups expand to exactly the tensors of the rules in gpuplan.parallel.shard: its layers' tensors
    with experts 0 .. E/ep - 1 only, the embedding on the first stage, the final norm and head on the last."""
    spec = _spec(name)
    table = tensor_table(spec)
    local = spec.moe.num_experts // ep if spec.moe else 0
    lay = RankLayout(dp=1, tp=tp, pp=pp, cp=1, ep=ep, vpp=1, sp=tp > 1, zero=1, microbatches=1,
                     kv_replicated=False)
    shards = stage_shards(spec, lay, "megatron")
    for shard, layers in zip(shards, stage_layers(spec.num_layers, pp), strict=True):
        want = [i for i, t in enumerate(table)
                if (t.layer in layers and (t.expert is None or ep == 1 or t.expert < local))
                or (t.layer is None and ((t.component == "embedding" and shard.first)
                                         or (t.component != "embedding" and shard.last)))]
        got = [lt.index for lt in shard.tensors]
        assert got == want
        assert shard.numel == sum(lt.numel for lt in shard.tensors)
        assert sum(g.count for g in shard.groups) == len(want)
        for g in shard.groups:  # members of a group are alike in every field the per-rank formulas read
            first = table[g.indices[0]]
            for i in g.indices:
                t = table[i]
                assert (t.shape, t.module, t.component, t.tp, t.linear, t.layer) == (
                    first.shape, first.module, first.component, first.tp, first.linear, first.layer)
    if spec.moe and (local if ep > 1 else spec.moe.num_experts) >= 64:  # many experts per rank fold: few groups
        assert sum(len(s.groups) for s in shards) * 4 < sum(len(s.tensors) for s in shards)
