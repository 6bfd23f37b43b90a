"""Telemetry around the speech providers: a span per transcription and per synthesized
sentence (duration, audio seconds, model; never the text or the audio), and the `/metrics`
histograms once observability hands its meters over."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable

from opentelemetry import trace

from providers.stt import SpeechToText, Transcript
from providers.tts import AudioChunk, FallbackTTS, TextToSpeech
from providers.vad import SileroVAD

__all__ = ["ObservedSTT", "ObservedTTS", "SpeechMeters"]

_tracer = trace.get_tracer("coach.speech")


class SpeechMeters:
    """Where speech timings go: `GatewayMetrics.observe_stt` / `observe_tts` once the app's
    observability is open (`watch`), nowhere before."""

    def __init__(self) -> None:
        self.stt: Callable[[float], None] | None = None
        self.tts: Callable[[float], None] | None = None

    def watch(self, stt: Callable[[float], None], tts: Callable[[float], None]) -> None:
        self.stt, self.tts = stt, tts


class ObservedSTT(SpeechToText):
    """A speech-to-text provider behind a span and the STT histogram; it also carries the
    gateway's voice activity detector (`vad`), which shares its fate (the voice extra)."""

    def __init__(self, inner: SpeechToText, vad: SileroVAD | None, meters: SpeechMeters) -> None:
        self.inner, self.vad, self.meters = inner, vad, meters
        self.name = inner.name
        self.model = str(getattr(inner, "model_ref", None) or "bundled tiny.en")

    async def transcribe(self, audio: bytes, format: str) -> Transcript:
        with _tracer.start_as_current_span("stt transcribe") as span:
            span.set_attribute("coach.speech.model", self.model)
            span.set_attribute("coach.speech.format", format)
            span.set_attribute("coach.speech.beam_size", getattr(self.inner, "beam_size", 0))
            started = time.perf_counter()
            heard = await self.inner.transcribe(audio, format)
            span.set_attribute("coach.speech.audio_s", heard.audio_ms / 1000)
        if self.meters.stt is not None:
            self.meters.stt(time.perf_counter() - started)
        return heard

    @property
    def busy(self) -> bool:
        return self.inner.busy

    async def aclose(self) -> None:
        await self.inner.aclose()


class ObservedTTS(TextToSpeech):
    """A text-to-speech chain behind a span per sentence and the TTS (first audio) histogram.

    The span is not made current: the generator is resumed by its consumer, across awaits of
    other work, so it must not leave a context attached between yields."""

    def __init__(self, inner: FallbackTTS, meters: SpeechMeters) -> None:
        self.inner, self.meters = inner, meters
        self.name = inner.name

    async def synthesize(self, text: str) -> AsyncGenerator[AudioChunk, None]:
        span = _tracer.start_span("tts synthesize", attributes={"coach.speech.chars": len(text)})
        started, audio_s = time.perf_counter(), 0.0
        try:
            async for chunk in self.inner.synthesize(text):
                if audio_s == 0.0 and self.meters.tts is not None:
                    self.meters.tts(time.perf_counter() - started)
                audio_s += chunk.duration_s()
                yield chunk
        finally:
            span.set_attribute("coach.speech.audio_s", audio_s)
            span.set_attribute("coach.speech.model", str(self.inner.last_provider))
            span.end()

    async def aclose(self) -> None:
        await self.inner.aclose()
