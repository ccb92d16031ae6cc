"""Which of gpuplan's rules a new release of transformers / PEFT / PyTorch moves.

gpuplan's activation rules follow what transformers' modelling code and PyTorch's kernels keep alive; each rule
that depends on a release is keyed in ``gpuplan.versions``, and each rule has a probe (``gpuplan.verify.probes``):
a two-layer model whose training step exercises it. This script traces every probe twice, with the releases of
this environment (the pins of ``constraints.txt`` on a machine set up as the README says) and with the newest
releases installed in a scratch virtual environment, and prints per probe whether the trace moved and whether
gpuplan's rules for the new release still describe it. Not part of the test suite: it needs the network (the
package registry) and a few minutes.

    python benchmarks/drift.py                          # newest transformers, peft, accelerate; torch as pinned
    python benchmarks/drift.py --upgrade torch          # also the newest torch (a large download)
    python benchmarks/drift.py --venv /tmp/drift --reuse  # keep and reuse the scratch environment
    python benchmarks/drift.py --pin transformers==5.25.0 # a given release instead of the newest

Exit status 0 when every probe is described by the rules of its release (within the tolerance), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
TOLERANCE_PCT = 1.0  # a probe may state a wider bound where a known gap has no rule yet
MOVED_PCT = 0.1  # a trace that changes by less than this is the same trace (512-byte rounding of small tensors)


def _worker() -> None:
    """Trace every probe with this interpreter's releases; print one JSON object."""
    sys.path.insert(0, str(SRC))
    from gpuplan.verify import measure_training
    from gpuplan.verify.probes import PROBES
    from gpuplan.versions import installed_version

    out: dict = {"versions": {p: installed_version(p) for p in ("torch", "transformers", "peft", "accelerate")},
                 "probes": {}}
    for name, probe in PROBES.items():
        try:
            m = measure_training(probe.config, probe.setup)
            out["probes"][name] = {"measured": m.memory_dict(), "attention": m.extra["attention"]}
        except Exception as exc:  # a release can break a probe outright: report it, go on
            out["probes"][name] = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out))


def _trace(python: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([python, str(Path(__file__).resolve()), "--worker"], capture_output=True, text=True,
                          env=env, check=False)
    if done.returncode != 0:
        sys.exit(f"tracing with {python} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _scratch_python(venv: Path, reuse: bool, upgrade: list[str], pins: list[str]) -> str:
    """A virtual environment with the newest releases of ``upgrade`` (others as pinned here)."""
    python = venv / "bin" / "python"
    if reuse and python.exists():
        return str(python)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    from gpuplan.versions import installed_version

    torch_pin = [] if "torch" in upgrade else [f"torch=={(installed_version('torch') or '2.13.0').split('+')[0]}"]
    pinned_names = {p.split("==")[0].lower() for p in pins}
    newest = [p for p in upgrade if p.lower() not in pinned_names]
    subprocess.run(pip + torch_pin + pins + (["--upgrade"] + newest if newest else []), check=True)
    return str(python)


def _estimate(probe, attention: str, release: str | None) -> dict[str, int]:
    from gpuplan.model.hf_config import spec_from_config
    from gpuplan.verify import TrainSetup
    from gpuplan.verify.estimate import training_estimate

    setup = TrainSetup(**{**probe.setup.__dict__, "attention": attention})
    return training_estimate(spec_from_config(probe.config), setup, transformers_version=release)


def _pct(a: int, b: int) -> float:
    return 100.0 * (a - b) / b if b else 0.0


def compare(base: dict, new: dict) -> tuple[list[list[str]], bool]:
    """Rows of the report and whether every probe is described by its release's rules."""
    from gpuplan.verify.probes import PROBES
    from gpuplan.versions import RULES

    keyed = {r.name: r for r in RULES}
    rows, ok = [], True
    for name, probe in PROBES.items():
        b, n = base["probes"].get(name, {}), new["probes"].get(name, {})
        if "error" in b or "error" in n or not b or not n:
            rows.append([name, "-", "-", "-", f"trace failed: {(n or b).get('error', 'missing')}", ""])
            ok = False
            continue
        moved = max((_pct(n["measured"][k], b["measured"][k]) for k in probe.keys), key=abs)
        est_new = _estimate(probe, n["attention"], new["versions"]["transformers"])
        est_old = _estimate(probe, n["attention"], base["versions"]["transformers"])
        key = max(probe.keys, key=lambda k: abs(_pct(est_new[k], n["measured"][k])))
        err_new, err_old = _pct(est_new[key], n["measured"][key]), _pct(est_old[key], n["measured"][key])
        described = abs(err_new) <= probe.tolerance_pct
        ok &= described
        if abs(moved) < MOVED_PCT:
            status = "same" if described else "NOT DESCRIBED (trace unmoved)"
        else:
            status = "moved, rules follow" if described else "MOVED: rule out of date"
        rules = "; ".join(f"{r} ({_span(keyed[r])})" for r in probe.rules if r in keyed) or "-"
        rows.append([name, f"{moved:+.2f} %", f"{err_new:+.2f} % ({key.removesuffix('_bytes')})",
                     f"{err_old:+.2f} %", status, rules])
    return rows, ok


def _span(rule) -> str:
    from gpuplan.versions import version_text

    low = f">= {version_text(rule.since)}" if rule.since else ""
    high = f"< {version_text(rule.until)}" if rule.until else ""
    return f"{rule.library} {' '.join(x for x in (low, high) if x)}"


HEAD = ["probe", "trace moved", "estimate, newest rules", "pinned rules", "status", "release-keyed rules"]


def _print(base: dict, new: dict, rows: list[list[str]]) -> None:
    def vs(d: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in d["versions"].items() if v)

    print(f"pinned: {vs(base)}")
    print(f"newest: {vs(new)}")
    print("(trace moved: largest change of a checked key between the two traces; estimate: error against the "
          f"newest trace, worst key; tolerance ±{TOLERANCE_PCT} % unless the probe states a wider one)")
    widths = [max(len(r[i]) for r in [HEAD] + rows) for i in range(len(HEAD))]
    for r in [HEAD] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--venv", type=Path, help="scratch environment (default: a new temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="reuse --venv as it is")
    ap.add_argument("--upgrade", nargs="+", default=["transformers", "peft", "accelerate"],
                    help="packages taken at their newest release (default: transformers peft accelerate)")
    ap.add_argument("--pin", nargs="*", default=[], metavar="PKG==VER", help="exact releases instead of the newest")
    ap.add_argument("--json", type=Path, help="write both traces and the report here")
    args = ap.parse_args(argv)
    if args.worker:
        _worker()
        return 0
    sys.path.insert(0, str(SRC))
    base = _trace(sys.executable)
    venv = args.venv or Path(tempfile.mkdtemp(prefix="gpuplan-drift-"))
    new = _trace(_scratch_python(venv, args.reuse, args.upgrade, args.pin))
    rows, ok = compare(base, new)
    _print(base, new, rows)
    if args.json:
        args.json.write_text(json.dumps({"pinned": base, "newest": new, "rows": rows}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
