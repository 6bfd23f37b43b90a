"""JSON log lines: one per record, with request ids and hashed ids, and no content or tokens."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from gateway.ids import hash_id
from gateway.logs import redact_text, request_id_var
from tests.conftest import eventually, make_settings
from tests.gateway.conftest import log_lines
from tests.gateway.observed import observed_gateway
from tests.gateway.wsclient import ws_client

Token = Callable[..., str]
SECRET = "purple-elephant-whisper"


def test_one_json_line_per_record(captured: io.StringIO) -> None:
    log = logging.getLogger("coach.test")
    token = request_id_var.set("req_abc")
    try:
        log.info(
            "turn done %s",
            "see /v1/realtime?access_token=abc.def.ghi&x=1",
            extra={
                "user_id": "bob",
                "session_id": "s-1",
                "text": SECRET,
                "reply_text": SECRET,
                "audio": b"\x00\x01",
                "route": "/v1/chat",
                "latency_ms": 12.5,
                "headers": {"authorization": "Bearer xyz", "accept": "*/*"},
            },
        )
    finally:
        request_id_var.reset(token)
    [line] = log_lines(captured)
    assert line["level"] == "info" and line["logger"] == "coach.test"
    assert line["request_id"] == "req_abc"
    assert line["msg"] == "turn done see /v1/realtime?access_token=[redacted]&x=1"
    assert line["user_id"] == hash_id("bob") and line["session_id"] == hash_id("s-1")
    assert line["route"] == "/v1/chat" and line["latency_ms"] == 12.5
    assert line["headers"] == {"accept": "*/*"}
    for key in ("text", "reply_text", "audio"):
        assert key not in line
    assert "ts" in line


def test_redact_text() -> None:
    assert (
        redact_text("GET /x?access_token=a.b.c HTTP/1.1")
        == "GET /x?access_token=[redacted] HTTP/1.1"
    )
    assert redact_text("Authorization: Bearer abc.def") == "Authorization: Bearer [redacted]"
    assert redact_text("coach.v1, bearer.abc.def") == "coach.v1, bearer.[redacted]"
    assert redact_text("nothing here") == "nothing here"


async def test_gateway_logs_hold_no_content_or_tokens(
    fast_sim: Any, tmp_path: Path, token: Token, captured: io.StringIO
) -> None:
    jwt = token("dave")
    async with observed_gateway(make_settings(fast_sim.url, tmp_path)) as gw:
        async with ws_client(gw.ws_url, query=f"?access_token={jwt}") as client:
            await client.until("session.created")
            await client.send(type="input_text", text=f"My secret phrase is {SECRET}")
            await client.until("response.completed")
        async with httpx.AsyncClient(base_url=gw.url) as http:
            response = await http.post(
                f"/v1/chat?access_token={jwt}",
                json={"message": f"again {SECRET}"},
                headers={"X-Request-ID": "rid-42"},
            )
            assert response.status_code == 200
    raw = captured.getvalue()
    assert raw, "the gateway logged nothing"
    assert SECRET not in raw
    assert jwt not in raw
    assert jwt.split(".")[1] not in raw  # not even the claims part
    lines = log_lines(captured)
    access = [line for line in lines if line["logger"] == "coach.access"]
    chat = next(line for line in access if line["path"] == "/v1/chat")
    assert chat["request_id"] == "rid-42"
    assert chat["status"] == 200 and chat["method"] == "POST"
    assert chat["route"] == "/v1/chat" and chat["latency_ms"] > 0
    assert chat["user_id"] == hash_id("dave")
    ws = next(line for line in access if line["path"] == "/v1/realtime")
    assert ws["status"] == 101 and ws["request_id"].startswith("req_")
    assert "dave" not in raw.replace(hash_id("dave"), "")


async def test_ids_inside_paths_are_hashed(
    fast_sim: Any, tmp_path: Path, token: Token, captured: io.StringIO
) -> None:
    session_id = "3f2a9c1e-5b7d-4e8f-9a0b-c1d2e3f4a5b6"
    hashed = hash_id(session_id)
    async with observed_gateway(make_settings(fast_sim.url, tmp_path)) as gw:
        headers = {"Authorization": f"Bearer {token('erin')}"}
        async with httpx.AsyncClient(base_url=gw.url, headers=headers) as http:
            await http.get(f"/v1/sessions/{session_id}/interactions")  # a route
            await http.delete(f"/v1/sessions/{session_id}")  # a route, wrong method
            await http.get(f"/v1/sessions/{session_id}/nothing-here")  # no route
    # The test's own HTTP client logs the URLs it calls: only the gateway's lines count.
    ours = [line for line in log_lines(captured) if not line["logger"].startswith("http")]
    assert ours and session_id not in orjson.dumps(ours).decode()
    paths = {line["path"] for line in ours if line["logger"] == "coach.access"}
    assert {
        f"/v1/sessions/{hashed}/interactions",
        f"/v1/sessions/{hashed}",
        f"/v1/sessions/{hashed}/nothing-here",
    } <= paths


async def test_a_websocket_line_carries_its_close_code(
    fast_sim: Any, tmp_path: Path, token: Token, captured: io.StringIO
) -> None:
    async with observed_gateway(make_settings(fast_sim.url, tmp_path)) as gw:
        async with ws_client(gw.ws_url, "not.a.jwt") as refused:
            with pytest.raises(ConnectionClosed):
                await refused.recv()
        async with ws_client(gw.ws_url, token("fay")) as client:
            await client.until("session.created")
        # Leaving the block closed it with 1000; the server's line is written once it sees that.
        await eventually(lambda: len(_ws_lines(captured)) == 2)
    by_server, by_client = _ws_lines(captured)
    assert by_server["status"] == 101 and by_server["close_code"] == 4401
    assert by_server["closed_by"] == "server" and by_server["close_reason"]
    assert by_client["status"] == 101 and by_client["close_code"] == 1000
    assert by_client["closed_by"] == "client" and by_client["user_id"] == hash_id("fay")


def _ws_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [
        line
        for line in log_lines(stream)
        if line["logger"] == "coach.access" and line["path"] == "/v1/realtime"
    ]
