"""Hands-free voice over `/v1/realtime` (`turn_detection: server_vad`): the gateway finds the end
of speech itself, transcribes while the user speaks, answers without a commit, and speech over a
reply cancels it. Real models (Silero VAD, Whisper, piper), real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from gateway.server import RunningGateway
from tests.gateway.wsclient import Client, ws_client
from tests.speech import SENTENCES, silence, speak, word_error_rate, words

pytestmark = pytest.mark.slow  # Whisper, piper and the VAD on the CPU

Token = Callable[..., str]
FRAME = 3200  # 100 ms of pcm16 at 16 kHz
SERVER_VAD = {"type": "server_vad", "silence_ms": 500}


async def _stream(client: Client, audio: bytes, pace: float) -> None:
    """Send `audio` in 100 ms frames, `pace` times faster than real time (0: at once)."""
    for i in range(0, len(audio), FRAME):
        await client.conn.send(audio[i : i + FRAME])
        if pace:
            await asyncio.sleep(0.1 / pace)


async def _hands_free(client: Client, **session: Any) -> None:
    await client.recv()  # session.created
    await client.send(type="session.update", session={"turn_detection": SERVER_VAD, **session})
    updated = (await client.until("session.updated", "error"))[-1]
    assert updated["type"] == "session.updated", updated
    assert updated["session"]["turn_detection"]["type"] == "server_vad"


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def _answered(client: Client, timeout_s: float = 60) -> list[dict[str, Any]]:
    """Every event up to the first `response.completed` that was not cancelled."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        while True:
            seen += await client.until("response.completed")
            if seen[-1]["finish_reason"] != "cancelled":
                return seen


async def test_pauses_split_speech_into_turns_without_a_commit(
    gateway: RunningGateway, token: Token
) -> None:
    first, second = SENTENCES[1], SENTENCES[3]
    async with ws_client(gateway.ws_url, token()) as client:
        await _hands_free(client)
        events: list[dict[str, Any]] = []
        for sentence in (first, second):
            await _stream(client, speak(sentence) + silence(1.0), pace=4)
            events += await asyncio.wait_for(client.until("response.completed"), 60)
    starts = [e for e in events if e["type"] == "input_audio.speech_started"]
    stops = [e for e in events if e["type"] == "input_audio.speech_stopped"]
    transcripts = [e for e in events if e["type"] == "transcript"]
    done = [e for e in events if e["type"] == "response.completed"]
    assert len(starts) == len(stops) == len(transcripts) == len(done) == 2, _types(events)
    for start, stop, heard, reply, sentence in zip(
        starts, stops, transcripts, done, (first, second), strict=True
    ):
        assert start["turn_id"] == stop["turn_id"] == heard["turn_id"] == reply["turn_id"]
        assert 0 <= start["audio_ms"] < stop["audio_ms"]
        assert word_error_rate(sentence, heard["text"]) <= 0.25, heard["text"]
        assert reply["finish_reason"] == "stop" and reply["text"]
    # The second utterance starts after the first one's audio: the stream's clock goes on.
    assert starts[1]["audio_ms"] > stops[0]["audio_ms"]


async def test_partial_transcripts_arrive_before_the_final_one(
    gateway: RunningGateway, token: Token
) -> None:
    sentence = SENTENCES[0]  # about three seconds of speech, no pause in it
    audio = speak(sentence) + silence(1.0)
    async with ws_client(gateway.ws_url, token()) as client:
        await _hands_free(client)
        sender = asyncio.create_task(_stream(client, audio, pace=1))
        events = await _answered(client)
        await sender
    kinds = _types(events)
    heard = next(e for e in events if e["type"] == "transcript")
    partials = [e for e in events if e["type"] == "transcript.delta"]
    assert partials, kinds
    assert {p["turn_id"] for p in partials} == {heard["turn_id"]}
    assert kinds.index("transcript.delta") < kinds.index("input_audio.speech_stopped")
    assert kinds.index("input_audio.speech_stopped") < kinds.index("transcript")
    # Each partial is the utterance so far: the last one already holds its first words.
    assert set(words(partials[-1]["text"])) & set(words(sentence)), partials[-1]["text"]
    assert word_error_rate(sentence, heard["text"]) <= 0.25, heard["text"]


async def test_speech_over_a_reply_cancels_it(
    gateway: RunningGateway, token: Token, fast_sim: Any
) -> None:
    await fast_sim.set_knobs(tokens_per_s=20, reply_tokens=400)
    async with ws_client(gateway.ws_url, token()) as client:
        await _hands_free(client, voice={"output": True})
        await client.send(type="input_text", text="Talk for a while", turn_id="long")
        await asyncio.wait_for(client.until("response.audio"), 60)
        sender = asyncio.create_task(_stream(client, speak(SENTENCES[2]) + silence(1.0), pace=2))
        before = await asyncio.wait_for(client.until("input_audio.speech_started"), 30)
        after = await asyncio.wait_for(client.until("response.completed"), 30)
        await sender
        answer = await asyncio.wait_for(client.until("response.completed"), 60)
    started = before[-1]
    cancelled = after[-1]
    assert cancelled["turn_id"] == "long" and cancelled["finish_reason"] == "cancelled"
    new_turn = started["turn_id"]
    # Nothing of the cancelled reply follows its end; the new utterance is answered.
    later = answer[:-1]
    assert not [e for e in later if e.get("turn_id") == "long"], _types(later)
    assert answer[-1]["turn_id"] == new_turn and answer[-1]["finish_reason"] == "stop"
    heard = next(e for e in answer if e["type"] == "transcript")
    assert word_error_rate(SENTENCES[2], heard["text"]) <= 0.25, heard["text"]


async def test_a_short_pause_within_an_utterance_loses_nothing(
    gateway: RunningGateway, token: Token
) -> None:
    first, second = SENTENCES[1], SENTENCES[3]
    # speak() pads each sentence with 0.25 s: a pause of about 0.8 s, over the 0.5 s silence.
    audio = speak(first) + silence(0.3) + speak(second) + silence(1.0)
    async with ws_client(gateway.ws_url, token()) as client:
        await _hands_free(client)
        await _stream(client, audio, pace=0)  # the VAD sees the pause end before any reply
        events = await _answered(client)
    kinds = _types(events)
    assert kinds.count("input_audio.speech_started") == 2, kinds
    cut_short = next(e for e in events if e["type"] == "response.completed")
    assert cut_short["finish_reason"] == "cancelled"
    heard = [e for e in events if e["type"] == "transcript"][-1]
    assert heard["turn_id"] == events[-1]["turn_id"]
    # The answered turn heard both parts: what came before the pause was not dropped.
    assert word_error_rate(f"{first} {second}", heard["text"]) <= 0.25, heard["text"]


async def test_noise_alone_makes_no_turn(gateway: RunningGateway, token: Token) -> None:
    rng = np.random.default_rng(7)
    hiss = (rng.normal(0, 300, 16_000 * 3)).astype("<i2").tobytes()  # 3 s of quiet hiss
    async with ws_client(gateway.ws_url, token()) as client:
        await _hands_free(client)
        await _stream(client, silence(1.0) + hiss + silence(1.0), pace=0)
        await asyncio.sleep(1.0)  # what the VAD would have said is said by now
        await client.send(type="ping")
        seen = await asyncio.wait_for(client.until("pong"), 10)
    assert _types(seen) == ["pong"]


async def test_server_vad_off_again_restores_push_to_talk(
    gateway: RunningGateway, token: Token
) -> None:
    async with ws_client(gateway.ws_url, token()) as client:
        await _hands_free(client)
        await client.send(type="session.update", session={"turn_detection": None})
        updated = (await client.until("session.updated"))[-1]
        assert updated["session"]["turn_detection"] is None
        await _stream(client, speak(SENTENCES[0]) + silence(1.0), pace=0)
        await client.send(type="input_audio.commit", turn_id="ptt")
        events = await asyncio.wait_for(client.until("response.completed", "error"), 60)
    assert "input_audio.speech_started" not in _types(events)
    assert events[-1]["type"] == "response.completed" and events[-1]["turn_id"] == "ptt"


@pytest.mark.parametrize(
    ("detection", "names"),
    [
        ({"type": "semantic"}, "session.turn_detection.type"),
        ({"type": "server_vad", "silence_ms": 20}, "session.turn_detection.silence_ms"),
        ({"type": "server_vad", "silence_ms": "long"}, "session.turn_detection.silence_ms"),
        ({"type": "server_vad", "threshold": 1.5}, "session.turn_detection.threshold"),
        ({"type": "server_vad", "threshold": True}, "session.turn_detection.threshold"),
        ({"type": "server_vad", "prefix_ms": 300}, "session.turn_detection"),
        ("server_vad", "session.turn_detection"),
    ],
)
async def test_bad_turn_detection_is_refused_naming_the_field(
    gateway: RunningGateway, token: Token, detection: Any, names: str
) -> None:
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()
        await client.send(type="session.update", session={"turn_detection": detection})
        error = (await client.until("error", "session.updated"))[-1]
        assert error["type"] == "error" and error["code"] == "invalid_session", error
        assert names in error["message"], error["message"]
        # Nothing changed: audio is still push-to-talk, the socket still answers.
        await client.send(type="ping")
        assert _types(await client.until("pong")) == ["pong"]


async def test_server_vad_takes_pcm16_only(gateway: RunningGateway, token: Token) -> None:
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()
        session = {"turn_detection": SERVER_VAD, "input_audio_format": "webm"}
        await client.send(type="session.update", session=session)
        error = (await client.until("error", "session.updated"))[-1]
    assert error["type"] == "error" and "session.turn_detection" in error["message"], error
