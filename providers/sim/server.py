"""The sim's Starlette app: both vendors' endpoints plus the `/_sim/*` control routes."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from providers.sim.anthropic_api import messages
from providers.sim.knobs import KnobError, SimKnobs
from providers.sim.openai_api import chat_completions
from providers.sim.state import DropFilter, SimState, json_response

__all__ = ["MODELS", "create_sim_app"]

MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-haiku-latest", "claude-haiku-4-5", "sim-coach")


def create_sim_app(knobs: SimKnobs | None = None) -> Starlette:
    """The simulated upstream as an ASGI app; its state is `app.state.sim` (a `SimState`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # uvicorn logs an exception that escapes a started response; a simulated drop is not one.
        drop_filter = DropFilter()
        logger = logging.getLogger("uvicorn.error")
        logger.addFilter(drop_filter)
        try:
            yield
        finally:
            logger.removeFilter(drop_filter)

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/_sim/config", get_config, methods=["GET"]),
            Route("/_sim/config", set_config, methods=["POST"]),
            Route("/_sim/stats", get_stats, methods=["GET"]),
            Route("/_sim/reset", reset_stats, methods=["POST"]),
            Route("/_sim/requests", get_requests, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.sim = SimState(knobs or SimKnobs())
    return app


def _state(request: Request) -> SimState:
    state: SimState = request.app.state.sim
    return state


async def list_models(request: Request) -> Response:
    """OpenAI's model list; Anthropic's when the request carries `anthropic-version`."""
    state = _state(request)
    state.stats.started("models")
    state.stats.ended("ok")
    if "anthropic-version" in request.headers:
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2024-10-22T00:00:00Z"}
            for m in MODELS
        ]
        return json_response(
            {"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]}
        )
    created = int(time.time())
    models = [
        {"id": m, "object": "model", "created": created, "owned_by": "coach-sim"} for m in MODELS
    ]
    return json_response({"object": "list", "data": models})


async def get_config(request: Request) -> Response:
    return json_response(_state(request).knobs.to_dict())


async def set_config(request: Request) -> Response:
    """Partial update of the knobs; 400 with every problem listed when one is bad."""
    try:
        patch = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        return _bad_config([f"body is not JSON: {exc}"])
    if not isinstance(patch, dict):
        return _bad_config(["body must be a JSON object of knobs"])
    try:
        knobs = _state(request).update(patch)
    except KnobError as exc:
        return _bad_config(exc.problems)
    return json_response(knobs.to_dict())


def _bad_config(problems: list[str]) -> Response:
    body = {"error": {"message": "; ".join(problems), "problems": problems}}
    return json_response(body, 400)


async def get_stats(request: Request) -> Response:
    return json_response(_state(request).stats.snapshot())


async def get_requests(request: Request) -> Response:
    """The latest requests' model, streamed or not, offered tools and text, oldest first
    (`SimState.received`)."""
    return json_response({"requests": list(_state(request).received)})


async def reset_stats(request: Request) -> Response:
    state = _state(request)
    state.stats.reset()
    return json_response(state.stats.snapshot())
