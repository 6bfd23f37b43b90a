"""What tracing costs the first token: gateway-added TTFT with span export on versus off.

Gateway-added TTFT is `timings.ttft_ms - timings.upstream_ttft_ms` of each `response.completed`
(the gateway's own time between the user's turn and the first delta). The simulated upstream
runs in a subprocess; a local OTLP/HTTP receiver (in a thread) takes the exported spans. Modes,
in this order, each a fresh gateway running `--turns` sequential WebSocket turns after a warm-up:

- `off`: no `OTEL_EXPORTER_OTLP_ENDPOINT`, no SDK provider installed (the production default);
- `on`: export to the receiver (BatchSpanProcessor + OTLP/HTTP protobuf);
- `idle`: no endpoint, but the SDK provider installed earlier in the process (spans are sampled
  out at their start: what a test process or a hot config change pays).

    python -m loadtests.micro.tracing --turns 200

prints p50/p99 per mode and writes `loadtests/results/tracing.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from websockets.asyncio.client import connect

from gateway.app import create_app
from gateway.auth import mint_token
from gateway.observability import middleware, observability_routes, open_observability
from gateway.server import GatewayServer, uvicorn_config
from gateway.settings import QuotaSettings, Settings
from loadtests.bench_output import RESULTS


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def sim_process(ttft_ms: float) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "sim-upstream",
            "--port",
            str(port),
            "--ttft-ms",
            str(ttft_ms),
            "--tokens-per-s",
            "0",
            "--reply-tokens",
            "20",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


class Receiver:
    """An OTLP/HTTP endpoint in its own thread and event loop; counts export requests."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.requests = 0
        self.bytes = 0
        app = Starlette(routes=[Route("/v1/traces", self._handle, methods=["POST"])])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    async def _handle(self, request: Request) -> Response:
        self.bytes += len(await request.body())
        self.requests += 1
        return Response(b"", media_type="application/x-protobuf")

    def __enter__(self) -> Receiver:
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)


def _wire(app: Starlette, settings: Settings) -> None:
    """Add observability if the app factory does not wire it yet."""
    if any(getattr(route, "path", None) == "/metrics" for route in app.routes):
        return
    app.router.routes.extend(observability_routes())
    for item in middleware(settings):
        app.add_middleware(item.cls, *item.args, **item.kwargs)
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Starlette) -> AsyncIterator[None]:
        async with original(a), AsyncExitStack() as stack:
            await open_observability(a.state.gateway, stack)
            yield

    app.router.lifespan_context = lifespan


@asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[str]:
    app = create_app(settings)
    _wire(app, settings)
    server = GatewayServer(uvicorn_config(app, settings, host="127.0.0.1", port=0))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the gateway did not start")
            await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


async def run_turns(ws_url: str, token: str, turns: int, warmup: int) -> list[float]:
    added: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(f"{ws_url}/v1/realtime", additional_headers=headers) as ws:
        while orjson.loads(await ws.recv())["type"] != "session.created":
            pass
        for i in range(warmup + turns):
            await ws.send(orjson.dumps({"type": "input_text", "text": f"Tip {i}?"}).decode())
            while True:
                event = orjson.loads(await ws.recv())
                if event["type"] in ("response.completed", "response.failed", "error"):
                    break
            if event["type"] != "response.completed":
                raise RuntimeError(f"turn {i} did not complete: {event}")
            timings = event["timings"]
            if i >= warmup:
                added.append(timings["ttft_ms"] - timings["upstream_ttft_ms"])
    return added


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def q(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3)

    return {
        "p50_ms": q(0.50),
        "p90_ms": q(0.90),
        "p99_ms": q(0.99),
        "mean_ms": round(statistics.fmean(values), 3),
        "n": len(values),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    secret = secrets.token_urlsafe(32)
    token = mint_token(secret, "bench", ttl_s=3600)
    results: dict[str, Any] = {"turns": args.turns, "upstream_ttft_ms": args.ttft_ms, "modes": {}}
    with (
        sim_process(args.ttft_ms) as sim_url,
        Receiver() as receiver,
        tempfile.TemporaryDirectory() as data_dir,
    ):
        for mode in ("off", "on", "idle"):
            settings = Settings(
                jwt_secret=secret,
                sim_url=sim_url,
                data_dir=Path(data_dir),
                persistence=False,
                log_level="warning",
                otlp_endpoint=f"http://127.0.0.1:{receiver.port}" if mode == "on" else None,
                quotas=QuotaSettings(turns_per_minute=1_000_000, tokens_per_day=1_000_000_000),
            )
            before = receiver.requests
            async with gateway(settings) as ws_url:
                added = await run_turns(ws_url, token, args.turns, args.warmup)
            summary = _summary(added)
            summary["export_requests"] = receiver.requests - before
            results["modes"][mode] = summary
            print(
                f"{mode:>4}: gateway-added TTFT p50 {summary['p50_ms']:.3f} ms  "
                f"p99 {summary['p99_ms']:.3f} ms  (n={summary['n']}, "
                f"export requests {summary['export_requests']})"
            )
    on, off = results["modes"]["on"], results["modes"]["off"]
    results["overhead_p50_ms"] = round(on["p50_ms"] - off["p50_ms"], 3)
    results["overhead_p99_ms"] = round(on["p99_ms"] - off["p99_ms"], 3)
    print(
        f"tracing export overhead: p50 {results['overhead_p50_ms']:+.3f} ms, "
        f"p99 {results['overhead_p99_ms']:+.3f} ms"
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--ttft-ms", type=float, default=20.0, help="the sim's first-token delay")
    parser.add_argument("--out", type=Path, default=RESULTS / "tracing.json")
    args = parser.parse_args(argv)
    results = asyncio.run(bench(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
