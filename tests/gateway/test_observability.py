"""Traces exported over real OTLP/HTTP to a local receiver, `/metrics`, and the request id."""

from __future__ import annotations

import asyncio
import gc
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from websockets.asyncio.client import connect

from gateway.ids import hash_id
from gateway.telemetry import switchboard, traces_url
from tests.conftest import make_settings
from tests.gateway.observed import OtlpReceiver, observed_gateway, otlp_receiver
from tests.gateway.wsclient import Client

Token = Callable[..., str]
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    async with otlp_receiver() as running:
        yield running


async def _ws_turn(ws_url: str, token: str, text: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}", "traceparent": TRACEPARENT}
    url = f"{ws_url}/v1/realtime"
    async with connect(url, additional_headers=headers, open_timeout=5) as conn:
        client = Client(conn)
        await client.until("session.created")
        await client.send(type="input_text", text=text)
        return await client.until("response.completed", "response.failed")


async def test_turn_spans_reach_the_collector(
    fast_sim: Any, tmp_path: Path, token: Token, receiver: OtlpReceiver
) -> None:
    settings = make_settings(fast_sim.url, tmp_path, otlp_endpoint=receiver.url)
    async with observed_gateway(settings) as gw:
        events = await _ws_turn(gw.ws_url, token("alice"), "How do I breathe while singing?")
    assert events[-1]["type"] == "response.completed"
    # The gateway's exit flushed the batch processor.
    [turn] = receiver.named("turn")
    assert turn.resource["service.name"] == "coach-gateway"
    assert turn.trace_id == CALLER_TRACE  # the caller's traceparent was honoured
    sessions = receiver.named("session")
    if sessions:  # once the app wraps connections in `session_span`
        [session] = sessions
        assert session.parent_id == CALLER_SPAN
        assert turn.parent_id == session.span_id
        assert session.attributes["coach.user.hash"] == hash_id("alice")
    else:
        assert turn.parent_id == CALLER_SPAN
    assert turn.attributes["coach.status"] == "completed"
    assert turn.attributes["coach.ttft_ms"] > 0
    assert turn.attributes["gen_ai.usage.output_tokens"] > 0
    chats = receiver.named("chat ")
    assert chats, "the router emits a `chat {model}` span per provider call"
    [chat] = chats
    assert chat.name == "chat gpt-4o-mini"
    assert chat.parent_id == turn.span_id
    assert chat.trace_id == CALLER_TRACE
    assert chat.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.usage.output_tokens"] > 0
    for span in receiver.spans:  # no raw ids or message text on any span
        flat = repr(span.attributes) + repr(span.events)
        assert "alice" not in flat
        assert "breathe" not in flat


async def test_failover_shows_on_the_turn_span(
    fast_sim: Any, tmp_path: Path, token: Token, receiver: OtlpReceiver
) -> None:
    settings = make_settings(fast_sim.url, tmp_path, otlp_endpoint=receiver.url)
    await fast_sim.set_knobs(models={"gpt-4o-mini": {"fail_rate": 1.0, "fail_status": 503}})
    try:
        async with observed_gateway(settings) as gw:
            events = await _ws_turn(gw.ws_url, token(), "Help me with scales")
    finally:
        await fast_sim.set_knobs(models={})
    completed = events[-1]
    assert completed["type"] == "response.completed"
    assert completed["provider"] == "backup"
    [turn] = receiver.named("turn")
    names = [name for name, _ in turn.events]
    assert "coach.route.fallback" in names
    fallback = dict(turn.events)["coach.route.fallback"]
    assert fallback["target"] == "primary:gpt-4o-mini"
    assert turn.attributes["coach.fallbacks"] == 1
    failed = [s for s in receiver.named("chat gpt-4o-mini") if s.parent_id == turn.span_id]
    assert failed and all(s.status_code == 2 for s in failed)  # STATUS_CODE_ERROR
    [backup] = receiver.named("chat claude")
    assert backup.parent_id == turn.span_id
    assert backup.status_code != 2


async def test_metrics_after_turns(fast_sim: Any, tmp_path: Path, token: Token) -> None:
    async with observed_gateway(make_settings(fast_sim.url, tmp_path)) as gw:
        await _ws_turn(gw.ws_url, token("carol"), "One tip on posture")
        async with httpx.AsyncClient(base_url=gw.url) as http:
            response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    labels = 'channel="ws",model="gpt-4o-mini",provider="primary",route="chat"'
    assert f'coach_turns_total{{{labels},status="completed"}} 1.0' in _sorted_labels(text)
    assert "coach_ttft_seconds_bucket" in text
    assert "coach_upstream_ttft_seconds_count" in text
    assert "coach_turn_duration_seconds_sum" in text
    assert re.search(r'coach_tokens_total\{.*type="output".*\} [1-9]', text)
    assert 'coach_breaker_state{target="primary:gpt-4o-mini"} 0.0' in text
    assert "coach_active_sessions" in text
    assert "coach_connections 0.0" in text
    assert "coach_quota_rejections" in text
    assert re.search(r'coach_http_requests_total\{.*route="/v1/realtime".*\} 1.0', text)
    assert "carol" not in text and hash_id("carol") not in text


def _sorted_labels(text: str) -> str:
    """Exposition lines with their labels in name order (the client keeps declaration order)."""

    def fix(match: re.Match[str]) -> str:
        parts = sorted(re.findall(r'\w+="[^"]*"', match.group(2)))
        return f"{match.group(1)}{{{','.join(parts)}}}"

    return re.sub(r"(\w+)\{([^}]*)\}", fix, text)


async def test_request_id_is_echoed_or_made(gateway_observed: Any) -> None:
    async with httpx.AsyncClient(base_url=gateway_observed.url) as http:
        given = await http.get("/healthz", headers={"X-Request-ID": "client-id-123"})
        made = await http.get("/healthz")
        bad = await http.get("/healthz", headers={"X-Request-ID": "no spaces allowed"})
    assert given.headers["x-request-id"] == "client-id-123"
    assert made.headers["x-request-id"].startswith("req_")
    assert bad.headers["x-request-id"].startswith("req_")


@pytest.fixture
async def gateway_observed(fast_sim: Any, tmp_path: Path) -> AsyncIterator[Any]:
    async with observed_gateway(make_settings(fast_sim.url, tmp_path)) as running:
        yield running


async def test_without_exporter_spans_are_dropped() -> None:
    board = switchboard("coach-gateway")
    assert not board.active  # no gateway with an endpoint is running now
    with trace.get_tracer("test").start_as_current_span("x") as span:
        assert not span.is_recording()
    await asyncio.sleep(0)


def test_traces_url() -> None:
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"


async def test_garbage_collections_are_timed(fast_sim: Any, tmp_path: Path) -> None:
    async with observed_gateway(make_settings(fast_sim.url, tmp_path)) as gw:
        registry = gw.app.state.gateway.observability.metrics.registry

        def full_collections() -> float:
            value = registry.get_sample_value("coach_gc_pause_seconds_count", {"generation": "2"})
            return value or 0.0

        before = full_collections()
        gc.collect()
        assert full_collections() == before + 1
        took = registry.get_sample_value("coach_gc_pause_seconds_sum", {"generation": "2"})
        assert took is not None and took > 0
    gc.collect()  # the hook went with the gateway
    assert full_collections() == before + 1


async def test_event_loop_lag_is_measured(fast_sim: Any, tmp_path: Path) -> None:
    async with observed_gateway(make_settings(fast_sim.url, tmp_path)) as gw:
        obs = gw.app.state.gateway.observability
        registry = obs.metrics.registry
        await asyncio.sleep(0.6)  # a couple of readings of an idle loop

        def lag_count(le: str = "+Inf") -> float:
            value = registry.get_sample_value("coach_event_loop_lag_seconds_bucket", {"le": le})
            return value or 0.0

        assert lag_count() >= 2 and lag_count("0.1") == lag_count()  # all quick
        time.sleep(0.5)  # noqa: ASYNC251 - blocks the event loop on purpose
        await asyncio.sleep(0.05)
        assert lag_count("0.1") < lag_count()  # one reading came at least 0.1 s late
        assert "event_loop_lag_ms" in obs.snapshot()
