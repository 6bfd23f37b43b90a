"""Spans for transcription and synthesis (duration, audio seconds, model; never text or audio)
over real OTLP/HTTP, and the speech histograms in `/metrics`, after a spoken turn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings
from tests.gateway.observed import OtlpReceiver, observed_gateway, otlp_receiver
from tests.gateway.wsclient import ws_client
from tests.speech import SENTENCES, silence, speak

pytestmark = pytest.mark.slow  # Whisper and piper on the CPU

Token = Callable[..., str]


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    async with otlp_receiver() as running:
        yield running


def _count(metrics: str, name: str) -> float:
    line = next(line for line in metrics.splitlines() if line.startswith(f"{name} "))
    return float(line.split()[-1])


async def test_a_spoken_turn_leaves_speech_spans_and_histograms(
    fast_sim: Any, tmp_path: Path, token: Token, receiver: OtlpReceiver
) -> None:
    sentence = SENTENCES[2]
    settings = make_settings(fast_sim.url, tmp_path, otlp_endpoint=receiver.url)
    async with observed_gateway(settings) as gw:
        async with ws_client(gw.ws_url, token()) as client:
            await client.recv()
            session = {"voice": {"output": True}, "turn_detection": {"type": "server_vad"}}
            await client.send(type="session.update", session=session)
            await client.until("session.updated")
            audio = speak(sentence) + silence(1.0)
            for i in range(0, len(audio), 3200):
                await client.conn.send(audio[i : i + 3200])
            events = await asyncio.wait_for(client.until("response.completed"), 60)
        async with httpx.AsyncClient(base_url=gw.url) as http:
            metrics = (await http.get("/metrics")).text
    assert any(e["type"] == "response.audio" for e in events)
    assert _count(metrics, "coach_stt_seconds_count") >= 1
    assert _count(metrics, "coach_tts_seconds_count") >= 1
    heard = receiver.named("stt transcribe")
    spoken = receiver.named("tts synthesize")
    assert heard and spoken
    assert max(s.attributes["coach.speech.audio_s"] for s in heard) > 1.0
    assert {s.attributes["coach.speech.model"] for s in heard} == {"bundled tiny.en"}
    assert all(s.attributes["coach.speech.audio_s"] > 0 for s in spoken)
    assert {s.attributes["coach.speech.model"] for s in spoken} == {"piper"}
    # Never the words: no attribute value holds the spoken sentence or the reply.
    values = [str(v) for s in heard + spoken for v in s.attributes.values()]
    assert not [v for v in values if "accuracy" in v or len(v) > 64]
