"""``gpuplan compare A.toml B.toml``: scenarios evaluated side by side (their options, memory per GPU, fit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpuplan.errors import InputError


def evaluate_scenario(path: str, default_command: str = "train") -> dict[str, Any]:
    """Load ``path`` and evaluate it with its command; {name, path, command, options, argv, result}."""
    from gpuplan.advise.runner import runner
    from gpuplan.scenario import load_scenario, scenario_defaults

    scenario = load_scenario(path)
    command = scenario.command or default_command
    if command not in ("train", "infer"):
        raise InputError(f"{Path(path).name}: command", command, "compare handles train and infer scenarios")
    r = runner(command)
    options = scenario_defaults(r.spec, scenario, command)
    return {"name": scenario.name, "path": scenario.path, "command": command, "options": scenario.options,
            "resolved": options, "defaults": {k: r.defaults.get(k) for k in options},
            "argv": ["gpuplan", command, *r.argv(options)], "result": r.run_json(options)}


def payload(values: Any) -> dict[str, Any]:
    """The JSON of ``gpuplan compare --json``."""
    if len(values.scenarios) < 2:
        raise InputError("SCENARIO", values.scenarios, "give at least two scenario files to compare")
    return {"scenarios": [evaluate_scenario(path, values.default_command) for path in values.scenarios]}
