"""Opening the speech providers (an optional extra: `pip install -e '.[voice]'`)."""

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
        from providers.stt import WhisperSTT
        from providers.tts import EdgeTTS, FallbackTTS, PiperTTS, TextToSpeech
    except ImportError as exc:
        log.warning("voice disabled: %s (install the `voice` extra)", exc)
        return None, None
    stt = WhisperSTT(
        voice.stt_model,
        workers=voice.stt_workers,
        queue=voice.stt_queue,
        max_utterance_s=voice.max_utterance_s,
    )
    stack.push_async_callback(stt.aclose)
    chain: list[TextToSpeech] = []
    for name in voice.tts:
        if name == "edge":
            chain.append(EdgeTTS(voice.edge_voice))
        elif name == "piper":
            chain.append(PiperTTS(voice.piper_model, workers=voice.tts_workers))
        else:
            raise ValueError(f"unknown text-to-speech provider {name!r} (edge, piper)")
    tts = FallbackTTS(chain)
    stack.push_async_callback(tts.aclose)
    return stt, tts
