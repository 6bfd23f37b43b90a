"""Audio conversion for the speech providers: decode to 16 kHz mono float32, encode for tests.

Everything here is synchronous and CPU bound: call it from a worker pool, never on the event
loop. PyAV (FFmpeg) decodes the container formats; raw pcm16 needs no decoder.
"""

from __future__ import annotations

import io
import struct
import wave
from typing import Literal

import av
import numpy as np
import numpy.typing as npt

from providers.errors import BadRequest

__all__ = [
    "CONTAINER_FORMATS",
    "SAMPLE_RATE",
    "AudioDecodeError",
    "AudioTooLong",
    "Samples",
    "decode_audio",
    "duration_ms",
    "encode_audio",
    "float_to_pcm16",
    "mp3_duration_s",
    "pcm16_to_float",
    "resample_pcm16",
    "wav_bytes",
    "wav_header",
    "wav_to_pcm16",
]

SAMPLE_RATE = 16_000
"""The rate Whisper expects, and the rate of `pcm16` input on the wire."""

CONTAINER_FORMATS = frozenset({"webm", "ogg", "opus", "wav", "mp3", "mp4", "m4a", "flac", "mpeg"})

Samples = npt.NDArray[np.float32]
EncodeFormat = Literal["webm", "ogg", "wav", "mp3"]


class AudioDecodeError(BadRequest):
    """The audio bytes are not decodable in the declared format."""

    code = "audio_decode_error"


class AudioTooLong(BadRequest):
    """The utterance is longer than the configured limit."""

    code = "audio_too_long"


def pcm16_to_float(data: bytes) -> Samples:
    """16-bit little-endian mono samples -> float32 in [-1, 1)."""
    if len(data) % 2:
        raise AudioDecodeError(f"pcm16 audio has an odd number of bytes ({len(data)})")
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0).astype(np.float32)


def float_to_pcm16(samples: Samples) -> bytes:
    """float32 in [-1, 1] -> 16-bit little-endian bytes (clipped)."""
    clipped = np.clip(samples, -1.0, 32767.0 / 32768.0)
    return (clipped * 32768.0).astype("<i2").tobytes()


def duration_ms(samples: Samples, sample_rate: int = SAMPLE_RATE) -> int:
    return round(len(samples) * 1000 / sample_rate)


def decode_audio(
    data: bytes, fmt: str, *, max_s: float | None = None, rate: int = SAMPLE_RATE
) -> Samples:
    """Decode `data` (pcm16 at 16 kHz, or a container such as webm/opus) to mono float32 at
    `rate` (16 kHz by default).

    Raises `AudioDecodeError` for bytes that do not decode, `AudioTooLong` past `max_s`.
    """
    if not data:
        raise AudioDecodeError("the audio is empty")
    if fmt == "pcm16":
        samples = pcm16_to_float(data)
    elif fmt in CONTAINER_FORMATS or fmt == "auto":
        samples = _decode_container(data, fmt, max_s, rate)
    else:
        raise AudioDecodeError(f"unsupported audio format {fmt!r}")
    if max_s is not None and len(samples) > max_s * rate:
        raise AudioTooLong(f"the audio is longer than the {max_s:g} s limit")
    return samples


def _decode_container(data: bytes, fmt: str, max_s: float | None, rate: int) -> Samples:
    limit = None if max_s is None else int((max_s + 1) * rate)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    parts: list[Samples] = []
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"the {fmt} data holds no audio stream")
            for frame in container.decode(container.streams.audio[0]):
                total += _collect(resampler.resample(frame), parts)
                if limit is not None and total > limit:
                    raise AudioTooLong(f"the audio is longer than the {max_s:g} s limit")
            _collect(resampler.resample(None), parts)
    except (av.FFmpegError, ValueError, EOFError) as exc:
        # FFmpeg's own words (errno, codec names) stay in the chained cause, for the log.
        raise AudioDecodeError(f"the audio could not be decoded as {fmt}") from exc
    if not parts:
        raise AudioDecodeError(f"the {fmt} data decoded to no audio samples")
    return np.concatenate(parts).astype(np.float32, copy=False)


def _collect(frames: list[av.AudioFrame], parts: list[Samples]) -> int:
    count = 0
    for frame in frames:
        array = frame.to_ndarray().reshape(-1).astype(np.float32, copy=False)
        parts.append(array)
        count += len(array)
    return count


def resample_pcm16(data: bytes, from_rate: int, to_rate: int) -> bytes:
    """Resample mono pcm16 with FFmpeg's resampler."""
    if from_rate == to_rate:
        return data
    frame = av.AudioFrame.from_ndarray(
        np.frombuffer(data, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = from_rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=to_rate)
    out = resampler.resample(frame) + resampler.resample(None)
    return b"".join(f.to_ndarray().astype("<i2").tobytes() for f in out)


def wav_header(sample_rate: int, data_bytes: int = 0xFFFFFFFF - 36) -> bytes:
    """A 44-byte RIFF header for mono pcm16; the default size marks a stream of unknown length."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", min(36 + data_bytes, 0xFFFFFFFF), b"WAVE",
        b"fmt ", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16,
        b"data", data_bytes,
    )  # fmt: skip


def wav_bytes(pcm16: bytes, sample_rate: int) -> bytes:
    """A complete mono pcm16 WAV file."""
    return wav_header(sample_rate, len(pcm16)) + pcm16


def wav_to_pcm16(data: bytes) -> tuple[bytes, int]:
    """The samples and sample rate of a mono pcm16 WAV file."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                raise AudioDecodeError("only mono 16-bit WAV is supported here")
            return wav.readframes(wav.getnframes()), wav.getframerate()
    except (wave.Error, EOFError) as exc:
        raise AudioDecodeError("not a WAV file") from exc


_MP3_KBPS = {
    # (MPEG-1 layer III, MPEG-2/2.5 layer III) by bitrate index
    1: (32, 8), 2: (40, 16), 3: (48, 24), 4: (56, 32), 5: (64, 40), 6: (80, 48), 7: (96, 56),
    8: (112, 64), 9: (128, 80), 10: (160, 96), 11: (192, 112), 12: (224, 128), 13: (256, 144),
    14: (320, 160),
}  # fmt: skip


def mp3_duration_s(data: bytes) -> float:
    """Estimated duration of constant-bitrate MP3 bytes, from the first frame header."""
    start = data.find(b"\xff")
    while 0 <= start < len(data) - 3:
        b1, b2 = data[start + 1], data[start + 2]
        if b1 & 0xE0 == 0xE0 and (b1 >> 1) & 0x3 == 1:  # frame sync, layer III
            rates = _MP3_KBPS.get(b2 >> 4)
            tag = data[start + 4 : start + 64]
            if rates is not None and b"Xing" not in tag and b"Info" not in tag:
                kbps = rates[0] if (b1 >> 3) & 0x3 == 3 else rates[1]
                return len(data[start:]) * 8 / (kbps * 1000)
        start = data.find(b"\xff", start + 1)
    return 0.0


def encode_audio(pcm16: bytes, sample_rate: int, fmt: EncodeFormat) -> bytes:
    """Encode mono pcm16 into a container (webm/ogg carry Opus, as a browser records).

    MP3 comes without ID3 tag or Xing header, so the files of several calls concatenate into
    one playable stream.
    """
    if fmt == "wav":
        return wav_bytes(pcm16, sample_rate)
    codec, rate = ("mp3", sample_rate) if fmt == "mp3" else ("libopus", 48_000)
    samples = np.frombuffer(pcm16, dtype="<i2").reshape(1, -1)
    source = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
    source.sample_rate = sample_rate
    buffer = io.BytesIO()
    options = {"id3v2_version": "0", "write_xing": "0"} if fmt == "mp3" else {}
    with av.open(buffer, mode="w", format=fmt, options=options) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        formats = stream.codec_context.codec.audio_formats
        fmt_name = formats[0].name if formats else "s16"
        resampler = av.AudioResampler(format=fmt_name, layout="mono", rate=rate)
        for frame in resampler.resample(source) + resampler.resample(None):
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()
