"""The Silero VAD scorer: speech scores high, silence low, and a stream scored in pieces scores
exactly as the whole recording does through faster-whisper's own scorer."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from providers.audio import pcm16_to_float
from providers.vad import WINDOW, SileroVAD, VadBusy, VadState
from tests.speech import SENTENCES, silence, speak

pytestmark = pytest.mark.slow  # piper makes the speech


async def test_a_stream_scored_in_pieces_scores_as_the_whole() -> None:
    from faster_whisper.vad import get_vad_model

    audio = pcm16_to_float(silence(0.5) + speak(SENTENCES[0]) + silence(0.5))
    audio = audio[: len(audio) - len(audio) % WINDOW]
    whole = np.asarray(get_vad_model()(audio)).reshape(-1)
    vad = SileroVAD()
    try:
        state = VadState()
        pieces = [
            await vad.scores(audio[i : i + 3 * WINDOW], state)
            for i in range(0, len(audio), 3 * WINDOW)
        ]
    finally:
        await vad.aclose()
    scores = np.concatenate(pieces)
    np.testing.assert_allclose(scores, whole, atol=1e-5)
    windows_per_s = 16_000 / WINDOW
    lead = int(0.4 * windows_per_s)
    assert scores[:lead].max() < 0.3  # the leading silence
    assert np.median(scores[lead + 10 : -lead - 10]) > 0.8  # the sentence


async def test_a_full_pool_refuses_at_once() -> None:
    vad = SileroVAD(workers=1, queue=0)
    audio = np.zeros(WINDOW * 2000, dtype=np.float32)
    try:
        running = asyncio.ensure_future(vad.scores(audio, VadState()))
        await asyncio.sleep(0)
        with pytest.raises(VadBusy):
            await vad.scores(audio[:WINDOW], VadState())
        await running
    finally:
        await vad.aclose()
