"""``gpuplan models``: QUERY, --family, --newest and their JSON; an unknown family is refused naming the families."""

from __future__ import annotations

import json

import pytest

from gpuplan.cli.main import main
from gpuplan.model.presets import load_presets


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def rows(capsys, *argv: str) -> list[dict]:
    code, out, err = run(capsys, "models", *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_every_row_has_release_date_and_modality(capsys):
    got = rows(capsys)
    assert [r["id"] for r in got] == list(load_presets())  # file order, every preset
    for r in got:
        assert set(r) == {"id", "hf_id", "family", "params", "active", "published_params", "released", "modality"}
        assert r["released"] == load_presets()[r["id"]].released.isoformat()
    by_id = {r["id"]: r for r in got}
    assert by_id["llama-3.1-8b"]["released"] == "2024-07-23" and by_id["llama-3.1-8b"]["modality"] == "text"
    assert by_id["llama-4-scout-17b-16e"]["modality"] == "vision-language"
    assert by_id["gemma-3-4b-pt"]["modality"] == "vision-language" and by_id["gemma-3-1b-pt"]["modality"] == "text"


def test_family_filter(capsys):
    got = rows(capsys, "--family", "qwen3_moe")
    assert got and {r["family"] for r in got} == {"qwen3_moe"}
    assert {r["id"] for r in got} >= {"qwen3-30b-a3b", "qwen3-235b-a22b"}
    assert rows(capsys, "--family", "QWEN3_MOE") == got  # case-insensitive, as QUERY
    assert [r["id"] for r in rows(capsys, "235b", "--family", "qwen3_moe")] == ["qwen3-235b-a22b",
                                                                          "qwen3-235b-a22b-instruct-2507"]
    assert rows(capsys, "llama", "--family", "mixtral") == []  # a known family that no row of QUERY has


def test_unknown_family_is_refused_listing_the_families(capsys):
    code, out, err = run(capsys, "models", "--family", "lama")
    assert code == 2 and out == ""
    assert "--family='lama': must be one of " in err
    families = err.split("must be one of ", 1)[1].strip().split(", ")
    assert families == sorted({p.family for p in load_presets().values()})
    assert "llama" in families and "deepseek_v3" in families


def test_newest(capsys):
    everything = rows(capsys)
    dates = sorted((r["released"] for r in everything), reverse=True)
    got = rows(capsys, "--newest", "5")
    assert len(got) == 5
    assert [r["released"] for r in got] == dates[:5]  # newest first
    assert all(a["released"] > b["released"] or a["released"] == b["released"] and a["id"] < b["id"]
               for a, b in zip(got, got[1:]))
    # filters first, then the N most recent of what is left
    llama = rows(capsys, "--family", "llama", "--newest", "2")
    assert [r["id"] for r in llama] == ["llama-3.3-70b-instruct", "llama-3.2-1b"]
    assert len(rows(capsys, "--newest", "16384")) == len(everything)  # the bound: more than there are presets


@pytest.mark.parametrize("value", ["0", "-1", "2.5", "x", "16385"])
def test_newest_must_be_a_count(capsys, value):
    code, out, err = run(capsys, "models", "--newest", value)
    assert code == 2 and "--newest" in err and "Traceback" not in err


def test_table_columns(capsys):
    code, out, _ = run(capsys, "models", "gpt-oss", "--newest", "1", "--lang", "en")
    assert code == 0
    head, rule, row = out.splitlines()[:3]
    assert head.split() == ["id", "Hugging", "Face", "id", "family", "params", "active", "released", "modality"]
    assert row.split() == ["gpt-oss-120b", "openai/gpt-oss-120b", "gpt_oss", "116.83B", "5.71B", "2025-08-05", "text"]


def test_python_api_takes_the_filters():
    from gpuplan import api

    got = api.run("models", family="gpt_oss", newest=1)
    assert [r["id"] for r in got] == ["gpt-oss-120b"]
