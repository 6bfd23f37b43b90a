"""The ASGI application factory and its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from assess.pipeline import Notify
from db.pool import DATABASE_AWAY
from gateway.agent import GatewayAgent
from gateway.agent_routes import agent_routes
from gateway.audio_api import audio_routes
from gateway.auth import Authenticator, load_secret
from gateway.chat_sse import chat_routes
from gateway.drills import DrillCatalog, load_catalog
from gateway.errors import (
    ApiError,
    InternalErrors,
    api_error_handler,
    http_error_handler,
    internal_error_handler,
    route_not_found,
)
from gateway.focus_routes import focus_routes
from gateway.health import health_routes
from gateway.insight_jobs import recap_sessions, schedule_insights
from gateway.insight_routes import insight_routes
from gateway.knowledge import load_catalog_knowledge
from gateway.mcp_server import mcp_routes, open_mcp
from gateway.observability import (
    Observability,
    middleware,
    observability_routes,
    open_observability,
)
from gateway.openai_compat import openai_routes
from gateway.openapi import openapi_routes
from gateway.pages import page_routes
from gateway.persistence import Persistence, open_persistence
from gateway.quotas import Quotas
from gateway.realtime import realtime_routes
from gateway.rest import rest_routes
from gateway.runtime import Gateway, database_unavailable
from gateway.settings import Settings
from gateway.skills_routes import skills_routes
from gateway.speech import open_speech
from gateway.upstreams import build_router
from streams.events import AssessmentCreated
from streams.records import SessionStore, TurnObserver
from streams.session import MemorySessionStore, SessionRegistry
from streams.turn import TurnEngine

__all__ = ["create_app"]

log = logging.getLogger("coach.app")


def _routes() -> list[BaseRoute]:
    return [
        *health_routes(),
        *realtime_routes(),
        *chat_routes(),
        *openai_routes(),
        *audio_routes(),
        *rest_routes(),
        *focus_routes(),
        *skills_routes(),
        *insight_routes(),
        *agent_routes(),
        *mcp_routes(),
        *observability_routes(),
        *page_routes(),
        *openapi_routes(),
    ]


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the gateway app; nothing is opened until the lifespan starts."""
    settings = (settings or Settings()).with_default_upstreams()
    secret = load_secret(settings)
    if not secret and not settings.jwks_url:
        raise SystemExit(
            "no JWT secret: set COACH_JWT_SECRET (or COACH_JWKS_URL), or run `coach-gateway demo`"
        )
    drills = load_catalog(settings.drills_file)  # a broken catalog stops here, in one line
    auth = Authenticator(
        secret=secret,
        jwks_url=settings.jwks_url,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            # The app's one piece of state: handlers reach everything through `gateway_of`.
            app.state.gateway = gateway = await _open_gateway(settings, auth, drills, stack)
            yield
            await gateway.drain(settings.shutdown_grace_s)

    handlers: dict[Any, Any] = {
        ApiError: api_error_handler,
        HTTPException: http_error_handler,  # 404, 405 and Starlette's own refusals
        Exception: internal_error_handler,  # a failure outside `InternalErrors`
    }
    # A query that found the database away, on any route: a JSON 503 the client may retry.
    # A refused connection is a ConnectionError; OSError at large is not the database's to claim.
    handlers.update(dict.fromkeys((*DATABASE_AWAY, ConnectionError), _database_unavailable))
    app = Starlette(
        routes=_routes(),
        lifespan=lifespan,
        # Innermost: a route's failure is answered and logged with the request's context.
        middleware=[*middleware(settings), Middleware(InternalErrors)],
        exception_handlers=handlers,
    )
    app.router.default = route_not_found  # a WebSocket to an unknown path: JSON 404 too
    return app


async def _open_gateway(
    settings: Settings, auth: Authenticator, drills: DrillCatalog, stack: AsyncExitStack
) -> Gateway:
    persistence: Persistence | None = None
    observers: list[TurnObserver] = []
    sessions: SessionStore = MemorySessionStore(settings.assess.session_idle_minutes)
    if settings.persistence:
        persistence = await open_persistence(settings)
        sessions = persistence.sessions
    budget_store = persistence.budgets if persistence is not None else None
    router = build_router(settings, budget_store=budget_store)
    # Closed in reverse: the assessment pipeline drains before the router it calls is closed.
    stack.push_async_callback(router.aclose)
    if persistence is not None:
        stack.push_async_callback(persistence.aclose)
    quotas = await Quotas.open(
        settings.quotas,
        settings.redis_url,
        key_prefix=settings.redis_key_prefix,
        log_sample_interval_s=settings.log_sample_interval_s,
    )
    stack.push_async_callback(quotas.aclose)
    stt, tts = await open_speech(settings.voice, stack)
    engine = TurnEngine(
        router,
        observers,
        max_reply_tokens=settings.max_reply_tokens,
        turn_timeout_s=settings.deadlines.turn_s,
        max_tool_rounds=settings.agent.max_tool_rounds,
    )
    gateway = Gateway(
        settings=settings,
        auth=auth,
        router=router,
        quotas=quotas,
        sessions=sessions,
        registry=SessionRegistry(settings.history_turns),
        engine=engine,
        stt=stt,
        tts=tts,
        persistence=persistence,
        drills=drills,
    )
    engine.keeper = gateway  # stores and charges each finished turn before its final event
    gateway.agent = engine.agent = GatewayAgent(gateway)  # guardrails, memories, tools
    recap_sessions(gateway)
    if persistence is not None:
        await load_catalog_knowledge(persistence.pool, drills)  # what search_drills searches
    await open_mcp(gateway, stack)
    if persistence is not None:
        persistence.hints.on_closed = gateway.session_closed  # idle sessions are recapped too
    observability = await open_observability(gateway, stack)
    if persistence is not None:
        await persistence.start_assessments(router, notify=_assessment_notifier(observability))
        await schedule_insights(gateway, stack)
    return gateway


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("database unreachable on %s: %s", request.url.path, type(exc).__name__)
    return await api_error_handler(request, database_unavailable())


def _assessment_notifier(observability: Observability) -> Notify:
    async def notify(user_id: str, session_id: str, assessment: dict[str, Any]) -> None:
        observability.deliver(session_id, AssessmentCreated(assessment))

    return notify
