"""Decoding and encoding of audio (real FFmpeg through PyAV, no mocks)."""

from __future__ import annotations

import numpy as np
import pytest

from providers.audio import (
    SAMPLE_RATE,
    AudioDecodeError,
    AudioTooLong,
    decode_audio,
    duration_ms,
    encode_audio,
    float_to_pcm16,
    mp3_duration_s,
    pcm16_to_float,
    resample_pcm16,
    wav_bytes,
    wav_to_pcm16,
)
from providers.errors import PermanentError
from tests.speech import speak


def tone(seconds: float, rate: int = SAMPLE_RATE, hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return float_to_pcm16((0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32))


def test_pcm16_round_trip() -> None:
    pcm = tone(0.5)
    samples = pcm16_to_float(pcm)
    assert samples.dtype == np.float32
    assert len(samples) == 8000
    assert float(np.abs(samples).max()) == pytest.approx(0.4, abs=0.01)
    assert float_to_pcm16(samples) == pcm


def test_pcm16_decode_and_duration() -> None:
    samples = decode_audio(tone(1.25), "pcm16")
    assert duration_ms(samples) == 1250


@pytest.mark.parametrize("fmt", ["webm", "ogg", "wav", "mp3"])
def test_containers_decode_to_16k_mono(fmt: str) -> None:
    data = encode_audio(tone(2.0, rate=22_050), 22_050, fmt)  # type: ignore[arg-type]
    samples = decode_audio(data, fmt)
    assert abs(duration_ms(samples) - 2000) <= 80  # codec padding
    assert 0.3 < float(np.abs(samples).max()) < 0.5


def test_webm_is_opus_as_a_browser_records() -> None:
    import io

    import av

    data = encode_audio(speak("Hello there."), SAMPLE_RATE, "webm")
    with av.open(io.BytesIO(data)) as container:
        assert container.format.name.startswith("matroska")
        assert container.streams.audio[0].codec_context.name == "opus"
    assert decode_audio(data, "auto").size > 0


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (b"\x1aE\xdf\xa3 definitely not webm " * 50, "webm", "could not be decoded"),
        (b"RIFF\x00\x00", "wav", "could not be decoded"),
        (bytes(range(256)) * 40, "mp3", "decode"),
        (b"", "webm", "empty"),
        (b"\x01\x02\x03", "pcm16", "odd number of bytes"),
        (b"\x00\x00", "flac-ish", "unsupported audio format"),
    ],
)
def test_garbage_is_a_permanent_decode_error(data: bytes, fmt: str, message: str) -> None:
    with pytest.raises(AudioDecodeError, match=message) as info:
        decode_audio(data, fmt)
    assert isinstance(info.value, PermanentError)
    assert not info.value.transient


@pytest.mark.parametrize("fmt", ["pcm16", "webm"])
def test_too_long_is_refused(fmt: str) -> None:
    pcm = tone(3.0)
    data = pcm if fmt == "pcm16" else encode_audio(pcm, SAMPLE_RATE, "webm")
    with pytest.raises(AudioTooLong, match="2 s limit"):
        decode_audio(data, fmt, max_s=2.0)
    assert decode_audio(data, fmt, max_s=3.5).size > 0


def test_resample_keeps_duration() -> None:
    out = resample_pcm16(tone(1.0, rate=22_050), 22_050, 16_000)
    assert abs(len(out) // 2 - 16_000) < 50
    assert resample_pcm16(b"\x01\x00", 16_000, 16_000) == b"\x01\x00"


def test_wav_helpers() -> None:
    pcm = tone(0.5, rate=22_050)
    assert wav_to_pcm16(wav_bytes(pcm, 22_050)) == (pcm, 22_050)
    with pytest.raises(AudioDecodeError):
        wav_to_pcm16(b"not a wav file at all")


def test_mp3_duration_estimate() -> None:
    mp3 = encode_audio(tone(3.0, rate=24_000), 24_000, "mp3")
    assert mp3_duration_s(mp3) == pytest.approx(3.0, abs=0.15)
    assert mp3_duration_s(b"no frames here") == 0.0


def test_mp3_files_concatenate() -> None:
    one = encode_audio(tone(1.0, rate=24_000), 24_000, "mp3")
    samples = decode_audio(one + one, "mp3", rate=24_000)
    assert abs(len(samples) / 24_000 - 2.0) < 0.15
