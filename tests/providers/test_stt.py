"""WhisperSTT with the bundled tiny.en model, on speech made by the bundled piper voice."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from providers.audio import SAMPLE_RATE, AudioDecodeError, AudioTooLong, encode_audio
from providers.errors import PermanentError, ProviderError
from providers.stt import SpeechModelUnavailable, SpeechToText, SttBusy, WhisperSTT
from tests.speech import SENTENCES, shared_whisper, silence, speak, word_error_rate

pytestmark = pytest.mark.slow  # Whisper on the CPU


@pytest.fixture(scope="session")
async def stt() -> SpeechToText:
    whisper = shared_whisper()
    await whisper.load()
    return whisper


def test_word_error_rate_helper() -> None:
    assert word_error_rate("the cat sat", "the cat sat") == 0.0
    assert word_error_rate("the cat sat", "The cat, sat!") == 0.0
    assert word_error_rate("the cat sat", "the bat sat") == pytest.approx(1 / 3)
    assert word_error_rate("the cat sat", "the cat") == pytest.approx(1 / 3)
    assert word_error_rate("the cat", "the cat sat down") == 1.0


async def test_word_error_rate_on_spoken_sentences(stt: SpeechToText) -> None:
    errors = 0.0
    for sentence in SENTENCES:
        transcript = await stt.transcribe(speak(sentence), "pcm16")
        errors += word_error_rate(sentence, transcript.text)
        assert transcript.language == "en"
        assert transcript.audio_ms > 1000
        assert transcript.stt_ms > 0
    assert errors / len(SENTENCES) < 0.2


async def test_webm_opus_transcribes(stt: SpeechToText) -> None:
    sentence = "Let us practice the chorus one more time."
    pcm = speak(sentence)  # once: piper's timing varies from one synthesis to the next
    webm = encode_audio(pcm, SAMPLE_RATE, "webm")
    transcript = await stt.transcribe(webm, "webm")
    assert word_error_rate(sentence, transcript.text) < 0.3
    # Opus works in 20 ms frames with an encoder delay: allow a few frames of difference.
    assert abs(transcript.audio_ms - len(pcm) // 32) < 100


async def test_silence_gives_empty_text(stt: SpeechToText) -> None:
    transcript = await stt.transcribe(silence(1.5), "pcm16")
    assert transcript.text == ""
    assert transcript.audio_ms == 1500


@pytest.mark.parametrize(
    ("audio", "fmt"),
    [(b"\x1aE\xdf\xa3" + b"garbage" * 300, "webm"), (b"", "pcm16"), (b"\x00" * 3, "pcm16")],
)
async def test_garbage_is_a_decode_error(stt: SpeechToText, audio: bytes, fmt: str) -> None:
    with pytest.raises(AudioDecodeError) as info:
        await stt.transcribe(audio, fmt)
    assert isinstance(info.value, PermanentError)


async def test_utterance_limit() -> None:
    whisper = WhisperSTT(max_utterance_s=1.0, queue=0)
    try:
        with pytest.raises(AudioTooLong, match="1 s limit"):
            await whisper.transcribe(silence(1.5), "pcm16")
    finally:
        await whisper.aclose()


async def test_overflow_is_refused_at_once_as_transient() -> None:
    whisper = WhisperSTT(workers=1, queue=0)
    try:
        await whisper.load()
        audio = speak("One two three.")
        results = await asyncio.gather(
            *(whisper.transcribe(audio, "pcm16") for _ in range(3)), return_exceptions=True
        )
        busy = [r for r in results if isinstance(r, SttBusy)]
        done = [r for r in results if not isinstance(r, BaseException)]
        assert len(done) == 1 and len(busy) == 2
        assert busy[0].transient
        # The slot is free again once the job ended.
        assert (await whisper.transcribe(audio, "pcm16")).text
    finally:
        await whisper.aclose()


async def test_concurrent_jobs_queue_up_and_all_finish(stt: SpeechToText) -> None:
    audio = speak("Breathe in, and hold the note.")
    results = await asyncio.gather(*(stt.transcribe(audio, "pcm16") for _ in range(3)))
    assert all(word_error_rate("Breathe in and hold the note", r.text) < 0.4 for r in results)


async def test_transcription_runs_off_the_event_loop(stt: SpeechToText) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(ticker())
        await stt.transcribe(speak(SENTENCES[0]), "pcm16")
        task.cancel()
    assert ticks >= 5  # the loop kept running while Whisper worked


async def test_missing_model_is_a_permanent_error() -> None:
    whisper = WhisperSTT("/nonexistent/whisper-model-dir")
    try:
        with pytest.raises(SpeechModelUnavailable) as info:
            await whisper.transcribe(silence(0.5), "pcm16")
        assert isinstance(info.value, ProviderError) and not info.value.transient
    finally:
        await whisper.aclose()


async def test_closed_stt_refuses_work() -> None:
    whisper = WhisperSTT()
    await whisper.aclose()
    with pytest.raises(ProviderError):
        await whisper.transcribe(np.zeros(160, dtype="<i2").tobytes(), "pcm16")
