"""Bad and odd input to every surface: the CLI, the Python API and the web JSON API, from one generator.

Each case is one command with random option values drawn from each option's description (``gpuplan.api.options``):
valid values, edge values (0, -1, fractions, huge, 1e300, 1e-300, NaN / Infinity, empty or very long text, wrong
types, unknown choices) and random models (presets, unknown names, raw dimensions). Every answer must be one of:

- a result whose JSON numbers are all finite and whose ``*_bytes`` are >= 0;
- a refusal naming the field (CLI: exit 2 with ``gpuplan <command>: error: <field>=...`` or a usage line naming the
  option; Python API: ``InputError`` with its ``field``; web: 4xx with ``field`` in the JSON body, or 503/504 for a
  slow request), or exit 3 / ``fits: false`` where asked.

Anything else (a traceback, exit 1, HTTP 500, a non-JSON body, a non-finite number, a negative size) is a failure,
printed with the input that produced it.

    python benchmarks/fuzz.py                       # 10,000 cases over the three surfaces (a few minutes)
    python benchmarks/fuzz.py --cases 500 --seed 7  # a quick run

``tests/test_fuzz.py`` runs a few hundred of the same cases in the suite.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

# Commands and their weight in the mix; plan's search is slower, so it is drawn less often and on small models.
COMMANDS = {"params": 1, "train": 5, "infer": 4, "time": 2, "plan": 1}
SURFACES = ("cli", "api", "web")
PRESETS = ("llama-3.2-1b", "qwen2.5-0.5b", "llama-3.1-8b", "mixtral-8x7b-v0.1", "deepseek-v2-lite", "gpt2",
           "gemma-2-2b", "falcon-7b", "qwen3-30b-a3b", "phi-3-mini-4k-instruct")
BAD_MODELS = ("", "no-such-model", "a" * 300, "org/name/extra", "../../etc/passwd", "llama-3.1-8b\x00", "ünïcode",
              "-1", "{}")
EDGE_NUMBERS: tuple[Any, ...] = (0, -1, 1, 2, 3, 7, 1.5, -0.5, 1e300, 1e-300, 10**30, 2**63, float("nan"),
                                 float("inf"), float("-inf"), "NaN", "Infinity", "1e999", "", " ", "7B", "128k",
                                 "2T", "1.5", "abc", True, None, [1], {"a": 1})
EDGE_TEXT: tuple[Any, ...] = ("", " ", "x" * 400, "h100-sxm", "a100-80gb", "rtx-4090", "ascend-910b", "unknown",
                              "ALL", "\u0000", "💥", 5, None, ["a"], "q_proj,v_proj", "*")
SLOW_CAP = {"plan": {"gpus": 64, "layers": 8}}  # keep plan's search small enough to answer in well under a second


@dataclass
class Outcome:
    surface: str
    command: str
    model: Any
    opts: dict[str, Any]
    kind: str  # ok | refused | failure
    detail: str = ""


@dataclass
class Tally:
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[Outcome] = field(default_factory=list)
    disagreements: list[list[Outcome]] = field(default_factory=list)  # one input answered on one surface only

    def add(self, o: Outcome) -> None:
        key = f"{o.surface} {o.kind}"
        self.counts[key] = self.counts.get(key, 0) + 1
        if o.kind == "failure":
            self.failures.append(o)


def _value(opt: dict[str, Any], rng: random.Random) -> Any:
    """A value for one option: mostly plausible, often at or past an edge."""
    kind, choices = opt.get("kind"), opt.get("choices")
    r = rng.random()
    if choices and r < 0.75:
        return rng.choice(list(choices))
    if kind == "bool":
        return rng.choice((True, False, True, "yes", 0, None))
    if kind in ("count", "int", "float", "real", "size") or opt.get("maximum") is not None:
        if r < 0.75:
            hi = opt.get("maximum") or 1024
            return rng.choice((1, 2, 4, 8, rng.randint(1, max(1, min(int(hi), 4096)))))
        return rng.choice(EDGE_NUMBERS)
    if kind == "list":
        return rng.choice((["q_proj"], ["all-linear"], [], [""], ["x" * 200], "q_proj,v_proj"))
    return rng.choice(EDGE_TEXT)


def draw(rng: random.Random) -> tuple[str, Any, dict[str, Any]]:
    """One case: (command, model or None, options)."""
    from gpuplan import api

    command = rng.choices(list(COMMANDS), weights=list(COMMANDS.values()))[0]
    opts_meta = {o["name"]: o for o in api.options(command)}
    r = rng.random()
    model: Any = rng.choice(PRESETS) if r < 0.8 else (rng.choice(BAD_MODELS) if r < 0.9 else None)
    opts: dict[str, Any] = {}
    names = list(opts_meta)
    for name in rng.sample(names, k=min(len(names), rng.choice((0, 1, 1, 2, 2, 3, 5)))):
        opts[name] = _value(opts_meta[name], rng)
    if model is None:
        for dim, v in (("layers", 4), ("hidden", 1024), ("heads", 16), ("vocab", 32000)):
            if dim in opts_meta and rng.random() < 0.8:
                opts.setdefault(dim, v if rng.random() < 0.8 else _value(opts_meta[dim], rng))
    if command == "plan":
        model = rng.choice(("llama-3.2-1b", "qwen2.5-0.5b", None))
        if model is None:
            opts.update(layers=4, hidden=1024, heads=16, vocab=32000)
        opts.setdefault("gpu", "h100-sxm")
        for name, cap in SLOW_CAP["plan"].items():
            v = opts.get(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > cap:
                opts[name] = cap
            elif isinstance(v, str) and name == "gpus":
                opts[name] = 8
        opts.setdefault("gpus", rng.choice((1, 2, 8)))
    if command == "time":
        opts.setdefault("tokens", rng.choice(("1B", "15T", 10**9)))
    return command, model, opts


def _finite(obj: Any, path: str = "") -> str | None:
    """The first non-finite number or negative size in ``obj``, as a path, or None."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return None
    if isinstance(obj, float) and not math.isfinite(obj):
        return f"{path} = {obj}"
    # headroom_bytes is capacity - total: negative says by how much it does not fit (docs/interface.md)
    if isinstance(obj, (int, float)) and path.endswith("_bytes") and obj < 0 and not path.endswith("headroom_bytes"):
        return f"{path} = {obj} (negative size)"
    if isinstance(obj, int) and abs(obj) >= 2**63:
        return f"{path} = {obj} (beyond 64-bit)"
    if isinstance(obj, dict):
        for k, v in obj.items():
            if (bad := _finite(v, f"{path}.{k}" if path else str(k))) is not None:
                return bad
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            if (bad := _finite(v, f"{path}[{i}]")) is not None:
                return bad
    return None


def _argv(command: str, model: Any, opts: dict[str, Any], options: dict[str, dict]) -> list[str]:
    argv = [command] + ([str(model)] if model is not None else [])
    for name, v in opts.items():
        flag = options[name]["flag"]
        if options[name].get("kind") == "bool":
            if v is True:
                argv.append(flag)
            elif v not in (False, None):
                argv += [flag, str(v)]  # a value given to a switch: argparse must refuse it
            continue
        if v is None:
            continue
        if isinstance(v, list):
            v = ",".join(map(str, v))
        argv += [flag, str(v)]
    return argv + ["--json"]


def run_cli(command: str, model: Any, opts: dict[str, Any]) -> Outcome:
    from gpuplan import api
    from gpuplan.cli.main import main

    argv = _argv(command, model, opts, {o["name"]: o for o in api.options(command)})
    if any("\x00" in a for a in argv):  # a NUL cannot reach a real command line
        argv = [a.replace("\x00", "") for a in argv]
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - every escape is what we look for
        return Outcome("cli", command, model, opts, "failure", f"{type(exc).__name__}: {exc}")
    text = err.getvalue()
    if code == 0:
        try:
            payload = json.loads(out.getvalue(), parse_constant=lambda c: float("nan"))
        except ValueError as exc:
            return Outcome("cli", command, model, opts, "failure", f"stdout is not JSON: {exc}")
        bad = _finite(payload)
        return Outcome("cli", command, model, opts, "failure" if bad else "ok", bad or "")
    if code in (2, 3) and command == "plan" and out.getvalue().lstrip().startswith("{"):
        # no layout fits: a JSON answer with an empty plan list and the reason (docs/interface.md)
        payload = json.loads(out.getvalue())
        ok = payload.get("plans") == [] and bool(payload.get("reason")) and _finite(payload) is None
        return Outcome("cli", command, model, opts, "refused" if ok else "failure", "" if ok else str(payload)[:300])
    if code in (2, 3) and "Traceback" not in text:
        named = "error:" in text or "=" in text
        return Outcome("cli", command, model, opts, "refused" if named else "failure",
                       "" if named else f"exit {code} without naming the field: {text[-300:]}")
    return Outcome("cli", command, model, opts, "failure", f"exit {code}: {text[-600:]}")


def run_api(command: str, model: Any, opts: dict[str, Any]) -> Outcome:
    from gpuplan import api
    from gpuplan.errors import InputError

    try:
        payload = api.run(command, model, **opts) if model is not None else api.run(command, **opts)
    except InputError as exc:
        ok = bool(getattr(exc, "field", None))
        return Outcome("api", command, model, opts, "refused" if ok else "failure", "" if ok else str(exc))
    except BaseException as exc:  # noqa: BLE001
        return Outcome("api", command, model, opts, "failure", f"{type(exc).__name__}: {exc}")
    bad = _finite(payload)
    return Outcome("api", command, model, opts, "failure" if bad else "ok", bad or "")


def _web_client() -> Callable[..., Any]:
    from fastapi.testclient import TestClient

    from gpuplan.web import create_app

    client = TestClient(create_app(), raise_server_exceptions=False)
    return client.post


def run_web(post: Callable[..., Any], command: str, model: Any, opts: dict[str, Any]) -> Outcome:
    body = dict(opts)
    if model is not None:
        body["model"] = model
    raw = json.dumps(body, allow_nan=True, default=str)  # NaN / Infinity literals go out as a careless client sends
    r = post(f"/api/v1/{command}", content=raw, headers={"content-type": "application/json"})
    try:
        payload = r.json()
    except ValueError:
        return Outcome("web", command, model, opts, "failure", f"HTTP {r.status_code}, body not JSON: {r.text[:200]}")
    if r.status_code == 200:
        bad = _finite(payload)
        return Outcome("web", command, model, opts, "failure" if bad else "ok", bad or "")
    if r.status_code in (503, 504):
        return Outcome("web", command, model, opts, "refused", f"HTTP {r.status_code}")
    if 400 <= r.status_code < 500:
        named = "field" in json.dumps(payload) or "loc" in json.dumps(payload)
        return Outcome("web", command, model, opts, "refused" if named else "failure",
                       "" if named else f"HTTP {r.status_code} without a field: {payload}")
    return Outcome("web", command, model, opts, "failure", f"HTTP {r.status_code}: {str(payload)[:400]}")


def fuzz(cases: int, seed: int, surfaces: tuple[str, ...] = SURFACES) -> Tally:
    """``cases`` inputs, each sent to every surface in ``surfaces`` (so cases x surfaces answers)."""
    rng = random.Random(seed)
    tally = Tally()
    post = _web_client() if "web" in surfaces else None
    for _ in range(cases):
        command, model, opts = draw(rng)
        answers = []
        for surface in surfaces:
            if surface == "cli":
                answers.append(run_cli(command, model, opts))
            elif surface == "api":
                answers.append(run_api(command, model, opts))
            else:
                answers.append(run_web(post, command, model, opts))
        for o in answers:
            tally.add(o)
        nul = "\x00" in repr((model, opts)) or "\\x00" in repr((model, opts))  # the CLI gets it without the NUL
        if not nul and len({o.kind for o in answers if o.detail not in ("HTTP 503", "HTTP 504")}) > 1:
            tally.disagreements.append(answers)
    return tally


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=3400, help="generated inputs, each sent to every surface "
                                                             "(default 3,400: over 10,000 answers)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--surfaces", nargs="+", choices=SURFACES, default=list(SURFACES))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    tally = fuzz(args.cases, args.seed, tuple(args.surfaces))
    total = sum(tally.counts.values())
    print(f"{total:,} answers from {args.cases:,} generated inputs x {len(args.surfaces)} surfaces "
          f"(seed {args.seed}) in {time.perf_counter() - t0:.0f} s")
    for key in sorted(tally.counts):
        print(f"  {key:<16} {tally.counts[key]:>7,}")
    print(f"  inputs answered differently by the surfaces: {len(tally.disagreements):,}")
    for o in tally.failures[:40]:
        print(f"FAIL {o.surface} {o.command} model={o.model!r} {o.opts!r}\n     {o.detail}")
    for answers in tally.disagreements[:10]:
        o = answers[0]
        print(f"DIFFER {o.command} model={o.model!r} {o.opts!r}: "
              + "; ".join(f"{a.surface} {a.kind} {a.detail[:120]}" for a in answers))
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
