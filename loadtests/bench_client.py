"""The benchmark's load generator: one process, asyncio (uvloop when installed) and aiohttp.

Run by `loadtests.bench` as a child process so that its CPU is measured apart from the gateway's:

    python -m loadtests.bench_client --mode ws --url ws://127.0.0.1:8000/v1/realtime \
        --sessions 200 --duration 15

Modes (the same session loop, the same timing code):
- `ws`: realtime WebSocket sessions through the gateway (`input_text` -> `response.delta`...);
- `openai`: OpenAI-compatible streaming HTTP (`POST .../chat/completions`, `stream: true`): the
  upstream called directly, the gateway's `/v1/chat/completions`, or a peer proxy;
- `idle`: open WebSocket sessions and hold them until stdin closes (memory per idle session).

With `--probe-url`, `--probe-sessions` more sessions call the upstream directly (`openai` mode)
in the same run and the same process: the upstream's own TTFT under the same load on the
machine, which is what a proxy's added TTFT is measured against.

Each session runs turns back to back. Progress goes to stdout as JSON lines: `measuring` when the
measurement window opens, `window_end` when it closes, `idle_ready` (idle mode), then `result`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import orjson

__all__ = ["ClientConfig", "Recorder", "main"]

TURN_TEXT = "How can I keep my breath steady when I sing long high notes?"
SYSTEM_TEXT = "You are a concise vocal coach."


@dataclass(frozen=True, slots=True)
class ClientConfig:
    mode: str
    url: str
    sessions: int
    duration_s: float
    warmup_s: float
    ramp_s: float
    turn_timeout_s: float
    think_ms: float
    model: str
    api_key: str | None
    jwt_secret: str | None
    user_prefix: str
    probe_url: str | None = None
    probe_sessions: int = 0
    probe_api_key: str | None = None

    def probe(self) -> ClientConfig | None:
        """The direct sessions run beside the main ones, or None."""
        if not self.probe_url or self.probe_sessions <= 0:
            return None
        return dataclasses.replace(
            self,
            mode="openai",
            url=self.probe_url,
            sessions=self.probe_sessions,
            api_key=self.probe_api_key,
            jwt_secret=None,
            user_prefix=f"{self.user_prefix}-probe",
            probe_url=None,
        )

    def credential(self, index: int) -> str:
        """A bearer per session: a fixed API key, or a JWT for its own user (no shared quota)."""
        if self.jwt_secret:
            now = int(time.time())
            claims = {"sub": f"{self.user_prefix}-{index}", "iat": now, "exp": now + 6 * 3600}
            return jwt.encode(claims, self.jwt_secret, algorithm="HS256")
        return self.api_key or ""


@dataclass(slots=True)
class Recorder:
    """Samples of turns started inside the measurement window; token events received in it."""

    window_open: float = 0.0
    window_close: float = float("inf")
    ttft_ms: list[float] = field(default_factory=list)
    turn_ms: list[float] = field(default_factory=list)
    gateway_added_ms: list[float] = field(default_factory=list)
    upstream_ttft_ms: list[float] = field(default_factory=list)  # as the gateway saw it
    turns_ok: int = 0
    turns_failed: int = 0
    token_events: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    # Whole-run counts, window or not: a session that never opens is a failure too.
    sessions_open: int = 0
    in_flight: dict[object, float] = field(default_factory=dict)  # turn start per session
    session_failures: dict[str, int] = field(default_factory=dict)
    stopping: bool = False

    def session_failed(self, kind: str) -> None:
        self.session_failures[kind] = self.session_failures.get(kind, 0) + 1

    def in_window(self, at: float) -> bool:
        return self.window_open <= at < self.window_close

    def error(self, kind: str, started: float) -> None:
        # Like turns, failures count when they end inside the window.
        if self.in_window(time.perf_counter()):
            self.turns_failed += 1
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def turn(self, started: float, first: float | None, ended: float) -> None:
        # Turns count when they end inside the window, whenever they started: at saturation a
        # turn can outlast the whole window, and counting by start would hide the slowest.
        if not self.in_window(ended):
            return
        if first is None:
            self.error("no_tokens", started)
            return
        self.turns_ok += 1
        self.ttft_ms.append((first - started) * 1000)
        self.turn_ms.append((ended - started) * 1000)


class TurnError(Exception):
    """A turn that ended without a complete reply; `kind` names how."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


Turn = Callable[[], Awaitable[tuple[float | None, int]]]


async def run_turns(rec: Recorder, cfg: ClientConfig, turn: Turn) -> None:
    """Turns back to back until the window closes; `turn` returns (first token time, events)."""
    key = object()
    while not rec.stopping:
        started = time.perf_counter()
        rec.in_flight[key] = started
        try:
            async with asyncio.timeout(cfg.turn_timeout_s):
                first, _ = await turn()
        except TurnError as exc:
            rec.error(exc.kind, started)
            await asyncio.sleep(0.05)
            if exc.kind.startswith("closed"):
                return
            continue
        except TimeoutError:
            rec.error("timeout", started)
            return
        except aiohttp.ClientError as exc:
            rec.error(type(exc).__name__, started)
            await asyncio.sleep(0.05)
            continue
        finally:
            rec.in_flight.pop(key, None)
        rec.turn(started, first, time.perf_counter())
        if cfg.think_ms:
            await asyncio.sleep(cfg.think_ms / 1000)


def _count_delta(rec: Recorder, first: float | None) -> float:
    now = time.perf_counter()
    if rec.in_window(now):
        rec.token_events += 1
    return first if first is not None else now


async def ws_session(
    http: aiohttp.ClientSession, rec: Recorder, cfg: ClientConfig, index: int
) -> None:
    headers = {"Authorization": f"Bearer {cfg.credential(index)}"}
    try:
        ws = await http.ws_connect(cfg.url, headers=headers, autoping=True, max_msg_size=0)
    except (aiohttp.ClientError, OSError) as exc:
        rec.session_failed(f"connect:{type(exc).__name__}")
        return
    async with ws:
        try:
            await _expect(ws, "session.created")
        except TurnError as exc:
            rec.session_failed(exc.kind)
            return
        rec.sessions_open += 1
        seq = 0

        async def turn() -> tuple[float | None, int]:
            nonlocal seq
            seq += 1
            frame = {"type": "input_text", "text": TURN_TEXT, "turn_id": f"t{index}-{seq}"}
            await ws.send_str(orjson.dumps(frame).decode())
            return await _read_reply(ws, rec)

        await run_turns(rec, cfg, turn)


async def _expect(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    msg = await ws.receive()
    if msg.type is not aiohttp.WSMsgType.TEXT:
        raise TurnError(f"closed:{ws.close_code}")
    event: dict[str, Any] = orjson.loads(msg.data)
    if event.get("type") != kind:
        raise TurnError(f"unexpected:{event.get('type')}")
    return event


async def _read_reply(
    ws: aiohttp.ClientWebSocketResponse, rec: Recorder
) -> tuple[float | None, int]:
    first: float | None = None
    deltas = 0
    while True:
        msg = await ws.receive()
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise TurnError(f"closed:{ws.close_code}")
        data: str = msg.data
        # Deltas are most frames: recognise them without parsing (the encoder writes `type` first).
        if data.startswith('{"type":"response.delta"'):
            first = _count_delta(rec, first)
            deltas += 1
            continue
        event = orjson.loads(data)
        kind = event.get("type")
        if kind == "response.completed":
            timings = event.get("timings") or {}
            ttft, upstream = timings.get("ttft_ms"), timings.get("upstream_ttft_ms")
            measured = first is not None and rec.in_window(first)
            if measured and ttft is not None and upstream is not None:
                rec.gateway_added_ms.append(ttft - upstream)
                rec.upstream_ttft_ms.append(upstream)
            return first, deltas
        if kind in ("response.failed", "error", "rate_limited"):
            code = (event.get("error") or {}).get("code") or event.get("code") or kind
            raise TurnError(f"{kind}:{code}")


async def openai_session(
    http: aiohttp.ClientSession, rec: Recorder, cfg: ClientConfig, index: int
) -> None:
    headers = {"Authorization": f"Bearer {cfg.credential(index)}"}
    body = orjson.dumps(
        {
            "model": cfg.model,
            "stream": True,
            "messages": [
                {"role": "system", "content": SYSTEM_TEXT},
                {"role": "user", "content": TURN_TEXT},
            ],
        }
    )
    headers["Content-Type"] = "application/json"
    rec.sessions_open += 1

    async def turn() -> tuple[float | None, int]:
        async with http.post(cfg.url, data=body, headers=headers) as resp:
            if resp.status != 200:
                await resp.read()
                raise TurnError(f"http:{resp.status}")
            return await _read_sse(resp, rec)

    await run_turns(rec, cfg, turn)


async def _read_sse(resp: aiohttp.ClientResponse, rec: Recorder) -> tuple[float | None, int]:
    first: float | None = None
    deltas = 0
    async for line in resp.content:
        if not line.startswith(b"data: "):
            continue
        payload = line[6:].strip()
        if payload == b"[DONE]":
            return first, deltas
        chunk = orjson.loads(payload)
        if "error" in chunk:
            raise TurnError(f"sse_error:{(chunk['error'] or {}).get('code')}")
        for choice in chunk.get("choices") or ():
            if (choice.get("delta") or {}).get("content"):
                first = _count_delta(rec, first)
                deltas += 1
    raise TurnError("eof_before_done")


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(orjson.dumps({"event": event, **fields}).decode() + "\n")
    sys.stdout.flush()


async def _stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


def _raw(rec: Recorder) -> dict[str, Any]:
    """A recorder's samples and counts, as the `result` line carries them."""
    return {
        "ttft_ms": rec.ttft_ms,
        "turn_ms": rec.turn_ms,
        "gateway_added_ms": rec.gateway_added_ms,
        "upstream_ttft_ms": rec.upstream_ttft_ms,
        "turns_ok": rec.turns_ok,
        "turns_failed": rec.turns_failed,
        "token_events": rec.token_events,
        "errors": rec.errors,
        "sessions_open": rec.sessions_open,
        "session_failures": rec.session_failures,
    }


async def run_load(cfg: ClientConfig) -> None:
    rec = Recorder(window_open=float("inf"))
    probe_cfg = cfg.probe()
    probe = Recorder(window_open=float("inf"))
    connector = aiohttp.TCPConnector(limit=0, force_close=False, enable_cleanup_closed=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=15)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def start(recorder: Recorder, config: ClientConfig, index: int) -> None:
            await asyncio.sleep(config.ramp_s * index / max(config.sessions, 1))
            session_fn = ws_session if config.mode == "ws" else openai_session
            await session_fn(http, recorder, config, index)

        runs = [(rec, cfg)] + ([(probe, probe_cfg)] if probe_cfg is not None else [])
        tasks = [
            asyncio.create_task(start(recorder, config, index))
            for recorder, config in runs
            for index in range(config.sessions)
        ]
        await asyncio.sleep(cfg.ramp_s + cfg.warmup_s)
        opened = time.perf_counter()
        for recorder, _ in runs:
            recorder.window_open, recorder.window_close = opened, opened + cfg.duration_s
        emit("measuring")
        await asyncio.sleep(cfg.duration_s)
        emit("window_end")
        for recorder, _ in runs:
            recorder.stopping = True
        now = time.perf_counter()
        ages = sorted(now - at for at in rec.in_flight.values())
        # Turns still running at the close are reported (with their age), not waited for.
        done, pending = await asyncio.wait(tasks, timeout=1.0)
        for task in pending:
            task.cancel()
        crashed = [repr(t.exception()) for t in done if not t.cancelled() and t.exception()]
    emit(
        "result",
        mode=cfg.mode,
        sessions=cfg.sessions,
        window_s=cfg.duration_s,
        **_raw(rec),
        probe={"sessions": probe_cfg.sessions, **_raw(probe)} if probe_cfg is not None else None,
        unfinished_sessions=len(pending),
        in_flight_at_close=len(ages),
        oldest_in_flight_s=round(ages[-1], 2) if ages else None,
        in_flight_started_before_window=sum(1 for a in ages if a > cfg.duration_s),
        crashed=crashed[:5],
    )


async def run_idle(cfg: ClientConfig) -> None:
    hold = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        tasks: list[asyncio.Task[bool]] = []
        opened = 0
        batch = 200
        for start in range(0, cfg.sessions, batch):
            ready = [
                asyncio.create_task(_idle_ready(http, cfg, i, hold))
                for i in range(start, min(start + batch, cfg.sessions))
            ]
            results = await asyncio.gather(*ready)
            tasks.extend(t for t, _ in results)
            opened += sum(1 for _, ok in results if ok)
        emit("idle_ready", connected=opened, wanted=cfg.sessions)
        await _stdin_closed()
        hold.set()
        await asyncio.wait(tasks, timeout=30)
    emit("result", mode="idle", connected=opened)


async def _idle_ready(
    http: aiohttp.ClientSession, cfg: ClientConfig, index: int, hold: asyncio.Event
) -> tuple[asyncio.Task[bool], bool]:
    """Start one idle session; return once it is open (or failed) with the task holding it."""
    opened = asyncio.Event()

    async def session() -> bool:
        result = False
        try:
            result = await _idle_until(http, cfg, index, hold, opened)
        finally:
            opened.set()
        return result

    task = asyncio.create_task(session())
    await opened.wait()
    await asyncio.sleep(0)
    ok = not task.done() or task.result()
    return task, ok


async def _idle_until(
    http: aiohttp.ClientSession,
    cfg: ClientConfig,
    index: int,
    hold: asyncio.Event,
    opened: asyncio.Event,
) -> bool:
    headers = {"Authorization": f"Bearer {cfg.credential(index)}"}
    try:
        ws = await http.ws_connect(cfg.url, headers=headers, autoping=True, max_msg_size=0)
        await _expect(ws, "session.created")
    except (aiohttp.ClientError, OSError, TurnError):
        return False
    opened.set()
    waiter = asyncio.ensure_future(hold.wait())
    reader = asyncio.ensure_future(ws.receive())
    try:
        # Pings are answered inside `receive`; the session ends when told or when closed.
        await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        reader.cancel()
        with contextlib.suppress(Exception):
            await ws.close()
    return True


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench_client", description=__doc__)
    p.add_argument("--mode", choices=["ws", "openai", "idle"], required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--ramp", type=float, default=1.0)
    p.add_argument("--turn-timeout", type=float, default=30.0)
    p.add_argument("--think-ms", type=float, default=0.0)
    p.add_argument("--model", default="gpt-4o-mini")
    p.add_argument("--api-key", default=None)
    p.add_argument("--jwt-secret-env", default=None, help="mint a JWT per session with this")
    p.add_argument("--user-prefix", default="bench")
    p.add_argument("--probe-url", default=None, help="the upstream, called directly alongside")
    p.add_argument("--probe-sessions", type=int, default=0)
    p.add_argument("--probe-api-key", default=None)
    return p


def config_from_args(argv: list[str] | None = None) -> ClientConfig:
    import os

    a = _parser().parse_args(argv)
    secret = os.environ.get(a.jwt_secret_env) if a.jwt_secret_env else None
    return ClientConfig(
        mode=a.mode,
        url=a.url,
        sessions=a.sessions,
        duration_s=a.duration,
        warmup_s=a.warmup,
        ramp_s=a.ramp,
        turn_timeout_s=a.turn_timeout,
        think_ms=a.think_ms,
        model=a.model,
        api_key=a.api_key,
        jwt_secret=secret,
        user_prefix=a.user_prefix,
        probe_url=a.probe_url,
        probe_sessions=a.probe_sessions,
        probe_api_key=a.probe_api_key,
    )


def main(argv: list[str] | None = None) -> int:
    cfg = config_from_args(argv)
    raise_fd_limit()
    runner = run_idle(cfg) if cfg.mode == "idle" else run_load(cfg)
    try:
        import uvloop
    except ImportError:
        asyncio.run(runner)
    else:
        uvloop.run(runner)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
