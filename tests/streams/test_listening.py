"""The hands-free listener's bounds: audio waiting for a busy VAD is bounded by `backlog_s`,
an utterance that continues a cut-short one counts that one against `max_utterance_s`, and the
utterance buffer keeps every sample in order as it grows and is trimmed. Real Silero VAD, real
piper speech."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import numpy as np
import pytest

from providers.audio import SAMPLE_RATE
from providers.vad import SileroVAD, VadBusy, VadState
from streams.events import ErrorEvent, ServerEvent
from streams.listening import Listener, Utterance, _Samples
from streams.vad import SpeechGate
from tests.speech import SENTENCES, shared_whisper, silence, speak

FRAME = 640  # 20 ms of pcm16


class _Pausable(SileroVAD):
    """The real VAD, whose pool can be made to answer busy, as a saturated one does; it counts
    the samples it scored."""

    def __init__(self) -> None:
        super().__init__(workers=1, queue=4)
        self.busy = False
        self.scored = 0

    async def scores(self, samples: Any, state: VadState) -> Any:
        if self.busy:
            raise VadBusy("voice activity detection is busy", provider=self.name)
        self.scored += len(samples)
        return await super().scores(samples, state)


def _listener(vad: SileroVAD, events: list[ServerEvent], said: list[Utterance], **kw: Any) -> Any:
    async def on_utterance(utterance: Utterance) -> None:
        said.append(utterance)

    turns = iter(range(1000))
    return Listener(
        vad,
        shared_whisper(),
        SpeechGate(0.5, 300),
        emit=events.append,
        on_started=lambda turn_id: True,  # as if each start cut a turn short before its reply
        on_utterance=on_utterance,
        new_turn_id=lambda: f"turn-{next(turns)}",
        **kw,
    )


async def _feed(listener: Listener, audio: bytes) -> None:
    for i in range(0, len(audio), FRAME):
        listener.feed(audio[i : i + FRAME])
        await asyncio.sleep(0)  # the listener's task takes what came


async def _settled(said: list[Utterance], count: int) -> None:
    """Until `count` utterances were handed over and no more come for a moment."""
    async with asyncio.timeout(30):
        while len(said) < count:  # noqa: ASYNC110 - the listener has no event to wait on
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)


def _errors(events: list[ServerEvent]) -> list[str]:
    return [e.code for e in events if isinstance(e, ErrorEvent)]


async def test_audio_waiting_for_a_busy_vad_is_bounded() -> None:
    vad, events, said = _Pausable(), list[ServerEvent](), list[Utterance]()
    listener = _listener(vad, events, said, backlog_s=0.5)
    task = asyncio.create_task(listener.run())
    try:
        vad.busy = True
        await _feed(listener, silence(2.0))
        assert _errors(events) == ["vad_overloaded"]  # once for the episode
        vad.busy = False
        await _feed(listener, silence(0.02))
        await asyncio.sleep(0.2)
        # What was kept while it was busy, and the frame after: half a second, not two.
        assert 0 < vad.scored <= int(0.52 * SAMPLE_RATE)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await vad.aclose()


@pytest.mark.slow
async def test_a_continued_utterance_counts_what_it_continues_against_the_cap() -> None:
    sentence = speak(SENTENCES[0], pad_s=0)
    length_s = len(sentence) / 2 / SAMPLE_RATE
    vad, events, said = _Pausable(), list[ServerEvent](), list[Utterance]()
    # Either part alone is under the cap; the two together are over it.
    listener = _listener(vad, events, said, max_utterance_s=1.5 * length_s, backlog_s=60)
    task = asyncio.create_task(listener.run())
    try:
        await _feed(listener, silence(0.5) + sentence + silence(0.5) + sentence + silence(1.0))
        await _settled(said, 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await vad.aclose()
    assert _errors(events) == ["utterance_capped"]
    first, second = said[0], said[1]
    assert second.audio.startswith(first.audio)  # nothing said before the pause is lost
    assert len(second.audio) / 2 / SAMPLE_RATE <= 1.5 * length_s + 0.1


def test_the_sample_buffer_keeps_every_sample_as_it_grows_and_is_trimmed() -> None:
    rng = random.Random(7)
    buffer, reference, start = _Samples(), np.zeros(0, dtype="<i2"), 0
    for _ in range(400):
        frame = np.array([rng.randrange(-32768, 32767) for _ in range(rng.randrange(1, 900))])
        buffer.append(frame.astype("<i2"))
        reference = np.concatenate([reference, frame.astype("<i2")])
        if rng.random() < 0.1:
            cut = rng.randrange(start, start + len(reference) + 1)
            buffer.drop_before(cut)
            reference, start = reference[cut - start :], cut
        assert (buffer.start, buffer.end) == (start, start + len(reference))
        lo = rng.randrange(start, buffer.end + 1)
        hi = rng.randrange(lo, buffer.end + 1)
        assert np.array_equal(buffer.slice(lo, hi), reference[lo - start : hi - start])
