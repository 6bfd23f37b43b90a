"""Opening the speech providers (an optional extra: `pip install -e '.[voice]'`), and the
telemetry around them (`gateway.speech_telemetry`).

Text-to-speech is the local piper voice unless `[voice] tts` names edge-tts (an online
service: the reply text then goes to Microsoft); piper is always the last fallback.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import Any

from gateway.settings import VoiceSettings

__all__ = ["open_speech"]

log = logging.getLogger("coach.speech")


async def open_speech(voice: VoiceSettings, stack: AsyncExitStack) -> tuple[Any, Any]:
    """(speech-to-text, text-to-speech), or (None, None) when the voice extra is not installed.

    Models load lazily on first use, off the event loop, so start-up stays fast.
    """
    try:
        from gateway.speech_telemetry import ObservedSTT, ObservedTTS, SpeechMeters
        from providers.stt import WhisperSTT
        from providers.tts import EdgeTTS, FallbackTTS, PiperTTS, TextToSpeech
        from providers.vad import SileroVAD
    except ImportError as exc:
        log.warning("voice disabled: %s (install the `voice` extra)", exc)
        return None, None
    whisper = WhisperSTT(
        voice.stt_model,
        workers=voice.stt_workers,
        queue=voice.stt_queue,
        max_utterance_s=voice.max_utterance_s,
        cpu_threads=voice.stt_cpu_threads,
        vad_filter=voice.stt_vad_filter,
        beam_size=voice.stt_beam_size,
    )
    stack.push_async_callback(whisper.aclose)
    vad = SileroVAD(workers=voice.vad_workers)
    stack.push_async_callback(vad.aclose)
    piper = PiperTTS(
        voice.piper_model, workers=voice.tts_workers, cpu_threads=voice.tts_cpu_threads
    )
    chain: list[TextToSpeech] = []
    for name in dict.fromkeys(voice.tts):
        chain.append(EdgeTTS(voice.edge_voice) if name == "edge" else piper)
    if piper not in chain:
        chain.append(piper)  # edge-tts alone still falls back to the local voice
    tts = FallbackTTS(chain)
    stack.push_async_callback(tts.aclose)
    meters = SpeechMeters()
    return ObservedSTT(whisper, vad, meters), ObservedTTS(tts, meters)
