"""The JSON API under any input: NaN, infinities and overflowing numbers, failing handlers, wrong content types,
undeclared methods and slow requests all get a JSON answer with the security headers, and never a 500 for input."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

import gpuplan.web.api as web_api  # noqa: E402
from gpuplan.cli.main import main as cli_main  # noqa: E402
from gpuplan.web import jsonsafe  # noqa: E402
from gpuplan.web.app import SECURITY_HEADERS, create_app, guarded  # noqa: E402
from gpuplan.web.slow import MAX_QUEUE_ENV, THREADS_ENV, TIME_LIMIT_ENV, SlowGate, SlowRefused  # noqa: E402

JSON = {"content-type": "application/json"}
NON_FINITE = ("NaN", "Infinity", "-Infinity", "1e999")
EXTREMES = (*NON_FINITE, "1e-300", "1e300")
TINY_CONFIG = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
               "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 100}
# A valid request per estimate endpoint, small enough to answer quickly.
BASE = {
    "params": {"model": "llama-3.2-1b"},
    "train": {"model": "llama-3.2-1b", "gpu": "h100-sxm"},
    "infer": {"model": "llama-3.2-1b", "gpu": "h100-sxm"},
    "time": {"model": "llama-3.2-1b", "gpu": "h100-sxm", "tokens": "1T"},
    "plan": {"model": "llama-3.2-1b", "gpu": "h100-sxm", "gpus": 8},
    "sweep": {"model": "llama-3.2-1b", "gpu": "h100-sxm", "over": "batch", "values": "1,2"},
}
# Fields that need another base: a plan takes a GPU count or a deadline, not both.
FIELD_BASE = {("plan", "days"): {"model": "llama-3.2-1b", "gpu": "h100-sxm", "tokens": "1T"}}


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(), raise_server_exceptions=False)


def with_raw(body: dict, field: str, literal: str) -> bytes:
    """``body`` with ``field`` set to a JSON literal that json.dumps cannot write (NaN) or would round (1e999)."""
    rest = {k: v for k, v in body.items() if k != field}
    text = json.dumps(rest)
    return (text[:-1] + (", " if rest else "") + f'"{field}": {literal}}}').encode()


def assert_json_error(r, status: int, field: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    for name, value in SECURITY_HEADERS:
        assert r.headers[name.decode()] == value.decode()
    body = r.json()
    assert body["rule"] and body["message"]
    if field is not None:
        assert body["field"] == field, body
    return body


def assert_finite_json(r) -> None:
    """A JSON body that strict JSON (no NaN, no Infinity) can read."""
    assert r.headers["content-type"].startswith("application/json"), r.text
    json.loads(r.content, parse_constant=lambda c: pytest.fail(f"{c} in a response: {r.text[:300]}"))


# ---- NaN, Infinity and overflow in requests -----------------------------------------------------------------------

@pytest.mark.parametrize("literal", NON_FINITE)
@pytest.mark.parametrize("path,field", [("train", "batch"), ("train", "dropout"), ("time", "mfu"),
                                        ("plan", "tp_overlap")])
def test_non_finite_numbers_are_422_naming_the_field(client, path, field, literal):
    r = client.post(f"/api/v1/{path}", content=with_raw(BASE[path], field, literal), headers=JSON)
    body = assert_json_error(r, 422, field)
    assert body["value"] in ("NaN", "Infinity", "-Infinity"), body
    assert_finite_json(r)


@pytest.mark.parametrize("literal", NON_FINITE)
def test_non_finite_number_in_a_pasted_config_is_422(client, literal):
    raw = with_raw({}, "config", "{" + json.dumps(TINY_CONFIG)[1:-1] + f', "rope_theta": {literal}}}')
    assert_json_error(client.post("/api/v1/params", content=raw, headers=JSON), 422, "config.rope_theta")
    raw = json.dumps({"config": dict(TINY_CONFIG, hidden_size=0)}).replace('"hidden_size": 0', '"hidden_size": NaN')
    assert_json_error(client.post("/api/v1/params", content=raw.encode(), headers=JSON), 422, "config.hidden_size")


def test_the_fast_path_and_the_full_app_answer_nan_alike():
    fast, full = create_app(), create_app()
    full.fast_path.enabled = False
    with TestClient(fast) as a, TestClient(full) as b:
        for raw in (with_raw(BASE["train"], "batch", "NaN"), with_raw(BASE["train"], "mfu", "1e999"),
                    with_raw({"config": TINY_CONFIG}, "batch", "-Infinity")):
            ra, rb = a.post("/api/v1/train", content=raw, headers=JSON), b.post("/api/v1/train", content=raw,
                                                                                headers=JSON)
            assert (ra.status_code, ra.content) == (rb.status_code, rb.content) and ra.status_code == 422


def test_strict_loads():
    assert jsonsafe.loads(b'{"a": [1, 2.5]}') == {"a": [1, 2.5]}
    with pytest.raises(jsonsafe.NonFiniteNumber) as exc:
        jsonsafe.loads(b'{"a": 1, "b": {"c": [0, -Infinity]}}')
    assert (exc.value.field, exc.value.value) == ("b.c[1]", "-Infinity")
    with pytest.raises(json.JSONDecodeError):
        jsonsafe.loads(b"{")
    assert jsonsafe.find_non_finite({"x": [1.0, {"y": float("nan")}]})[0] == "x[1].y"
    assert jsonsafe.echo(float("-inf")) == "-Infinity" and jsonsafe.echo(2.5) == 2.5


# ---- overflow and arithmetic errors in the engines ---------------------------------------------------------------

def test_overflowing_estimates_are_422_not_500(client):
    r = client.post("/api/v1/time", json={**BASE["time"], "days": 1e-300})
    body = assert_json_error(r, 422, "days")
    # the core refuses a deadline shorter than one optimizer step before anything overflows
    assert "optimizer step" in body["rule"] and body["value"] == 1e-300
    r = client.post("/api/v1/infer", json={**BASE["infer"], "rope_scaling": 1e300, "context": "100M"})
    assert r.status_code in (200, 422), r.text
    assert_finite_json(r)
    if r.status_code == 422:
        assert r.json()["field"] == "rope_scaling"


@pytest.mark.parametrize("error", [OverflowError("math range error"), ZeroDivisionError("float division by zero"),
                                   ValueError("math domain error")])
def test_engine_arithmetic_errors_are_422(monkeypatch, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(web_api, "evaluate", fail)
    client = TestClient(create_app(), raise_server_exceptions=False)
    body = assert_json_error(client.post("/api/v1/time", json={**BASE["time"], "mfu": 1e-13}), 422, "mfu")
    assert type(error).__name__ in body["rule"]
    body = assert_json_error(client.post("/api/v1/train", json=BASE["train"]), 422, "body")
    assert "outside the range" in body["rule"]


def test_a_non_finite_result_is_never_sent(monkeypatch):
    monkeypatch.setattr(web_api, "evaluate", lambda *a: {"memory": {"total_bytes": math.inf}, "fits": True})
    client = TestClient(create_app(), raise_server_exceptions=False)
    body = assert_json_error(client.post("/api/v1/train", json=BASE["train"]), 422, "body")
    assert "memory.total_bytes would be Infinity" in body["rule"]


# ---- 500s: JSON, with the security headers ------------------------------------------------------------------------

def test_a_bug_is_a_json_500_with_security_headers(monkeypatch):
    def bug(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(web_api, "evaluate", bug)
    client = TestClient(create_app(), raise_server_exceptions=False)
    body = assert_json_error(client.post("/api/v1/train", json=BASE["train"]), 500, "server")
    assert "RuntimeError" in body["rule"]


def test_a_failing_error_handler_still_answers_json(monkeypatch):
    import gpuplan.web.app as web_app

    def broken(exc):
        raise ValueError("Out of range float values are not JSON compliant")

    monkeypatch.setattr(web_app, "input_error_response", broken)
    for fast in (True, False):
        app = create_app()
        app.fast_path.enabled = fast
        client = TestClient(app, raise_server_exceptions=False)
        assert_json_error(client.post("/api/v1/train", json={"model": "no-such-model"}), 500, "server")


def test_guarded_answers_when_nothing_else_does():
    async def crash(scope, receive, send):
        raise RuntimeError("before any response")

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    asyncio.run(guarded(crash, {"type": "http", "path": "/x", "method": "GET", "headers": []}, receive, send))
    assert sent[0]["status"] == 500 and (b"x-content-type-options", b"nosniff") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["field"] == "server"


# ---- content types and methods ------------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_wrong_content_type_is_415(client, content_type):
    r = client.post("/api/v1/train", content=json.dumps(BASE["train"]), headers={"content-type": content_type})
    body = assert_json_error(r, 415, "content-type")
    assert "application/json" in body["rule"] and "b'" not in r.text


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/vnd.api+json"])
def test_json_content_types_with_parameters_are_read(client, content_type):
    r = client.post("/api/v1/params", content=json.dumps(BASE["params"]), headers={"content-type": content_type})
    assert r.status_code == 200, r.text


def test_405_names_the_allowed_methods(client):
    r = client.get("/api/v1/train")
    assert_json_error(r, 405, "path")
    assert r.headers["allow"] == "POST"
    r = client.delete("/api/v1/models")
    assert r.status_code == 405 and "GET" in r.headers["allow"]


# ---- slow requests: time limit and queue --------------------------------------------------------------------------

def test_slow_request_past_the_time_limit_is_504(monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(web_api, "evaluate", lambda *a: release.wait(5) and {"done": True})
    client = TestClient(create_app(time_limit=0.05), raise_server_exceptions=False)
    started = time.monotonic()
    body = assert_json_error(client.post("/api/v1/plan", json=BASE["plan"]), 504, "server")
    assert time.monotonic() - started < 3 and "0.05 s" in body["rule"]
    release.set()


def test_slow_requests_beyond_the_queue_are_503(monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(web_api, "evaluate", lambda *a: release.wait(5) and {"done": True})
    monkeypatch.setenv(THREADS_ENV, "1")
    app = create_app(time_limit=10, max_queue=0)
    client = TestClient(app, raise_server_exceptions=False)
    first: list = []
    worker = threading.Thread(target=lambda: first.append(client.post("/api/v1/plan", json=BASE["plan"])))
    worker.start()
    deadline = time.monotonic() + 5
    while app.state.slow.pending < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    r = client.post("/api/v1/plan", json={**BASE["plan"], "gpus": 16})
    assert_json_error(r, 503, "server")
    assert r.headers["retry-after"].isdigit()
    release.set()
    worker.join(10)
    assert first[0].status_code == 200 and first[0].json() == {"done": True}


def test_slow_gate_unit():
    async def scenario():
        gate = SlowGate(time_limit=0.1, max_queue=1, threads=1)
        assert await gate.run(lambda x: x + 1, 1) == 2
        block = threading.Event()
        slow = [asyncio.ensure_future(gate.run(block.wait, 5)) for _ in range(2)]
        await asyncio.sleep(0.02)
        with pytest.raises(SlowRefused) as busy:
            await gate.run(lambda: None)
        assert busy.value.status == 503
        results = await asyncio.gather(*slow, return_exceptions=True)
        assert [r.status for r in results] == [504, 504]
        block.set()

    asyncio.run(scenario())


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(TIME_LIMIT_ENV, "7.5")
    monkeypatch.setenv(MAX_QUEUE_ENV, "3")
    limits = TestClient(create_app()).get("/api/v1").json()["limits"]
    assert limits["time_limit_s"] == 7.5 and limits["max_queue"] == 3
    monkeypatch.setenv(TIME_LIMIT_ENV, "nan")
    with pytest.raises(ValueError, match=TIME_LIMIT_ENV):
        create_app()


def test_serve_passes_its_limits_on(monkeypatch, capsys):
    import uvicorn

    seen = {}
    # unset (empty); serve writes them for its workers, and the end of the test restores them
    monkeypatch.setenv(TIME_LIMIT_ENV, "")
    monkeypatch.setenv(MAX_QUEUE_ENV, "")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(slow=app.state.slow))
    assert cli_main(["serve", "--time-limit", "2.5", "--max-queue", "1"]) == 0
    assert (seen["slow"].time_limit, seen["slow"].max_queue) == (2.5, 1)
    for argv in (["--time-limit", "0"], ["--time-limit", "nan"], ["--max-queue", "-1"]):
        assert cli_main(["serve", *argv]) == 2
        assert argv[0] in capsys.readouterr().err


# ---- every numeric field of every endpoint ------------------------------------------------------------------------

def _numeric_fields(schema: dict) -> dict[str, list[str]]:
    """Per estimate endpoint, the request fields the OpenAPI schema lets hold a number."""
    comps = schema["components"]["schemas"]
    out = {}
    for path, ops in schema["paths"].items():
        post = ops.get("post")
        if not post:
            continue
        ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        fields = []
        for name, prop in comps[ref]["properties"].items():
            types = {alt.get("type") for alt in prop.get("anyOf", [prop])}
            if types & {"number", "integer"}:
                fields.append(name)
        out[path.rsplit("/", 1)[1]] = fields
    return out


def test_every_numeric_field_takes_any_number_without_a_500(client):
    fields = _numeric_fields(client.get("/openapi.json").json())
    assert set(fields) == set(BASE) and all(fields.values())
    failures = []
    for command, names in fields.items():
        for field in names:
            for literal in EXTREMES:
                base = FIELD_BASE.get((command, field), BASE[command])
                r = client.post(f"/api/v1/{command}", content=with_raw(base, field, literal), headers=JSON)
                try:
                    assert r.status_code < 500
                    assert_finite_json(r)
                    if r.status_code == 422:
                        named = {r.json()["field"], *(e["field"] for e in r.json()["errors"])}
                        assert field in named, r.json()
                except AssertionError as exc:
                    failures.append(f"{command}.{field}={literal}: {r.status_code} {r.text[:200]} ({exc})")
    assert not failures, "\n".join(failures)
