"""What the request-context middleware (request id, trace context, access line) costs per request.

Drives `RequestContextMiddleware` in process around a stub app that does what Starlette's router
does to the scope (sets `route` and `path_params`), with the real JSON log handler writing to
/dev/null, and prints microseconds per request for: a 200 on a route without ids, a 200 on a
route with a session id in its path, a client's repeated 429s, and per frame received on a
WebSocket. Each is also timed without the middleware (the difference is its cost), best of
`--rounds`. Writes `loadtests/results/access_log.json`.

    python -m loadtests.micro.access_log [--requests 20000] [--frames 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.logs import configure_logging
from gateway.middleware import RequestContextMiddleware

RESULTS = Path(__file__).parents[1] / "results"
SESSION_ID = "3f2a9c1e-5b7d-4e8f-9a0b-c1d2e3f4a5b6"


@dataclass(frozen=True)
class _Route:
    path: str


@dataclass(frozen=True)
class _Principal:
    user_id: str


def _stub_app(route: str, params: dict[str, str], status: int) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope.update(route=_Route(route), path_params=params)
        scope["state"]["principal"] = _Principal("bench-user")
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})
            while (await receive())["type"] != "websocket.disconnect":
                pass
            return
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def _scope(kind: str, path: str) -> Scope:
    scope: Scope = {"type": kind, "path": path, "headers": [], "client": ("127.0.0.1", 5000)}
    if kind == "http":
        scope["method"] = "GET"
    return scope


async def _receive_http() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    return None


async def _per_request_us(app: ASGIApp, path: str, requests: int) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        scope = _scope("http", path)
        scope["state"] = {}
        await app(scope, _receive_http, _send)
    return (time.perf_counter() - started) * 1e6 / requests


async def _per_frame_us(app: ASGIApp, frames: int) -> float:
    left = frames

    async def receive() -> Message:
        nonlocal left
        left -= 1
        if left < 0:
            return {"type": "websocket.disconnect", "code": 1000}
        return {"type": "websocket.receive", "text": "{}"}

    scope = _scope("websocket", "/v1/realtime")
    scope["state"] = {}
    started = time.perf_counter()
    await app(scope, receive, _send)
    return (time.perf_counter() - started) * 1e6 / frames


Measure = Callable[[ASGIApp], Awaitable[float]]


async def _case(make: Callable[[], ASGIApp], measure: Measure, rounds: int) -> dict[str, float]:
    bare = min([await measure(make()) for _ in range(rounds)])
    wrapped = min([await measure(RequestContextMiddleware(make())) for _ in range(rounds)])
    return {
        "bare_us": round(bare, 2),
        "with_us": round(wrapped, 2),
        "cost_us": round(wrapped - bare, 2),
    }


async def run(requests: int, frames: int, rounds: int, log: TextIO) -> dict[str, object]:
    configure_logging("info", log)
    session_route = "/v1/sessions/{session_id}/interactions"
    session_path = f"/v1/sessions/{SESSION_ID}/interactions"
    return {
        "ok_plain": await _case(
            lambda: _stub_app("/v1/chat", {}, 200),
            lambda app: _per_request_us(app, "/v1/chat", requests),
            rounds,
        ),
        "ok_session_path": await _case(
            lambda: _stub_app(session_route, {"session_id": SESSION_ID}, 200),
            lambda app: _per_request_us(app, session_path, requests),
            rounds,
        ),
        "rejected_429_same_client": await _case(
            lambda: _stub_app("/v1/chat", {}, 429),
            lambda app: _per_request_us(app, "/v1/chat", requests),
            rounds,
        ),
        "ws_frame": await _case(
            lambda: _stub_app("/v1/realtime", {}, 101),
            lambda app: _per_frame_us(app, frames),
            rounds,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with open(os.devnull, "w") as log:  # the real JSON handler, writing nowhere
        result = asyncio.run(run(args.requests, args.frames, args.rounds, log))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "access_log.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
