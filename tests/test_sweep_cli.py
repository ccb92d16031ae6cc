"""`gpuplan sweep` and `gpuplan compare`: each point equals what `gpuplan train` / `infer` print for it."""

from __future__ import annotations

import contextlib
import io
import json
import struct

import pytest

from gpuplan.cli.main import main


def run(argv: list[str]) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(argv)
    return rc, buf.getvalue()


def run_json(argv: list[str]) -> dict:
    rc, out = run([*argv, "--json"])
    assert rc == 0, argv
    return json.loads(out)


TRAIN = ["llama-3.1-8b", "--gpu", "h100-sxm", "--seq", "2048", "--recompute", "full"]


def test_sweep_batch_matches_train_point_by_point():
    out = run_json(["sweep", *TRAIN, "--over", "batch", "--values", "1,2,4"])
    assert out["command"] == "train" and [r["value"] for r in out["rows"]] == [1, 2, 4]
    for row in out["rows"]:
        single = run_json(["train", *TRAIN, "--batch", str(row["value"])])
        assert row["memory"] == single["memory"] and row["fits"] == single["fits"]
    totals = [r["memory"]["total_bytes"] for r in out["rows"]]
    acts = [r["memory"]["activations_bytes"] for r in out["rows"]]
    assert totals == sorted(totals) and acts == sorted(acts) and acts[0] < acts[-1]  # memory grows with the batch


def test_sweep_gpus_matches_train_and_never_raises_memory():
    base = ["llama-3.1-8b", "--gpu", "h100-sxm", "--zero", "3"]
    out = run_json(["sweep", *base, "--over", "gpus", "--values", "1,2,4,8"])
    for row in out["rows"]:
        assert row["memory"] == run_json(["train", *base, "--gpus", str(row["value"])])["memory"]
    totals = [r["memory"]["total_bytes"] for r in out["rows"]]
    assert totals == sorted(totals, reverse=True)


def test_sweep_table_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "sweep.png"
    rc, text = run(["sweep", "llama-3.1-8b", "--gpu", "h100-sxm", "--method", "lora", "--over", "seq",
                    "--values", "1k,2k,4k", "--plot", str(png), "--lang", "en"])
    assert rc == 0
    assert "sequence length" in text and "total (device) GiB" in text
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (800, 450)


def test_sweep_refuses_what_it_cannot_do(capsys):
    assert main(["sweep", *TRAIN, "--over", "batch", "--values", "1,2", "--batch", "3"]) == 2
    assert "swept by --over batch" in capsys.readouterr().err
    assert main(["sweep", *TRAIN, "--over", "batch", "--values", "1", "--plot", "x.jpg"]) == 2
    assert main(["sweep", *TRAIN, "--over", "batch", "--values", "1,zero"]) == 2


def test_sweep_context_uses_infer():
    out = run_json(["sweep", "llama-3.1-8b", "--gpu", "h100-sxm", "--over", "context", "--values", "4096,32768"])
    assert out["command"] == "infer" and out["option"] == "--context"
    kv = [r["memory"]["kv_cache_bytes"] for r in out["rows"]]
    assert kv[1] > kv[0] > 0


def test_compare_two_scenarios(tmp_path):
    a = tmp_path / "a.toml"
    a.write_text('name = "FSDP on 8"\nmodel = "llama-3.1-8b"\ngpu = "h100-sxm"\ngpus = 8\nzero = 3\nseq = 4096\n')
    b = tmp_path / "b.yaml"
    pytest.importorskip("yaml")
    b.write_text("command: train\nname: LoRA on 1\nmodel: llama-3.1-8b\ngpu: h100-sxm\nmethod: lora\nseq: 4096\n")
    out = run_json(["compare", str(a), str(b)])
    names = [s["name"] for s in out["scenarios"]]
    assert names == ["FSDP on 8", "LoRA on 1"]
    for s in out["scenarios"]:  # each column is exactly `gpuplan train` with the scenario's options
        assert s["result"]["memory"] == run_json(s["argv"][1:])["memory"]
    assert out["scenarios"][1]["result"]["params"]["trainable"] < out["scenarios"][0]["result"]["params"]["trainable"]
    rc, text = run(["compare", str(a), str(b), "--lang", "zh"])
    assert rc == 0 and "FSDP on 8" in text and "权重" in text and "B - A" in text


def test_compare_needs_two(tmp_path, capsys):
    a = tmp_path / "a.toml"
    a.write_text('model = "llama-3.1-8b"\n')
    assert main(["compare", str(a)]) == 2


def test_sweep_from_a_scenario_file(tmp_path):
    s = tmp_path / "sweep.toml"
    s.write_text('model = "llama-3.1-8b"\ngpu = "h100-sxm"\nover = "batch"\nvalues = [1, 2]\nmethod = "lora"\n')
    out = run_json(["sweep", "--config", str(s), "--seq", "1024"])  # --over/--values come from the file
    assert [r["value"] for r in out["rows"]] == [1, 2]
    assert out["rows"][1]["memory"] == run_json(["train", "llama-3.1-8b", "--gpu", "h100-sxm", "--method", "lora",
                                                 "--seq", "1024", "--batch", "2"])["memory"]


def test_a_failing_point_is_named_under_the_table(capsys):
    """A point the command refuses keeps its row (marked) and its message goes under the table, not into a cell."""
    from gpuplan.cli.main import main

    rc = main(["sweep", "gpt2", "--over", "context", "--values", "512,4096", "--gpu", "h100-sxm"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    table_width = max(len(line) for line in out if line.startswith("512"))
    assert table_width < 200
    assert any(line.startswith("[1] 4,096: --context=4096") for line in out)
