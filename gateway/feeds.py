"""Live feeds over server-sent events, and practice metrics pushed over HTTP.

- `GET /v1/sessions/{id}/events`: one session's feed, for its owner or an `ops` user (anyone
  else gets 404, as if it did not exist). Resumable: `Last-Event-ID` (or `?last_event_id=`)
  replays what the feed still buffers after that id. Frames are `event: <type>`, `id: <seq>`,
  `data: <json>`; a `: keep-alive` comment goes out when nothing happened for a while.
- `GET /v1/ops/events`: the gateway's `ops.snapshot` every `ops_snapshot_interval_s` and each
  `breaker.changed` as it happens; `ops` role only (403 otherwise).
- `POST /v1/sessions/{id}/metrics`: `{"metrics": {name: number}}` from a practice app (owner
  only), like `metrics.push` over the WebSocket.

A reader that falls behind is dropped by the hub and its stream ends (see `streams.hub`).

Several replicas (`gateway.replicas`): a session's feed on any replica carries what every replica
publishes on it, so a session this replica has not seen yet is looked up in Postgres (its owner)
rather than refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from db.pool import DATABASE_UNAVAILABLE
from gateway.auth import Principal, authenticate_request
from gateway.errors import ApiError, json_response
from gateway.ids import valid_session_id
from gateway.requests import read_json
from gateway.runtime import Gateway, database_unavailable, gateway_of
from gateway.streaming import SSE_HEADERS, sse_frame
from streams.events import MetricsPush, ProtocolError, parse_client_event
from streams.hub import FeedItem, Subscription

if TYPE_CHECKING:
    from gateway.observability import Observability

__all__ = ["FeedResponse", "feed_routes", "render_item"]

KEEPALIVE_S = 15.0
TICK_S = 1.0


def render_item(item: FeedItem) -> bytes:
    return sse_frame(item.data, event=item.type, id=item.seq)


class FeedResponse(Response):
    """Streams a hub subscription until the client leaves, the hub drops it, or shutdown."""

    def __init__(
        self,
        subscription: Subscription,
        *,
        keepalive_s: float = KEEPALIVE_S,
        on_open: Callable[[], None] | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(status_code=200, media_type="text/event-stream")
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            *((k.encode(), v.encode()) for k, v in SSE_HEADERS.items()),
        ]
        self._sub = subscription
        self._keepalive_s = keepalive_s
        self._on_open = on_open
        self._stopping = stopping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                watcher = tasks.create_task(self._watch_disconnect(receive))
                try:
                    await self._pump(send)
                finally:
                    watcher.cancel()
        except* OSError:
            pass  # the client went away mid-write
        finally:
            self._sub.close()

    async def _pump(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": b": open\n\n", "more_body": True})
        if self._on_open is not None:
            self._on_open()
        quiet_s = 0.0
        while not self._sub.ended and not self._stopping():
            # Wake at least every `TICK_S` to notice a drain (uvicorn waits for open responses).
            item = await self._sub.next(min(TICK_S, self._keepalive_s))
            if item is not None:
                quiet_s = 0.0
                await send(
                    {"type": "http.response.body", "body": render_item(item), "more_body": True}
                )
            elif not self._sub.ended:
                quiet_s += TICK_S
                if quiet_s >= self._keepalive_s:
                    quiet_s = 0.0
                    await send(
                        {
                            "type": "http.response.body",
                            "body": b": keep-alive\n\n",
                            "more_body": True,
                        }
                    )
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _watch_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._sub.close()


def _observability(request: Request) -> Observability:
    gateway = gateway_of(request)
    obs: Observability | None = gateway.observability
    if obs is None:
        raise ApiError(503, "unavailable", "live feeds are not enabled", retryable=True)
    if gateway.draining:
        raise ApiError(503, "shutting_down", "the server is restarting", retryable=True)
    return obs


def _last_event_id(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


async def _session_owner(
    obs: Observability, principal: Principal, session_id: str, ops: bool
) -> str:
    """The session's owner if `principal` may see it; 404 otherwise (even if it exists)."""
    owner = None
    if valid_session_id(session_id):
        owner = obs.owner_of(session_id) or await _stored_owner(obs.gateway, session_id)
    if owner is None or not (owner == principal.user_id or (ops and principal.is_ops)):
        raise ApiError(404, "session_not_found", "no such session")
    return owner


async def _stored_owner(gateway: Gateway, session_id: str) -> str | None:
    """The owner of a session opened on another replica (or before a restart)."""
    if gateway.persistence is None:
        return None
    try:
        owner = await gateway.persistence.pool.fetchval(
            "SELECT user_id FROM sessions WHERE id = $1", session_id
        )
    except DATABASE_UNAVAILABLE as exc:
        raise database_unavailable() from exc
    return None if owner is None else str(owner)


async def session_events(request: Request) -> Response:
    obs = _observability(request)
    principal = await authenticate_request(request)
    session_id = request.path_params["session_id"]
    owner = await _session_owner(obs, principal, session_id, ops=True)
    subscription = obs.hub.feed(session_id, owner).subscribe(_last_event_id(request))
    return FeedResponse(subscription, stopping=obs.stopping)


async def ops_events(request: Request) -> Response:
    obs = _observability(request)
    principal = await authenticate_request(request)
    if not principal.is_ops:
        raise ApiError(403, "forbidden", "the ops feed needs the `ops` role")
    subscription = obs.hub.ops.subscribe(_last_event_id(request))
    # A new reader gets a snapshot at once rather than after the next tick.
    return FeedResponse(subscription, on_open=obs.publish_snapshot, stopping=obs.stopping)


async def push_metrics(request: Request) -> Response:
    obs = _observability(request)
    principal = await authenticate_request(request)
    session_id = request.path_params["session_id"]
    owner = await _session_owner(obs, principal, session_id, ops=False)
    body: dict[str, Any] = await read_json(request)
    try:
        event = parse_client_event(orjson.dumps({**body, "type": "metrics.push"}))
    except ProtocolError as exc:
        raise ApiError(400, exc.code, exc.message) from exc
    assert isinstance(event, MetricsPush)
    scheduled = obs.coach.push(session_id, owner, event.metrics)
    return json_response({"accepted": True, "feedback_scheduled": scheduled}, 202)


def feed_routes() -> list[Route]:
    return [
        Route("/v1/sessions/{session_id}/events", session_events, methods=["GET"]),
        Route("/v1/sessions/{session_id}/metrics", push_metrics, methods=["POST"]),
        Route("/v1/ops/events", ops_events, methods=["GET"]),
    ]
