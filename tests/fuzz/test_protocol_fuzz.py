"""Property-based fuzzing of what clients send (hypothesis): any WebSocket frame and any body
of the HTTP routes gets an answer in the protocol's terms (a JSON `error`, or the route's normal
answer), never a 500, a hang, a library's internals in a message, or a healthy connection
closed. The counts of examples run are printed with `--hypothesis-show-statistics`."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from tests.fuzz.conftest import Fuzzed
from tests.fuzz.strategies import any_json, body, ws_frame

RECV_TIMEOUT_S = 10.0  # far above any answer of a healthy gateway: reaching it is a hang
# Derandomised, so that CI is a function of the commit; `TEST_FUZZ_RANDOM=1` explores afresh.
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=os.environ.get("TEST_FUZZ_RANDOM") != "1",
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# What must never reach a client: a library's words, a traceback, an exception's repr.
INTERNALS = re.compile(
    r"Traceback|Errno|codec can't|orjson|pydantic|Exception|Error\(|<[a-z_.]+ object at"
)


def check_error(error: Any) -> str:
    assert isinstance(error, dict), error
    assert isinstance(error.get("code"), str) and error["code"], error
    assert isinstance(error.get("message"), str) and error["message"], error
    assert not INTERNALS.search(error["message"]), error
    return str(error["code"])


@pytest.fixture(scope="module")
def ws(fuzzed: Fuzzed) -> Iterator[ClientConnection]:
    headers = {"Authorization": f"Bearer {fuzzed.token}"}
    with connect(fuzzed.ws_url, additional_headers=headers, open_timeout=10) as conn:
        created = orjson.loads(conn.recv(timeout=RECV_TIMEOUT_S))
        assert created["type"] == "session.created"
        yield conn


def round_trip(ws: ClientConnection, frame: str | bytes) -> list[dict[str, Any]]:
    """Send `frame`, then a ping; every event up to the pong."""
    ws.send(frame)
    ws.send('{"type":"ping"}')
    seen: list[dict[str, Any]] = []
    while True:
        raw = ws.recv(timeout=RECV_TIMEOUT_S)  # TimeoutError: a hang; ConnectionClosed: closed
        assert isinstance(raw, str), "the gateway sends JSON text frames"
        message = orjson.loads(raw)
        assert isinstance(message, dict) and isinstance(message.get("type"), str), message
        if message["type"] == "pong":
            return seen
        seen.append(message)


@FUZZ
@given(frame=ws_frame)
def test_any_websocket_frame_is_answered_and_the_connection_kept(
    ws: ClientConnection, frame: str | bytes
) -> None:
    for message in round_trip(ws, frame):
        if message["type"] == "error":
            event(f"error {check_error(message)}")
        elif message["type"] == "response.failed":
            event(f"response.failed {check_error(message.get('error'))}")
        else:
            event(message["type"])


def test_the_fuzzed_connection_still_answers_a_turn(ws: ClientConnection) -> None:
    """After the fuzzing above: the same connection, settings restored, gets a whole reply (a
    turn the fuzzing left running is cancelled first; until it has ended, a new turn is refused
    with the retryable `turn_in_progress`, and asked again)."""
    ws.send('{"type":"response.cancel"}')
    ws.send('{"type":"session.update","session":{"voice":{"output":false},"focus_ids":[]}}')
    ws.send('{"type":"input_audio.clear"}')
    for _ in range(20):
        ws.send('{"type":"input_text","text":"How do I warm up my voice?"}')
        while True:
            message = orjson.loads(ws.recv(timeout=RECV_TIMEOUT_S))
            if message["type"] == "response.completed" and message.get("text"):
                assert message["finish_reason"] in ("stop", "length")
                return
            assert message["type"] != "response.failed", message
            if message["type"] == "error" and message["code"] == "turn_in_progress":
                time.sleep(0.2)
                break
    raise AssertionError("the connection never answered a turn")


# -------------------------------------------------------------------------------- HTTP

_TEXT = st.text(max_size=200)
_MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "tool", "x"]) | any_json},
        optional={"content": _TEXT | any_json},
    ),
    max_size=3,
)
ROUTES: dict[str, st.SearchStrategy[bytes]] = {
    "/v1/chat": body(
        {"message": _TEXT, "session_id": st.text(max_size=40), "voice": st.booleans()}
    ),
    "/v1/chat/completions": body(
        {
            "model": st.sampled_from(["coach", "gpt-4o-mini", "nope"]),
            "messages": _MESSAGES,
            "stream": st.booleans(),
            "max_tokens": st.integers(-5, 100_000),
            "max_completion_tokens": st.integers(-5, 100),
            "temperature": st.floats(-1, 3),
            "n": st.integers(0, 3),
            "tools": any_json,
            "response_format": any_json,
            "stream_options": any_json,
        }
    ),
    "/v1/audio/speech": body(
        {
            "model": st.text(max_size=10),
            "input": _TEXT,
            "voice": st.text(max_size=10),
            "response_format": st.sampled_from(["mp3", "wav", "pcm", "opus"]),
        }
    ),
    "/v1/sessions/{session}/metrics": body(
        {
            "metrics": st.dictionaries(
                st.text(max_size=10), st.floats(allow_nan=False) | any_json, max_size=40
            )
        }
    ),
}
_CONTENT_TYPES = st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]
)


def check_response(response: httpx.Response, content: bytes) -> str:
    assert response.status_code < 500, (response.status_code, content[:300])
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), response.headers
        return f"{response.status_code} {check_error(orjson.loads(content).get('error'))}"
    return str(response.status_code)


@pytest.fixture(scope="module")
def http(fuzzed: Fuzzed) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {fuzzed.token}"}
    with httpx.Client(base_url=fuzzed.url, headers=headers, timeout=RECV_TIMEOUT_S) as client:
        yield client


@FUZZ
@given(data=st.data(), content_type=_CONTENT_TYPES)
def test_any_body_gets_a_json_answer_never_a_500(
    http: httpx.Client, data: st.DataObject, content_type: str
) -> None:
    route = data.draw(st.sampled_from(sorted(ROUTES)), label="route")
    payload = data.draw(ROUTES[route], label="body")
    path = route.format(session=data.draw(st.sampled_from([str(uuid.uuid4()), "x", "%00"])))
    headers = {"content-type": content_type} if content_type else {}
    # Streamed answers (SSE) are read to their end: a stream that never ends is a hang.
    with http.stream("POST", path, content=payload, headers=headers) as response:
        content = response.read()
    event(f"{route} {check_response(response, content)}")


@FUZZ
@given(
    path=st.sampled_from(
        [
            "/v1/sessions",
            "/v1/sessions/{s}",
            "/v1/sessions/{s}/interactions",
            "/v1/sessions/{s}/assessments",
            "/v1/progress",
            "/v1/models",
            "/v1/nope/{s}",
        ]
    ),
    session=st.text(max_size=40) | st.uuids().map(str),
    params=st.dictionaries(
        st.sampled_from(["limit", "before", "after", "x"]), st.text(max_size=30), max_size=3
    ),
    method=st.sampled_from(["GET", "GET", "DELETE", "PUT"]),
)
def test_any_read_gets_a_json_answer_never_a_500(
    http: httpx.Client, path: str, session: str, params: dict[str, str], method: str
) -> None:
    url = path.replace("{s}", quote(session, safe="") or "x")
    response = http.request(method, url, params=params)
    event(f"{path} {check_response(response, response.content)}")
