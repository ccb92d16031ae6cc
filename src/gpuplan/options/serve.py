"""The options of ``gpuplan serve``."""

from __future__ import annotations

from gpuplan.options.command import CommandOptions
from gpuplan.options.common import LANG
from gpuplan.options.field import Option

SERVE = CommandOptions(
    "serve",
    help="the web page and the JSON API",
    description="Serve the page at / and the JSON API under /api/v1/ (OpenAPI docs at /docs). Needs the [web] extra: "
                "pip install 'gpuplan[web]'.",
    options=(
        Option(
            "host",
            "text",
            "--host",
            default="127.0.0.1",
            help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes it to the network)",
            help_zh="监听地址（默认 127.0.0.1；0.0.0.0 会暴露到网络）",
        ),
        Option("port", "int", "--port", default=8000, help="port (default 8000)",
               help_zh="端口（默认 8000）"),
        Option(
            "workers",
            "int",
            "--workers",
            default=1,
            help="worker processes (default 1; each answers requests on its own CPU core)",
            help_zh="工作进程数（默认 1；每个进程在各自的 CPU 核上处理请求）",
        ),
        Option(
            "log_level",
            "choice",
            "--log-level",
            default="warning",
            help="uvicorn log level (default warning)",
            help_zh="uvicorn 日志级别（默认 warning）",
            choices=("critical", "error", "warning", "info", "debug"),
        ),
        Option(
            "time_limit",
            "float",
            "--time-limit",
            help="seconds a slow request (a layout search, advice) may take before it is answered 504 (default 120, or "
                 "GPUPLAN_WEB_TIME_LIMIT)",
            help_zh="慢请求（并行方案搜索、改动建议）在返回 504 之前可用的秒数（默认 120，或 GPUPLAN_WEB_TIME_LIMIT）",
            metavar="S",
        ),
        Option(
            "max_queue",
            "int",
            "--max-queue",
            help="slow requests that may wait for a worker thread; more are answered 503 (default 8, or "
                 "GPUPLAN_WEB_MAX_QUEUE)",
            help_zh="可以排队等待工作线程的慢请求数；更多的返回 503（默认 8，或 GPUPLAN_WEB_MAX_QUEUE）",
            metavar="N",
        ),
        Option(
            "hub",
            "choice",
            "--hub",
            help="fetch the config.json of a Hugging Face id that no preset has (only that file, at most 1 MiB, "
                 "anonymously) when the page or the API names one: on or off (default on when --host is "
                 "127.0.0.1, localhost or ::1, off otherwise; or GPUPLAN_WEB_HUB)",
            help_zh="页面或 API 给出预设中没有的 Hugging Face 模型 id 时，由服务器下载其 config.json（只下载这一个文件，"
                    "至多 1 MiB，匿名访问）：on 或 off（默认：--host 为 127.0.0.1、localhost 或 ::1 时为 on，否则为 off；"
                    "或 GPUPLAN_WEB_HUB）",
            choices=("on", "off"),
        ),
        LANG,
    ),
)
