"""Load test of the JSON API on loopback: latency percentiles and errors at N concurrent clients.

Starts `gpuplan serve` on 127.0.0.1 (a free port) in a child process, warms it up, then drives it with N clients,
each on its own keep-alive HTTP/1.1 connection (a small asyncio client, so the load generator costs little CPU
on the same machine). Bounded: stops after --requests requests or --duration seconds, whichever comes first, and
only ever talks to 127.0.0.1.

Two ways of loading it:
- closed: every client sends its next request as soon as the previous answer arrives (the server is saturated;
  latency then measures queueing: about clients / throughput). The server's fast path yields to its event loop
  once per request so that every connection is answered in the round its request arrived in (without it, one or
  two of the 50 connections kept waiting two rounds and the p99 was about twice the p50);
- paced: every client sends one request every 1/--rate seconds (people with the page open); latency is measured
  from the planned send time, so a slow answer also counts against the requests it delayed.

Every request is a different estimate (batch, sequence length and model vary), so the server's result cache does
not answer them; --repeat sends one request over and over to measure the cached path.

Every measured run follows an unmeasured closed-loop warm-up (--warmup seconds, default 1.5, other requests than
the run's): on this virtual machine the CPUs run slower for about a second after an idle spell (measured: after 6 s
idle, the first 1.3 s of a closed run had p50 15.8 ms, the rest 9.5 ms), so without it a closed run that follows a
paced one measures the machine waking up.

The machine's 1-minute load average is printed next to every run (before -> after it): the server and the load
generator share the CPUs with whatever else runs, and a busy machine shows up there first. The target of the
issue (0 errors, p99 <= 20 ms at 50 clients) is checked in the last column.

    python benchmarks/bench_web.py                       # train estimate, 50 clients, closed and paced
    python benchmarks/bench_web.py --rounds 3            # each mode three times
    python benchmarks/bench_web.py --command time --mode paced --rate 4
    python benchmarks/bench_web.py --in-process          # CPU per request inside the app, no sockets

--in-process calls the ASGI application directly (no uvicorn, no sockets, no load generator) and prints the CPU
time per request: the server's own cost, which other work on the machine changes far less than latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

HOST = "127.0.0.1"  # loopback only
TARGET_P99_MS = 20.0
MODELS = ("llama-3.1-8b", "qwen2.5-7b", "mistral-7b-v0.1", "qwen2.5-14b")
GPUS = ("h100-sxm", "a100-80gb", "h200", "a800")


def body_for(command: str, i: int, repeat: bool) -> dict:
    """The i-th request: all different unless ``repeat``."""
    if repeat:
        i = 0
    model = MODELS[(i // 4096) % len(MODELS)]
    gpu = GPUS[(i // 1024) % len(GPUS)]
    batch = 1 + i % 64
    seq = 256 * (1 + (i // 64) % 16)
    if command == "train":
        return {"model": model, "gpu": gpu, "batch": batch, "seq": seq}
    if command == "infer":
        return {"model": model, "gpu": gpu, "batch": batch, "context": seq * 4}
    if command == "time":
        return {"model": model, "gpu": gpu, "tokens": f"{1 + i % 999}B", "gpus": 8 * (1 + (i // 999) % 64)}
    if command == "params":
        return {"layers": 1 + i % 96, "hidden": 128 * (1 + (i // 96) % 64), "heads": 8}
    raise SystemExit(f"no request template for {command!r}")


def cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far, from /proc (Linux); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(port: int, workers: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gpuplan", "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/api/v1", timeout=1) as r:
                return proc if r.status == 200 else proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start within 30 s")


class Client:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)

    async def post(self, path: str, payload: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.connect()
        head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n").encode()
        self.writer.write(head + payload)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")  # one await for the whole head: a cheap client
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        length, close = 0, False
        for line in lines:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and "close" in value.lower():
                close = True
        data = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def drive(port: int, command: str, clients: int, requests: int, duration_s: float, mode: str, rate: float,
                repeat: bool, start_index: int = 0) -> dict:
    path = f"/api/v1/{command}"
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(start_index, start_index + requests))
    t_end = time.monotonic() + duration_s

    async def one_client(k: int) -> None:
        client = Client(port)
        next_send = time.monotonic() + (k / clients) / rate if mode == "paced" else 0.0
        while time.monotonic() < t_end:
            i = next(counter, None)
            if i is None:
                break
            payload = json.dumps(body_for(command, i, repeat)).encode()
            if mode == "paced":
                delay = next_send - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                planned = next_send
                next_send += 1.0 / rate
            else:
                planned = time.monotonic()
            try:
                status, data = await asyncio.wait_for(client.post(path, payload), timeout=10)
                if status != 200:
                    key = f"HTTP {status}"
                    errors[key] = errors.get(key, 0) + 1
                    if len(errors) == 1 and errors[key] == 1:
                        print(f"first error: {data[:300]!r}", file=sys.stderr)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ValueError) as exc:
                key = type(exc).__name__
                errors[key] = errors.get(key, 0) + 1
                client.close()
            latencies.append(time.monotonic() - planned)
        client.close()

    t0 = time.monotonic()
    await asyncio.gather(*(one_client(k) for k in range(clients)))
    wall = time.monotonic() - t0
    lat_ms = sorted(x * 1000 for x in latencies)

    def pct(p: float) -> float:
        return lat_ms[min(len(lat_ms) - 1, int(round(p / 100 * (len(lat_ms) - 1))))] if lat_ms else float("nan")

    return {"mode": mode + (f" {rate:g}/s each" if mode == "paced" else ""), "clients": clients,
            "requests": len(lat_ms), "errors": sum(errors.values()), "error_kinds": errors,
            "wall_s": wall, "req_per_s": len(lat_ms) / wall if wall else 0.0,
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": lat_ms[-1] if lat_ms else float("nan"),
            "mean_ms": statistics.fmean(lat_ms) if lat_ms else float("nan")}


def in_process(command: str, requests: int, rounds: int) -> list[tuple[str, float]]:
    """CPU microseconds per request through the ASGI app (best of ``rounds``): new requests, the same request
    repeated, and a bare GET of /api/v1 (the framework's floor)."""
    from gpuplan.web.app import create_app

    app = create_app()

    async def call(method: str, path: str, payload: bytes) -> int:
        message = {"type": "http.request", "body": payload, "more_body": False}
        status = 0

        async def receive() -> dict:
            return message

        async def send(m: dict) -> None:
            nonlocal status
            if m["type"] == "http.response.start":
                status = m["status"]

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"host", HOST.encode()), (b"content-type", b"application/json"),
                             (b"content-length", str(len(payload)).encode())],
                 "client": (HOST, 1), "server": (HOST, 80), "state": {}}
        await app(scope, receive, send)
        return status

    async def cpu_us(method: str, path: str, payloads: list[bytes]) -> float:
        t = time.process_time()
        for p in payloads:
            status = await call(method, path, p)
            if status != 200:
                raise SystemExit(f"{method} {path} answered {status}")
        return (time.process_time() - t) / len(payloads) * 1e6

    async def run() -> list[tuple[str, float]]:
        path, start = f"/api/v1/{command}", 0
        rows = {"new requests": [], "one request repeated": [], "GET /api/v1": []}
        for _ in range(rounds + 1):  # the first round warms up
            new = [json.dumps(body_for(command, i, False)).encode() for i in range(start, start + requests)]
            start += requests
            rows["new requests"].append(await cpu_us("POST", path, new))
            rows["one request repeated"].append(
                await cpu_us("POST", path, [json.dumps(body_for(command, 0, True)).encode()] * requests))
            rows["GET /api/v1"].append(await cpu_us("GET", "/api/v1", [b""] * requests))
        return [(k, min(v[1:])) for k, v in rows.items()]

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--command", default="train", help="endpoint to load (train, infer, time, params)")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=3000, help="requests per run (bound)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per run at most (bound)")
    ap.add_argument("--mode", choices=("closed", "paced", "both"), default="both")
    ap.add_argument("--rate", type=float, default=10.0, help="paced mode: requests per second per client")
    ap.add_argument("--rounds", type=int, default=1, help="runs of each mode (alternating)")
    ap.add_argument("--repeat", action="store_true", help="send the same request every time (cached path)")
    ap.add_argument("--workers", type=int, default=1, help="server worker processes")
    ap.add_argument("--warmup", type=float, default=1.5, help="seconds of unmeasured closed load before each run")
    ap.add_argument("--in-process", action="store_true", help="CPU per request inside the app (no sockets)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.clients < 1 or args.requests < 1 or args.duration <= 0 or args.rate <= 0 or args.rounds < 1:
        ap.error("--clients, --requests, --duration, --rate and --rounds must be positive")
    if not 0 <= args.warmup <= 60:
        ap.error("--warmup must be between 0 and 60 seconds")
    if args.in_process:
        rows = in_process(args.command, args.requests, args.rounds)
        print(f"POST /api/v1/{args.command} through the ASGI app in this process: CPU time per request, best of "
              f"{args.rounds} rounds of {args.requests}; load average {os.getloadavg()[0]:.2f}")
        for name, us in rows:
            print(f"{name:<24}{us:>8.1f} us")
        return 0

    load_before = os.getloadavg()[0]  # other work on the machine skews the figures: it is printed with them
    port = free_port()
    server = start_server(port, args.workers)
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/api/v1") as r:
            available = json.load(r)["commands"]
        if args.command not in available:
            raise SystemExit(f"gpuplan {args.command} is not in this build (available: {', '.join(available)})")
        warm = asyncio.run(drive(port, args.command, min(args.clients, 8), 200, 30, "closed", 1.0, args.repeat,
                                 start_index=10**6))
        if warm["errors"]:
            raise SystemExit(f"warm-up failed: {warm['error_kinds']}")
        modes = ("closed", "paced") if args.mode == "both" else (args.mode,)
        results = []
        for n, mode in enumerate(modes * args.rounds):
            if args.warmup > 0:  # other bodies than the run's (8192 on in the 16,384-request cycle of body_for)
                asyncio.run(drive(port, args.command, args.clients, 6000, args.warmup, "closed", 1.0, args.repeat,
                                  start_index=n * args.requests + 8192))
            load_start, cpu_start = os.getloadavg()[0], cpu_s(server.pid)
            result = asyncio.run(drive(port, args.command, args.clients, args.requests, args.duration, mode,
                                       args.rate, args.repeat, start_index=n * args.requests))
            cpu_end = cpu_s(server.pid)
            result.update(round=n // len(modes) + 1, load_before=load_start, load_after=os.getloadavg()[0],
                          server_cpu_ms_per_req=(cpu_end - cpu_start) * 1000 / result["requests"]
                          if cpu_start is not None and cpu_end is not None and args.workers == 1
                          and result["requests"] else None)
            results.append(result)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"POST /api/v1/{args.command} on {HOST}, {args.workers} server worker(s), "
          f"{'one repeated request' if args.repeat else 'all requests different'}; "
          f"{os.cpu_count()} CPUs shared by server and load generator; load average before {load_before:.2f}, "
          f"after {os.getloadavg()[0]:.2f}")
    head = f"{'mode':<16}{'run':>4}{'clients':>8}{'requests':>9}{'errors':>7}{'req/s':>7}{'p50 ms':>8}{'p90 ms':>8}" \
           f"{'p99 ms':>8}{'max ms':>8}{'cpu ms':>7}  {'load avg':<12}{'target':>7}"
    print(head)
    print("-" * len(head))
    for r in results:
        met = r["errors"] == 0 and r["p99_ms"] <= TARGET_P99_MS
        load = f"{r['load_before']:.2f}->{r['load_after']:.2f}"
        cpu = "n/a" if r["server_cpu_ms_per_req"] is None else f"{r['server_cpu_ms_per_req']:.2f}"
        print(f"{r['mode']:<16}{r['round']:>4}{r['clients']:>8}{r['requests']:>9}{r['errors']:>7}{r['req_per_s']:>7.0f}"
              f"{r['p50_ms']:>8.1f}{r['p90_ms']:>8.1f}{r['p99_ms']:>8.1f}{r['max_ms']:>8.1f}"
              f"{cpu:>7}  {load:<12}"
              f"{'met' if met else 'missed':>7}")
        if r["errors"]:
            print(f"  errors: {r['error_kinds']}")
    print(f"target: 0 errors and p99 <= {TARGET_P99_MS:g} ms; cpu ms: server CPU time per request (user + system, "
          f"one worker); load avg: 1-minute load average before -> after the run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
