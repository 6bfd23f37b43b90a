"""`coach-gateway`: serve, demo, token, sim-upstream, migrate."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from uvicorn.loops.auto import auto_loop_factory

from gateway.auth import load_secret, mint_token
from gateway.logs import configure_logging
from gateway.settings import Settings

# The app, the SDKs and the sim are imported by the commands that need them: `token` and
# `sim-upstream` start faster without the vendor SDKs.

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coach-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="keyless demo: simulated upstream, embedded Postgres, gateway"
    )
    demo.add_argument("--host", default=None)
    demo.add_argument("--port", type=int, default=None)

    serve = sub.add_parser("serve", help="production server")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--workers", type=int, default=1)

    token = sub.add_parser("token", help="print a JWT for USER (last line of output)")
    token.add_argument("user")
    token.add_argument("--roles", default="", help="comma-separated, e.g. ops")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="seconds")

    # Its flags belong to the simulated upstream's own parser (see `main`).
    sub.add_parser("sim-upstream", help="the simulated upstream alone (--help for its knobs)")

    sub.add_parser("migrate", help="apply the database migrations")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim-upstream"]:
        from providers.sim import run as run_sim

        return int(run_sim(argv[1:]))
    args = _parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level)
    exit_on_sigterm()
    match args.command:
        case "token":
            return _token(settings, args.user, args.roles, args.ttl)
        case "serve":
            return _serve(settings, args.host, args.port, args.workers)
        case "demo":
            from gateway.demo import run_demo

            # uvloop when installed, as `serve` has (uvicorn's choice): the demo shares one loop
            # between the simulated upstream and the gateway.
            with asyncio.Runner(loop_factory=auto_loop_factory()) as runner:
                return runner.run(run_demo(settings, host=args.host, port=args.port))
        case "migrate":
            from gateway.persistence import migrate_only

            return asyncio.run(migrate_only(settings))
    return 2


def _token(settings: Settings, user: str, roles: str, ttl: int) -> int:
    secret = load_secret(settings)
    if secret is None:
        print(
            "no JWT secret: set COACH_JWT_SECRET, or run `coach-gateway demo` once", file=sys.stderr
        )
        return 1
    role_list = [r for r in roles.split(",") if r]
    print(mint_token(secret, user, roles=role_list, ttl_s=ttl))
    return 0


def _serve(settings: Settings, host: str | None, port: int | None, workers: int) -> int:
    from gateway.app import create_app
    from gateway.server import GatewayServer, uvicorn_config

    host = host or settings.host
    port = port or settings.port
    app = create_app(settings)  # with --workers too: a bad configuration fails here, once
    config = uvicorn_config(app, settings, host=host, port=port)
    if workers > 1:
        from gateway.workers import serve_workers

        return serve_workers(config, workers, settings)
    GatewayServer(config).run()
    return 0


def exit_on_sigterm() -> None:
    """Make SIGTERM end this process by `SystemExit` rather than by the signal's default action,
    so that `finally` blocks and `atexit` handlers run (one stops the embedded Postgres). uvicorn
    shuts down gracefully on SIGTERM, then raises it again with the handler it found."""
    signal.signal(signal.SIGTERM, _raise_system_exit)


def _raise_system_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


async def wait_for_signal() -> None:
    """Until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


if __name__ == "__main__":
    raise SystemExit(main())
