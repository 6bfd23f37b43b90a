"""The server-sent events decoder, fed the way bodies arrive: in pieces of any size."""

from __future__ import annotations

import pytest

from providers.errors import MalformedResponse
from providers.sse import SseDecoder, SseEvent

STREAM = (
    b": keep-alive\n\n"
    b'event: message_start\ndata: {"a": 1}\n\n'
    b"data: first line\ndata: second line\n\n"
    b"data:no space\n\n"
    b"event: ping\n\n"  # no data: not dispatched
    b"id: 7\nretry: 100\ndata: [DONE]\n\n"
)
EVENTS = [
    SseEvent("message_start", b'{"a": 1}'),
    SseEvent("message", b"first line\nsecond line"),
    SseEvent("message", b"no space"),
    SseEvent("message", b"[DONE]"),
]


def feed_in_pieces(body: bytes, size: int) -> list[SseEvent]:
    decoder = SseDecoder()
    events: list[SseEvent] = []
    for start in range(0, len(body), size):
        events += decoder.feed(body[start : start + size])
    return events + decoder.flush()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10_000])
def test_events_are_the_same_however_the_body_is_cut(size: int) -> None:
    assert feed_in_pieces(STREAM, size) == EVENTS


@pytest.mark.parametrize("size", [1, 2, 5, 10_000])
@pytest.mark.parametrize("line_end", [b"\r\n", b"\r"])
def test_crlf_and_cr_line_ends(size: int, line_end: bytes) -> None:
    assert feed_in_pieces(STREAM.replace(b"\n", line_end), size) == EVENTS


def test_an_event_without_its_final_blank_line_comes_out_on_flush() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: one\n\ndata: two\n") == [SseEvent("message", b"one")]
    assert decoder.flush() == [SseEvent("message", b"two")]
    assert decoder.flush() == []


def test_an_endless_event_is_malformed_not_buffered() -> None:
    decoder = SseDecoder(max_event_bytes=1000)
    decoder.feed(b"data: " + b"x" * 900)
    with pytest.raises(MalformedResponse, match="over 1000 bytes"):
        decoder.feed(b"x" * 200)


def test_a_field_without_a_colon_has_an_empty_value() -> None:
    assert SseDecoder().feed(b"data\ndata\n\n") == [SseEvent("message", b"\n")]
