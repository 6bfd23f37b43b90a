"""Locust users for the gateway: SSE chat (`POST /v1/chat`) and realtime WebSocket sessions.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 \
        --headless -u 20 -r 5 -t 60s --csv results/locust
with `TOKEN` (one JWT for every user, `coach-gateway token alice | tail -1`) or `TOKENS`
(comma-separated, one per simulated user so per-user quotas do not cap the test) in the
environment. `GATEWAY_URL` stands in for `--host`.

Besides the requests themselves, each turn's client-observed time to first token (from sending
the message to the first `response.delta`) is reported as a request of type `TTFT`.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator
from typing import Any

from locust import HttpUser, User, between, task
from locust.env import Environment
from websockets.sync.client import ClientConnection, connect

TEXT = "How can I keep my breath steady when I sing long high notes?"
TURNS_PER_SESSION = int(os.environ.get("TURNS", "3"))
TURN_TIMEOUT_S = float(os.environ.get("TURN_TIMEOUT_S", "30"))

_tokens = [t for t in os.environ.get("TOKENS", os.environ.get("TOKEN", "")).split(",") if t]
_token_cycle: Iterator[str] = itertools.cycle(_tokens or [""])


class TurnFailed(Exception):
    """The turn ended with `response.failed`, `error`, `rate_limited` or no reply."""


def _next_token() -> str:
    if not _tokens:
        raise RuntimeError("set TOKEN (or TOKENS) to a gateway JWT: coach-gateway token USER")
    return next(_token_cycle)


def _base_url(host: str | None) -> str:
    return (os.environ.get("GATEWAY_URL") or host or "http://127.0.0.1:8000").rstrip("/")


def _report(
    env: Environment, kind: str, name: str, started: float, error: Exception | None
) -> None:
    env.events.request.fire(  # type: ignore[no-untyped-call,unused-ignore]
        request_type=kind,
        name=name,
        response_time=(time.perf_counter() - started) * 1000,
        response_length=0,
        exception=error,
        context={},
    )


def _ttft(env: Environment, name: str, sent: float) -> None:
    _report(env, "TTFT", name, sent, None)


def _failure(event: dict[str, Any]) -> TurnFailed | None:
    kind = event.get("type")
    if kind in ("response.failed", "error", "rate_limited"):
        detail = event.get("error") or event.get("code") or event.get("scope")
        return TurnFailed(f"{kind}: {detail}")
    return None


class SseChatUser(HttpUser):
    """One turn per task over `POST /v1/chat` (a `text/event-stream` of the realtime events)."""

    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        self.base = _base_url(self.host)
        self.token = _next_token()

    @task
    def chat(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
        sent = time.perf_counter()
        with self.client.post(
            f"{self.base}/v1/chat",
            json={"message": TEXT},
            headers=headers,
            stream=True,
            catch_response=True,
            name="/v1/chat",
            timeout=TURN_TIMEOUT_S,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return
            error = self._read_stream(resp.iter_lines(decode_unicode=True), sent)
            if error is not None:
                resp.failure(str(error))
            else:
                resp.success()

    def _read_stream(self, lines: Iterator[str], sent: float) -> Exception | None:
        first = True
        for line in lines:
            if not line or not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event.get("type") == "response.delta" and first:
                first = False
                _ttft(self.environment, "/v1/chat first delta", sent)
            if event.get("type") == "response.completed":
                return None if not first else TurnFailed("completed without a delta")
            if (failure := _failure(event)) is not None:
                return failure
        return TurnFailed("stream ended before response.completed")


class RealtimeUser(User):
    """A WebSocket session of a few turns per task, on the `websockets` sync client (locust
    monkey-patches sockets and threads for gevent, so it cooperates)."""

    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        self.ws_url = _base_url(self.host).replace("http", "ws", 1) + "/v1/realtime"
        self.token = _next_token()

    @task
    def session(self) -> None:
        started = time.perf_counter()
        try:
            ws = connect(
                self.ws_url,
                additional_headers={"Authorization": f"Bearer {self.token}"},
                open_timeout=10,
                max_size=None,
            )
        except Exception as exc:  # any failure to open is a failed request, reported as such
            _report(self.environment, "WS", "connect", started, exc)
            return
        with ws:
            error = self._expect_created(ws)
            _report(self.environment, "WS", "connect", started, error)
            if error is not None:
                return
            for index in range(TURNS_PER_SESSION):
                if not self._turn(ws, index):
                    return

    def _expect_created(self, ws: ClientConnection) -> Exception | None:
        event = json.loads(ws.recv(timeout=10))
        if event.get("type") != "session.created":
            return TurnFailed(f"expected session.created, got {event.get('type')}")
        return None

    def _turn(self, ws: ClientConnection, index: int) -> bool:
        sent = time.perf_counter()
        ws.send(json.dumps({"type": "input_text", "text": TEXT}))
        first = True
        error: Exception | None = None
        try:
            while True:
                event = json.loads(ws.recv(timeout=TURN_TIMEOUT_S))
                if event.get("type") == "response.delta" and first:
                    first = False
                    _ttft(self.environment, "ws first delta", sent)
                if event.get("type") == "response.completed":
                    break
                if (error := _failure(event)) is not None:
                    break
        except Exception as exc:  # a timeout or a closed socket fails this turn
            error = exc
        _report(self.environment, "WS", "turn", sent, error)
        return error is None
