"""Voice glue for the turn engine: speech out of a streaming reply, audio in of an utterance.

`SpeechOut` cuts the reply into sentences as deltas arrive and synthesizes them one after the
other while the model keeps writing; `AudioIn` buffers the binary frames of one utterance.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Literal, Self

from providers.audio import AudioTooLong
from providers.errors import ProviderError
from providers.tts import AudioChunk, TextToSpeech
from streams.events import ErrorEvent, ResponseAudio, ServerEvent
from streams.sentences import SentenceChunker

__all__ = ["AudioIn", "Emit", "SpeechOut", "first_clause", "speakable"]

Emit = Callable[[ServerEvent], Awaitable[None]]

_MARKUP = re.compile(r"[*_#`~>|]+|\[([^\]]*)\]\([^)]*\)")
_CLAUSE_END = re.compile(r"[,;:]\s+")
FIRST_CLAUSE_CHARS = (20, 120)  # a first clause shorter or longer is not cut off


def first_clause(sentence: str) -> tuple[str, str]:
    """(the sentence's first clause, the rest) when a comma, semicolon or colon ends one of a
    useful length; else (sentence, "")."""
    low, high = FIRST_CLAUSE_CHARS
    for mark in _CLAUSE_END.finditer(sentence):
        if mark.start() < low:
            continue
        rest = sentence[mark.end() :]
        if mark.start() > high or len(rest) < low // 2:
            break
        return sentence[: mark.start() + 1], rest
    return sentence, ""


def speakable(sentence: str) -> str:
    """The sentence without markdown marks that a voice would read out; "" if nothing to say."""
    text = _MARKUP.sub(lambda m: m.group(1) or " ", sentence)
    text = " ".join(text.split())
    return text if any(ch.isalnum() for ch in text) else ""


class SpeechOut:
    """Speaks one turn's reply: `feed` deltas, then `finish()`, or `cancel()` on barge-in.

    Use as `async with SpeechOut(tts, turn_id, emit) as out:`; the synthesis loop is a task of
    a TaskGroup that lives exactly as long as the block. It emits `ResponseAudio` events in
    order, seq 0, 1, 2, ... Leaving the block normally waits for the audio; leaving it with an
    exception cancels it. If speech fails (every provider down) one `ErrorEvent`
    ("tts_unavailable") is emitted, the rest of the reply stays silent and the turn goes on.

    Queue: at most `queue_size` sentences wait; when full, a new sentence is merged into the
    last waiting one, so nothing is lost and `feed` never blocks.
    """

    def __init__(
        self,
        tts: TextToSpeech,
        turn_id: str,
        emit: Emit,
        *,
        queue_size: int = 16,
        max_sentence_chars: int = 240,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.tts = tts
        self.turn_id = turn_id
        self._emit = emit
        self._queue_size = queue_size
        self._chunker = SentenceChunker(max_sentence_chars)
        self._clock = clock
        self._started_at = clock()
        self._pending: deque[str] = deque()
        self._wake = asyncio.Event()
        self._closed = False  # no more text will come
        self._stopped = False  # cancelled or failed: drop everything
        self._tg: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None
        self.seq = 0
        self.audio_seconds = 0.0
        self.first_audio_ms: float | None = None
        self.sentences = 0
        self.dropped = 0
        self.error: ProviderError | None = None

    async def __aenter__(self) -> Self:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._task = self._tg.create_task(self._run(), name=f"speech-{self.turn_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None, "SpeechOut used without `async with`"
        try:
            if exc is None:
                await self.finish()
            else:
                await self.cancel()
        except asyncio.CancelledError as cancelled:
            # Cancelled while waiting (from outside, or by the group when the loop failed):
            # the group must still be exited so it can sort out which one it was.
            if self._task is not None:
                self._task.cancel()
            exc_type, exc, tb = type(cancelled), cancelled, cancelled.__traceback__
        try:
            await self._tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:  # the caller sees the failure itself, not a group
                raise group.exceptions[0] from None
            raise

    def feed(self, delta: str) -> None:
        """Add a reply delta; completed sentences are queued for synthesis. Never blocks."""
        if self._closed or self._stopped:
            return
        for sentence in self._chunker.feed(delta):
            self._enqueue(sentence)

    async def finish(self) -> float | None:
        """Speak the rest and wait until all audio is emitted; returns `first_audio_ms`."""
        if not self._closed:
            rest = self._chunker.flush()
            if rest and not self._stopped:
                self._enqueue(rest)
            self._closed = True
            self._wake.set()
        await self._join()
        return self.first_audio_ms

    async def cancel(self) -> None:
        """Barge-in: drop waiting sentences and stop synthesis now; nothing is emitted after."""
        self._stopped = self._closed = True
        self.dropped += len(self._pending)
        self._pending.clear()
        self._chunker.flush()
        if self._task is not None:
            self._task.cancel()
        await self._join()

    async def _join(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            await asyncio.wait([self._task])

    def _enqueue(self, sentence: str) -> None:
        text = speakable(sentence)
        if not text:
            return
        if self.sentences == 0 and not self._pending:
            # The reply's first audio waits for its first piece: a clause is quicker to speak.
            head, tail = first_clause(text)
            if tail:
                self._pending.append(head)
                text = tail
        if len(self._pending) >= self._queue_size:
            self._pending[-1] = f"{self._pending[-1]} {text}"
        else:
            self._pending.append(text)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            while not self._pending and not self._closed:
                self._wake.clear()
                await self._wake.wait()
            if not self._pending:
                return
            sentence = self._pending.popleft()
            self.sentences += 1
            try:
                async with contextlib.aclosing(self.tts.synthesize(sentence)) as chunks:
                    async for chunk in chunks:
                        await self._send(chunk)
            except ProviderError as exc:
                await self._fail(exc)
                return

    async def _send(self, chunk: AudioChunk) -> None:
        if self.first_audio_ms is None:
            self.first_audio_ms = (self._clock() - self._started_at) * 1000
        self.audio_seconds += chunk.duration_s()
        audio = base64.b64encode(chunk.audio).decode("ascii")
        event = ResponseAudio(self.turn_id, self.seq, chunk.format, chunk.sample_rate, audio)
        self.seq += 1
        await self._emit(event)

    async def _fail(self, exc: ProviderError) -> None:
        self.error = exc
        self._stopped = True
        self.dropped += len(self._pending)
        self._pending.clear()
        # The provider's message is the gateway's own (`edge-tts failed`), never its cause's.
        await self._emit(
            ErrorEvent("tts_unavailable", f"speech output failed: {exc.message}", True)
        )


InputFormat = Literal["pcm16", "webm"]


class AudioIn:
    """The binary frames of the current utterance, up to a byte limit from `max_utterance_s`.

    pcm16 is 32,000 bytes a second exactly; webm/opus varies, so its cap is a generous
    `webm_bytes_per_s` (64 kB/s is 512 kbit/s, above Opus's maximum) plus room for headers; the
    decoder checks the real duration later. The first frame past the limit raises
    `AudioTooLong`; the rest of that utterance is then dropped silently (`overflowed` is set)
    until `take()` or `clear()`, and `take()` returns b"" for it.
    """

    PCM16_BYTES_PER_S = 32_000

    def __init__(
        self,
        format: InputFormat = "pcm16",
        *,
        max_utterance_s: float = 60.0,
        webm_bytes_per_s: int = 64_000,
    ) -> None:
        self.max_utterance_s = max_utterance_s
        self.webm_bytes_per_s = webm_bytes_per_s
        self.format: InputFormat = format
        self._frames: list[bytes] = []
        self.nbytes = 0
        self.overflowed = False

    @property
    def limit_bytes(self) -> int:
        if self.format == "pcm16":
            return int(self.max_utterance_s * self.PCM16_BYTES_PER_S)
        return int(self.max_utterance_s * self.webm_bytes_per_s) + 64 * 1024

    @property
    def duration_ms(self) -> int | None:
        """Milliseconds buffered (pcm16 only; None for webm, known after decoding)."""
        return self.nbytes * 1000 // self.PCM16_BYTES_PER_S if self.format == "pcm16" else None

    def set_format(self, fmt: InputFormat) -> None:
        """Switch the input format; drops any partial utterance."""
        self.format = fmt
        self.clear()

    def append(self, frame: bytes) -> None:
        """Add a frame; raises `AudioTooLong` on the first frame past the limit."""
        if self.overflowed:
            return
        if self.nbytes + len(frame) > self.limit_bytes:
            self.clear()
            self.overflowed = True
            raise AudioTooLong(
                f"the utterance is over the {self.max_utterance_s:g} s limit "
                f"({self.limit_bytes} bytes of {self.format}); commit sooner"
            )
        self._frames.append(frame)
        self.nbytes += len(frame)

    def take(self) -> bytes:
        """The utterance so far; the buffer starts empty again."""
        audio = b"".join(self._frames)
        self.clear()
        return audio

    def clear(self) -> None:
        self._frames.clear()
        self.nbytes = 0
        self.overflowed = False
