"""One declaration, two readers: the options model reads API values as the generated command-line parser reads the
same options; and the web server's short way answers what the full FastAPI stack answers."""

from __future__ import annotations

import itertools
import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from gpuplan.commands import registry  # noqa: E402
from gpuplan.cli.main import build_parser  # noqa: E402
from gpuplan.web.app import create_app  # noqa: E402

MODELS = ("llama-3.1-8b", "qwen2.5-7b", "mixtral-8x7b")


def _requests(command: registry.Command) -> list[dict]:
    """Valid requests touching every offered option kind: each choice value, every switch, counts and numbers."""
    out: list[dict] = []
    base = {"model": MODELS[0]} if command.takes_model else {}
    base.update({o.name: "h100-sxm" for o in command.options if o.required and o.name == "gpu"})
    for opt in command.options:
        if opt.kind == "append" or opt.required:
            continue
        if opt.kind == "choice":
            out.extend(dict(base, **{opt.name: c}) for c in opt.choices)
        elif opt.kind == "flag":
            out.append(dict(base, **{opt.name: not opt.default}))
        elif opt.kind == "count":
            out.append(dict(base, **{opt.name: "2k" if opt.name in ("seq", "context") else 2}))
        elif opt.kind == "real":
            out.append(dict(base, **{opt.name: _real_sample(opt)}))
        elif opt.kind == "names":
            out.append(dict(base, **{opt.name: ["q_proj", "v_proj"]}))
    for model, batch in itertools.product(MODELS, (1, 7)):
        if not command.takes_model:
            out.append({"query": model[:5]})
        elif "batch" in command.by_dest:
            out.append(dict(base, model=model, batch=batch))
    return out


def _real_sample(opt) -> float:
    """0.5, moved inside the option's declared range (e.g. a price that must be at least 1)."""
    x = 0.5
    for op, bound in opt.bounds:
        if (op == "ge" and x < bound) or (op == "gt" and x <= bound):
            x = bound if op == "ge" else bound + 0.5
        elif (op == "le" and x > bound) or (op == "lt" and x >= bound):
            x = bound if op == "le" else bound / 2
    return x


def _argv(command: registry.Command, values: dict) -> list[str]:
    argv = [command.name]
    for name, value in values.items():
        if name in ("model", "query"):
            argv.append(value)
            continue
        opt = command.by_dest[name]
        if opt.kind == "flag":
            argv += [opt.flag] if value else []
        else:
            argv.append(f"{opt.flag}={','.join(value) if isinstance(value, list) else value}")
    return argv


@pytest.mark.parametrize("name", ["params", "train", "infer", "time", "plan", "models", "gpus"])
def test_options_model_reads_values_as_the_cli_parser(name):
    command = registry.load_commands()[name]
    parser = build_parser()
    for values in _requests(command):
        expected = vars(parser.parse_args(_argv(command, values)))
        offered = [*command.options, *([command.query] if command.query else [])]
        checked = command.spec.check({k: v for k, v in values.items() if k != "model"}, offered=offered)
        got = vars(command.spec.values({**checked, **({"model": values["model"]} if "model" in values else {})}))
        assert {k: got[k] for k in expected if k != "_run"} == {k: v for k, v in expected.items() if k != "_run"}, \
            values


PAGE_REQUESTS = [
    ("/api/v1/train", {"model": "llama-3.1-8b", "gpu": "h100-sxm", "batch": 4, "seq": "4k"}),
    ("/api/v1/train", {"model": "llama-3.1-8b", "batch": 4, "seq": 4096, "gpu": "h100-sxm"}),  # same, reordered
    ("/api/v1/train", {"model": "qwen2.5-7b", "method": "lora", "explain": True}),
    ("/api/v1/params", {"layers": 2, "hidden": 64, "heads": 4, "vocab": 100}),
    ("/api/v1/train", {"model": "no-such-model"}),  # InputError: 422 from the handler
    ("/api/v1/train", {"model": "llama-3.1-8b", "batch": 0}),  # pydantic: 422
    ("/api/v1/train", {"model": "llama-3.1-8b", "precision": "fp3"}),
    ("/api/v1/train", {"model": "llama-3.1-8b", "nope": 1}),
    ("/api/v1/train", {"layers": 2, "hidden": 64}),  # the CLI's own complaint
    ("/api/v1/train", [1, 2]),
    ("/api/v1/infer", {"model": "llama-3.1-8b", "gpu": "h100-sxm", "context": "8k"}),
]


def test_fast_path_answers_like_the_full_app():
    fast, full = create_app(), create_app()
    full.fast_path.enabled = False
    with TestClient(fast) as a, TestClient(full) as b:
        for path, body in PAGE_REQUESTS:
            if path.rsplit("/", 1)[1] not in fast.state.commands:
                continue
            for _ in range(2):  # the second time from the cache
                ra, rb = a.post(path, json=body), b.post(path, json=body)
                assert (ra.status_code, ra.content) == (rb.status_code, rb.content), (path, body)
                assert ra.headers == rb.headers
        for raw in (b"{", b"", b'{"model": "llama-3.1-8b"', "{\"model\": \"\u00e9\"}".encode("latin-1")):
            ra = a.post("/api/v1/train", content=raw, headers={"content-type": "application/json"})
            rb = b.post("/api/v1/train", content=raw, headers={"content-type": "application/json"})
            assert (ra.status_code, ra.json()) == (rb.status_code, rb.json()), raw
            assert ra.status_code in (400, 422)
        ra = a.post("/api/v1/train", content=json.dumps({"model": "llama-3.1-8b"}),
                    headers={"content-type": "text/plain"})
        rb = b.post("/api/v1/train", content=json.dumps({"model": "llama-3.1-8b"}),
                    headers={"content-type": "text/plain"})
        assert (ra.status_code, ra.content) == (rb.status_code, rb.content)
    assert fast.state.cache.hits >= len(PAGE_REQUESTS) // 2
