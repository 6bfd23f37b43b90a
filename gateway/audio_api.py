"""OpenAI-compatible audio: `POST /v1/audio/transcriptions` and `POST /v1/audio/speech`.

The official `openai` SDK works against them unchanged, with a gateway JWT as its API key. The
handlers use the gateway's `stt`, `tts`, `quotas` and `settings` (upload limit); a gateway
without the voice extra answers 503 `audio_unavailable`. Errors are the gateway's JSON error
shape, which is also OpenAI's (`{error: {message, type, code}}`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import PurePath
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Receive

from gateway.auth import authenticate_request
from gateway.errors import ApiError, ResponseAborted, json_response
from gateway.quotas import QuotaExceeded, Quotas
from gateway.requests import optional_field, read_json
from gateway.runtime import Gateway, gateway_of
from providers.audio import (
    CONTAINER_FORMATS,
    decode_audio,
    encode_audio,
    float_to_pcm16,
    wav_header,
    wav_to_pcm16,
)
from providers.errors import PermanentError, ProviderError
from providers.stt import SttBusy, Transcript
from providers.tts import AudioChunk

__all__ = ["audio_routes"]

log = logging.getLogger("coach.audio")

MAX_SPEECH_CHARS = 4096  # OpenAI's limit for `input`
_MULTIPART_SLACK = 64 * 1024  # form fields and boundaries around the file
_TRANSCRIPT_FORMATS = ("json", "text", "verbose_json")
_SPEECH_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "pcm": "audio/pcm"}


def audio_routes() -> list[Route]:
    return [
        Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
        Route("/v1/audio/speech", speech, methods=["POST"]),
    ]


# What a client is told of a speech provider's failure: the gateway's words, never the decoder's
# or a library's (those go to the log). `audio_too_long` keeps its own: it names the limit.
_SPEECH_MESSAGES = {
    "audio_decode_error": "audio could not be decoded",
    "speech_model_unavailable": "speech recognition is not available on this gateway",
    "voice_unavailable": "speech output is not available on this gateway",
    "stt_busy": "speech recognition is busy; try again shortly",
    "upstream_timeout": "the speech service did not answer in time; try again",
}


def provider_api_error(exc: ProviderError) -> ApiError:
    """The HTTP answer to a speech provider's error."""
    if exc.code == "audio_too_long":
        return ApiError(400, exc.code, exc.message)
    if exc.code == "audio_decode_error":
        return ApiError(400, exc.code, _SPEECH_MESSAGES[exc.code])
    log.warning(
        "speech provider failed",
        extra={"error": exc.code, "provider": exc.provider, "detail": exc.message},
    )
    if isinstance(exc, PermanentError):
        return ApiError(500, exc.code, _SPEECH_MESSAGES.get(exc.code, "the speech service failed"))
    headers = {"Retry-After": "1"} if isinstance(exc, SttBusy) else None
    message = _SPEECH_MESSAGES.get(exc.code, "the speech service is unavailable; try again")
    return ApiError(503, exc.code, message, retryable=True, headers=headers)


# ------------------------------------------------------------------ transcriptions


def _unavailable(what: str) -> ApiError:
    return ApiError(503, "audio_unavailable", f"{what} is not enabled on this gateway")


async def _check_audio_quota(gateway: Gateway, user_id: str) -> Quotas:
    """The gateway's quotas, after checking the user has audio seconds left today (429 if
    not)."""
    quotas = gateway.quotas
    try:
        await quotas.check_audio(user_id, 0.0)
    except QuotaExceeded as exc:
        retry = str(max(1, round(exc.retry_after_s)))
        raise ApiError(
            429,
            "rate_limited",
            f"quota {exc.scope} exceeded",
            retryable=True,
            headers={"Retry-After": retry},
        ) from exc
    return quotas


async def transcriptions(request: Request) -> Response:
    principal = await authenticate_request(request)
    gateway = gateway_of(request)
    stt = gateway.stt
    if stt is None:
        raise _unavailable("voice input")
    quotas = await _check_audio_quota(gateway, principal.user_id)
    limit = gateway.settings.voice.max_upload_bytes
    form = await _read_form(request, limit)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "invalid_request", "a multipart `file` field is required")
        if upload.size is not None and upload.size > limit:
            raise _too_large(limit)
        data = await upload.read()
        response_format = str(form.get("response_format") or "json")
        filename = upload.filename or ""
    finally:
        await form.close()
    if not data:
        raise ApiError(400, "audio_decode_error", "the uploaded file is empty")
    if response_format not in _TRANSCRIPT_FORMATS:
        choices = ", ".join(_TRANSCRIPT_FORMATS)
        raise ApiError(400, "invalid_request", f"response_format must be one of {choices}")
    try:
        transcript = await stt.transcribe(data, _format_of(filename))
    except ProviderError as exc:
        raise provider_api_error(exc) from exc
    await quotas.record_audio(principal.user_id, transcript.audio_ms / 1000)
    return _transcript_response(transcript, response_format)


async def _read_form(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + _MULTIPART_SLACK:
        raise _too_large(limit)
    # A chunked upload declares no length: count the bytes as they arrive instead.
    counted = Request(request.scope, _counting(request.receive, limit + _MULTIPART_SLACK, limit))
    try:
        return await counted.form(max_files=1, max_fields=16)
    except HTTPException as exc:  # Starlette's parser refused it, in its own words
        message = "the body must be multipart/form-data: one `file` and at most 16 fields"
        raise ApiError(400, "invalid_form", message) from exc


def _counting(receive: Receive, cap: int, limit: int) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > cap:
            raise _too_large(limit)
        return message

    return wrapped


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "file_too_large", f"the upload is over {limit} bytes")


def _format_of(filename: str) -> str:
    """The decoder format: pcm16 for .pcm/.raw uploads, else a known extension, else auto."""
    ext = PurePath(filename).suffix.lower().lstrip(".")
    if ext in ("pcm", "raw"):
        return "pcm16"
    return ext if ext in CONTAINER_FORMATS else "auto"


def _transcript_response(transcript: Transcript, response_format: str) -> Response:
    if response_format == "text":
        return PlainTextResponse(transcript.text)
    if response_format == "json":
        return json_response({"text": transcript.text})
    segments = [
        {"id": i, "start": s.start_s, "end": s.end_s, "text": s.text}
        for i, s in enumerate(transcript.segments)
    ]
    return json_response(
        {
            "task": "transcribe",
            "language": transcript.language,
            "duration": transcript.audio_ms / 1000,
            "text": transcript.text,
            "segments": segments,
        }
    )


# ------------------------------------------------------------------ speech


async def speech(request: Request) -> Response:
    principal = await authenticate_request(request)
    gateway = gateway_of(request)
    tts = gateway.tts
    if tts is None:
        raise _unavailable("voice output")
    quotas = await _check_audio_quota(gateway, principal.user_id)
    body = await read_json(request)
    text = optional_field(body, "input", str, "a string")
    if text is None or not text.strip():
        raise ApiError(400, "invalid_request", "input must be a non-empty string")
    if len(text) > MAX_SPEECH_CHARS:
        raise ApiError(400, "invalid_request", f"input is over {MAX_SPEECH_CHARS} characters")
    wanted = optional_field(body, "response_format", str, "a string") or "mp3"
    if wanted not in _SPEECH_TYPES:
        choices = ", ".join(_SPEECH_TYPES)
        raise ApiError(400, "invalid_request", f"response_format must be one of {choices}")
    chunks = tts.synthesize(text)
    try:
        first = await anext(chunks)
    except StopAsyncIteration as exc:  # e.g. only symbols the voice has no sound for
        raise ApiError(400, "invalid_request", "input has nothing the voice can speak") from exc
    except ProviderError as exc:
        await chunks.aclose()
        raise provider_api_error(exc) from exc

    async def spoken(seconds: float) -> None:
        await quotas.record_audio(principal.user_id, seconds)

    body_stream = _speech_body(first, chunks, wanted, spoken)
    return StreamingResponse(body_stream, media_type=_SPEECH_TYPES[wanted])


async def _speech_body(
    first: AudioChunk,
    rest: AsyncGenerator[AudioChunk, None],
    wanted: str,
    spoken: Callable[[float], Awaitable[None]],
) -> AsyncIterator[bytes]:
    """The audio as `wanted`; a provider failure mid-stream aborts the response (truncated).
    Each chunk's seconds are charged to the caller's audio quota as it goes out."""
    async with contextlib.aclosing(rest):
        if wanted == "wav":
            yield wav_header(first.sample_rate)
        try:
            yield await _convert(first, wanted)
            await spoken(first.duration_s())
            async for chunk in rest:
                yield await _convert(chunk, wanted)
                await spoken(chunk.duration_s())
        except ProviderError as exc:
            log.warning("speech cut off", extra={"error": exc.code, "provider": exc.provider})
            raise ResponseAborted() from exc


async def _convert(chunk: AudioChunk, wanted: str) -> bytes:
    if chunk.format == "mp3" and wanted == "mp3":
        return chunk.audio
    return await asyncio.to_thread(_transcode, chunk, wanted)


def _transcode(chunk: AudioChunk, wanted: str) -> bytes:
    rate = chunk.sample_rate
    if chunk.format == "mp3":
        pcm = float_to_pcm16(decode_audio(chunk.audio, "mp3", rate=rate))
    elif chunk.format == "wav":
        pcm, rate = wav_to_pcm16(chunk.audio)
    else:
        pcm = chunk.audio
    return encode_audio(pcm, rate, "mp3") if wanted == "mp3" else pcm
