"""The ASGI application factory and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from gateway.auth import Authenticator, load_secret
from gateway.chat_sse import chat_routes
from gateway.errors import ApiError, api_error_handler
from gateway.health import health_routes
from gateway.openai_compat import openai_routes
from gateway.pages import page_routes
from gateway.quotas import Quotas
from gateway.realtime import realtime_routes
from gateway.runtime import Gateway
from gateway.settings import Settings
from gateway.upstreams import build_router
from streams.records import SessionStore, TurnObserver
from streams.session import MemorySessionStore, SessionRegistry
from streams.turn import TurnEngine

__all__ = ["create_app"]


def _routes() -> list[BaseRoute]:
    return [
        *health_routes(),
        *realtime_routes(),
        *chat_routes(),
        *openai_routes(),
        *page_routes(),
    ]


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the gateway app; nothing is opened until the lifespan starts."""
    settings = (settings or Settings()).with_default_upstreams()
    secret = load_secret(settings)
    if not secret and not settings.jwks_url:
        raise SystemExit(
            "no JWT secret: set COACH_JWT_SECRET (or COACH_JWKS_URL), or run `coach-gateway demo`"
        )
    auth = Authenticator(
        secret=secret,
        jwks_url=settings.jwks_url,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            app.state.gateway = await _open_gateway(settings, auth, stack)
            yield
            await app.state.gateway.drain(settings.shutdown_grace_s)

    app = Starlette(
        routes=_routes(),
        lifespan=lifespan,
        exception_handlers={ApiError: api_error_handler},
    )
    app.state.settings = settings
    app.state.auth = auth
    return app


async def _open_gateway(settings: Settings, auth: Authenticator, stack: AsyncExitStack) -> Gateway:
    router = build_router(settings)
    stack.push_async_callback(router.aclose)
    quotas = await Quotas.open(settings.quotas, settings.redis_url)
    stack.push_async_callback(quotas.aclose)
    registry = SessionRegistry(settings.history_turns)
    sessions: SessionStore = MemorySessionStore(settings.assess.session_idle_minutes)
    observers: list[TurnObserver] = []
    persistence: Any = None
    engine = TurnEngine(
        router,
        observers,
        max_reply_tokens=settings.max_reply_tokens,
        turn_timeout_s=settings.deadlines.turn_s,
    )
    return Gateway(
        settings=settings,
        auth=auth,
        router=router,
        quotas=quotas,
        sessions=sessions,
        registry=registry,
        engine=engine,
        persistence=persistence,
    )
