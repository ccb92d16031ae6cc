"""``gpuplan serve``: the web page and the JSON API on a local port."""

from __future__ import annotations

import argparse
import math
import os
import sys
from gpuplan.cli.parsers import command_parser

WEB_EXTRA_HINT = "the web page needs FastAPI and uvicorn: pip install 'gpuplan[web]'"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "serve")


def run(args: argparse.Namespace) -> int:
    from gpuplan.errors import InputError

    if not 0 <= args.port <= 65535:
        raise InputError("--port", args.port, "must be between 0 and 65535")
    if args.workers < 1:
        raise InputError("--workers", args.workers, "must be >= 1")
    if args.time_limit is not None and not (math.isfinite(args.time_limit) and args.time_limit > 0):
        raise InputError("--time-limit", args.time_limit, "must be a number of seconds > 0")
    if args.max_queue is not None and args.max_queue < 0:
        raise InputError("--max-queue", args.max_queue, "must be >= 0")
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        print(f"gpuplan serve: error: {WEB_EXTRA_HINT} (missing module {exc.name!r})", file=sys.stderr)
        return 2
    # uvicorn logs each request at level info: below that, the access log is switched off rather than formatted
    # and dropped on every request
    options = dict(host=args.host, port=args.port, log_level=args.log_level,
                   access_log=args.log_level in ("info", "debug"))
    from gpuplan.web.hub import HUB_ENV, default_for_host
    from gpuplan.web.slow import MAX_QUEUE_ENV, TIME_LIMIT_ENV

    # Through the environment, so that worker processes (which build their own app) get the same limits.
    hub = args.hub or os.environ.get(HUB_ENV, "").strip().lower() or ("on" if default_for_host(args.host) else "off")
    if hub not in ("on", "off"):
        raise InputError(HUB_ENV, hub, "must be 'on' or 'off'")
    if args.time_limit is not None:
        os.environ[TIME_LIMIT_ENV] = repr(args.time_limit)
    if args.max_queue is not None:
        os.environ[MAX_QUEUE_ENV] = str(args.max_queue)
    print(f"gpuplan: serving on http://{args.host}:{args.port}/ (API at /api/v1, docs at /docs); Ctrl-C stops",
          file=sys.stderr)
    if hub == "on":
        print("gpuplan: the server fetches the config.json of Hugging Face ids that no preset has (--hub off stops "
              "it)", file=sys.stderr)
    if args.workers > 1:  # worker processes import the app factory themselves
        os.environ[HUB_ENV] = hub
        uvicorn.run("gpuplan.web.app:create_app", factory=True, workers=args.workers, **options)
    else:
        from gpuplan.web.app import create_app

        uvicorn.run(create_app(hub=hub == "on"), **options)
    return 0
