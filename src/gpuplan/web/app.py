"""The FastAPI application: the page at ``/``, the JSON API under ``/api/v1/``, OpenAPI docs at ``/docs``.

No ``from __future__ import annotations`` here: FastAPI reads the request models from real annotations.
"""


import inspect
import json
import logging
import math
from importlib import resources
from typing import Any, Optional

from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpuplan import __version__
from gpuplan.commands.registry import MODEL_COMMANDS, Command, describe, load_commands
from gpuplan.errors import HubUnavailable, InputError
from gpuplan.model.presets import find_preset
from gpuplan.web import limits
from gpuplan.web.api import ResultCache
from gpuplan.web.body import read_body, replaying
from gpuplan.web.fastpath import FastPath
from gpuplan.web.hub import HubConfigs, hub_from_env
from gpuplan.web.jsonsafe import NON_FINITE_RULE, NonFiniteNumber, echo
from gpuplan.web.jsonsafe import loads as strict_loads
from gpuplan.web.schemas import ErrorBody, request_model
from gpuplan.web.slow import SlowGate, SlowRefused

API = "/api/v1"
log = logging.getLogger("gpuplan.web")
# Commands that can take long (a layout search, a sweep of many points) run in a worker thread (see answers_inline).
THREADED = frozenset({"plan", "sweep"})
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "malformed request (not JSON)"},
    413: {"model": ErrorBody, "description": "request body too large"},
    422: {"model": ErrorBody, "description": "bad input: the field, the value and the rule"},
}
# Estimates also answer these (the list and detail routes do not).
ESTIMATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    415: {"model": ErrorBody, "description": "the body is not declared as application/json"},
    503: {"model": ErrorBody, "description": "too many slow requests (layout searches, advice) queued (see "
                                             "Retry-After), or the Hugging Face hub cannot be asked now (offline, "
                                             "unreachable, limiting requests)"},
    504: {"model": ErrorBody, "description": "a slow request, or a fetch from the Hugging Face hub, found no "
                                             "answer within the server's time limit"},
}


def _short(value: Any, limit: int = 200) -> Any:
    """The refused value, JSON-safe and short (NaN and infinities as their names: JSON has no such numbers)."""
    if isinstance(value, float):
        return echo(value)
    if isinstance(value, (bool, int)) or value is None:
        return value
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


def error_response(status: int, field: str, value: Any, rule: str, hint: str | None = None,
                   errors: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    value = _short(value)
    message = f"{field}={value!r}: {rule}" + (f" ({hint})" if hint else "")
    body = {"field": field, "value": value, "rule": rule, "hint": hint, "message": message,
            "errors": errors or [{"field": field, "value": value, "rule": rule}]}
    return JSONResponse(body, status_code=status, headers=headers)


def internal_error_response(exc: BaseException) -> JSONResponse:
    """The 500 of a bug: JSON like every other error, with the exception's type and message."""
    name = type(exc).__name__
    return JSONResponse({"field": "server", "value": None, "rule": f"internal error: {name}",
                         "hint": "please report it", "message": f"internal error: {name}: {exc}", "errors": []},
                        status_code=500)


class BodyLimit:
    """ASGI middleware: read the request body (at most ``max_bytes``, else 413) before the app sees it, whether or
    not a Content-Length was sent; the app then receives the buffered body."""

    def __init__(self, app: Any, max_bytes: int = limits.MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        def too_large() -> JSONResponse:
            return error_response(413, "body", None, f"must be at most {self.max_bytes} bytes")

        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await too_large()(scope, receive, send)
        read = await read_body(receive, self.max_bytes)
        if read is None:
            return  # the client went away
        body, _ = read
        if len(body) > self.max_bytes:
            return await too_large()(scope, receive, send)
        await self.app(scope, replaying(body, False, receive), send)


# Everything the page loads comes from this server; nothing inline, no other origin.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                 b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


async def guarded(app: Any, scope: dict, receive: Any, send: Any) -> None:
    """Run ``app`` with :data:`SECURITY_HEADERS` on every HTTP response, and answer a JSON 500 when an exception
    escapes before any response started (an error handler that failed itself). This wraps the whole Starlette
    stack, so the 500s its outermost layer writes carry the headers too (middleware added with ``add_middleware``
    sits inside that layer)."""
    if scope["type"] != "http":
        return await app(scope, receive, send)
    started = False

    async def send_with_headers(message: dict) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
            message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
        await send(message)

    try:
        await app(scope, receive, send_with_headers)
    except Exception as exc:
        if started:
            raise  # the 500 went out already (Starlette re-raises after sending it, for the server's log)
        log.exception("internal error on %s", scope.get("path"))
        await internal_error_response(exc)(scope, receive, send_with_headers)


COUNT_RULE = "must be a count: an integer >= 1, or text such as 7e9, 7B, 2T or 128k"


def api_field(field: str) -> str:
    """A CLI field name as the API spells it: '--kv-heads' -> 'kv_heads', 'config: hidden_size' -> 'config.hidden_size'."""
    if field.startswith("--"):
        return field[2:].replace("-", "_")
    return field.replace(": ", ".")


def input_error_response(exc: InputError) -> JSONResponse:
    """422 with the field, the value and the rule of a refused input (the server's own file names hidden); 503
    when a hub id's config.json cannot be fetched now for a reason that is not the input's."""
    hide = limits.hide_private_paths
    status = 503 if isinstance(exc, HubUnavailable) else 422
    return error_response(status, hide(api_field(exc.field)), exc.value, hide(exc.rule), hide(exc.hint))


JSON_TYPE_RULE = "must be application/json"


def is_json_type(content_type: str | None) -> bool:
    """application/json or application/*+json, with any parameters. No header at all is read as JSON, as FastAPI
    reads it."""
    if content_type is None:
        return True
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or mime.startswith("application/") and mime.endswith("+json")


class NonFiniteInBody(StarletteHTTPException):
    """A NaN or Infinity literal in a request body. An HTTPException, because FastAPI turns any other exception
    raised while it decodes a body into a bare 400."""

    def __init__(self, exc: NonFiniteNumber) -> None:
        super().__init__(422, str(exc))
        self.field, self.value = exc.field, exc.value


class StrictJSONRequest(Request):
    """A request whose JSON body may not hold NaN, Infinity or -Infinity (Python's json accepts them)."""

    async def json(self) -> Any:
        try:
            return strict_loads(await self.body())
        except NonFiniteNumber as exc:
            raise NonFiniteInBody(exc) from None


class JSONRoute(APIRoute):
    """An estimate route: the body must be declared as JSON (else 415) and is decoded by
    :class:`StrictJSONRequest`."""

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            content_type = request.headers.get("content-type")
            if not is_json_type(content_type):
                return error_response(415, "content-type", content_type, JSON_TYPE_RULE,
                                      "send the body as JSON with the header 'Content-Type: application/json'")
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict


def _validation_errors(exc: RequestValidationError) -> JSONResponse:
    """pydantic's errors, one per field (the alternatives of a union joined by 'or')."""
    by_field: dict[str, dict[str, Any]] = {}
    malformed = False
    for e in exc.errors():
        loc = [p for p in e.get("loc", ()) if p not in ("body", "query", "path")]
        if e.get("type") == "json_invalid" or not loc or not isinstance(loc[0], str):
            malformed = malformed or e.get("type") in ("json_invalid", "model_attributes_type", "dict_type")
            field = "body"
        else:
            field = loc[0][2:] if loc[0].startswith("f_") else loc[0]
        rule = e.get("msg", "invalid")
        raw = e.get("input")
        if isinstance(raw, float) and not math.isfinite(raw):  # 1e999 decodes to infinity
            by_field.setdefault(field, {"field": field, "value": _short(raw), "rule": NON_FINITE_RULE})
            continue
        if len(loc) > 1 and loc[1] in ("constrained-int", "constrained-str"):  # a count: int or '7B'
            if loc[1] == "constrained-str" and isinstance(e.get("input"), int):
                continue  # an integer was given: the text alternative says nothing useful
            le = (e.get("ctx") or {}).get("le")
            rule = f"must be at most {le}" if e.get("type") == "less_than_equal" and le else COUNT_RULE
        if field in by_field:
            if rule not in by_field[field]["rule"]:
                by_field[field]["rule"] += " or " + rule[0].lower() + rule[1:]
        else:
            by_field[field] = {"field": field, "value": _short(e.get("input")), "rule": rule}
    errors = list(by_field.values()) or [{"field": "body", "value": None, "rule": "invalid request"}]
    first = errors[0]
    status = 400 if malformed and first["field"] == "body" else 422
    return error_response(status, first["field"], first["value"], first["rule"], errors=errors)


def answers_inline(command: Command, values: dict[str, Any]) -> bool:
    """Quick estimates are answered on the event loop (no thread hand-off); a layout search and the advisor (many
    estimates) go to a worker thread so that they never hold the other requests up."""
    return command.name not in THREADED and not values.get("advise")


def names_preset_or_none(values: dict[str, Any]) -> bool:
    """Whether the request's model is a preset (or absent): what the short way answers; any other name (a hub id
    to fetch, or one to refuse) goes the full way."""
    model = values.get("model")
    return model is None or find_preset(model) is not None


async def fetch_model(hub: HubConfigs, values: dict[str, Any]) -> None:
    """Fetch the config.json a request's hub id names, in a hub thread (never on the event loop), so that the
    estimate then finds it in the LRU; a name that is neither a preset nor a fetchable id is refused here."""
    model = values.get("model")
    if model is None or values.get("config") is not None:
        return  # no model, or both given: the estimate's own checks answer
    name = limits.check_model_name(model, hub)
    if limits.is_hub_name(name):
        await hub.prefetch(name)


class GpuplanAPI(FastAPI):
    """FastAPI, with a short way in front for valid JSON estimate requests (see :mod:`gpuplan.web.fastpath`), and
    the whole stack :func:`guarded` (security headers on every reply, a JSON 500 whatever fails)."""

    fast_path: FastPath | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        route = self.fast_path.route(scope) if self.fast_path is not None else None
        if route is not None:
            return await self.fast_path(route, scope, receive, send, self._full)
        await guarded(super().__call__, scope, receive, send)

    async def _full(self, scope: dict, receive: Any, send: Any) -> None:
        await guarded(super().__call__, scope, receive, send)


def json_bytes_response(data: bytes) -> Response:
    return Response(data, media_type="application/json")


def _compute_route(app: GpuplanAPI, command: Command, cache: ResultCache, gate: SlowGate, hub: HubConfigs) -> None:
    model = request_model(command)

    async def endpoint(request: Request, body: model = Body(...)) -> Response:  # type: ignore[valid-type]
        values = body.model_dump(by_alias=True, exclude_none=True)
        if cache.cached(command, values) is None:
            await fetch_model(hub, values)
        if answers_inline(command, values):
            data = cache.answer(command, values)
        else:
            data = cache.cached(command, values) or await gate.run(cache.answer, command, values)
        return json_bytes_response(data)

    endpoint.__name__ = f"{command.name}_endpoint"
    app.router.add_api_route(f"{API}/{command.name}", endpoint, methods=["POST"], summary=f"gpuplan {command.name}",
                      description=(command.description + "\n\nThe JSON is what `gpuplan " + command.name +
                                   " --json` prints for the same options."),
                      response_model=dict[str, Any], responses=ESTIMATE_RESPONSES, tags=["estimates"],
                      route_class_override=JSONRoute)
    if app.fast_path is not None:
        app.fast_path.add(f"{API}/{command.name}", command, model)


def _list_route(app: FastAPI, command: Command, cache: ResultCache) -> None:
    """``GET /api/v1/<catalog>?q=TEXT``, with one query parameter per option the catalog declares for the APIs
    (``models``: ``family``, ``newest``), checked by its declaration as on the command line."""
    declared = [o.name for o in command.options]

    async def endpoint(**params: Any) -> Response:
        values = {"query": params["q"]} if params["q"] else {}
        values.update({name: params[name] for name in declared if params[name] not in (None, "")})
        return json_bytes_response(cache.answer(command, values))

    query = Query("", max_length=100, description="case-insensitive substring")
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("q", inspect.Parameter.KEYWORD_ONLY, default=query, annotation=str)]
        + [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                             default=Query(None, max_length=100, description=o.help)) for o in command.options],
        return_annotation=Response)
    endpoint.__name__ = f"{command.name}_endpoint"
    app.add_api_route(f"{API}/{command.name}", endpoint, methods=["GET"], summary=f"gpuplan {command.name}",
                      description=command.description + f"\n\nThe JSON of `gpuplan {command.name} [QUERY] --json` "
                                                        "(`q` is QUERY; the other parameters are the options).",
                      response_model=list[dict[str, Any]], responses=ERROR_RESPONSES, tags=["catalogs"])


def static_dir() -> str:
    return str(resources.files("gpuplan.web") / "static")


def create_app(time_limit: float | None = None, max_queue: int | None = None, hub: bool | None = None
               ) -> GpuplanAPI:
    """The application. Routes exist for the commands this build has (the engines land one by one). Slow requests
    get ``time_limit`` seconds and at most ``max_queue`` wait (see :mod:`gpuplan.web.slow`); ``hub``: whether a
    Hugging Face id that no preset has is fetched (see :mod:`gpuplan.web.hub`). None: the environment's setting
    or the default."""
    commands = load_commands()
    hub_configs = HubConfigs(hub if hub is not None else hub_from_env())
    cache = ResultCache(hub=hub_configs)
    gate = SlowGate(time_limit, max_queue)
    app = GpuplanAPI(title="gpuplan", version=__version__, docs_url=None, redoc_url=None,
                     description="Memory, compute, time and cost of LLM training and serving. Every estimate "
                                 "endpoint returns the JSON the `gpuplan` command prints with `--json`; integers are "
                                 "bytes, FLOP and seconds. Errors carry the field, the value and the rule.")
    app.fast_path = FastPath(cache, max_body_bytes=limits.MAX_BODY_BYTES,
                             inline=lambda c, v: answers_inline(c, v) and names_preset_or_none(v),
                             input_error=input_error_response, extra_headers=SECURITY_HEADERS)
    app.state.cache = cache
    app.state.commands = commands
    app.state.slow = gate
    app.state.hub = hub_configs

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        return input_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        field = "body" if exc.status_code == 400 else "path"
        return error_response(exc.status_code, field, request.url.path if field == "path" else None, str(exc.detail),
                              headers=exc.headers)  # a 405 names the allowed methods in 'Allow'

    @app.exception_handler(NonFiniteInBody)
    async def _non_finite(request: Request, exc: NonFiniteInBody) -> JSONResponse:
        return error_response(422, exc.field, exc.value, NON_FINITE_RULE)

    @app.exception_handler(SlowRefused)
    async def _slow(request: Request, exc: SlowRefused) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return error_response(exc.status, "server", None, exc.rule, exc.hint, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_errors(exc)

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        return error_response(400, "body", None, "JSON nested too deeply")

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s", request.url.path)
        return internal_error_response(exc)

    @app.get(API, tags=["meta"], summary="version, commands and request limits")
    async def index() -> dict[str, Any]:
        return {"version": __version__, "commands": list(commands),
                "limits": {"max_body_bytes": limits.MAX_BODY_BYTES, "max_config_bytes": limits.MAX_CONFIG_BYTES,
                           "time_limit_s": gate.time_limit, "max_queue": gate.max_queue},
                "hub": {"enabled": hub_configs.enabled, "max_config_bytes": hub_configs.max_bytes,
                        "time_limit_s": hub_configs.time_limit_s}}

    @app.get(f"{API}/options", tags=["meta"], summary="every option of every command, as declared (gpuplan.options)")
    async def options() -> dict[str, Any]:
        return describe(commands.values())

    @app.get(f"{API}/presets/{{preset_id:path}}", tags=["catalogs"], responses=ERROR_RESPONSES,
             summary="one preset: its source and its config.json")
    async def preset(preset_id: str) -> dict[str, Any]:
        from gpuplan.model.presets import load_presets

        pid = limits.check_model_name(preset_id)
        p = load_presets()[pid]
        return {"id": p.id, "hf_id": p.hf_id, "aliases": list(p.aliases), "family": p.family,
                "published_params": p.published_params, "published_params_source": p.published_params_source,
                "released": p.released.isoformat() if p.released else None, "released_source": p.released_source,
                "modality": p.modality, "config_source": p.config_source, "config": p.config}

    for name, command in commands.items():
        if name in MODEL_COMMANDS:
            _compute_route(app, command, cache, gate, hub_configs)
        else:
            _list_route(app, command, cache)

    static = static_dir()
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(f"{static}/index.html", media_type="text/html; charset=utf-8")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:  # served from the package: FastAPI's default docs load from a CDN
        return FileResponse(f"{static}/docs.html", media_type="text/html; charset=utf-8")

    app.add_middleware(BodyLimit)
    return app
