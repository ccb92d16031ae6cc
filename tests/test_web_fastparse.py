"""The web server's short ways give what the long ways give: the namespace argparse would build, and the response
the full FastAPI stack would send."""

from __future__ import annotations

import argparse
import itertools
import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from gpuplan.cli import bridge  # noqa: E402
from gpuplan.web.api import _normalize  # noqa: E402
from gpuplan.web.app import create_app  # noqa: E402
from gpuplan.cli.fastparse import fast_namespace  # noqa: E402

MODELS = ("llama-3.1-8b", "qwen2.5-7b", "mixtral-8x7b")


def _requests(command: bridge.Command) -> list[dict]:
    """Valid requests touching every offered option kind: each choice value, every switch, counts and numbers."""
    out: list[dict] = []
    base = {"model": MODELS[0]} if command.takes_model else {}
    for opt in command.options:
        if opt.positional or opt.kind in ("list", "append"):
            continue
        if opt.kind == "choice":
            out.extend(dict(base, **{opt.dest: c}) for c in opt.choices)
        elif opt.kind == "bool":
            out.append(dict(base, **{opt.dest: not opt.default}))
        elif opt.kind == "count":
            out.append(dict(base, **{opt.dest: "2k" if opt.dest in ("seq", "context") else 2}))
    for model, batch in itertools.product(MODELS, (1, 7)):
        out.append({"model": model, "batch": batch} if command.takes_model else {"query": model[:5]})
    return out


@pytest.mark.parametrize("name", ["params", "train", "infer", "time", "models", "gpus"])
def test_fast_namespace_equals_argparse(name):
    commands = bridge.load_commands()
    if name not in commands:
        pytest.skip(f"{name} not in this build")
    command = commands[name]
    if name == "time":  # --tokens is required
        reqs = [dict(r, tokens="1T") for r in _requests(command)]
    else:
        reqs = _requests(command)
    fast = 0
    for body in reqs:
        values = _normalize(command, body)
        model = values.pop("model", None)
        argv = bridge.build_argv(command, values, model)
        try:
            expected = command.parser.parse_args(argv)
        except bridge._ParserError:
            assert fast_namespace(command.parser, argv) is None, argv
            continue
        got = fast_namespace(command.parser, argv)
        if got is not None:
            fast += 1
            assert vars(got) == vars(expected), argv
    assert fast >= len(reqs) // 2  # the short way is the usual one


def _parser() -> argparse.ArgumentParser:
    root = bridge._Parser(prog="gpuplan")
    p = root.add_subparsers().add_parser("fake")
    p.add_argument("model", nargs="?")
    p.add_argument("--batch", type=int, default="3")
    p.add_argument("--mode", choices=("a", "b"), default="a")
    p.add_argument("--fast", action="store_true")
    p.add_argument("--slow", action="store_false")
    p.add_argument("--need", required=True)
    p.add_argument("--names", nargs="+")
    p.add_argument("--config", default=None)
    return p


def test_fast_namespace_rules():
    p = _parser()
    ns = fast_namespace(p, ["--need=x", "--fast", "--slow", "--mode=b", "--", "m"])
    assert vars(ns) == vars(p.parse_args(["--need=x", "--fast", "--slow", "--mode=b", "--", "m"]))
    assert ns.batch == 3 and ns.fast is True and ns.slow is False and ns.model == "m"  # string default converted
    assert fast_namespace(p, ["--need=x", "--batch=9"]).batch == 9
    # argparse decides (and words the error) whenever the list is not a plain one
    for argv in (["--need=x", "--mode=c"], ["--need=x", "--batch=x"], ["--batch=2"], ["--need=x", "--bogus=1"],
                 ["--need=x", "--fast=1"], ["--need=x", "--names", "a"], ["--need=x", "--config=f.toml"],
                 ["--need=x", "--conf=f.toml"], ["--need=x", "--", "--batch=7"], ["--need=x", "--", "a", "b"],
                 ["--need=x", "--need=y"], ["--need="], ["--need", "x"]):
        assert fast_namespace(p, argv) is None, argv


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
