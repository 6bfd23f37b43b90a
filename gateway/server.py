"""Serving the app with uvicorn: a graceful drain on shutdown, and a loopback runner for tests,
the demo and benchmarks."""

from __future__ import annotations

import asyncio
import errno
import functools
import gc
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.http_protocol import CoachHttpProtocol
from gateway.runtime import Gateway
from gateway.settings import Settings
from gateway.uvicorn_fence import fenced_protocols
from gateway.ws_protocol import CoachWebSocketProtocol

__all__ = [
    "BurstAcceptor",
    "GatewayServer",
    "RunningGateway",
    "running_gateway",
    "serving",
    "uvicorn_config",
]

log = logging.getLogger("coach.server")


class GatewayServer(uvicorn.Server):
    """Drains the gateway (running turns finish, sockets close with 1012) before uvicorn closes
    its connections; takes waiting connections in bursts on uvloop (`BurstAcceptor`); freezes
    what start-up allocated out of the garbage collector's reach and sets the collector's
    thresholds to the gateway's `gc_thresholds` (both for the whole process, as it serves)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._acceptors: list[BurstAcceptor] = []

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and _is_uvloop(asyncio.get_running_loop()):
            listeners = [s for server in self.servers for s in server.sockets or ()]
            self._acceptors = [BurstAcceptor(s, self._new_connection) for s in listeners]
        # Modules, settings, pools and compiled routes live as long as the process: a full
        # collection need not walk them again each time (each one walks every tracked object).
        gc.freeze()
        # Under streaming load Python's default thresholds collect generation 1 many times a
        # minute, each time moving the running turns' objects into generation 2, and so start
        # frequent full collections: each walks every connection's objects, a long pause with
        # thousands of idle sockets. Fewer generation-1 collections let most of a
        # turn's objects die young (loadtests/BENCHMARKS.md, "Components": collector pauses).
        gateway = _find_gateway(self.config.loaded_app)
        if gateway is not None:
            gc.set_threshold(*gateway.settings.gc_thresholds)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.loaded_app
        gateway = _find_gateway(app)
        if gateway is not None:
            await gateway.drain(gateway.settings.shutdown_grace_s)
        for acceptor in self._acceptors:
            acceptor.close()  # as uvicorn's own listeners stop, first thing in its shutdown
        await super().shutdown(sockets)

    def _new_connection(self) -> asyncio.Protocol:
        # What uvicorn's own listeners make for each connection.
        config = self.config
        protocol: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=self.server_state, app_state=self.lifespan.state
        )
        return protocol


def _is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.partition(".")[0] == "uvloop"


class BurstAcceptor:
    """Accepts up to `burst` waiting connections each time the listening socket is readable.

    libuv (so uvloop) accepts one connection per turn of the loop (libuv/libuv#3696). A loop
    busy with streams turns slowly, and new connections, health checks among them, waited in the
    listen queue: under heavy streaming load `/healthz` answered late and many sessions could
    not open (loadtests/BENCHMARKS.md, "What moved the figures"). This watches a duplicate of
    the listening socket beside uvloop's own watcher and hands what it accepts to
    `loop.connect_accepted_socket`, as the standard library's loop does with its accept loop.
    """

    RETRY_S = 1.0  # out of file descriptors: stop accepting this long, as asyncio does

    def __init__(
        self,
        listener: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        *,
        burst: int = 128,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = listener.dup()
        self._sock.setblocking(False)
        self._protocol_factory = protocol_factory
        self._burst = burst
        self._pending: set[asyncio.Task[object]] = set()
        self._closed = False
        self._loop.add_reader(self._sock.fileno(), self._accept)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()

    def _accept(self) -> None:
        for _ in range(self._burst):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # nothing more waits (or uvloop's own watcher took it)
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("accept paused: %s", exc.strerror, extra={"errno": exc.errno})
                    self._loop.remove_reader(self._sock.fileno())
                    self._loop.call_later(self.RETRY_S, self._resume)
                else:
                    log.error("accept failed", exc_info=exc)
                return
            self._hand_over(conn)

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def _hand_over(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task: asyncio.Task[object] = self._loop.create_task(
            self._loop.connect_accepted_socket(self._protocol_factory, conn)
        )
        self._pending.add(task)
        task.add_done_callback(functools.partial(self._connected, conn))

    def _connected(self, conn: socket.socket, task: asyncio.Task[object]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("an accepted connection could not be set up", exc_info=exc)
            conn.close()


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


def uvicorn_config(app: Starlette, settings: Settings, *, host: str, port: int) -> uvicorn.Config:
    """The gateway's uvicorn config: its own protocols where uvicorn has what they need
    (`gateway.uvicorn_fence`), uvicorn's own otherwise."""
    http, ws = fenced_protocols((CoachHttpProtocol, CoachWebSocketProtocol))
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        http=http,
        ws=ws,
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
    async with serving(server) as bound:
        yield RunningGateway(f"http://{host}:{bound}", f"ws://{host}:{bound}", app, server)


@asynccontextmanager
async def serving(server: uvicorn.Server) -> AsyncIterator[int]:
    """Run `server` inside the current event loop until the block exits; yields the port its
    first socket bound (raises if it stops before it started)."""
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server did not start")
            await asyncio.sleep(0.01)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task
