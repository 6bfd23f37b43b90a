"""Serving the sim: inside the current event loop (`running_sim`) or as a program (`run`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.loops.auto import auto_loop_factory

from providers.sim.knobs import KnobError, SimKnobs, add_knob_flags, knobs_from_flags
from providers.sim.server import create_sim_app
from providers.sim.state import SimState

__all__ = ["RunningSim", "run", "running_sim"]


@dataclass(slots=True)
class RunningSim:
    """A sim being served on loopback: its base URL and live state."""

    url: str
    state: SimState

    @property
    def knobs(self) -> SimKnobs:
        return self.state.knobs

    async def set_knobs(self, **patch: Any) -> SimKnobs:
        """Partial knob update, as `POST /_sim/config` does; raises `KnobError` on bad values."""
        return self.state.update(patch)

    def stats(self) -> dict[str, Any]:
        return self.state.stats.snapshot()

    def reset_stats(self) -> None:
        self.state.stats.reset()


@contextlib.asynccontextmanager
async def running_sim(
    knobs: SimKnobs | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningSim]:
    """Serve a sim with uvicorn in this event loop; port 0 picks a free one."""
    app = create_sim_app(knobs)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        # The embedding program's logging stays as it is (the demo's JSON lines): uvicorn's
        # default config would replace the handlers of its loggers with plain-text ones.
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
        backlog=4096,
    )
    server = _EmbeddedServer(config)
    serving = asyncio.create_task(server.serve(), name="sim-upstream")
    while not server.started:
        if serving.done():  # uvicorn exits (SystemExit) when it cannot bind
            raise OSError(f"the sim could not start on {host}:{port}")
        await asyncio.sleep(0.005)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningSim(f"http://{host}:{bound}", app.state.sim)
    finally:
        server.should_exit = True
        await serving


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the program that embeds it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coach-gateway sim-upstream",
        description="Simulated OpenAI and Anthropic upstream with fault knobs. It serves "
        "POST /v1/chat/completions and POST /v1/messages; the knobs below change at run time "
        'with POST /_sim/config (a JSON object of the same knobs, e.g. {"fail_rate": 0.5}), '
        "and GET /_sim/stats counts the requests and how each ended. Reads no COACH_ settings.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=9100, help="port to listen on (default 9100)")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    add_knob_flags(parser)
    return parser


def run(argv: list[str] | None = None) -> int:
    """Serve the sim until SIGINT or SIGTERM; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        knobs = knobs_from_flags(args)
    except KnobError as exc:
        parser.error(str(exc))
    config = uvicorn.Config(
        create_sim_app(knobs),
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=args.access_log,  # off by default: load tests send thousands of requests
        timeout_graceful_shutdown=2,
        backlog=4096,
    )
    print(f"sim upstream on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    # The loop uvicorn would pick (uvloop when installed): the sim shares the CPU with what it
    # serves, and the stdlib loop costs it more per streamed token.
    with asyncio.Runner(loop_factory=auto_loop_factory()) as runner:
        runner.run(_serve_until_signalled(_EmbeddedServer(config)))
    return 0


async def _serve_until_signalled(server: uvicorn.Server) -> None:
    # Our own handlers, so a signal ends `run` with a status instead of being re-raised.
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.handle_exit, sig, None)
    await server.serve()
