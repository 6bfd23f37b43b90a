"""The audio endpoints through the official `openai` SDK against a real uvicorn on loopback."""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator

import openai
import pytest

from gateway.audio_api import audio_routes
from gateway.auth import mint_token
from gateway.quotas import Quotas
from gateway.settings import QuotaSettings, Settings, VoiceSettings
from providers.audio import SAMPLE_RATE, decode_audio, encode_audio
from providers.tts import EdgeTTS, FallbackTTS
from tests.gateway.parts import parts_app, served
from tests.speech import shared_piper, shared_whisper, speak, word_error_rate

pytestmark = pytest.mark.slow  # Whisper and piper on the CPU

SECRET = "audio-api-test-secret-0123456789-abcdefghijklmnop"
UPLOAD_LIMIT = 300_000
SETTINGS = Settings(
    jwt_secret=SECRET, persistence=False, voice=VoiceSettings(max_upload_bytes=UPLOAD_LIMIT)
)

AUDIO_S_PER_DAY = 600


@pytest.fixture(scope="module")
async def audio_quotas() -> AsyncIterator[Quotas]:
    quotas = await Quotas.open(QuotaSettings(audio_seconds_per_day=AUDIO_S_PER_DAY), None)
    yield quotas
    await quotas.aclose()


@pytest.fixture(scope="module")
async def base_url(audio_quotas: Quotas) -> AsyncIterator[str]:
    tts = FallbackTTS([EdgeTTS(), shared_piper()])
    async with (
        parts_app(
            audio_routes(), SETTINGS, quotas=audio_quotas, stt=shared_whisper(), tts=tts
        ) as app,
        served(app) as url,
    ):
        yield f"{url}/v1"


@pytest.fixture
def client(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=base_url, api_key=mint_token(SECRET, "alice"), max_retries=0, timeout=60
    )


SENTENCE = "Keep your shoulders relaxed and breathe from the diaphragm."


async def test_transcription_json_from_webm(client: openai.AsyncOpenAI) -> None:
    webm = encode_audio(speak(SENTENCE), SAMPLE_RATE, "webm")
    result = await client.audio.transcriptions.create(
        model="whisper-1", file=("utterance.webm", webm, "audio/webm")
    )
    assert word_error_rate(SENTENCE, result.text) < 0.25


async def test_transcription_text_from_wav(client: openai.AsyncOpenAI) -> None:
    wav = encode_audio(speak(SENTENCE), SAMPLE_RATE, "wav")
    text = await client.audio.transcriptions.create(
        model="whisper-1", file=("take.wav", wav), response_format="text"
    )
    assert isinstance(text, str)
    assert word_error_rate(SENTENCE, text) < 0.25


async def test_transcription_verbose_json(client: openai.AsyncOpenAI) -> None:
    result = await client.audio.transcriptions.create(
        model="whisper-1",
        file=("take.mp3", encode_audio(speak(SENTENCE), SAMPLE_RATE, "mp3")),
        response_format="verbose_json",
    )
    assert result.language == "en"
    assert 3.0 < result.duration < 6.0
    assert result.segments and result.segments[0].end > result.segments[0].start


async def test_upload_over_the_limit_is_413(client: openai.AsyncOpenAI) -> None:
    too_big = encode_audio(b"\x00\x00" * (UPLOAD_LIMIT // 2 + 50_000), SAMPLE_RATE, "wav")
    with pytest.raises(openai.APIStatusError) as info:
        await client.audio.transcriptions.create(model="whisper-1", file=("big.wav", too_big))
    assert info.value.status_code == 413
    assert info.value.body["code"] == "file_too_large"  # type: ignore[index]


async def test_undecodable_upload_is_400(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.audio.transcriptions.create(
            model="whisper-1", file=("noise.webm", b"\x1aE\xdf\xa3" + b"junk" * 500)
        )
    body = info.value.body
    assert isinstance(body, dict)
    assert body["code"] == "audio_decode_error" and body["type"] == "invalid_request_error"
    assert body["message"] == "audio could not be decoded"


async def test_bad_token_is_401(base_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="not-a-jwt", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"RIFF"))
    with pytest.raises(openai.AuthenticationError):
        await client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.")


async def test_speech_wav_is_playable(client: openai.AsyncOpenAI) -> None:
    text = "Great session today. See you tomorrow."
    response = await client.audio.speech.create(
        model="tts-1", voice="alloy", input=text, response_format="wav"
    )
    assert response.response.headers["content-type"] == "audio/wav"
    audio = response.content
    samples = decode_audio(audio, "wav")  # FFmpeg reads the streamed (unsized) header
    assert len(samples) / SAMPLE_RATE > 1.5
    with wave.open(io.BytesIO(audio)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
    transcript = await shared_whisper().transcribe(audio, "wav")
    assert word_error_rate(text, transcript.text) < 0.3


async def test_speech_streams_mp3_and_pcm(client: openai.AsyncOpenAI) -> None:
    text = "First sentence here. And a second one."
    async with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=text, response_format="mp3"
    ) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        mp3 = b"".join([chunk async for chunk in response.iter_bytes()])
    assert len(decode_audio(mp3, "mp3")) / SAMPLE_RATE > 1.5
    pcm = await client.audio.speech.create(
        model="tts-1", voice="alloy", input=text, response_format="pcm"
    )
    assert len(pcm.content) / 2 / 22_050 > 1.5


async def test_speech_bad_input_is_400(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        await client.audio.speech.create(model="tts-1", voice="alloy", input="  ")
    with pytest.raises(openai.BadRequestError):
        await client.audio.speech.create(model="tts-1", voice="alloy", input="x" * 5000)
    with pytest.raises(openai.BadRequestError):
        await client.audio.speech.create(
            model="tts-1", voice="alloy", input="Hi.", response_format="flac"
        )
    # Only a symbol the voice has no sound for (found by schemathesis): a 400, not a 500.
    with pytest.raises(openai.BadRequestError) as refused:
        await client.audio.speech.create(model="tts-1", voice="alloy", input="\U0008d303")
    assert "nothing the voice can speak" in str(refused.value)


async def test_audio_quota_is_charged_and_enforced(base_url: str, audio_quotas: Quotas) -> None:
    """Spoken seconds in and out count against the caller's daily audio quota; past it, 429."""
    client = openai.AsyncOpenAI(
        base_url=base_url, api_key=mint_token(SECRET, "quota-user"), max_retries=0, timeout=60
    )
    await audio_quotas.record_audio("quota-user", AUDIO_S_PER_DAY - 5)  # 5 s left today
    take = encode_audio(speak(SENTENCE) * 3, SAMPLE_RATE, "webm")  # about 10 s of speech
    await client.audio.transcriptions.create(model="whisper-1", file=("a.webm", take))
    with pytest.raises(openai.RateLimitError) as info:
        await client.audio.transcriptions.create(model="whisper-1", file=("b.webm", take))
    assert info.value.response.headers["retry-after"]
    with pytest.raises(openai.RateLimitError):
        await client.audio.speech.create(model="tts-1", voice="alloy", input="Hello there.")
