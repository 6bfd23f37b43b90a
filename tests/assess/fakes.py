"""A fake chat provider that answers assessment requests the way a compliant model would."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

from providers.chat import ChatChunk, ChatProvider, ChatRequest, Usage
from providers.errors import UpstreamUnavailable
from providers.routing import Router, Target

_ALLOWED = re.compile(r"^ALLOWED_IDS: ?(.*)$", re.M)


def valid_answer(request: ChatRequest, score: int = 6) -> dict[str, Any]:
    """An answer that fits the request's schema and prompt."""
    assert request.json_schema is not None
    props = request.json_schema["properties"]
    focuses = props["assessments"]["required"]
    found = _ALLOWED.search(request.messages[-1].content)
    ids = [i for i in (found[1].split(",") if found else []) if i]
    return {
        "rubric_version": props["rubric_version"]["enum"][0],
        "kind": props["kind"]["enum"][0],
        "interaction_ids": ids,
        "assessments": {
            focus: {
                "category": "progress",
                "score": score,
                "explanation": "Steady and clear.",
                "errors": [{"key": "rushed_end", "message": "Ending rushed.", "severity": "low"}],
                "tags": ["steady"],
            }
            for focus in focuses
        },
    }


class FakeAssessProvider(ChatProvider):
    """Answers JSON-schema requests. Knobs: `invalid` first answers are garbage, `delay_s` before
    answering, `hang` never answers, `fail` raises a transient error, `marker_dir` gets a file
    per call (so another process can see a call started)."""

    kind = "fake"

    def __init__(
        self,
        *,
        invalid: int = 0,
        delay_s: float = 0.0,
        hang: bool = False,
        fail: bool = False,
        marker_dir: Path | None = None,
        score: int = 6,
    ) -> None:
        self.name = "fake"
        self.invalid = invalid
        self.delay_s = delay_s
        self.hang = hang
        self.fail = fail
        self.marker_dir = marker_dir
        self.score = score
        self.calls: list[str] = []
        self.gate: asyncio.Event | None = None

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.calls.append(request.request_id)
        if self.marker_dir is not None:
            (self.marker_dir / request.request_id).touch()
        if self.fail:
            raise UpstreamUnavailable("down", status=503)
        if self.gate is not None:
            await self.gate.wait()
        if self.hang:
            await asyncio.Event().wait()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.invalid > 0:
            self.invalid -= 1
            text = '{"kind": "interaction", "assessments": ['
        else:
            text = orjson.dumps(valid_answer(request, self.score)).decode()
        half = len(text) // 2
        yield ChatChunk(text=text[:half])
        yield ChatChunk(text=text[half:])
        yield ChatChunk(usage=Usage(120, 80), finish_reason="stop", model=request.model)


def fake_router(provider: FakeAssessProvider) -> Router:
    return Router({"fake": provider}, {"assess": [Target("fake", "fake-judge")]})


def job_of(request_id: str) -> int:
    """`assess-{job}-{attempt}-{try}` -> job id."""
    return int(request_id.split("-")[1])
