"""One client flooding the gateway, another user's time to first token, and half-sent request
heads (issue 20: per-connection inbound bounds, slow-loris).

Starts the simulated upstream and `coach-gateway serve` as their own processes on loopback
(the product on, Postgres through `DATABASE_URL`, when it is set), or talks to `--url`. A victim
user runs sequential text turns over one WebSocket and its client-observed TTFT (turn sent to
first `response.delta`) is measured alone, then while a flooder process, another user, sends as
fast as it can: `metrics.push` frames of 32 metrics (`metrics`), `ping` events (`ping`), or
protocol ping frames (`wsping`), reading what comes back. A flooder that is closed connects
again (an attacker would), so the flood lasts the whole phase; it reports how long each of its
connections lasted and with what close code.

    python -m loadtests.flood [--turns 60] [--floods metrics,ping,wsping]
    python -m loadtests.flood --slow-loris [--sockets 400]

`--slow-loris` opens that many sockets that send half a request head and nothing more, and
reports how long the gateway holds them (up to `--hold-cap-s`). The bounds under test are the
gateway's settings, taken from the environment like any other: a run with
`COACH_INBOUND_FRAMES_PER_S=1e9 COACH_INBOUND_BYTES_PER_S=1000000000000` (or
`COACH_REQUEST_HEAD_TIMEOUT_S=1e9`) shows the gateway without them. Writes
`loadtests/results/flood.json` (or `slow_loris.json`).

Network only: nothing of the gateway is imported; traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from loadtests.bench_output import RESULTS, write_figures
from loadtests.bench_procs import (
    BENCH_SECRET,
    free_port,
    gateway_env,
    raise_fd_limit,
    sim_argv,
    started,
)
from loadtests.bench_stats import summarize

FLOODS = ("metrics", "ping", "wsping")
METRICS = orjson.dumps(
    {"type": "metrics.push", "metrics": {f"metric_{i}": round(i / 32, 4) for i in range(32)}}
).decode()
PING = '{"type":"ping"}'
HALF_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"
SIM_KNOBS = {"ttft_ms": 20, "tokens_per_s": 200, "reply_tokens": 20}
FLOOD_CAP_S = 300.0  # a flooder stops by itself after this long, whatever happens
YIELD_EVERY = 32  # frames a flooder sends between letting its reader run


def token(secret: str, user: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + 3600}, secret, algorithm="HS256")


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(orjson.dumps({"event": event, **fields}).decode() + "\n")
    sys.stdout.flush()


# -- the victim


@dataclass
class Turns:
    ttft_ms: list[float]
    failed: int


async def victim_turns(ws_url: str, bearer: str, turns: int) -> Turns:
    """Sequential text turns over one WebSocket; client-observed TTFT of each."""
    ttft, failed = [], 0
    headers = {"Authorization": f"Bearer {bearer}"}
    async with connect(f"{ws_url}/v1/realtime", additional_headers=headers) as ws:
        await ws.recv()  # session.created
        for i in range(turns):
            sent = time.perf_counter()
            await ws.send(orjson.dumps({"type": "input_text", "text": f"tip {i}"}).decode())
            first = await _first_delta(ws)
            if first is None:
                failed += 1
            else:
                ttft.append((first - sent) * 1000)
    return Turns(ttft, failed)


async def _first_delta(ws: ClientConnection) -> float | None:
    """When the turn's first delta came (None: the turn did not complete)."""
    first: float | None = None
    while True:
        event = orjson.loads(await ws.recv())
        kind = event["type"]
        if kind == "response.delta" and first is None:
            first = time.perf_counter()
        elif kind in ("response.completed", "response.failed", "rate_limited", "error"):
            return first if kind == "response.completed" else None


# -- the flooder (its own process: it must not share the victim's event loop)


def sender(kind: str, ws: ClientConnection) -> Callable[[], Awaitable[object]]:
    match kind:
        case "metrics":
            return lambda: ws.send(METRICS)
        case "ping":
            return lambda: ws.send(PING)
        case "wsping":
            return ws.ping
    raise ValueError(f"unknown flood {kind!r}")


async def flood_once(kind: str, ws_url: str, bearer: str, stop: asyncio.Event) -> dict[str, Any]:
    """One connection flooding until the server closes it or `stop` is set."""
    headers = {"Authorization": f"Bearer {bearer}"}
    frames, received, error, error_at = 0, 0, None, None
    async with connect(
        f"{ws_url}/v1/realtime", additional_headers=headers, compression=None, max_queue=None
    ) as ws:
        await ws.recv()  # session.created

        async def read() -> None:
            nonlocal received, error, error_at
            with contextlib.suppress(ConnectionClosed):
                async for raw in ws:
                    received += 1
                    if '"type":"error"' in raw:
                        error, error_at = orjson.loads(raw)["code"], time.perf_counter()

        reader = asyncio.create_task(read())
        send = sender(kind, ws)
        start = time.perf_counter()
        closed = None
        try:
            while not stop.is_set():
                await send()
                frames += 1
                if frames % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        except ConnectionClosed as exc:
            closed = exc.rcvd
        lasted = time.perf_counter() - start
        reader.cancel()
    return {
        "frames_sent": frames,
        "events_received": received,
        "error_code": error,
        "error_after_s": round(error_at - start, 4) if error_at is not None else None,
        "lasted_s": round(lasted, 3),
        "close_code": closed.code if closed is not None else None,
        "close_reason": closed.reason if closed is not None else None,
    }


async def run_flooder(kind: str, ws_url: str, bearer: str) -> None:
    """Flood, connecting again after each close, until stdin closes; one `result` line."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    stdin = loop.run_in_executor(None, sys.stdin.read)
    stdin.add_done_callback(lambda _: stop.set())
    loop.call_later(FLOOD_CAP_S, stop.set)
    connections: list[dict[str, Any]] = []
    emit("flooding")
    while not stop.is_set():
        try:
            connections.append(await flood_once(kind, ws_url, bearer, stop))
        except (OSError, InvalidHandshake, ConnectionClosed) as exc:  # refused: try again
            connections.append({"failed": type(exc).__name__})
            await asyncio.sleep(0.05)
    emit("result", kind=kind, connections=connections)


@contextlib.asynccontextmanager
async def flooder(kind: str, ws_url: str, secret: str) -> AsyncIterator[dict[str, Any]]:
    """A flooder process, flooding while the block runs; its report fills the yielded dict."""
    argv = [sys.executable, "-m", "loadtests.flood", "--flooder", kind, "--ws-url", ws_url]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "FLOOD_TOKEN": token(secret, f"flooder-{kind}")},
    )
    assert proc.stdin is not None and proc.stdout is not None
    report: dict[str, Any] = {}
    try:
        async with asyncio.timeout(30):
            line = await proc.stdout.readline()
        if orjson.loads(line or b"{}").get("event") != "flooding":
            raise RuntimeError(f"the {kind} flooder did not start")
        await asyncio.sleep(0.5)  # the flood under way before the victim's turns
        yield report
        proc.stdin.close()
        async with asyncio.timeout(30):
            out = await proc.stdout.read()
        for raw in out.splitlines():
            line_obj = orjson.loads(raw)
            if line_obj.get("event") == "result":
                report.update(line_obj)
        if not report:
            raise RuntimeError(f"the {kind} flooder ended without a report")
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def flood_summary(report: dict[str, Any]) -> dict[str, Any]:
    connections = [c for c in report.get("connections", []) if "frames_sent" in c]
    first = connections[0] if connections else {}
    return {
        "connections": len(connections),
        "refused_handshakes": len(report.get("connections", [])) - len(connections),
        # From the first frame sent: the `error` event (the close frame follows it at once),
        # and the end of the TCP connection (the gateway ends it a moment after its close).
        "first_error_after_s": first.get("error_after_s"),
        "first_closed_after_s": first.get("lasted_s") if first.get("close_code") else None,
        "first_close": [first.get("close_code"), first.get("close_reason")] if first else None,
        "first_error_code": first.get("error_code"),
        "close_codes": sorted({c["close_code"] for c in connections if c["close_code"]}),
        "frames_sent": sum(c["frames_sent"] for c in connections),
    }


# -- slow-loris


async def hold_half_head(host: str, port: int, cap_s: float) -> float | None:
    """Seconds from sending half a head until the server closes (None: still open at cap)."""
    reader, writer = await asyncio.open_connection(host, port)
    start = time.perf_counter()
    writer.write(HALF_HEAD)
    try:
        async with asyncio.timeout(cap_s):
            with contextlib.suppress(ConnectionError):
                while await reader.read(65536):
                    pass
        return time.perf_counter() - start
    except TimeoutError:
        return None
    finally:
        writer.close()


async def slow_loris(url: str, sockets: int, cap_s: float) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    held = await asyncio.gather(*(hold_half_head(host, port, cap_s) for _ in range(sockets)))
    closed = [s for s in held if s is not None]
    return {
        "sockets": sockets,
        "closed_by_gateway": len(closed),
        "still_open_at_cap": sockets - len(closed),
        "cap_s": cap_s,
        "held_ms": summarize([s * 1000 for s in closed]) if closed else None,
    }


# -- the run


@contextlib.asynccontextmanager
async def servers(log_dir: Path) -> AsyncIterator[str]:
    """A sim and a gateway on loopback; yields the gateway's URL."""
    sim_port, gw_port = free_port(), free_port()
    sim_url, gw_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{gw_port}"
    env = gateway_env(sim_url)
    env["COACH_PERSISTENCE"] = "true" if os.environ.get("DATABASE_URL") else "false"
    for name in [n for n in os.environ if n.startswith("COACH_")]:
        env[name] = os.environ[name]  # the bounds under test, and any other override
    gw_argv = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(gw_port)]
    async with (
        started("sim", sim_argv(sim_port, SIM_KNOBS), f"{sim_url}/_sim/stats", log_dir=log_dir),
        started("gateway", gw_argv, f"{gw_url}/healthz", log_dir=log_dir, env=env),
    ):
        yield gw_url


async def measure_floods(url: str, secret: str, turns: int, floods: list[str]) -> dict[str, Any]:
    ws_url = "ws" + url.removeprefix("http")
    victim = token(secret, "victim")
    await victim_turns(ws_url, victim, 10)  # warm up
    alone = await victim_turns(ws_url, victim, turns)
    result: dict[str, Any] = {"alone": _ttft(alone)}
    for kind in floods:
        async with flooder(kind, ws_url, secret) as report:
            during = await victim_turns(ws_url, victim, turns)
        result[f"{kind}_flood"] = {**_ttft(during), "flooder": flood_summary(report)}
        base, now = result["alone"]["ttft_ms"]["p50"], result[f"{kind}_flood"]["ttft_ms"]["p50"]
        result[f"{kind}_flood"]["p50_vs_alone"] = round(now / base, 2) if base else None
    return result


def _ttft(turns: Turns) -> dict[str, Any]:
    return {"ttft_ms": summarize(turns.ttft_ms), "failed_turns": turns.failed}


def settings_under_test() -> dict[str, str]:
    names = ["COACH_INBOUND_FRAMES_PER_S", "COACH_INBOUND_BYTES_PER_S"]
    names.append("COACH_REQUEST_HEAD_TIMEOUT_S")
    return {n: os.environ.get(n, "default") for n in names}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    secret = os.environ.get(args.secret_env, "") if args.url else BENCH_SECRET
    figures: dict[str, Any] = {
        "settings": settings_under_test(),
        "product": bool(os.environ.get("DATABASE_URL")) if not args.url else None,
    }
    async with contextlib.AsyncExitStack() as stack:
        url = args.url
        if url is None:
            log_dir = Path(tempfile.mkdtemp(prefix="coach-flood-"))
            print(f"process logs in {log_dir}", file=sys.stderr)
            url = await stack.enter_async_context(servers(log_dir))
        if args.slow_loris:
            figures["slow_loris"] = await slow_loris(url, args.sockets, args.hold_cap_s)
        else:
            floods = [f for f in args.floods.split(",") if f]
            figures["turns_per_phase"] = args.turns
            figures.update(await measure_floods(url, secret, args.turns, floods))
    return figures


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--turns", type=int, default=60, help="victim turns per phase (default 60)")
    p.add_argument("--floods", default=",".join(FLOODS), help="which floods, in order")
    p.add_argument("--slow-loris", action="store_true", help="measure half-sent heads instead")
    p.add_argument("--sockets", type=int, default=400, help="slow-loris sockets (default 400)")
    p.add_argument("--hold-cap-s", type=float, default=90.0, help="stop waiting after this")
    p.add_argument("--url", help="a running gateway (http://127.0.0.1:PORT) instead of our own")
    p.add_argument("--secret-env", default="COACH_JWT_SECRET", help="its JWT secret's variable")
    p.add_argument("--out", type=Path, help="where the figures go")
    p.add_argument("--flooder", choices=FLOODS, help=argparse.SUPPRESS)
    p.add_argument("--ws-url", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.flooder:
        asyncio.run(run_flooder(args.flooder, args.ws_url, os.environ["FLOOD_TOKEN"]))
        return 0
    if args.url and urlsplit(args.url).hostname not in ("127.0.0.1", "localhost"):
        parser().error("--url must be on loopback (127.0.0.1)")
    if args.url and not os.environ.get(args.secret_env):
        parser().error(f"--url needs the gateway's JWT secret in ${args.secret_env}")
    raise_fd_limit()
    figures = asyncio.run(main_async(args))
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    default = "slow_loris.json" if args.slow_loris else "flood.json"
    write_figures(args.out or RESULTS / default, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
