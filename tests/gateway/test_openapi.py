"""`GET /openapi.json` is true: it lists exactly the app's HTTP routes, the gateway serves it,
and schemathesis, driving a running gateway (real uvicorn, Postgres, the simulated upstream, the
local voice) from it, finds no 5xx and nothing answered outside the documented statuses, content
types, bodies (each SSE event's JSON included) and headers, and a 405 with `Allow` for every
method a path does not list.

schemathesis calls the gateway synchronously, so the gateway runs in a thread with its own event
loop (the tests' loop does not run during a synchronous test). Bounded for CI: its coverage
cases (boundaries, missing and wrongly typed fields, other methods) and a few generated examples
per operation, derandomized. Every operation runs. About half the examples are aimed at what
random values never reach (`_aim`): a session of the caller's, real audio, the `ops` role. The
session feed is only driven to its errors: on a real session it streams until the client leaves.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import wave
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from starlette.routing import Route

from gateway.app import create_app
from gateway.auth import mint_token
from gateway.openapi import openapi_document
from gateway.server import running_gateway
from gateway.settings import Settings
from providers.sim import SimKnobs, running_sim
from tests.conftest import FAST_KNOBS, TEST_SECRET, make_settings
from tests.pg import database_dsn, server_dsn

__all__ = ["database_dsn", "server_dsn"]

EXAMPLES_PER_OPERATION = 20
USER = "openapi-user"
OPS_FEED = "/v1/ops/events"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    unsupported_method,  # a method the document does not list: 405 with `Allow`
    allow_header_conformance,
]
_OPERATIONS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def test_the_document_lists_exactly_the_apps_http_routes(tmp_path: Path) -> None:
    app = create_app(make_settings("http://127.0.0.1:9", tmp_path))
    served: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, Route):  # the WebSocket route is docs/protocol.md's
            assert route.methods, f"{route.path} answers any method"
            served |= {(route.path_format, m) for m in route.methods if m != "HEAD"}
    paths = openapi_document()["paths"]
    documented = {(p, m.upper()) for p, item in paths.items() for m in item if m in _OPERATIONS}
    assert documented == served


def _settings(sim_url: str, tmp_path: Path, dsn: str) -> Settings:
    return make_settings(
        sim_url,
        tmp_path,
        persistence=True,
        database_url=dsn,
        # The local voice only: edge-tts would leave the machine.
        voice={"tts": ["piper"]},
        # Enough turns that the examples reach the turn itself, not only the quota.
        quotas={"turns_per_minute": 10_000},
    )


@pytest.fixture(scope="module")
def gateway_url(database_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The gateway and its simulated upstream, served from a thread of their own."""
    settings_dir = tmp_path_factory.mktemp("openapi")
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    url: Future[str] = Future()

    async def serve() -> None:
        try:
            async with (
                running_sim(SimKnobs(**FAST_KNOBS)) as sim,
                running_gateway(_settings(sim.url, settings_dir, database_dsn)) as gateway,
            ):
                url.set_result(gateway.url)
                await stop.wait()
        except BaseException as exc:
            if not url.done():
                url.set_exception(exc)
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        yield url.result(timeout=60)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
        loop.close()


@pytest.fixture(scope="module")
def tokens() -> dict[str, str]:
    """The test user's token, and one with the `ops` role."""
    return {
        "user": mint_token(TEST_SECRET, USER, ttl_s=3600),
        "ops": mint_token(TEST_SECRET, "openapi-operator", roles=["ops"], ttl_s=3600),
    }


@pytest.fixture(scope="module")
def session_id(gateway_url: str, tokens: dict[str, str]) -> str:
    """A session of the test's user, with a turn in it."""
    auth = {"Authorization": f"Bearer {tokens['user']}"}
    turn = httpx.post(f"{gateway_url}/v1/chat", json={"message": "Hello"}, headers=auth)
    first = next(line for line in turn.text.splitlines() if line.startswith("data: "))
    created = json.loads(first.removeprefix("data: "))
    assert created["type"] == "session.created"
    return str(created["session_id"])


@pytest.fixture(scope="module")
def answered() -> Iterator[Counter[str]]:
    """Answers per operation and status, printed when the module ends (`pytest -s`)."""
    seen: Counter[str] = Counter()
    yield seen
    operations = {label.partition(" -> ")[0] for label in seen}
    print(f"\nschemathesis: {len(operations)} operations, {seen.total()} requests")
    for label, count in sorted(seen.items()):
        print(f"  {count:4d}  {label}")


def test_the_gateway_serves_the_document(gateway_url: str) -> None:
    served = httpx.get(f"{gateway_url}/openapi.json")
    assert served.headers["content-type"] == "application/json"
    assert served.json() == openapi_document()


# Built from the document the gateway serves (the test above): schemathesis needs it when the
# tests are collected, before the gateway runs.
schema = schemathesis.openapi.from_dict(
    openapi_document(),
    config=schemathesis.Config.from_dict(
        {
            "seed": 20261207,
            "generation": {
                "max-examples": EXAMPLES_PER_OPERATION,
                "deterministic": True,
                # The test's own token goes with every request: generated ones are refused.
                "with-security-parameters": False,
            },
            "phases": {"stateful": {"enabled": False}},
            # Read each turn's stream to its end (schemathesis stops after a few events),
            # and of the ops feed, which runs until the client leaves, the first snapshot.
            "max-stream-events": 100_000,
            "operations": [{"include-path": OPS_FEED, "max-stream-events": 1}],
        }
    ),
)


@schema.parametrize()
def test_the_gateway_answers_as_its_document_says(
    case: schemathesis.Case[Any],
    gateway_url: str,
    tokens: dict[str, str],
    session_id: str,
    answered: Counter[str],
) -> None:
    token = _aim(case, session_id, tokens)
    auth = {"Authorization": f"Bearer {token}"}
    response = case.call_and_validate(base_url=gateway_url, headers=auth, checks=CHECKS, timeout=30)
    answered[f"{case.operation.label} -> {response.status_code}"] += 1


def _aim(case: schemathesis.Case[Any], session_id: str, tokens: dict[str, str]) -> str:
    """Aim about half the examples at what random values never reach, and return the token to
    send: a session of the caller's (not on the session feed: it would stream on), real audio
    in an upload, an operator on the ops feed. Decided by the generated values, so that a
    replayed example is aimed the same way."""
    generated = (case.path_parameters or {}).get("session_id")
    feed = case.operation.path.endswith("/events")
    if isinstance(generated, str) and not feed and _half(generated.encode("utf-8", "replace")):
        case.path_parameters["session_id"] = session_id
    body: Any = case.body  # the form's fields; `file` is sent as a file
    if isinstance(body, dict) and "file" in body and _half(repr(body).encode()):
        body["file"] = _silence_wav()
    operator = case.operation.path == OPS_FEED and _half(repr((case.query, case.headers)).encode())
    return tokens["ops" if operator else "user"]


def _half(value: bytes) -> bool:
    return zlib.crc32(value) % 2 == 1


def _silence_wav(seconds: float = 0.5) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16_000)
        wav.writeframes(bytes(2 * int(16_000 * seconds)))
    return out.getvalue()
