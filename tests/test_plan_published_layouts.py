"""Published layouts that ran are accepted by `plan` when pinned (every degree, the micro-batch and recompute), and
the memory figure behind each stays within what the GPU held."""

import pytest

from gpuplan import api

# (preset, GPUs, TP, PP, DP, global batch, micro-batch, recompute, ZeRO, source)
MEGATRON = [
    ("megatron-22b", 8, 8, 1, 1, 4, 4, "selective", 0, "Korthikanti et al. 2022 Table 3"),
    ("megatron-175b", 64, 8, 8, 1, 64, 1, "selective", 0, "Korthikanti et al. 2022 Table 3"),
    ("megatron-530b", 280, 8, 35, 1, 280, 1, "selective", 0, "Korthikanti et al. 2022 Table 3"),
    ("megatron-1t", 512, 8, 64, 1, 512, 1, "selective", 0, "Korthikanti et al. 2022 Table 3"),
    ("megatron-1t", 3072, 8, 64, 6, 3072, 1, "full", 0, "Narayanan et al. 2021 Table 1"),
]


@pytest.mark.parametrize("model,gpus,tp,pp,dp,batch,mb,rc,zero,source", MEGATRON)
def test_megatron_published_layouts_are_accepted(model, gpus, tp, pp, dp, batch, mb, rc, zero, source):
    out = api.run("plan", model, gpu="a100-80gb", gpus=gpus, seq=2048, global_batch=batch, tp=[tp], pp=[pp],
                  cp=[1], vpp=[1], zero=[zero], micro_batch=[mb], recompute=rc, top=1)
    plan = out["plans"][0]
    assert (plan["tp"], plan["pp"], plan["dp"], plan["micro_batch"]) == (tp, pp, dp, mb), source
    assert plan["memory_total_bytes"] <= 80e9


def test_megatron_gelu_is_the_fused_kernel():
    # Megatron's fused bias-GELU keeps only its input: the 1T layer of Korthikanti Table 3 (TP 8, SP, selective)
    # saves about 34·s·b·h/t bytes (the paper's per-layer figure), not the Hugging Face tanh formula's temporaries
    mega = api.run("train", "megatron-1t", batch=1, seq=2048, framework="megatron", precision="mixed-bf16",
                   recompute="selective", gpus=8, tp=8, sp=True)
    torch = api.run("train", "megatron-1t", batch=1, seq=2048, framework="torch", precision="amp-bf16",
                    recompute="selective", gpus=8, tp=8, sp=True)
    assert mega["memory"]["activations_bytes"] < torch["memory"]["activations_bytes"]
    per_layer = mega["memory"]["activations_bytes"] / 128
    assert per_layer == pytest.approx(34 * 2048 * 25600 / 8, rel=0.15)


def test_llama3_405b_published_layout_is_accepted():
    # Llama 3 paper Table 4: 8,192 H100, TP 8, PP 16, DP 64, seq 8192, 2,048 sequences per step
    out = api.run("plan", "llama-3.1-405b", gpu="h100-sxm", gpus=8192, seq=8192, global_batch=2048, tp=[8],
                  pp=[16], cp=[1], zero=[1], micro_batch=[1], top=1)
    plan = out["plans"][0]
    assert (plan["tp"], plan["pp"], plan["dp"]) == (8, 16, 64)


@pytest.mark.parametrize("extra,said", [
    (["--micro-batch", "3"], "the pin --micro-batch 3 divides none of the [8, 16, 32, 64] sequences"),
    (["--pp", "3"], "divisibility: no tp x cp x pp"),
    (["--pp", "8", "--global-batch", "8", "--schedule", "dualpipe"], "the pin --schedule dualpipe"),
])
def test_nothing_fits_names_the_constraint(capsys, extra, said):
    from gpuplan.cli.main import main

    argv = ["plan", "llama-3.1-8b", "--gpu", "h100-sxm", "--gpus", "8", "--seq", "4096", "--global-batch", "64"]
    assert main(argv + extra) == 2
    assert said in capsys.readouterr().err


def test_nothing_fits_says_by_how_much_memory(capsys):
    from gpuplan.cli.main import main

    assert main(["plan", "llama-3.1-70b", "--gpu", "h100-sxm", "--gpus", "8", "--seq", "4096", "--global-batch",
                 "64", "--tp", "1", "--pp", "1"]) == 2
    err = capsys.readouterr().err
    assert "memory: the least found is" in err and "GiB over the 79.2 GiB usable" in err
