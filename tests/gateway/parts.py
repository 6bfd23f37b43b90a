"""A few of the gateway's routes served on loopback over a `Gateway` of given parts, for tests
that do not need all of `create_app`: the routes reach everything through `gateway_of`, as in
the full app, and the parts not given are real but idle."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from gateway.auth import Authenticator
from gateway.errors import ApiError, api_error_handler
from gateway.persistence import Persistence
from gateway.quotas import Quotas
from gateway.runtime import Gateway
from gateway.settings import Settings
from gateway.upstreams import build_router
from providers.stt import SpeechToText
from providers.tts import TextToSpeech
from streams.session import MemorySessionStore, SessionRegistry
from streams.turn import TurnEngine


@asynccontextmanager
async def parts_app(
    routes: Sequence[BaseRoute],
    settings: Settings,
    *,
    quotas: Quotas | None = None,
    persistence: Persistence | None = None,
    stt: SpeechToText | None = None,
    tts: TextToSpeech | None = None,
) -> AsyncIterator[Starlette]:
    """An app of `routes` whose state holds a gateway of `settings` and the given parts."""
    async with AsyncExitStack() as stack:
        router = build_router(settings)
        stack.push_async_callback(router.aclose)
        if quotas is None:
            quotas = await Quotas.open(settings.quotas, None)
            stack.push_async_callback(quotas.aclose)
        app = Starlette(routes=list(routes), exception_handlers={ApiError: api_error_handler})
        app.state.gateway = Gateway(
            settings=settings,
            auth=Authenticator(secret=settings.jwt_secret),
            router=router,
            quotas=quotas,
            sessions=MemorySessionStore(),
            registry=SessionRegistry(settings.history_turns),
            engine=TurnEngine(router, []),
            stt=stt,
            tts=tts,
            persistence=persistence,
        )
        yield app


@asynccontextmanager
async def served(app: Starlette) -> AsyncIterator[str]:
    """`app` on a real uvicorn on loopback; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_config=None))
    # A socket bound up front: requests wait in its backlog until uvicorn accepts them.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(server.serve(sockets=[sock]))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        server.should_exit = True
