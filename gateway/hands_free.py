"""A realtime connection's hands-free mode: `turn_detection: server_vad` in `session.update`.

While it is on, the connection's binary frames go to a `streams.listening.Listener` (a task of
the connection's TaskGroup) instead of the push-to-talk buffer: speech that starts while a
reply streams cancels the reply (barge-in), and each utterance the VAD ends becomes a turn, as
an `input_audio.commit` would, whose transcription reuses what the listener already heard.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.ids import new_id
from gateway.settings import VoiceSettings
from providers.stt import SpeechToText, Transcript
from streams.events import ErrorEvent, ServerEvent
from streams.listening import Listener, Utterance
from streams.session import SessionConfig, TurnDetection
from streams.vad import SpeechGate

__all__ = ["HandsFree"]

_KEPT_UTTERANCES = 4  # utterances whose turn has not asked for its transcript yet


class HandsFree:
    """The server VAD of one connection; off until `configure` sees a `turn_detection`."""

    def __init__(
        self,
        stt: SpeechToText | None,
        voice: VoiceSettings,
        *,
        emit: Callable[[ServerEvent], None],
        on_started: Callable[[str], bool],
        on_utterance: Callable[[Utterance], Awaitable[None]],
    ) -> None:
        self._stt, self._voice = stt, voice
        self._emit, self._on_started, self._on_utterance = emit, on_started, on_utterance
        self.detection: TurnDetection | None = None
        self._listener: Listener | None = None
        self._task: asyncio.Task[None] | None = None
        # Bounded: a turn refused (one still streaming) never asks for its utterance.
        self._utterances: OrderedDict[str, Utterance] = OrderedDict()

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def configure(self, config: SessionConfig, tasks: asyncio.TaskGroup) -> None:
        """Start, restart or stop listening to match the session's `turn_detection`."""
        if config.turn_detection == self.detection:
            return
        self.stop()
        self.detection = config.turn_detection
        if self.detection is None:
            return
        vad: Any = getattr(self._stt, "vad", None)  # `gateway.speech_telemetry.ObservedSTT`
        if self._stt is None or vad is None:
            self.detection = None
            message = "server voice detection is not available: voice input is not enabled"
            self._emit(ErrorEvent("audio_unavailable", message))
            return
        self._listener = self._listener_for(self._stt, vad, self.detection)
        self._task = tasks.create_task(self._listener.run(), name="hands-free")

    def _listener_for(self, stt: SpeechToText, vad: Any, detection: TurnDetection) -> Listener:
        voice = self._voice
        gate = SpeechGate(
            detection.threshold or voice.vad_threshold,
            detection.silence_ms or voice.vad_silence_ms,
        )
        return Listener(
            vad,
            stt,
            gate,
            emit=self._emit,
            on_started=self._on_started,
            on_utterance=self._keep_and_hand_over,
            new_turn_id=lambda: new_id("turn"),
            max_utterance_s=voice.max_utterance_s,
            partial_every_ms=voice.partial_every_ms,
        )

    def feed(self, frame: bytes) -> None:
        assert self._listener is not None
        self._listener.feed(frame)

    def stop(self) -> None:
        """Stop listening (the connection ends, or the session turned it off)."""
        if self._task is not None:
            self._task.cancel()
        self._task = self._listener = None
        self._utterances.clear()

    async def transcribe(self, turn_id: str, audio: bytes, fmt: str) -> Transcript:
        """The transcript of a turn's audio: the listener's work for an utterance it ended,
        else a transcription of its own (push-to-talk)."""
        utterance = self._utterances.pop(turn_id, None)
        if utterance is not None:
            return await utterance.transcribe()
        assert self._stt is not None
        return await self._stt.transcribe(audio, fmt)

    async def _keep_and_hand_over(self, utterance: Utterance) -> None:
        self._utterances[utterance.turn_id] = utterance
        while len(self._utterances) > _KEPT_UTTERANCES:
            self._utterances.popitem(last=False)
        await self._on_utterance(utterance)
