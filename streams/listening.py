"""Hands-free input: server VAD over a connection's pcm16 stream, partial transcripts while the
user speaks, and an automatic commit once they stop.

`Listener.feed` takes the binary frames (never blocks); `Listener.run`, a task its connection
owns, scores them with the VAD, emits `input_audio.speech_started` / `speech_stopped`, sends
`transcript.delta` from windows of the audio so far (at most one transcription in flight per
session; none while the pool is busy) and hands each finished utterance to `on_utterance`. When
the speech pauses, the utterance so far is transcribed ahead of the stop: if the pause turns out
to be the end, the turn reuses that work and only waits for what is left of it. Speech again
within `RESUME_MS` of a stop, before the turn that stop started has replied, continues the same
utterance: that turn is cancelled (barge-in) and its audio goes in front of the new one's, so
nothing said before the pause is lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import numpy as np

from providers.audio import SAMPLE_RATE
from providers.errors import ProviderError
from providers.stt import SpeechToText, Transcript
from providers.vad import WINDOW, SileroVAD, VadBusy, VadState
from streams.events import (
    ErrorEvent,
    InputAudioSpeechStarted,
    InputAudioSpeechStopped,
    ServerEvent,
    TranscriptDelta,
)
from streams.vad import SpeechGate

__all__ = ["Listener", "Utterance"]

PREROLL_MS = 300  # audio kept before the detected start: the VAD needs ~100 ms to be sure
TAIL_MS = 200  # audio kept after the last speech window
AHEAD_MS = 160  # a pause this long starts transcribing the utterance so far
RESUME_MS = 1000  # speech again this soon after a stop, its turn cut short: one utterance
MIN_PARTIAL_MS = 400  # shorter audio is not worth a partial transcript


def _samples(ms: float) -> int:
    return int(ms * SAMPLE_RATE / 1000)


def _ms(samples: int) -> int:
    return samples * 1000 // SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class Utterance:
    """One utterance the VAD ended: its audio, and the transcription already under way that
    covers it, if any (`prior`, owned by the listener: waited on, never cancelled here)."""

    turn_id: str
    audio: bytes  # pcm16
    stt: SpeechToText
    prior: asyncio.Task[Transcript | None] | None
    stopped_at: float
    clock: Callable[[], float] = time.perf_counter

    async def transcribe(self) -> Transcript:
        """The transcript: the prior's (stt_ms = the wait after the stop), else a fresh one."""
        if self.prior is not None:
            await asyncio.wait([self.prior])
            heard = None if self.prior.cancelled() else self.prior.result()
            if heard is not None:
                waited = round((self.clock() - self.stopped_at) * 1000)
                return replace(heard, audio_ms=_ms(len(self.audio) // 2), stt_ms=waited)
        return await self.stt.transcribe(self.audio, "pcm16")


class _Samples:
    """pcm16 samples from absolute sample `start`, appended to in amortized O(1) (an utterance
    grows one frame at a time: copying it whole for each frame would be quadratic) and cut
    from the front when older audio is no longer needed."""

    __slots__ = ("_data", "_len", "start")

    def __init__(self) -> None:
        self._data = np.zeros(SAMPLE_RATE, dtype="<i2")
        self._len = 0
        self.start = 0

    @property
    def end(self) -> int:
        return self.start + self._len

    def append(self, samples: np.ndarray) -> None:
        need = self._len + len(samples)
        if need > len(self._data):
            grown = np.zeros(max(need, 2 * len(self._data)), dtype="<i2")
            grown[: self._len] = self._data[: self._len]
            self._data = grown
        self._data[self._len : need] = samples
        self._len = need

    def drop_before(self, at: int) -> None:
        """Forget the samples before absolute sample `at`."""
        cut = min(max(at - self.start, 0), self._len)
        if not cut:
            return
        self._len -= cut
        self.start += cut
        if len(self._data) > 4 * max(self._len, SAMPLE_RATE):  # after a long utterance
            self._data = self._data[cut : cut + max(2 * self._len, SAMPLE_RATE)].copy()
        else:
            self._data[: self._len] = self._data[cut : cut + self._len]

    def slice(self, start: int, end: int) -> np.ndarray:
        """A copy of the samples from `start` to `end` (absolute)."""
        return self._data[start - self.start : end - self.start].copy()


class Listener:
    """Server VAD for one connection (see the module docstring).

    Backlog: at most `backlog_s` of audio waits for the VAD (received, not yet scored: a client
    may send faster than real time, a recording at once); a frame past that is dropped with one
    `vad_overloaded` error per episode (the pool is far behind: the gateway is overloaded).
    The utterance (with any it continues) is capped at `max_utterance_s`: past it the turn is
    committed as it is, with an `utterance_capped` error saying so; speech that goes on is a
    new utterance.
    """

    def __init__(
        self,
        vad: SileroVAD,
        stt: SpeechToText,
        gate: SpeechGate,
        *,
        emit: Callable[[ServerEvent], None],
        on_started: Callable[[str], bool],
        on_utterance: Callable[[Utterance], Awaitable[None]],
        new_turn_id: Callable[[], str],
        max_utterance_s: float = 60.0,
        partial_every_ms: int = 1000,
        backlog_s: float = 30.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._vad, self._stt, self.gate = vad, stt, gate
        self._emit, self._on_started, self._on_utterance = emit, on_started, on_utterance
        self._new_turn_id, self._clock = new_turn_id, clock
        self._max_samples = _samples(max_utterance_s * 1000)
        self._partial_every = _samples(partial_every_ms)
        self._backlog_bytes = int(backlog_s * SAMPLE_RATE * 2)
        self._inbox: list[bytes] = []
        self._inbox_bytes = 0
        self._overloaded = False
        self._odd = b""  # the last byte of an odd-sized frame
        self._wake = asyncio.Event()
        # pcm16 kept as samples (never converted on the loop): what is not scored yet, the
        # utterance being spoken, and before it the pre-roll
        self._buf = _Samples()
        self._scored = 0  # absolute sample up to which every window is scored
        self._vad_state = VadState()
        self.turn_id: str | None = None  # of the utterance being spoken
        self._utt_start = 0
        self._partial: asyncio.Task[Transcript | None] | None = None
        self._partial_end = 0  # absolute sample the latest partial transcribes up to
        self._tg: asyncio.TaskGroup | None = None
        self.failed = False  # the VAD could not run: frames are dropped
        self._prefix = b""  # pcm16 of an utterance this one continues
        self._last: tuple[int, bytes] | None = None  # the latest stop: (sample, its audio)

    def feed(self, frame: bytes) -> None:
        """Take a binary frame of pcm16; never blocks."""
        if self.failed:
            return
        unscored = 2 * (self._buf.end - self._scored)  # taken from the inbox, not yet scored
        if unscored + self._inbox_bytes + len(frame) > self._backlog_bytes:
            if not self._overloaded:
                self._overloaded = True
                message = "voice detection is behind; audio was dropped"
                self._emit(ErrorEvent("vad_overloaded", message, retryable=True))
            self._wake.set()  # the VAD is tried again on each frame, kept or not
            return
        self._inbox.append(frame)
        self._inbox_bytes += len(frame)
        self._wake.set()

    async def run(self) -> None:
        """Listen until cancelled (the connection ends, or turns server VAD off)."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            while not self.failed:
                await self._wake.wait()
                self._wake.clear()
                self._take_inbox()
                await self._score()

    def _take_inbox(self) -> None:
        data = self._odd + b"".join(self._inbox)
        self._inbox.clear()
        self._inbox_bytes = 0
        data, self._odd = (data[:-1], data[-1:]) if len(data) % 2 else (data, b"")
        if data:
            self._buf.append(np.frombuffer(data, dtype="<i2"))

    async def _score(self) -> None:
        end = self._buf.end
        whole = end - end % WINDOW
        if whole <= self._scored:
            return
        try:
            scores = await self._vad.scores(self._buf.slice(self._scored, whole), self._vad_state)
        except VadBusy:
            return  # the audio stays in the buffer: scored on the next frame (bounded by `feed`)
        except ProviderError as exc:  # the model cannot run: stop listening, say so once
            self.failed = True
            self._emit(ErrorEvent(exc.code, exc.message, retryable=exc.transient))
            return
        for i, probability in enumerate(scores):
            await self._step(float(probability), self._scored + (i + 1) * WINDOW)
        self._scored = whole
        self._overloaded = False  # the VAD caught up: a later overload is a new episode
        if self.gate.speaking:
            self._maybe_partial(whole)
        else:
            self._buf.drop_before(whole - _samples(PREROLL_MS))

    async def _step(self, probability: float, at: int) -> None:
        edge = self.gate.step(probability)
        if edge == "started":
            self._start(at - self.gate.start_windows * WINDOW)
        elif edge == "stopped":
            await self._stop(at - self.gate.end_windows * WINDOW, at)
        elif self.gate.speaking and self._utterance_samples(at) >= self._max_samples:
            self.gate.reset()
            limit = _ms(self._max_samples) / 1000
            message = f"the utterance reached the {limit:g} s limit and was committed as it is"
            self._emit(ErrorEvent("utterance_capped", message))
            await self._stop(at, at)
            self._last = None  # speech that goes on is a new utterance, not this one again

    def _utterance_samples(self, at: int) -> int:
        """The utterance's length up to `at`, with the one it continues (`_prefix`)."""
        return len(self._prefix) // 2 + at - self._utt_start

    def _start(self, at: int) -> None:
        self.turn_id = turn_id = self._new_turn_id()
        self._utt_start = max(self._buf.start, at - _samples(PREROLL_MS))
        self._partial, self._partial_end = None, self._utt_start
        self._emit(InputAudioSpeechStarted(_ms(at), turn_id))
        cut_short = self._on_started(turn_id)  # True: a turn was cancelled before it replied
        last, self._last = self._last, None
        resumed = last is not None and at - last[0] <= _samples(RESUME_MS)
        self._prefix = last[1] if cut_short and resumed and last is not None else b""

    async def _stop(self, speech_end: int, now: int) -> None:
        assert self.turn_id is not None
        turn_id, self.turn_id = self.turn_id, None
        end = min(speech_end + _samples(TAIL_MS), now)
        audio = self._prefix + self._buf.slice(self._utt_start, end).tobytes()
        self._last, self._prefix = (now, audio), b""
        # A transcription that reaches into the pause heard all the speech: the turn reuses it.
        covers = self._partial_end >= min(speech_end + _samples(AHEAD_MS), now)
        prior = self._partial if covers else None
        self._partial = None
        self._emit(InputAudioSpeechStopped(_ms(speech_end), turn_id))
        stopped = Utterance(turn_id, audio, self._stt, prior, self._clock(), self._clock)
        await self._on_utterance(stopped)

    def _maybe_partial(self, now: int) -> None:
        if self._partial is not None and not self._partial.done():
            return  # at most one in flight per session
        if self._stt.busy:
            return  # partials never make an utterance's own transcription wait
        paused = self.gate.silent_ms >= AHEAD_MS
        if paused:
            speech_end = now - self.gate.run_windows * WINDOW
            target = min(speech_end + _samples(TAIL_MS), now)
            if self._partial_end >= target:
                return
        elif now - self._partial_end >= self._partial_every:
            target = now
        else:
            return
        if target - self._utt_start < _samples(MIN_PARTIAL_MS):
            return
        assert self._tg is not None and self.turn_id is not None
        audio = self._prefix + self._buf.slice(self._utt_start, target).tobytes()
        self._partial_end = target
        self._partial = self._tg.create_task(self._transcribe_partial(self.turn_id, audio))

    async def _transcribe_partial(self, turn_id: str, audio: bytes) -> Transcript | None:
        try:
            heard = await self._stt.transcribe(audio, "pcm16")
        except ProviderError:  # busy or failing: no partial; the final transcription decides
            return None
        if heard.text and self.turn_id == turn_id:  # after the stop, `transcript` follows
            self._emit(TranscriptDelta(turn_id, heard.text))
        return heard
