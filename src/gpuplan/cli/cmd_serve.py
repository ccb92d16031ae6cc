"""``gpuplan serve``: the web page and the JSON API on a local port."""

from __future__ import annotations

import argparse
import sys

WEB_EXTRA_HINT = "the web page needs FastAPI and uvicorn: pip install 'gpuplan[web]'"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="the web page and the JSON API",
                       description="Serve the page at / and the JSON API under /api/v1/ (OpenAPI docs at /docs). "
                                   "Needs the [web] extra: pip install 'gpuplan[web]'.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (default 1; each answers requests on its own CPU core)")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn log level (default warning)")
    return p


def run(args: argparse.Namespace) -> int:
    from gpuplan.errors import InputError

    if not 0 <= args.port <= 65535:
        raise InputError("--port", args.port, "must be between 0 and 65535")
    if args.workers < 1:
        raise InputError("--workers", args.workers, "must be >= 1")
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        print(f"gpuplan serve: error: {WEB_EXTRA_HINT} (missing module {exc.name!r})", file=sys.stderr)
        return 2
    print(f"gpuplan: serving on http://{args.host}:{args.port}/ (API at /api/v1, docs at /docs); Ctrl-C stops",
          file=sys.stderr)
    # uvicorn logs each request at level info: below that, the access log is switched off rather than formatted
    # and dropped on every request
    options = dict(host=args.host, port=args.port, log_level=args.log_level,
                   access_log=args.log_level in ("info", "debug"))
    if args.workers > 1:  # worker processes import the app factory themselves
        uvicorn.run("gpuplan.web.app:create_app", factory=True, workers=args.workers, **options)
    else:
        from gpuplan.web.app import create_app

        uvicorn.run(create_app(), **options)
    return 0
