"""What `serve`, `demo` and `migrate` check before they start anything, so that a mistake a
user can fix is one line naming what to change rather than a failed start-up: the JWT secret,
the routes, the address to listen on, the database."""

from __future__ import annotations

import asyncio
import errno
import re
import socket
from urllib.parse import urlsplit

from gateway.auth import load_secret
from gateway.settings import ConfigError, Settings

__all__ = [
    "MIN_SECRET_BYTES",
    "CommandError",
    "check_database",
    "check_drills",
    "check_listen_address",
    "check_routes",
    "check_secret",
    "redact_url",
]

MIN_SECRET_BYTES = 32  # HS256 takes a key as long as its hash (RFC 7518, 3.2)
MAKE_SECRET = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
DATABASE_TIMEOUT_S = 10.0


class CommandError(Exception):
    """Something outside the settings stops a command (a taken port, a database away); the
    message is one line saying what to do."""


def check_secret(settings: Settings) -> None:
    """`serve` and `token` need a secret of `MIN_SECRET_BYTES` or more (or, for `serve`, a JWKS
    URL alone): a short one signs tokens anyone can forge by guessing it."""
    secret = load_secret(settings)
    if secret is None:
        if settings.jwks_url:
            return
        raise ConfigError(
            [f"no JWT secret: set COACH_JWT_SECRET (make one with {MAKE_SECRET}) or COACH_JWKS_URL"]
        )
    size = len(secret.encode())
    if size < MIN_SECRET_BYTES:
        where = "COACH_JWT_SECRET" if settings.jwt_secret else str(settings.data_dir / "jwt_secret")
        raise ConfigError(
            [
                f"the JWT secret ({where}) is too short ({size} bytes); the gateway needs at least"
                f" {MIN_SECRET_BYTES} bytes:"
                f" make one with {MAKE_SECRET}"
            ]
        )


def check_routes(settings: Settings) -> None:
    """Every route target names a configured provider, and the chat route has one."""
    from gateway.upstreams import parse_routes

    upstreams = settings.with_default_upstreams()
    if not upstreams.routes.get("chat"):
        example = 'chat = ["primary:gpt-4o-mini"]'
        raise ConfigError([f"setting `routes.chat` is required with providers, e.g. {example}"])
    try:
        parse_routes(upstreams)
    except ValueError as exc:
        raise ConfigError([f"setting `routes`: {exc}"]) from None


def check_drills(settings: Settings) -> None:
    """The drill catalog reads (`create_app` reads it again): said before anything starts."""
    from gateway.drills import load_catalog

    load_catalog(settings.drills_file)


def check_listen_address(host: str, port: int) -> None:
    """Bind `host:port` as the server will (and let go at once), so that a taken port is said
    before the database and the upstreams are opened, not after."""
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        raise CommandError(
            f"cannot listen on {host}: no such address; pass --host or set COACH_HOST"
        ) from None
    bound, missing = False, None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio does
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno != errno.EADDRNOTAVAIL:
                    raise CommandError(_bind_problem(host, port, exc)) from None
                missing = exc  # IPv6 off, say: asyncio skips such an address too
            else:
                bound = True
    if not bound and missing is not None:
        raise CommandError(_bind_problem(host, port, missing))


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use; pass --port or set COACH_PORT"
    if exc.errno == errno.EACCES:
        return (
            f"port {port} on {host} needs privileges this user lacks (ports below 1024);"
            " pass --port or set COACH_PORT"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; pass --host or set COACH_HOST"
    reason = (exc.strerror or "error").lower()
    return f"cannot listen on {host}:{port} ({reason}); pass --host/--port or set COACH_HOST/PORT"


async def check_database(url: str) -> None:
    """Connect once, so that a database that is not there is said in one line naming it."""
    from db.pool import DATABASE_ERRORS, open_pool

    errors: tuple[type[BaseException], ...] = (*DATABASE_ERRORS, ValueError)  # a malformed URL
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_S):
            pool = await open_pool(url, min_size=1, max_size=1)
    except errors as exc:
        raise CommandError(_database_problem(url, exc)) from None
    await pool.close()


def _database_problem(url: str, exc: BaseException) -> str:
    parts = urlsplit(url)
    try:
        place = f"{parts.hostname or 'the local socket'}:{parts.port or 5432}"
    except ValueError:
        place = "?"
    why = _database_reason(exc)
    return f"cannot use the database at {place} ({redact_url(url)}): {why}; check DATABASE_URL"


# SQLSTATEs a login can end with, in words (the server's own text may carry its locale).
_LOGIN_STATES = {
    "28P01": "password authentication failed",
    "28000": "the server refused this user (no such role, or pg_hba.conf)",
    "3D000": "the database does not exist",
    "57P03": "the server is starting up or shutting down",
    "53300": "the server has too many connections",
}


def _database_reason(exc: BaseException) -> str:
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str):
        return _LOGIN_STATES.get(state, f"the server refused the connection (SQLSTATE {state})")
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is Postgres running there?)"
    if isinstance(exc, TimeoutError):
        return f"no answer within {DATABASE_TIMEOUT_S:g} s"
    if isinstance(exc, socket.gaierror):
        return "unknown host name"
    if isinstance(exc, ValueError):
        return "not a valid postgresql:// URL"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return "the connection failed"


def redact_url(url: str) -> str:
    """`url` with its password (in the authority or a `password=` parameter) as `***`."""
    url = re.sub(r"(?<=[?&]password=)[^&]*", "***", url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{hostinfo}").geturl()
