"""Voice over `/v1/realtime`: piper speaks, the gateway transcribes with Whisper, answers, and
speaks the reply back; barge-in; bad audio. Real models, real sockets."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import pytest

from gateway.server import RunningGateway
from providers.audio import encode_audio, wav_to_pcm16
from providers.stt import WhisperSTT
from tests.gateway.wsclient import Client, ws_client
from tests.speech import SENTENCES, silence, speak, word_error_rate

pytestmark = pytest.mark.slow  # Whisper and piper on the CPU

Token = Callable[..., str]
FRAME = 3200  # 100 ms of pcm16 at 16 kHz


async def _send_audio(client: Client, audio: bytes, frame: int = FRAME) -> None:
    for i in range(0, len(audio), frame):
        await client.conn.send(audio[i : i + frame])


@pytest.mark.parametrize("fmt", ["pcm16", "webm"])
async def test_spoken_turn_is_transcribed_and_answered(
    gateway: RunningGateway, token: Token, fmt: str
) -> None:
    sentence = SENTENCES[0]
    pcm = speak(sentence)
    audio = pcm if fmt == "pcm16" else encode_audio(pcm, 16_000, "webm")
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()
        await client.send(type="session.update", session={"input_audio_format": fmt})
        await client.until("session.updated")
        await _send_audio(client, audio)
        await client.send(type="input_audio.commit", turn_id="v1")
        events = await client.until("response.completed", "response.failed", "error")
    transcript = next(e for e in events if e["type"] == "transcript")
    assert transcript["turn_id"] == "v1"
    assert word_error_rate(sentence, transcript["text"]) <= 0.25, transcript["text"]
    assert transcript["audio_ms"] >= 1000 and transcript["stt_ms"] > 0
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["turn_id"] == "v1"


async def test_spoken_reply_round_trip(
    gateway: RunningGateway, token: Token, fast_sim: Any
) -> None:
    await fast_sim.set_knobs(reply_tokens=14)
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()
        await client.send(type="session.update", session={"voice": {"output": True}})
        await client.until("session.updated")
        await client.send(type="input_text", text="Give me one tip", turn_id="say")
        events = await client.until("response.completed", "response.failed")
    done = events[-1]
    assert done["type"] == "response.completed"
    audio = [e for e in events if e["type"] == "response.audio"]
    assert audio, "no audio arrived"
    assert [a["seq"] for a in audio] == list(range(len(audio)))
    assert done["timings"]["first_audio_ms"] > 0
    # edge-tts cannot reach its service here: the fallback (piper, WAV) spoke without an error.
    assert not [e for e in events if e["type"] == "error"]
    assert {a["format"] for a in audio} == {"wav"}
    pcm = b"".join(wav_to_pcm16(base64.b64decode(a["audio"]))[0] for a in audio)
    rate = audio[0]["sample_rate"]
    whisper = WhisperSTT(workers=1)
    try:
        from providers.audio import resample_pcm16

        heard = await whisper.transcribe(resample_pcm16(pcm, rate, 16_000), "pcm16")
    finally:
        await whisper.aclose()
    assert word_error_rate(done["text"], heard.text) <= 0.35, (done["text"], heard.text)


async def test_barge_in_stops_reply_and_audio(
    gateway: RunningGateway, token: Token, fast_sim: Any
) -> None:
    await fast_sim.set_knobs(tokens_per_s=30, reply_tokens=300)
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()
        await client.send(type="session.update", session={"voice": {"output": True}})
        await client.until("session.updated")
        await client.send(type="input_text", text="Talk for a while", turn_id="long")
        await client.until("response.audio")
        # New speech while the reply plays cancels it.
        await client.conn.send(silence(0.1))
        events = await client.until("response.completed")
        assert events[-1]["finish_reason"] == "cancelled"
        await client.send(type="ping")
        after = await client.until("pong")
        assert [e["type"] for e in after] == ["pong"]  # nothing of the cancelled turn follows


async def test_a_turn_cancelled_while_it_is_transcribed_ends_cancelled(
    gateway: RunningGateway, token: Token
) -> None:
    pcm = speak(" ".join(SENTENCES[:3]))  # long enough to be cancelled while transcribed
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()
        await _send_audio(client, pcm)
        await client.send(type="input_audio.commit", turn_id="v-cancel")
        await client.send(type="response.cancel", turn_id="v-cancel")
        events = await asyncio.wait_for(client.until("response.completed", "response.failed"), 30)
        done = events[-1]
        assert done["type"] == "response.completed" and done["turn_id"] == "v-cancel"
        assert done["finish_reason"] == "cancelled"
        await client.send(type="input_text", text="still there?")
        again = await client.until("response.completed", "response.failed")
        assert again[-1]["type"] == "response.completed" and again[-1]["text"]


@pytest.mark.parametrize(
    ("fmt", "payload", "code"),
    [
        ("webm", b"this is not audio at all" * 100, "audio_decode_error"),
        ("pcm16", None, "empty_audio"),
    ],
)
async def test_bad_audio_gets_an_error_and_the_session_stays_usable(
    gateway: RunningGateway, token: Token, fmt: str, payload: bytes | None, code: str
) -> None:
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()
        await client.send(type="session.update", session={"input_audio_format": fmt})
        await client.until("session.updated")
        if payload:
            await client.conn.send(payload)
        await client.send(type="input_audio.commit")
        error = (await client.until("error"))[-1]
        assert error["code"] == code
        assert "Errno" not in error["message"] and "Invalid data" not in error["message"]
        await client.send(type="input_text", text="still there?")
        assert (await client.until("response.completed", "response.failed"))[-1]["type"] == (
            "response.completed"
        )


async def test_utterance_over_the_limit(gateway: RunningGateway, token: Token) -> None:
    limit_s = gateway.app.state.gateway.settings.voice.max_utterance_s
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()
        too_long = silence(limit_s + 1)
        await _send_audio(client, too_long, frame=64_000)
        error = (await client.until("error"))[-1]
        assert error["code"] == "audio_too_long"
        await client.send(type="ping")
        assert (await client.until("pong"))[-1]["type"] == "pong"
