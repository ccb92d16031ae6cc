"""Pipeline schedules (bubble and hidden communication), FP8 GEMMs, and the plan options that name them."""

import pytest

from gpuplan import api
from gpuplan.compute.comm import default_network
from gpuplan.compute.schedules import bubble_slots, check_schedule
from gpuplan.compute.steptime import Layout, Tuning, Workload, make_device, step_time
from gpuplan.errors import InputError
from gpuplan.hardware.catalog import get_gpu
from gpuplan.model.resolve import spec_from_dims


def test_bubble_slots_of_each_schedule():
    assert bubble_slots("1f1b", 16, 1) == 15  # Narayanan et al. 2021 section 2.2.1
    assert bubble_slots("interleaved", 16, 4) == 15 / 4  # section 2.2.2
    assert bubble_slots("zero-bubble", 16, 1) == pytest.approx(5)  # ZB-H1: (p-1)(F+B-2W), F=B=W
    assert bubble_slots("dualpipe", 16, 1) == pytest.approx(7 / 3)  # DeepSeek-V3 Table 2: (p/2-1)(F&B+B-3W)
    assert bubble_slots("dualpipe", 1, 1) == 0


def test_schedule_rules():
    check_schedule("dualpipe", 16, 1, 32)
    with pytest.raises(InputError, match="even pp"):
        check_schedule("dualpipe", 15, 1, 64)
    with pytest.raises(InputError, match="2·pp"):
        check_schedule("dualpipe", 16, 1, 31)
    with pytest.raises(InputError, match="--vpp"):
        check_schedule("interleaved", 8, 1, 64)
    with pytest.raises(InputError, match="--vpp"):
        check_schedule("zero-bubble", 8, 2, 64)


MOE = spec_from_dims(layers=16, hidden=4096, heads=32, kv_heads=8, ffn=14336, vocab=32000, experts=64, top_k=8,
                     seq=4096)


def _step(schedule, dtype="bf16", spec=MOE, ep=8):
    gpu = get_gpu("h800")
    dev, _ = make_device(gpu, dtype)
    lay = Layout(tp=1, pp=8, dp=16, ep=ep, zero=1, micro_batch=1)
    return step_time(spec, lay, Workload(4096, 512), dev, default_network(gpu), Tuning(schedule=schedule))


def test_dualpipe_hides_the_all_to_all_and_shrinks_the_bubble():
    base, dual = _step(None), _step("dualpipe")
    assert base.parts["ep_comm"] > 0
    assert dual.parts["ep_comm"] < base.parts["ep_comm"]
    assert dual.parts["bubble"] < base.parts["bubble"]
    assert dual.step_s < base.step_s


def test_fp8_gemms_run_faster_but_not_twice_as_fast():
    bf16, fp8 = _step(None), _step(None, "fp8")
    assert fp8.parts["compute"] < bf16.parts["compute"]
    assert fp8.parts["compute"] > bf16.parts["compute"] / 2  # attention and elementwise stay in BF16
    dev, sources = make_device(get_gpu("h800"), "fp8")
    assert dev.peak_flop_per_s == get_gpu("h800").peak_flop_per_s_for("bf16")  # MFU against the BF16 peak
    assert any("DeepGEMM" in s for s in sources)


def test_plan_schedule_and_stack_options():
    common = dict(gpu="h100-sxm", gpus=64, seq=4096, global_batch=256, tp=[8], pp=[4], top=1)
    inter = api.run("plan", "llama-3.1-70b", schedule="interleaved", **common)
    assert inter["plans"][0]["vpp"] > 1
    titan = api.run("plan", "llama-3.1-70b", stack="torchtitan", **common)
    assert titan["plans"][0]["vpp"] == 1  # torchtitan's default schedule is 1F1B
    assert any("--stack torchtitan" in a for a in titan["assumptions"])
    explicit = api.run("plan", "llama-3.1-70b", stack="torchtitan", schedule="interleaved", **common)
    assert explicit["plans"][0]["vpp"] > 1  # an explicit option wins over the stack
    zb = api.run("plan", "llama-3.1-70b", schedule="zero-bubble", **common)
    assert zb["plans"][0]["bubble_fraction"] < api.run("plan", "llama-3.1-70b", vpp=[1], **common)["plans"][0][
        "bubble_fraction"]


def test_unfused_attention_is_slower_than_flash():
    common = dict(gpu="a100-80gb", gpus=8, seq=2048, global_batch=4, tp=[8], pp=[1], cp=[1], zero=[0],
                  micro_batch=[4], recompute="selective", top=1)
    flash = api.run("plan", "megatron-22b", **common)["plans"][0]["step_s"]
    unfused = api.run("plan", "megatron-22b", attention_impl="unfused", **common)["plans"][0]["step_s"]
    assert unfused > flash * 1.1


def test_multi_token_prediction_takes_step_time_on_the_head_stage():
    from dataclasses import replace

    with_mtp = replace(MOE, mtp_layers=1)
    gpu = get_gpu("h800")
    dev, _ = make_device(gpu)
    lay = Layout(tp=1, pp=1, dp=16, ep=8, zero=1, micro_batch=1)
    base = step_time(MOE, lay, Workload(4096, 512), dev, default_network(gpu))
    mtp = step_time(with_mtp, lay, Workload(4096, 512), dev, default_network(gpu))
    # one more layer of 16 and another pass through the output head and loss
    assert 1 + 1 / 16 < mtp.parts["compute"] / base.parts["compute"] < 1 + 3 / 16


def test_stages_balance_with_recomputation():
    # with full recomputation the busiest stage is never cheaper than without
    gpu = get_gpu("h800")
    dev, _ = make_device(gpu)
    for pp in (2, 4, 8):
        lay = Layout(tp=1, pp=pp, dp=16, ep=8, zero=1, micro_batch=1)
        none = step_time(MOE, lay, Workload(4096, 512), dev, default_network(gpu))
        full = step_time(MOE, Layout(**{**lay.__dict__, "recompute": "full"}), Workload(4096, 512), dev,
                         default_network(gpu))
        assert full.step_s > none.step_s
