"""Serving the app with uvicorn: a graceful drain on shutdown, and a loopback runner for tests,
the demo and benchmarks."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.runtime import Gateway
from gateway.settings import Settings

__all__ = ["GatewayServer", "RunningGateway", "running_gateway", "uvicorn_config"]


class GatewayServer(uvicorn.Server):
    """Drains the gateway (running turns finish, sockets close with 1012) before uvicorn closes
    its connections; freezes what start-up allocated out of the garbage collector's reach."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Modules, settings, pools and compiled routes live as long as the process: a full
        # collection need not walk them again each time (each one walks every tracked object).
        gc.freeze()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.loaded_app
        gateway = _find_gateway(app)
        if gateway is not None:
            await gateway.drain(gateway.settings.shutdown_grace_s)
        await super().shutdown(sockets)


def _find_gateway(app: object) -> Gateway | None:
    # uvicorn wraps the app in its own middleware; walk `.app` down to the Starlette app.
    for _ in range(8):
        state = getattr(app, "state", None)
        gateway = getattr(state, "gateway", None) if state is not None else None
        if isinstance(gateway, Gateway):
            return gateway
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


# The standard library's loop, not uvloop: libuv accepts one connection per turn of the loop
# (libuv/libuv#3696), so a loop busy with streams left new connections, health checks among
# them, waiting in the listen queue (15 s for `/healthz` at 1,000 streaming sessions, and a
# quarter of the sessions still unopened after 20 s). asyncio accepts what is waiting at once;
# at 50 and 200 sessions it measured the same CPU and TTFT as uvloop (BENCHMARKS.md).
EVENT_LOOP = "asyncio"


def uvicorn_config(app: Starlette, settings: Settings, *, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop=EVENT_LOOP,
        log_config=None,
        access_log=False,
        lifespan="on",
        ws_max_size=max(settings.max_message_bytes, settings.max_audio_frame_bytes) + 1024,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 2,
    )


@dataclass
class RunningGateway:
    url: str
    ws_url: str
    app: Starlette
    server: GatewayServer


@asynccontextmanager
async def running_gateway(
    settings: Settings, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningGateway]:
    """Serve a gateway on loopback inside the current event loop until the block exits."""
    app = create_app(settings)
    server = GatewayServer(uvicorn_config(app, settings, host=host, port=port))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("gateway did not start")
            await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield RunningGateway(f"http://{host}:{bound}", f"ws://{host}:{bound}", app, server)
    finally:
        server.should_exit = True
        await task
