"""Text-to-speech: one conformance suite for every implementation that can speak here, the
edge-tts failure path (no network in the test environment), and FallbackTTS's failover."""

from __future__ import annotations

import io
import time
import wave
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import pytest

from providers.audio import decode_audio, wav_to_pcm16
from providers.errors import BadRequest, TransientError, UpstreamUnavailable
from providers.tts import AudioChunk, EdgeTTS, FallbackTTS, PiperTTS, TextToSpeech
from tests.speech import shared_piper, shared_whisper, word_error_rate


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Scripted(TextToSpeech):
    """A provider that fails as told: before its first chunk, or after it."""

    def __init__(self, name: str, fail: str | None = None) -> None:
        self.name = name
        self.fail = fail
        self.calls = 0

    async def synthesize(self, text: str) -> AsyncGenerator[AudioChunk, None]:
        self.calls += 1
        if self.fail == "before":
            raise UpstreamUnavailable(f"{self.name} is down", retry_after_s=None)
        yield AudioChunk(b"\x00\x00" * 160, "pcm16", 16_000)
        if self.fail == "after":
            raise UpstreamUnavailable(f"{self.name} dropped mid-sentence")
        yield AudioChunk(b"\x00\x00" * 160, "pcm16", 16_000)


def piper_wav() -> TextToSpeech:
    return shared_piper()


def piper_pcm() -> TextToSpeech:
    return PiperTTS(format="pcm16")


def edge_then_piper() -> TextToSpeech:
    return FallbackTTS([EdgeTTS(timeout_s=5.0), shared_piper()])


IMPLEMENTATIONS: list[Callable[[], TextToSpeech]] = [piper_wav, piper_pcm, edge_then_piper]


async def collect(chunks: AsyncIterator[AudioChunk]) -> list[AudioChunk]:
    return [chunk async for chunk in chunks]


def pcm_of(chunk: AudioChunk) -> tuple[bytes, int]:
    if chunk.format == "wav":
        return wav_to_pcm16(chunk.audio)
    assert chunk.format == "pcm16"
    return chunk.audio, chunk.sample_rate


# ------------------------------------------------------------------ conformance


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda f: f.__name__)
def tts(request: pytest.FixtureRequest) -> TextToSpeech:
    factory: Callable[[], TextToSpeech] = request.param
    return factory()


async def test_speaks_a_sentence(tts: TextToSpeech) -> None:
    chunks = await collect(tts.synthesize("Relax your jaw and let the note ring."))
    assert chunks
    assert all(c.audio and c.format in ("mp3", "wav", "pcm16") for c in chunks)
    assert all(c.sample_rate > 8000 for c in chunks)
    assert 1.0 < sum(c.duration_s() for c in chunks) < 6.0


async def test_one_chunk_per_sentence_each_playable(tts: TextToSpeech) -> None:
    chunks = await collect(tts.synthesize("Good work. Now try it faster."))
    assert len(chunks) >= 1
    for chunk in chunks:
        if chunk.format == "wav":
            with wave.open(io.BytesIO(chunk.audio)) as wav:
                assert wav.getnframes() > 0


async def test_empty_text_is_a_bad_request(tts: TextToSpeech) -> None:
    with pytest.raises(BadRequest):
        await collect(tts.synthesize("   "))


async def test_speech_is_intelligible(tts: TextToSpeech) -> None:
    from providers.audio import SAMPLE_RATE, float_to_pcm16, resample_pcm16

    sentence = "Your timing on the second verse was excellent."
    pcm = b""
    for chunk in await collect(tts.synthesize(sentence)):
        if chunk.format == "mp3":
            pcm += float_to_pcm16(decode_audio(chunk.audio, "mp3"))
        else:
            raw, rate = pcm_of(chunk)
            pcm += resample_pcm16(raw, rate, SAMPLE_RATE)
    stt = shared_whisper()
    transcript = await stt.transcribe(pcm, "pcm16")
    assert word_error_rate(sentence, transcript.text) < 0.3


# ------------------------------------------------------------------ edge-tts offline


async def test_edge_without_network_fails_fast_and_transient() -> None:
    started = time.perf_counter()
    with pytest.raises(TransientError) as info:
        await collect(EdgeTTS().synthesize("Hello."))
    assert info.value.provider == "edge"
    assert info.value.__cause__ is not None
    assert time.perf_counter() - started < 10  # bounded by its timeout even if DNS hangs


# ------------------------------------------------------------------ fallback


async def test_fallback_routes_to_piper_silently_and_skips_edge_afterwards() -> None:
    clock = FakeClock()
    edge = EdgeTTS()
    fallback = FallbackTTS([edge, shared_piper()], cooldown_s=30.0, clock=clock)
    first = await collect(fallback.synthesize("First sentence."))
    assert first and first[0].format == "wav"
    assert fallback.last_provider == "piper"
    assert fallback.failovers == 1
    assert fallback.is_open(edge)
    await collect(fallback.synthesize("Second sentence."))
    assert fallback.failovers == 1  # edge was not tried again during its cooldown
    clock.now += 31
    assert not fallback.is_open(edge)
    await collect(fallback.synthesize("Third sentence."))
    assert fallback.failovers == 2  # after the cooldown edge gets another chance


async def test_fallback_raises_after_the_first_chunk() -> None:
    flaky, backup = Scripted("flaky", fail="after"), Scripted("backup")
    fallback = FallbackTTS([flaky, backup], clock=FakeClock())
    received: list[AudioChunk] = []
    with pytest.raises(UpstreamUnavailable, match="mid-sentence"):
        async for chunk in fallback.synthesize("Hello."):
            received.append(chunk)
    assert len(received) == 1
    assert backup.calls == 0
    assert fallback.is_open(flaky)


async def test_fallback_all_down_is_transient() -> None:
    first, second = Scripted("a", fail="before"), Scripted("b", fail="before")
    fallback = FallbackTTS([first, second], clock=FakeClock())
    with pytest.raises(UpstreamUnavailable, match="no text-to-speech provider") as info:
        await collect(fallback.synthesize("Hello."))
    assert info.value.transient
    # Every provider is cooling down: they are all tried again rather than giving up.
    with pytest.raises(UpstreamUnavailable):
        await collect(fallback.synthesize("Hello again."))
    assert (first.calls, second.calls) == (2, 2)


async def test_fallback_recovers_provider_after_success() -> None:
    clock = FakeClock()
    primary = Scripted("primary", fail="before")
    fallback = FallbackTTS([primary, Scripted("backup")], cooldown_s=5, clock=clock)
    await collect(fallback.synthesize("One."))
    assert fallback.is_open(primary)
    primary.fail = None
    clock.now += 6
    chunks = await collect(fallback.synthesize("Two."))
    assert len(chunks) == 2 and fallback.last_provider == "primary"
    assert not fallback.is_open(primary)


async def test_fallback_passes_bad_request_through() -> None:
    backup = Scripted("backup")
    fallback = FallbackTTS([shared_piper(), backup])
    with pytest.raises(BadRequest):
        await collect(fallback.synthesize(""))
    assert backup.calls == 0
