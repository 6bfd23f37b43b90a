"""The assessor: asks the `assess` route for a JSON answer and validates it (one retry)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from assess.errors import AssessUnavailable, InvalidAnswer
from assess.rubric import (
    RUBRIC_VERSION,
    AssessKind,
    FocusSpec,
    TurnText,
    answer_schema,
    build_messages,
)
from assess.validation import Answer, parse_answer, validate_answer
from providers.chat import ChatRequest, Usage
from providers.errors import ProviderError
from providers.routing import Router

__all__ = ["AssessCall", "AssessRequest", "AssessResult", "Assessor", "call_route"]


@dataclass(frozen=True, slots=True)
class AssessRequest:
    request_id: str
    kind: AssessKind
    focuses: tuple[FocusSpec, ...]
    turns: tuple[TurnText, ...]


@dataclass(frozen=True, slots=True)
class AssessCall:
    """One model call, for `prompt_runs`."""

    request_id: str
    provider: str | None
    model: str | None
    usage: Usage
    ttft_ms: float | None
    latency_ms: float
    cost_usd: float
    status: str  # ok | invalid | unavailable


@dataclass(frozen=True, slots=True)
class AssessResult:
    answer: Answer
    calls: tuple[AssessCall, ...]


class InvalidAfterRetry(InvalidAnswer):
    """Both answers were invalid; `calls` records them."""

    def __init__(self, reason: str, calls: Sequence[AssessCall]) -> None:
        super().__init__(reason)
        self.calls = tuple(calls)


class Assessor:
    """Turns one assessment request into a validated answer through the router."""

    def __init__(
        self,
        router: Router,
        *,
        route: str = "assess",
        rubric_version: str = RUBRIC_VERSION,
        max_tokens: int = 1200,
        attempts: int = 2,
    ) -> None:
        self._router = router
        self._route = route
        self.rubric_version = rubric_version
        self._max_tokens = max_tokens
        self._attempts = attempts

    async def assess(self, request: AssessRequest) -> AssessResult:
        """A validated answer; `InvalidAfterRetry` after two invalid ones, `AssessUnavailable`
        when no target answers."""
        calls: list[AssessCall] = []
        feedback: str | None = None
        for attempt in range(1, self._attempts + 1):
            chat = self._chat_request(request, attempt, feedback)
            text, call = await self._call(chat)
            try:
                answer = self._validate(request, text)
            except InvalidAnswer as exc:
                calls.append(_with_status(call, "invalid"))
                feedback = exc.reason
                continue
            calls.append(call)
            return AssessResult(answer, tuple(calls))
        raise InvalidAfterRetry(feedback or "invalid answer", calls)

    def _chat_request(
        self, request: AssessRequest, attempt: int, feedback: str | None
    ) -> ChatRequest:
        ids = 0 if request.kind == "session_summary" else len(request.turns)
        return ChatRequest(
            model="",
            messages=build_messages(
                request.kind, request.focuses, request.turns, feedback=feedback
            ),
            max_tokens=self._max_tokens,
            temperature=0.0,
            json_schema=answer_schema(request.kind, [f.id for f in request.focuses], ids),
            schema_name="coaching_assessment",
            request_id=f"{request.request_id}-{attempt}",
            metadata={"purpose": "assess", "rubric_version": self.rubric_version},
        )

    async def _call(self, chat: ChatRequest) -> tuple[str, AssessCall]:
        return await call_route(self._router, self._route, chat)

    def _validate(self, request: AssessRequest, text: str) -> Answer:
        allowed = (
            () if request.kind == "session_summary" else [t.interaction_id for t in request.turns]
        )
        return validate_answer(
            parse_answer(text),
            kind=request.kind,
            rubric_version=self.rubric_version,
            allowed_ids=allowed,
            focus_ids=[f.id for f in request.focuses],
        )


async def call_route(router: Router, route: str, chat: ChatRequest) -> tuple[str, AssessCall]:
    """One JSON-answer call on `route`: the answer's text and its record; `AssessUnavailable`
    when no target answers. The coaching skills call the model this way too."""
    started = time.perf_counter()
    parts: list[str] = []
    usage = Usage()
    try:
        stream = await router.open_stream(route, chat)
        try:
            async for chunk in stream:
                parts.append(chunk.text)
                usage = chunk.usage or usage
        finally:
            await stream.aclose()
    except ProviderError as exc:
        raise AssessUnavailable(f"{exc.code}: {exc.message}") from exc
    call = AssessCall(
        chat.request_id,
        stream.target.provider,
        stream.target.model,
        usage,
        stream.upstream_ttft_ms,
        (time.perf_counter() - started) * 1000,
        stream.cost_usd,
        "ok",
    )
    return "".join(parts), call


def _with_status(call: AssessCall, status: str) -> AssessCall:
    return AssessCall(
        call.request_id,
        call.provider,
        call.model,
        call.usage,
        call.ttft_ms,
        call.latency_ms,
        call.cost_usd,
        status,
    )
