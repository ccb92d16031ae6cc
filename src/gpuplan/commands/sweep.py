"""``gpuplan sweep MODEL --over batch|seq|gpus|context --values …``: memory per GPU against one swept option.

Every option of ``gpuplan train`` (and of ``gpuplan infer`` with ``--mode infer``, the default for ``--over
context``) is accepted and passed on; each point is computed by that command itself, so the numbers are the ones it
prints.
"""

from __future__ import annotations

from typing import Any

from gpuplan.errors import InputError
from gpuplan.i18n import lang_of, t
from gpuplan.options.sweep import OWN as _OWN, SKIP as _SKIP

# the option each swept quantity sets, per command
OVER_DEST = {"train": {"batch": "batch", "seq": "seq", "gpus": "gpus"},
             "infer": {"batch": "batch", "seq": "context", "context": "context", "gpus": "gpus"}}


def _mode(values: Any) -> str:
    return values.mode or ("infer" if values.over == "context" else "train")


def payload(values: Any) -> dict[str, Any]:
    """The JSON of ``gpuplan sweep --json``: every value evaluated by the command; ``{"over", "command",
    "option", "gpu", "capacity_bytes", "argv", "rows": [...]}``."""
    from gpuplan.advise.runner import runner
    from gpuplan.progress import track

    command = _mode(values)
    dest = OVER_DEST[command].get(values.over)
    r = runner(command)
    if dest is None or not r.has(dest):
        raise InputError("--over", values.over, f"is not an option of `gpuplan {command}`",
                         hint="use --over context with --mode infer" if values.over == "context" else None)
    own = _OWN | _SKIP
    options = {k: v for k, v in vars(values).items() if k not in own and k not in ("command", "_run")}
    wrong = [k for k in options if k not in r.defaults]
    if wrong:
        raise InputError(f"--{wrong[0].replace('_', '-')}", options[wrong[0]],
                         f"is not an option of `gpuplan {command}`", hint="choose the command with --mode")
    if dest in options:
        raise InputError(f"--{dest.replace('_', '-')}", options[dest],
                         f"is swept by --over {values.over}; leave it out")
    if values.model:
        options["model"] = values.model
    gpu = options.get("gpu")
    capacity = None
    if gpu:
        from gpuplan.hardware.catalog import get_gpu

        capacity = get_gpu(gpu).memory_usable_bytes
    rows = []
    for value in track(values.values, t("sweep.progress", lang_of(values), over=values.over)):
        try:
            point = r.run_json({**options, dest: value})
        except InputError as exc:
            rows.append({"value": value, "memory": None, "fits": None, "error": str(exc)})
            continue
        rows.append({"value": value, "memory": point.get("memory"), "fits": point.get("fits"), "error": None})
    return {"over": values.over, "command": command, "option": "--" + dest.replace("_", "-"), "gpu": gpu,
            "capacity_bytes": capacity, "argv": ["gpuplan", command, *r.argv(options)], "rows": rows}
