"""``--xlsx``: the spreadsheet's formulas, recomputed here from its input cells, give gpuplan's own numbers, and
changing an input moves the results as gpuplan would."""

from __future__ import annotations

import json
import math
import re

import pytest

from gpuplan.cli.main import main

openpyxl = pytest.importorskip("openpyxl")

SEED = ("time", "--params", "70B", "--tokens", "2T", "--gpu", "a800", "--days", "90", "--mfu", "0.4",
        "--gpu-multiple", "16", "--cluster", "--round", "pow2", "--currency", "CNY", "--fx", "7.2")


FUNCS = {"ROUNDUP": "_roundup", "ROUND": "_round", "INT": "_int", "IF": "_if", "LOG": "_log", "MAX": "max"}


class Sheet:
    """Evaluates the workbook's formulas (the few functions gpuplan writes) from its input cells."""

    def __init__(self, path) -> None:
        self.ws = openpyxl.load_workbook(path).active
        self.ref = {row[3].value: f"B{row[3].row}" for row in self.ws.iter_rows(min_row=3)
                    if row[3].value and row[3].value != "key"}
        self.overrides: dict[str, object] = {}

    def set(self, key: str, value) -> None:
        self.overrides[self.ref[key]] = value

    def __getitem__(self, key: str):
        return self._cell(self.ref[key])

    def _cell(self, ref: str):
        value = self.overrides.get(ref, self.ws[ref].value)
        if isinstance(value, str) and value.startswith("="):
            return self._eval(value[1:])
        return value

    def _eval(self, formula: str):
        expr = re.sub(r"\b([A-Z]+)\(", lambda m: FUNCS[m.group(1)] + "(", formula)
        expr = re.sub(r"\bB(\d+)\b", r'_c("B\1")', expr)
        expr = re.sub(r"(?<![<>!=])=(?!=)", "==", expr).replace("^", "**")
        env = {"_c": self._cell, "_roundup": lambda x, n: math.ceil(x * 10**n) / 10**n, "_round": round,
               "_int": math.floor, "_if": lambda c, a, b: a if c else b, "_log": math.log, "max": max}
        return eval(expr, {"__builtins__": {}}, env)  # the formulas this module's writer produced


def run_json(capsys, argv, path):
    assert main([*argv, "--json", "--xlsx", str(path)]) == 0
    return json.loads(capsys.readouterr().out)


def test_time_sheet_recomputes_gpuplans_numbers(capsys, tmp_path):
    data = run_json(capsys, SEED, tmp_path / "run.xlsx")
    s, c = Sheet(tmp_path / "run.xlsx"), data["cluster"]
    assert s["total_flop"] == pytest.approx(data["total_flop"], rel=1e-12)
    assert s["days"] == pytest.approx(data["days"], rel=1e-12)
    assert s["gpu_hours"] == pytest.approx(data["gpu_hours"], rel=1e-12)
    for key, want in (("spared", c["gpus_with_spares"]), ("cluster_gpus", c["gpus"]), ("servers", c["servers"]),
                      ("node_w", c["node_power_w"]), ("per_rack", c["nodes_per_rack"]), ("racks", c["racks"])):
        assert s[key] == want, key
    assert s["facility_mw"] * 1e6 == pytest.approx(c["facility_power_w"], rel=1e-12)
    assert s["energy"] * 1000 == pytest.approx(c["energy_kwh"], rel=1e-12)
    for key in ("rent", "capex", "depreciation", "power_cost", "purchase"):
        assert s[key] == pytest.approx(c[f"{key}_usd"], rel=1e-12), key
    assert s["rent_fx"] == pytest.approx(c["in_currency"]["rent"], rel=1e-12)


def test_time_sheet_inputs_drive_the_formulas(capsys, tmp_path):
    run_json(capsys, SEED, tmp_path / "run.xlsx")
    s = Sheet(tmp_path / "run.xlsx")
    days = s["days"]
    s.set("gpus_run", 1760)
    assert s["days"] == pytest.approx(days / 2)
    assert s["cluster_gpus"] == 2048  # 1,760 + 5 % = 1,848 -> 16 x 2^7
    s.set("rule", "unit")
    assert s["cluster_gpus"] == 1856  # the next multiple of 16
    s.set("mfu", 0.2)
    assert s["days"] == pytest.approx(days)
    # the same answers from gpuplan itself
    data = json.loads(_json(capsys, "time", "--params", "70B", "--tokens", "2T", "--gpu", "a800", "--gpus", "1760",
                            "--mfu", "0.2", "--cluster", "--gpu-multiple", "16"))
    assert data["cluster"]["gpus"] == 1856 and data["days"] == pytest.approx(days)


def _json(capsys, *argv: str) -> str:
    assert main([*argv, "--json"]) == 0
    return capsys.readouterr().out


def test_plan_sheet_matches_the_winner(capsys, tmp_path):
    argv = ("plan", "llama-2-70b-hf", "--gpu", "a800", "--tokens", "2T", "--days", "90", "--cluster", "--top", "1")
    data = run_json(capsys, argv, tmp_path / "plan.xlsx")
    s, win, c = Sheet(tmp_path / "plan.xlsx"), data["plans"][0], data["cluster"]
    assert s["days"] == pytest.approx(win["days"], rel=1e-9)
    assert s["cluster_gpus"] == c["gpus"] and s["servers"] == c["servers"] and s["racks"] == c["racks"]
    assert s["rent"] == pytest.approx(c["rent_usd"], rel=1e-9)
    assert s["purchase"] == pytest.approx(c["purchase_usd"], rel=1e-9)


def test_bad_file_names_are_refused_before_any_work(capsys, tmp_path):
    assert main([*SEED, "--xlsx", str(tmp_path / "run.csv")]) == 2
    assert "--xlsx" in capsys.readouterr().err
    assert main([*SEED, "--xlsx", str(tmp_path / "missing" / "run.xlsx")]) == 2
