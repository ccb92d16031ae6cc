"""Property tests over the OpenAPI schema (schemathesis), every check it has: no server error, responses as
documented, requests that break the schema refused with a 4xx, undeclared methods answered 405 with Allow.

Requests the schema allows are accepted, or refused with a 422 naming a rule the schema cannot state (heads must
divide hidden, tp must divide the GPUs...): positive_data_acceptance is told so."""

from __future__ import annotations

import zlib

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the [webtest] extra")

from hypothesis import HealthCheck, settings  # noqa: E402

from gpuplan.hardware.catalog import load_catalog  # noqa: E402
from gpuplan.model.presets import load_presets  # noqa: E402
from gpuplan.web.app import create_app  # noqa: E402
from gpuplan.commands.registry import load_commands  # noqa: E402

CONFIG = schemathesis.Config.from_dict({"checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "422"]}}})
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(), config=CONFIG)
PRESETS = sorted(load_presets())
GPUS = sorted(load_catalog())
COUNTS = {o.name for c in load_commands().values() for o in c.options if o.kind == "count"}
FLOATS = {o.name for c in load_commands().values() for o in c.options if o.kind in ("float", "real")}
DIMENSIONS = ("layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab", "experts", "top_k", "params")


def _pick(options: list[str], seed: str) -> str:
    return options[zlib.crc32(seed.encode()) % len(options)]


def _reach_the_engines(case) -> None:
    """Random text is never a preset, so most generated requests would stop at the model check: in valid cases,
    swap the generated model and GPU names for real ones (chosen from the generated text, so runs repeat) and
    let the random options reach the engines."""
    body = case.body
    if not isinstance(body, dict) or case.meta is None or "positive" not in str(case.meta.generation.mode):
        return
    if isinstance(body.get("model"), str):
        body["model"] = _pick(PRESETS, body["model"])
        for key in ("config", *DIMENSIONS):  # another way of naming the model: the CLI refuses both at once
            body.pop(key, None)
    if isinstance(body.get("gpu"), str):
        body["gpu"] = _pick(GPUS, body["gpu"])
    for key, value in list(body.items()):  # count text ('3e99k') is mostly out of range: use small counts
        if key in COUNTS and isinstance(value, str):
            body[key] = zlib.crc32(value.encode()) % 512 + 1
        elif key in FLOATS and isinstance(value, (int, float)) and not 0 < value <= 1e4:
            body[key] = (zlib.crc32(repr(value).encode()) % 1000 + 1) / 1000  # (0, 1]: a fraction or a few days
    if case.operation.path.endswith(("/time", "/plan")):
        body.setdefault("tokens", "1T")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_schema(case):
    _reach_the_engines(case)
    case.call_and_validate()  # every check schemathesis has
