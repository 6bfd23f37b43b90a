"""SpeechOut (speech of a streaming reply) with the real piper voice, and AudioIn limits."""

from __future__ import annotations

import asyncio
import base64
import io
import wave
from collections.abc import AsyncGenerator

import pytest

from providers.audio import AudioTooLong
from providers.errors import UpstreamUnavailable
from providers.tts import AudioChunk, EdgeTTS, FallbackTTS, TextToSpeech
from streams.events import ErrorEvent, ResponseAudio, ServerEvent
from streams.voice import AudioIn, SpeechOut, first_clause, speakable
from tests.speech import shared_piper

REPLY = (
    "Nice work on that phrase. Your breath support was much better. "
    "Next, try the high note softly. Then sing the whole line again."
)


class Recorder:
    def __init__(self) -> None:
        self.events: list[ServerEvent] = []
        self.first_audio = asyncio.Event()

    async def __call__(self, event: ServerEvent) -> None:
        self.events.append(event)
        if isinstance(event, ResponseAudio):
            self.first_audio.set()

    @property
    def audio(self) -> list[ResponseAudio]:
        return [e for e in self.events if isinstance(e, ResponseAudio)]


class Broken(TextToSpeech):
    name = "broken"

    async def synthesize(self, text: str) -> AsyncGenerator[AudioChunk, None]:
        raise UpstreamUnavailable("down")
        yield AudioChunk(b"", "pcm16", 16_000)  # pragma: no cover - makes this a generator


def deltas(text: str, size: int = 4) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def test_audio_events_in_order_while_text_streams() -> None:
    emit = Recorder()
    async with SpeechOut(shared_piper(), "t1", emit) as out:
        for delta in deltas(REPLY):
            out.feed(delta)
            await asyncio.sleep(0.005)  # the model keeps streaming while speech is made
        first_audio_ms = await out.finish()
    audio = emit.audio
    assert [e.seq for e in audio] == list(range(len(audio)))
    assert len(audio) >= 4  # a chunk per sentence at least
    assert all(e.turn_id == "t1" and e.format == "wav" for e in audio)
    assert first_audio_ms is not None and first_audio_ms > 0
    assert out.sentences == 4
    total = 0.0
    for event in audio:
        with wave.open(io.BytesIO(base64.b64decode(event.audio))) as wav:
            assert wav.getframerate() == event.sample_rate
            total += wav.getnframes() / wav.getframerate()
    assert out.audio_seconds == pytest.approx(total)
    assert total > 4.0


async def test_first_audio_arrives_before_the_reply_ends() -> None:
    emit = Recorder()
    async with SpeechOut(shared_piper(), "t2", emit) as out:
        out.feed("Short first sentence. ")
        out.feed("And")
        async with asyncio.timeout(30):  # the first sentence is spoken while the reply is open
            await emit.first_audio.wait()
        out.feed(" the rest.")
    assert len(emit.audio) == 2


async def test_cancel_drops_pending_sentences_and_stops_emitting() -> None:
    emit = Recorder()
    async with SpeechOut(shared_piper(), "t3", emit) as out:
        out.feed(REPLY * 3 + " ")
        await emit.first_audio.wait()
        await out.cancel()
        emitted = len(emit.events)
        assert out.dropped > 0
        out.feed("More text after the barge-in. ")
        await asyncio.sleep(0.5)  # long enough for a sentence of piper
        assert len(emit.events) == emitted
    assert len(emit.events) == emitted
    assert emitted < 12


async def test_leaving_with_an_exception_cancels_speech() -> None:
    emit = Recorder()
    with pytest.raises(RuntimeError, match="llm broke"):
        async with SpeechOut(shared_piper(), "t4", emit) as out:
            out.feed(REPLY + " ")
            raise RuntimeError("llm broke")
    emitted = len(emit.events)
    await asyncio.sleep(0.3)
    assert len(emit.events) == emitted and out.dropped >= 1


async def test_full_queue_merges_instead_of_dropping() -> None:
    emit = Recorder()
    async with SpeechOut(shared_piper(), "t5", emit, queue_size=1) as out:
        out.feed("One. Two. Three. Four. ")
    assert out.sentences == 1
    assert out.audio_seconds > 1.5  # all four words were spoken


async def test_speech_failure_is_one_error_event_and_the_turn_goes_on() -> None:
    emit = Recorder()
    async with SpeechOut(Broken(), "t6", emit) as out:
        out.feed(REPLY)
        assert await out.finish() is None
    assert emit.events == [ErrorEvent("tts_unavailable", "speech output failed: down", True)]
    assert isinstance(out.error, UpstreamUnavailable)


async def test_edge_down_falls_back_to_piper_without_an_error() -> None:
    emit = Recorder()
    tts = FallbackTTS([EdgeTTS(), shared_piper()])
    async with SpeechOut(tts, "t7", emit) as out:
        out.feed("Edge is unreachable here. Piper speaks instead.")
    assert not [e for e in emit.events if isinstance(e, ErrorEvent)]
    assert len(emit.audio) == 2 and tts.failovers == 1


async def test_emit_failure_surfaces_as_itself() -> None:
    async def closed(event: ServerEvent) -> None:
        raise ConnectionResetError("socket gone")

    with pytest.raises(ConnectionResetError):
        async with SpeechOut(shared_piper(), "t8", closed) as out:
            out.feed("Hello there. ")
            await asyncio.sleep(5)  # cancelled by the failing speech task


async def test_markup_and_empty_sentences_are_not_spoken() -> None:
    assert speakable("**Great** job, see [the guide](http://x.y/z).") == "Great job, see the guide."
    assert speakable("...") == ""
    assert speakable("## ") == ""
    emit = Recorder()
    async with SpeechOut(shared_piper(), "t9", emit) as out:
        out.feed("... !!! ")
    assert emit.events == [] and out.sentences == 0


# ------------------------------------------------------------------ AudioIn


def test_audio_in_pcm16_limit() -> None:
    buffer = AudioIn("pcm16", max_utterance_s=1.0)
    assert buffer.limit_bytes == 32_000
    buffer.append(b"\x00" * 16_000)
    buffer.append(b"\x00" * 16_000)
    assert buffer.duration_ms == 1000
    with pytest.raises(AudioTooLong, match="1 s limit"):
        buffer.append(b"\x00\x00")
    assert buffer.overflowed
    buffer.append(b"\x00" * 100)  # the rest of the overlong utterance is dropped quietly
    assert buffer.take() == b""
    assert not buffer.overflowed
    buffer.append(b"\x01\x00")
    assert buffer.take() == b"\x01\x00"
    assert buffer.take() == b""


def test_audio_in_webm_cap_is_generous() -> None:
    buffer = AudioIn("webm", max_utterance_s=10.0)
    assert buffer.limit_bytes == 10 * 64_000 + 64 * 1024
    assert buffer.duration_ms is None
    for _ in range(100):
        buffer.append(b"\x00" * 6_000)  # 10 s at 480 kbit/s
    with pytest.raises(AudioTooLong):
        buffer.append(b"\x00" * 200_000)


def test_audio_in_clear_and_format_switch() -> None:
    buffer = AudioIn()
    buffer.append(b"ab")
    buffer.set_format("webm")
    assert buffer.format == "webm" and buffer.nbytes == 0
    buffer.append(b"cd")
    buffer.clear()
    assert buffer.take() == b""


class Said(TextToSpeech):
    """Records what it was asked to speak; one short chunk each."""

    name = "said"

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def synthesize(self, text: str) -> AsyncGenerator[AudioChunk, None]:
        self.texts.append(text)
        yield AudioChunk(b"\x00\x00" * 160, "pcm16", 16_000)


async def test_the_first_clause_of_a_long_first_sentence_is_spoken_on_its_own() -> None:
    said = Said()
    reply = "That sounds like a strain in the knee, so stop the squats today. Rest. Then ice it."
    async with SpeechOut(said, "t", Recorder()) as out:
        for delta in deltas(reply):
            out.feed(delta)
    assert said.texts == [
        "That sounds like a strain in the knee,",
        "so stop the squats today.",
        "Rest.",
        "Then ice it.",
    ]


@pytest.mark.parametrize(
    ("sentence", "head"),
    [
        ("When you reach the high note, relax.", "When you reach the high note, relax."),
        ("Good, thanks for trying that one again.", "Good, thanks for trying that one again."),
        ("Breathe low and slow; count four in and six out.", "Breathe low and slow;"),
    ],
)
def test_first_clause_cuts_only_where_both_parts_are_worth_it(sentence: str, head: str) -> None:
    assert first_clause(sentence)[0] == head
    assert " ".join(p for p in first_clause(sentence) if p) == sentence
