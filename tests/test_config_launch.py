"""Launch command lines read as MODEL (Megatron-LM argument lists for train and plan, `vllm serve` for infer), and
`plan --emit` writing the chosen layout as a stack's launch config that `train` reads back to the same memory."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from gpuplan.cli.main import main
from gpuplan.configs import read_config
from gpuplan.configs.launch import split_args
from gpuplan.configs.shell import parse_script

DATA = Path(__file__).parent / "data" / "configs"
MEGATRON = ["megatron_gpt3_175b.sh", "megatron_mixtral_8x7b.sh"]
VLLM = ["vllm_gpt2_tp4_pp2.txt", "vllm_qwen3_30b_a3b_eplb.txt"]


def _run_json(capsys, argv: list[str], code: int = 0) -> dict:
    assert main(argv + ["--json"]) == code, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _flags(path: Path) -> set[str]:
    """Every --flag of every command in the script (the launcher's too), as the shell expands them."""
    out = set()
    for cmd in parse_script(path.read_text(), path.name).commands:
        out |= {a.flag for a in split_args(cmd.words, cmd.line)[1]}
    return out


@pytest.mark.parametrize("name", MEGATRON + VLLM)
def test_every_argument_is_mapped_or_ignored_with_a_reason(name):
    command = "infer" if name in VLLM else "train"
    report, _ = read_config(str(DATA / name), "model", "MODEL", command)
    keys = report.keys()
    accounted = {k.split(" (")[0].removeprefix("torchrun ") for k in keys}
    accounted |= {"--nproc_per_node", "--nnodes"} if any("--nproc_per_node" in k for k in keys) else set()
    missing = {f for f in _flags(DATA / name) if f not in accounted}
    assert not missing, missing
    assert all(why for _, why in report.ignored)


def test_gpt3_175b_script_equals_the_hand_written_options(capsys):
    from_file = _run_json(capsys, ["train", str(DATA / MEGATRON[0]), "--gpus", "1536"])
    by_hand = _run_json(capsys, ["train", "megatron-175b", "--stack", "megatron", "--tp", "8", "--pp", "16",
                                 "--precision", "mixed-fp16", "--zero", "0", "--batch", "1", "--seq", "2048",
                                 "--attention", "flash", "--grad-accum", "128", "--microbatches", "128",
                                 "--gpus", "1536"])
    assert from_file["memory"] == by_hand["memory"]
    cf = from_file["config_file"]
    assert cf["format"] == "megatron"
    assert any(i["key"].startswith("torchrun --nproc_per_node") and "placeholder" in i["reason"]
               for i in cf["ignored"])  # 8 GPUs cannot hold TP 8 x PP 16


def test_mixtral_script_equals_the_hand_written_options(capsys):
    from_file = _run_json(capsys, ["train", str(DATA / MEGATRON[1]), "--gpus", "64"])
    by_hand = _run_json(capsys, ["train", "mixtral-8x7b-v0.1", "--stack", "megatron", "--pp", "4", "--ep", "8",
                                 "--precision", "mixed-bf16", "--zero", "1", "--batch", "1", "--seq", "4096",
                                 "--attention", "flash", "--grad-accum", "16", "--microbatches", "16",
                                 "--gpus", "64"])
    assert from_file["memory"] == by_hand["memory"]
    ignored = {i["key"]: i["reason"] for i in from_file["config_file"]["ignored"]}
    assert "inside a shell if/for/while block" in ignored["--wandb-project"]
    assert "TP 1" in ignored["--sequence-parallel"]


@pytest.mark.parametrize("name,hand", [
    (VLLM[0], ["gpt2", "--tp", "4", "--pp", "2"]),
    (VLLM[1], ["Qwen/Qwen3-30B-A3B"]),
])
def test_vllm_serve_equals_the_hand_written_options(capsys, name, hand):
    from_file = _run_json(capsys, ["infer", str(DATA / name), "--gpu", "h100-sxm"])
    by_hand = _run_json(capsys, ["infer", *hand, "--engine", "vllm", "--gpu", "h100-sxm"])
    assert from_file["memory"] == by_hand["memory"]
    assert from_file["config_file"]["format"] == "vllm"


def test_vllm_flags_set_the_options(tmp_path, capsys):
    path = tmp_path / "serve.txt"
    path.write_text("# serving\nvllm serve meta-llama/Llama-3.1-8B -tp 2 --max-model-len 32k \\\n"
                    "  --gpu-memory-utilization 0.85 --kv-cache-dtype fp8 --max-num-seqs 64 --enforce-eager "
                    "--port 8000\n")
    from_file = _run_json(capsys, ["infer", str(path), "--gpu", "h100-sxm"])
    by_hand = _run_json(capsys, ["infer", "meta-llama/Llama-3.1-8B", "--engine", "vllm", "--tp", "2", "--context",
                                 "32000", "--gpu-memory-utilization", "0.85", "--kv-dtype", "fp8",
                                 "--max-num-seqs", "64", "--enforce-eager", "--gpu", "h100-sxm"])
    assert from_file["memory"] == by_hand["memory"]
    assert from_file["max_batch"] == by_hand["max_batch"]


def test_plan_pins_the_files_layout(capsys):
    out = _run_json(capsys, ["plan", str(DATA / MEGATRON[1]), "--gpu", "h100-sxm", "--gpus", "64"])
    best = out["plans"][0]
    assert (best["tp"], best["pp"], best["ep"], best["zero"], best["micro_batch"], best["dp_shard"]) == \
        (1, 4, 8, 1, 1, None)
    assert all((p["tp"], p["pp"], p["ep"]) == (1, 4, 8) for p in out["plans"])
    assert out["config_file"]["format"] == "megatron"


def test_shell_subset(tmp_path):
    text = ('#!/bin/bash\nTP=${TP:-"4"}  # tensor parallel\nARGS=(\n  --num-layers 2 # two\n)\nARGS+=(--hidden-size 64)\n'
            "export X=1\ntorchrun --nproc_per_node $TP pretrain_gpt.py ${ARGS[@]} \\\n  --tensor-model-parallel-size "
            "\"$TP\" --save $1 --lr '$notexpanded'\n")
    cmds = parse_script(text, "t.sh").commands
    assert len(cmds) == 1
    words = [w.text for w in cmds[0].words]
    assert words[:4] == ["torchrun", "--nproc_per_node", "4", "pretrain_gpt.py"]
    assert words[4:8] == ["--num-layers", "2", "--hidden-size", "64"]
    assert words[8:10] == ["--tensor-model-parallel-size", "4"]
    assert cmds[0].words[11].unresolved == ("$1",)
    assert words[-1] == "$notexpanded"


BASE = "torchrun --nproc_per_node 8 pretrain_gpt.py --num-layers 32 --hidden-size 4096 --num-attention-heads 32 " \
       "--swiglu --untie-embeddings-and-output-weights --normalization RMSNorm --position-embedding-type rope " \
       "--disable-bias-linear --vocab-size 32000 --seq-length 1024 --micro-batch-size 1 "


@pytest.mark.parametrize("text,named", [
    (BASE + "--tensor-model-parallel-size $TP", "$TP"),
    (BASE + "--bf16 --fp16", "--bf16"),
    (BASE + "--tensor-model-parallel-size 3", "--tensor-model-parallel-size"),
    (BASE + "--num-layer 4", "--num-layer"),
    (BASE + "--seq-length 2048", "--seq-length"),
    (BASE + "--recompute-granularity full --recompute-method block --recompute-num-layers 2", "--recompute-num-layers"),
    (BASE.replace("--vocab-size 32000 ", "--tokenizer-type HuggingFaceTokenizer "), "--tokenizer-type"),
    (BASE.replace("--swiglu ", ""), "--swiglu"),
    (BASE + "--global-batch-size 12", "--global-batch-size"),
])
def test_bad_megatron_files_exit_2_naming_the_argument(tmp_path, capsys, text, named):
    path = tmp_path / "run.sh"
    path.write_text(text + "\n")
    assert main(["train", str(path), "--gpus", "8"]) == 2
    assert named in capsys.readouterr().err


def test_raw_dimensions_from_megatron_arguments(tmp_path, capsys):
    path = tmp_path / "run.sh"
    path.write_text(BASE + "--group-query-attention --num-query-groups 8 --ffn-hidden-size 11008\n")
    from_file = _run_json(capsys, ["train", str(path), "--gpus", "8"])
    by_hand = _run_json(capsys, ["train", "--layers", "32", "--hidden", "4096", "--heads", "32", "--kv-heads", "8",
                                 "--ffn", "11008", "--vocab", "32000", "--stack", "megatron", "--precision", "fp32",
                                 "--zero", "0", "--seq", "1024", "--attention", "flash", "--gpus", "8"])
    assert from_file["memory"] == by_hand["memory"]


@pytest.mark.parametrize("command,name,named", [
    ("train", VLLM[0], "gpuplan infer"),
    ("infer", MEGATRON[0], "gpuplan train or plan"),
])
def test_a_launch_file_for_another_command_says_which(capsys, command, name, named):
    assert main([command, str(DATA / name)]) == 2
    assert named in capsys.readouterr().err


def test_bad_vllm_files_exit_2_naming_the_argument(tmp_path, capsys):
    path = tmp_path / "serve.txt"
    path.write_text("vllm serve gpt2 --tensor-paralel-size 2\n")
    assert main(["infer", str(path)]) == 2
    assert "--tensor-paralel-size" in capsys.readouterr().err


def test_accelerate_fsdp_config_equals_the_hand_written_options(capsys):
    import yaml

    path = DATA / "accelerate_fsdp.yaml"
    report, _ = read_config(str(path), "from", "--from")
    data = yaml.safe_load(path.read_text())
    leaves = {k for k, v in data.items() if not isinstance(v, dict)} | {f"fsdp_config.{k}" for k in data["fsdp_config"]}
    keys = report.keys()
    assert leaves <= {k.split(" (")[0] for k in keys}
    from_file = _run_json(capsys, ["train", "llama-3.1-8b", "--from", str(path), "--seq", "2048"])
    by_hand = _run_json(capsys, ["train", "llama-3.1-8b", "--framework", "torch", "--gpus", "2", "--precision",
                                 "amp-bf16", "--zero", "3", "--recompute", "none", "--seq", "2048"])
    assert from_file["memory"] == by_hand["memory"]


def test_accelerate_config_pointing_at_a_deepspeed_json_says_to_give_that(capsys):
    assert main(["train", "llama-3.1-8b", "--from", str(DATA / "accelerate_deepspeed.yaml")]) == 2
    assert "deepspeed_config.deepspeed_config_file" in capsys.readouterr().err


EMITS = [
    ("megatron", ["llama-3.1-8b", "--gpus", "16"]),
    ("megatron", ["mixtral-8x7b-v0.1", "--gpus", "64", "--recompute", "full"]),
    ("deepspeed", ["llama-3.1-8b", "--gpus", "8", "--framework", "deepspeed", "--tp", "1", "--pp", "1", "--cp", "1",
                   "--recompute", "none"]),
    ("torchtitan", ["llama-3.1-8b", "--gpus", "8", "--framework", "torch", "--precision", "amp-bf16", "--zero", "0,3",
                    "--recompute", "none,full", "--pp", "1"]),
    ("accelerate", ["llama-3.1-8b", "--gpus", "16", "--framework", "torch", "--precision", "amp-bf16", "--zero",
                    "0,2,3", "--tp", "1", "--pp", "1", "--cp", "1"]),
    ("accelerate", ["llama-3.1-8b", "--gpus", "8", "--framework", "deepspeed", "--tp", "1", "--pp", "1", "--cp", "1",
                    "--recompute", "none"]),
]


@pytest.mark.parametrize("fmt,plan", EMITS)
def test_emitted_config_reads_back_to_the_plans_memory(tmp_path, capsys, fmt, plan):
    out_path = tmp_path / ("launch" + {"megatron": ".sh", "deepspeed": ".json", "torchtitan": ".toml",
                                       "accelerate": ".yaml"}[fmt])
    out = _run_json(capsys, ["plan", *plan, "--gpu", "h100-sxm", "--emit", fmt, "--emit-out", str(out_path)])
    assert out["emit"]["format"] == fmt and out_path.read_text() == out["emit"]["text"]
    best = out["plans"][0]
    train_command = shlex.split(out["emit"]["train_command"])[1:]  # 'gpuplan train ... --stack X'
    expected = _run_json(capsys, train_command)["memory"]
    if fmt == "deepspeed":
        got = _run_json(capsys, ["train", plan[0], "--from", str(out_path), "--gpus", str(best["gpus"]), "--seq",
                                 "4096", "--gpu", "h100-sxm"])
    elif fmt == "accelerate":  # the micro-batch (and, with FSDP, the accumulation) live in the training script
        m = str(1024 // (best["dp"] * best["micro_batch"]))
        extra = ["--grad-accum", m] if "FSDP" in out["emit"]["text"] else []
        got = _run_json(capsys, ["train", plan[0], "--from", str(out_path), "--seq", "4096", "--batch",
                                 str(best["micro_batch"]), *extra, "--gpu", "h100-sxm"])
    else:
        got = _run_json(capsys, ["train", str(out_path), "--gpus", str(best["gpus"]), "--gpu", "h100-sxm"])
    assert got["memory"] == expected


@pytest.mark.parametrize("plan,named", [
    (["llama-3.1-8b", "--gpus", "8", "--emit", "vllm"], "training layout"),
    (["llama-3.1-8b", "--gpus", "16", "--framework", "deepspeed", "--pp", "2", "--emit", "deepspeed"], "PP 2"),
    (["llama-3.1-8b", "--gpus", "8", "--emit", "torchtitan"], "--framework megatron"),
    (["gemma-2-9b", "--gpus", "8", "--emit", "megatron"], "sliding-window attention"),
    (["llama-3.1-8b", "--gpus", "16", "--framework", "torch", "--tp", "2", "--emit", "accelerate"], "TP 2"),
])
def test_a_layout_a_format_cannot_express_is_refused(capsys, plan, named):
    assert main(["plan", *plan, "--gpu", "h100-sxm"]) == 2
    assert named in capsys.readouterr().err
