"""JSON log lines: one per record, with request ids and hashed ids, and no content or tokens."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.ids import hash_id
from gateway.logs import configure_logging, redact_text, request_id_var
from tests.conftest import make_settings
from tests.gateway.observed import observed_gateway
from tests.gateway.wsclient import ws_client

Token = Callable[..., str]
SECRET = "purple-elephant-whisper"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("debug", stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line]


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
    [line] = _lines(captured)
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
    lines = _lines(captured)
    access = [line for line in lines if line["logger"] == "coach.access"]
    chat = next(line for line in access if line["path"] == "/v1/chat")
    assert chat["request_id"] == "rid-42"
    assert chat["status"] == 200 and chat["method"] == "POST"
    assert chat["route"] == "/v1/chat" and chat["latency_ms"] > 0
    assert chat["user_id"] == hash_id("dave")
    ws = next(line for line in access if line["path"] == "/v1/realtime")
    assert ws["status"] == 101 and ws["request_id"].startswith("req_")
    assert "dave" not in raw.replace(hash_id("dave"), "")
