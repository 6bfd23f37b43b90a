"""Errors on every path are JSON `{"error": {code, message, retryable, type}}` in the gateway's
own words, on the real app over a real uvicorn: unknown paths, wrong methods, a route that
raises (logged once, with the request id), bodies that do not parse, wrongly typed fields, bad
audio, refused tokens, parameters the OpenAI route does not support, and refused WebSockets."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.app import create_app
from gateway.auth import mint_token
from gateway.server import GatewayServer, RunningGateway, serving, uvicorn_config
from tests.conftest import make_settings
from tests.gateway.conftest import log_lines
from tests.gateway.wsclient import ws_client

Token = Callable[..., str]

# Library wording that must never reach a client.
LEAKS = ("codec", "errno", "surrogates", "Traceback", "0xb7", "segments", "Signature verif")


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert set(error) == {"code", "message", "retryable", "type"}
    assert not any(leak in error["message"] for leak in LEAKS), error["message"]
    return error


def _http(gateway: RunningGateway, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=30)


# ------------------------------------------------------------------ 404, 405, 500


async def test_unknown_path_is_a_json_404(gateway: RunningGateway) -> None:
    async with _http(gateway) as http:
        error = _error(await http.get("/v1/no-such-thing"), 404, "not_found")
        assert error["message"] == "no route at /v1/no-such-thing"
        assert error["type"] == "not_found_error" and error["retryable"] is False
        _error(await http.post("/nope", json={}), 404, "not_found")


async def test_wrong_method_is_a_json_405_with_allow(gateway: RunningGateway) -> None:
    async with _http(gateway) as http:
        chat = await http.get("/v1/chat")
        health = await http.delete("/healthz")
    error = _error(chat, 405, "method_not_allowed")
    assert chat.headers["allow"] == "POST"
    assert error["message"] == "GET is not allowed on /v1/chat; it accepts POST"
    _error(health, 405, "method_not_allowed")
    assert set(health.headers["allow"].split(", ")) == {"GET", "HEAD"}


async def test_websocket_to_an_unknown_path_is_a_json_404(gateway: RunningGateway) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{gateway.ws_url}/v1/nowhere", open_timeout=5):
            pass
    assert info.value.response.status_code == 404
    assert orjson.loads(info.value.response.body)["error"]["code"] == "not_found"


async def _boom(request: Request) -> Response:
    raise LookupError("internal detail 0xb7 of a bug")


async def _boom_midway(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b"first\n"
        raise LookupError("internal detail 0xb7 of a bug")

    return StreamingResponse(body(), media_type="text/plain")


async def _boom_before_accept(ws: WebSocket) -> None:
    raise LookupError("internal detail 0xb7 of a bug")


async def _boom_after_accept(ws: WebSocket) -> None:
    await ws.accept()
    raise LookupError("internal detail 0xb7 of a bug")


@pytest.fixture
async def failing(fast_sim: Any, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """The gateway's own app (its middleware and handlers) with routes that fail, on uvicorn."""
    settings = make_settings(fast_sim.url, tmp_path)
    app = create_app(settings)
    app.router.routes.extend(
        [
            Route("/boom", _boom),
            Route("/boom-midway", _boom_midway),
            WebSocketRoute("/boom-ws", _boom_before_accept),
            WebSocketRoute("/boom-ws-open", _boom_after_accept),
        ]
    )
    server = GatewayServer(uvicorn_config(app, settings, host="127.0.0.1", port=0))
    async with serving(server) as port:
        yield RunningGateway(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", app, server)


def _failures(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = log_lines(stream)
    assert not any("Exception in ASGI application" in line["msg"] for line in lines)
    return [line for line in lines if "exc" in line]


async def test_a_route_that_raises_is_a_json_500_logged_once(
    failing: RunningGateway, captured: io.StringIO
) -> None:
    async with _http(failing) as http:
        response = await http.get("/boom")
        after = await http.get("/healthz")  # the process goes on serving
    error = _error(response, 500, "internal_error")
    assert error == {
        "code": "internal_error",
        "message": "the gateway failed to answer this request",
        "retryable": True,
        "type": "api_error",
    }
    assert after.status_code == 200
    [line] = _failures(captured)
    assert line["logger"] == "coach.errors" and line["level"] == "error"
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["route"] == "/boom" and line["error"] == "LookupError"
    assert "LookupError: internal detail" in line["exc"]


async def test_a_stream_that_fails_midway_is_cut_off_not_answered_twice(
    failing: RunningGateway, captured: io.StringIO
) -> None:
    received = b""
    async with _http(failing) as http, http.stream("GET", "/boom-midway") as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            async for chunk in response.aiter_raw():
                received += chunk
    assert received == b"first\n"  # no error body glued onto what was streamed
    [line] = _failures(captured)
    assert line["route"] == "/boom-midway" and line["error"] == "LookupError"


async def test_a_websocket_that_raises_is_refused_or_closed_1011(
    failing: RunningGateway, captured: io.StringIO
) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{failing.ws_url}/boom-ws", open_timeout=5):
            pass
    assert info.value.response.status_code == 500
    assert orjson.loads(info.value.response.body)["error"]["code"] == "internal_error"
    async with connect(f"{failing.ws_url}/boom-ws-open", open_timeout=5) as conn:
        with pytest.raises(ConnectionClosed) as closed:
            await conn.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    assert [line["route"] for line in _failures(captured)] == ["/boom-ws", "/boom-ws-open"]


# ------------------------------------------------------------------ bodies that do not parse


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"message": "\xb7 hi"}', "body is not valid UTF-8 (at byte 13)"),
        (b'{"message" 5}', "body is not valid JSON (at line 1, column 12)"),
        (b'{\n  "message": "hi",\n}', "body is not valid JSON (at line 2, column 18)"),
        (b"", "body is empty; send a JSON object"),
    ],
)
async def test_a_body_that_does_not_parse_is_said_so_plainly(
    gateway: RunningGateway, token: Token, body: bytes, message: str
) -> None:
    async with _http(gateway, token()) as http:
        response = await http.post("/v1/chat", content=body)
    assert _error(response, 400, "invalid_json")["message"] == message


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"message": 5}, "invalid_request", "message must be a string, not a number"),
        ({"message": ["hi"]}, "invalid_request", "message must be a string, not an array"),
        ({}, "invalid_request", "message is required"),
        (
            {"message": "hi", "voice": "yes"},
            "invalid_request",
            "voice must be true or false, not a string",
        ),
        (
            {"message": "hi", "session_id": {}},
            "invalid_request",
            "session_id must be a string, not an object",
        ),
    ],
)
async def test_a_wrongly_typed_field_is_named(
    gateway: RunningGateway, token: Token, body: dict[str, Any], code: str, message: str
) -> None:
    async with _http(gateway, token()) as http:
        response = await http.post("/v1/chat", json=body)
    assert _error(response, 400, code)["message"] == message


async def test_a_body_that_is_not_an_object_is_named(gateway: RunningGateway, token: Token) -> None:
    async with _http(gateway, token()) as http:
        response = await http.post("/v1/chat", json=["hi"])
    message = _error(response, 400, "invalid_request")["message"]
    assert message == "the body must be a JSON object, not an array"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"stream_options": 5}, "stream_options must be an object, not a number"),
        ({"stream": "yes"}, "stream must be true or false, not a string"),
        ({"model": 5}, "model must be a string, not a number"),
        ({"max_tokens": True}, "max_tokens must be a positive integer, not true or false"),
    ],
)
async def test_completions_name_a_wrongly_typed_field(
    gateway: RunningGateway, token: Token, extra: dict[str, Any], message: str
) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], **extra}
    async with _http(gateway, token()) as http:
        response = await http.post("/v1/chat/completions", json=body)
    assert _error(response, 400, "invalid_request")["message"] == message


# ------------------------------------------------------------------ audio, tokens


async def test_undecodable_audio_is_said_so_plainly(gateway: RunningGateway, token: Token) -> None:
    async with _http(gateway, token()) as http:
        garbage = await http.post(
            "/v1/audio/transcriptions", files={"file": ("take.webm", b"not audio" * 200)}
        )
        empty = await http.post("/v1/audio/transcriptions", files={"file": ("take.wav", b"")})
        two = await http.post(
            "/v1/audio/transcriptions",
            files=[("file", ("a.wav", b"RIFF")), ("file", ("b.wav", b"RIFF"))],
        )
    assert _error(garbage, 400, "audio_decode_error")["message"] == "audio could not be decoded"
    assert _error(empty, 400, "audio_decode_error")["message"] == "the uploaded file is empty"
    assert "multipart/form-data" in _error(two, 400, "invalid_form")["message"]


async def test_refused_tokens_are_said_so_plainly(gateway: RunningGateway, token: Token) -> None:
    forged = mint_token("another-secret-0123456789-abcdefghijklmnopqrstu", "mallory")
    cases = {
        "not-a-jwt": ("invalid_token", "token malformed"),
        token(ttl_s=-30): ("token_expired", "token expired"),
        forged: ("invalid_token", "token signature invalid"),
    }
    async with _http(gateway) as http:
        for key, (code, message) in cases.items():
            response = await http.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
            error = _error(response, 401, code)
            assert error["message"] == message and error["type"] == "authentication_error"
    async with ws_client(gateway.ws_url, token(ttl_s=-30)) as client:
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4401, "token expired")


# ------------------------------------------------------------------ the OpenAI route


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"functions": [{"name": "f", "parameters": {}}]},
            "functions are not supported on this route; use tools",
        ),
        (
            {"function_call": "auto"},
            "function_call is not supported on this route; use tool_choice",
        ),
        ({"n": 2}, "n other than 1 is not supported yet on this route"),
    ],
)
async def test_unsupported_parameters_raise_bad_request_in_the_sdk(
    gateway: RunningGateway, token: Token, kwargs: dict[str, Any], message: str
) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=token(), max_retries=0)
    async with client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(
                model="coach", messages=[{"role": "user", "content": "hi"}], **kwargs
            )
    body: Any = info.value.body
    assert body["code"] == "unsupported_parameter" and body["message"] == message
    # n=1 is what the route does: still accepted.
    async with openai.AsyncOpenAI(
        base_url=f"{gateway.url}/v1", api_key=token(), max_retries=0
    ) as client:
        done = await client.chat.completions.create(
            model="coach", messages=[{"role": "user", "content": "hi"}], n=1
        )
    assert done.choices[0].message.content


# ------------------------------------------------------------------ the WebSocket


@pytest.mark.parametrize(
    ("frame", "code", "message"),
    [
        (
            '{"type": "input_text", "text": 5}',
            "invalid_event",
            "text must be a string, not a number",
        ),
        (
            '{"type": "input_text", "text": "hi", "turn_id": {"a": 1}}',
            "invalid_turn_id",
            "turn_id must be a string, not an object",
        ),
        ('{"type": 7}', "invalid_event", "type must be a string, not a number"),
        (
            '{"type": "session.update", "session": "voice"}',
            "invalid_session",
            "session must be an object, not a string",
        ),
        (
            '{"type": "metrics.push", "metrics": [1]}',
            "invalid_metrics",
            "metrics must be an object, not an array",
        ),
        (
            '{"type": "metrics.push", "metrics": {"pitch": "high"}}',
            "invalid_metrics",
            "metrics.pitch must be a number, not a string",
        ),
        (
            '{"type": "session.update", "session": {"coach": 3}}',
            "invalid_session",
            "session.coach must be a string, not a number",
        ),
        ('{"type": "ping",}', "invalid_json", "frame is not valid JSON (at line 1, column 16)"),
        ("[1]", "invalid_event", "a frame must be a JSON object, not an array"),
    ],
)
async def test_a_wrongly_typed_event_field_is_named_and_the_socket_stays(
    gateway: RunningGateway, token: Token, frame: str, code: str, message: str
) -> None:
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()  # session.created
        await client.conn.send(frame)
        error = await client.recv()
        assert (error["type"], error["code"], error["message"]) == ("error", code, message)
        assert error["retryable"] is False
        await client.send(type="ping")
        assert (await client.recv())["type"] == "pong"


async def test_a_foreign_origin_is_refused_with_a_json_403_and_logged(
    gateway: RunningGateway, token: Token, captured: io.StringIO
) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with ws_client(gateway.ws_url, token(), origin="http://evil.example"):
            pass
    response = info.value.response
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/json"
    error = orjson.loads(response.body)["error"]
    assert error["code"] == "origin_not_allowed" and error["type"] == "permission_error"
    [line] = [line for line in log_lines(captured) if line["msg"] == "websocket origin refused"]
    assert line["origin"] == "http://evil.example" and line["level"] == "warning"
