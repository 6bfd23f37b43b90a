from __future__ import annotations

import dataclasses

import orjson
import pytest

from streams.events import (
    InputText,
    MetricsPush,
    Pong,
    ProtocolError,
    RateLimitedEvent,
    ResponseCompleted,
    ResponseDelta,
    ServerEvent,
    SessionCreated,
    SessionUpdate,
    encode,
    encode_json,
    parse_client_event,
)


def test_encode_puts_type_first() -> None:
    frame = encode(
        ResponseCompleted("t", "hi", "stop", {"input_tokens": 1, "output_tokens": 2}, {}, "p", "m")
    )
    assert frame.startswith('{"type":"response.completed"')
    assert orjson.loads(frame)["usage"]["output_tokens"] == 2


def test_parse_known_events() -> None:
    assert parse_client_event('{"type":"input_text","text":"hi","turn_id":"a"}') == InputText(
        "hi", "a"
    )
    assert parse_client_event(
        b'{"type":"metrics.push","metrics":{"pitch":0.5,"n":3}}'
    ) == MetricsPush({"pitch": 0.5, "n": 3.0})
    update = parse_client_event('{"type":"session.update","session":{"voice":{"output":true}}}')
    assert isinstance(update, SessionUpdate) and update.session["voice"] == {"output": True}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{", "invalid_json"),
        ("3", "invalid_event"),
        ('{"text":"x"}', "invalid_event"),
        ('{"type":"bogus"}', "unknown_type"),
        ('{"type":"input_text","text":""}', "empty_text"),
        ('{"type":"input_text","text":"hi","turn_id":""}', "invalid_turn_id"),
        ('{"type":"session.update","session":{"colour":"red"}}', "invalid_session"),
        ('{"type":"session.update","session":{"input_audio_format":"flac"}}', "invalid_session"),
        ('{"type":"session.update","session":{"focus_ids":["a","b","c","d"]}}', "invalid_session"),
        ('{"type":"metrics.push","metrics":{}}', "invalid_metrics"),
        ('{"type":"metrics.push","metrics":{"ok":true}}', "invalid_metrics"),
    ],
)
def test_parse_rejects_with_a_code(raw: str, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_event(raw)
    assert info.value.code == code


@pytest.mark.parametrize(
    "event",
    [
        Pong(),
        ResponseDelta("t1", 'says "hi"\n'),
        ResponseCompleted(
            "t", "x", "stop", {"input_tokens": 1}, {"ttft_ms": None}, "p", "m", [{"a": 1}]
        ),
        SessionCreated("s", "u", {"connections": 5}, True),
        RateLimitedEvent("turns_per_minute", 1500),
    ],
)
def test_encode_is_the_type_then_every_field(event: ServerEvent) -> None:
    frame = encode(event)
    fields = {field.name: getattr(event, field.name) for field in dataclasses.fields(event)}
    assert orjson.loads(frame) == {"type": event.type, **fields}
    assert next(iter(orjson.loads(frame))) == "type"
    assert encode_json(event) == frame.encode()


def test_an_event_is_encoded_once_and_its_json_holds_only_the_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A token goes to its client and to the session's feed: both must get these same bytes.
    calls: list[object] = []
    real_dumps = orjson.dumps

    def dumps(obj: object) -> bytes:
        calls.append(obj)
        return real_dumps(obj)

    monkeypatch.setattr(orjson, "dumps", dumps)
    event = ResponseDelta("t1", "Hi")
    first = encode_json(event)
    assert encode_json(event) is first and encode(event) == first.decode()
    assert calls == [event]
    assert orjson.loads(real_dumps(event)) == {"turn_id": "t1", "text": "Hi"}
    assert orjson.loads(first) == {"type": "response.delta", "turn_id": "t1", "text": "Hi"}
    # Equal events are still equal, and another event is encoded on its own.
    other = ResponseDelta("t1", "Hi")
    assert other == event and hash(other) == hash(event) and repr(other) == repr(event)
    assert encode_json(other) == first and calls == [event, other]
