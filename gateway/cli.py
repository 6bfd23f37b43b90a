"""`coach-gateway`: serve, demo, token, sim-upstream, migrate.

A mistake a user can fix (a setting, a taken port, a database that is not there) ends the
command with one line on stderr saying what to change, never a traceback: configuration
mistakes with status 2, the others with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import textwrap
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from types import FrameType

from uvicorn.loops.auto import auto_loop_factory

from gateway.auth import load_secret, mint_token
from gateway.cli_checks import (
    CommandError,
    check_database,
    check_drills,
    check_listen_address,
    check_routes,
    check_secret,
)
from gateway.logs import configure_logging
from gateway.settings import ConfigError, Settings, load_settings

# The app, the SDKs and the sim are imported by the commands that need them: `token` and
# `sim-upstream` start faster without the vendor SDKs.

__all__ = ["main"]

log = logging.getLogger("coach.cli")

SETTINGS_EPILOG = """\
settings:
  Every command but sim-upstream reads the same settings: COACH_* environment
  variables (nested keys joined with __, e.g. COACH_QUOTAS__TURNS_PER_MINUTE=5),
  a TOML file named by COACH_CONFIG, and DATABASE_URL, REDIS_URL, OPENAI_API_KEY,
  ANTHROPIC_API_KEY and OTEL_EXPORTER_OTLP_ENDPOINT. The environment wins over
  the file; an unknown key in either stops the command. Every setting is listed
  in README.md, section "Configuration".
"""


def _default(name: str) -> object:
    return Settings.model_fields[name].default


def _listen_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default=None,
        help=f"address to listen on (default {_default('host')}; setting COACH_HOST)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=None,
        help=f"port to listen on (default {_default('port')}; setting COACH_PORT)",
    )


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0..65535)")
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return int(text)


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str, more: str
) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=summary,
        description=textwrap.fill(f"{summary[:1].upper()}{summary[1:]}. {more}", width=79),
        epilog=SETTINGS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coach-gateway",
        description="Coach Gateway: a realtime gateway between coaching apps and model providers.",
        epilog=SETTINGS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = _command(
        sub,
        "demo",
        "keyless demo: simulated upstream, embedded Postgres, gateway",
        "Prints the URL and a demo user's token. Uses DATABASE_URL when set, and makes a JWT "
        "secret in COACH_DATA_DIR when COACH_JWT_SECRET is not set (`token` finds it there).",
    )
    _listen_flags(demo)

    serve = _command(
        sub,
        "serve",
        "production server",
        "Needs COACH_JWT_SECRET (32 bytes or more) or COACH_JWKS_URL; without DATABASE_URL it "
        "starts an embedded Postgres in COACH_DATA_DIR. With no provider configured (a "
        "COACH_CONFIG file, OPENAI_API_KEY or ANTHROPIC_API_KEY) it warns and answers from the "
        "simulated upstream at COACH_SIM_URL.",
    )
    _listen_flags(serve)
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="worker processes sharing the port, each a full gateway (default 1; no setting)",
    )

    token = _command(
        sub,
        "token",
        "print a JWT for USER (last line of output)",
        "Signed with COACH_JWT_SECRET, or with the secret `demo` keeps in COACH_DATA_DIR.",
    )
    token.add_argument("user", metavar="USER", help="the user id (the token's `sub` claim)")
    token.add_argument(
        "--roles",
        default="",
        help="comma-separated roles, e.g. ops (default none; no setting)",
    )
    token.add_argument(
        "--ttl",
        type=int,
        default=24 * 3600,
        metavar="SECONDS",
        help="how long the token is valid (default 86400; no setting)",
    )

    # Its flags belong to the simulated upstream's own parser (see `main`).
    sub.add_parser(
        "sim-upstream",
        help="the simulated upstream alone (`coach-gateway sim-upstream --help` for its knobs)",
    )

    _command(
        sub,
        "migrate",
        "apply the database migrations",
        "To DATABASE_URL, or to the embedded Postgres in COACH_DATA_DIR without it.",
    )
    return parser


def _version() -> str:
    try:
        return version("coach-gateway")
    except PackageNotFoundError:
        return "(not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim-upstream"]:
        from providers.sim import run as run_sim

        return int(run_sim(argv[1:]))
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except ConfigError as exc:
        return _refuse(exc.problems, status=2)
    except CommandError as exc:
        return _refuse([str(exc)], status=1)


def _refuse(problems: list[str], *, status: int) -> int:
    for problem in problems:
        print(problem, file=sys.stderr)
    return status


def _run(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings.log_level)
    hold_sigterm()
    exit_on_sigterm()
    try:
        match args.command:
            case "token":
                return _token(settings, args.user, args.roles, args.ttl)
            case "serve":
                return _serve(settings, args.host, args.port, args.workers)
            case "demo":
                return _demo(settings, args.host, args.port)
            case "migrate":
                return _migrate(settings)
        return 2
    finally:
        deliver_sigterm()


def _token(settings: Settings, user: str, roles: str, ttl: int) -> int:
    check_secret(settings)  # a short secret would sign tokens that `serve` refuses to check
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
    host = host or settings.host
    port = settings.port if port is None else port
    check_secret(settings)
    check_routes(settings)
    check_drills(settings)
    check_listen_address(host, port)
    if settings.persistence and settings.database_url:
        asyncio.run(check_database(settings.database_url))
    if not settings.has_real_provider():
        log.warning(
            "no provider configured: the chat route answers from the simulated upstream at %s;"
            " set OPENAI_API_KEY or ANTHROPIC_API_KEY, or name providers in the COACH_CONFIG file",
            settings.sim_url,
            extra={"sim_url": settings.sim_url},
        )
    if settings.public_url:
        log.info("public URL %s", settings.public_url, extra={"public_url": settings.public_url})

    from gateway.app import create_app
    from gateway.server import GatewayServer, uvicorn_config

    app = create_app(settings)  # with --workers too: a bad configuration fails here, once
    config = uvicorn_config(app, settings, host=host, port=port)
    if workers > 1:
        from gateway.workers import serve_workers

        return serve_workers(config, workers, settings)  # it lets SIGTERM in to its handler
    deliver_sigterm()
    GatewayServer(config).run()
    return 0


def _demo(settings: Settings, host: str | None, port: int | None) -> int:
    host = host or settings.host
    port = settings.port if port is None else port
    check_routes(settings)
    check_drills(settings)
    check_listen_address(host, port)  # before the simulated upstream and Postgres start
    from gateway.demo import run_demo

    # uvloop when installed, as `serve` has (uvicorn's choice): the demo shares one loop
    # between the simulated upstream and the gateway.
    deliver_sigterm()
    with asyncio.Runner(loop_factory=auto_loop_factory()) as runner:
        return runner.run(run_demo(settings, host=host, port=port))


def _migrate(settings: Settings) -> int:
    from gateway.persistence import migrate_only

    if settings.database_url:
        asyncio.run(check_database(settings.database_url))
    return asyncio.run(migrate_only(settings))


def exit_on_sigterm() -> None:
    """Make SIGTERM end this process by `SystemExit` rather than by the signal's default action,
    so that `finally` blocks and `atexit` handlers run (one stops the embedded Postgres). uvicorn
    shuts down gracefully on SIGTERM, then raises it again with the handler it found."""
    signal.signal(signal.SIGTERM, _raise_system_exit)


def hold_sigterm() -> None:
    """Keep a SIGTERM pending while the command imports and builds what it runs. Raised as
    SystemExit wherever the interpreter is, one that lands in an import's lock callback is
    dropped by Python ("Exception ignored"), and the process would serve on, never exiting."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def deliver_sigterm() -> None:
    """Let SIGTERM in again: one that came meanwhile is raised here, at a known point."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


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
