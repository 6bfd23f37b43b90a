"""The asyncpg pool: JSON and JSONB columns travel as Python objects, encoded with orjson.

asyncpg ships no type information, so the few methods the query modules use are described by
the protocols below; `open_pool` is the one place that hands out an asyncpg object as a `Pool`.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, cast

import asyncpg  # type: ignore[import-untyped]
import orjson

__all__ = [
    "DATABASE_AWAY",
    "DATABASE_ERRORS",
    "DATABASE_UNAVAILABLE",
    "Connection",
    "Executor",
    "Pool",
    "open_pool",
]


class Executor(Protocol):
    """Runs statements: a pool (one pooled connection per call) or a connection."""

    async def execute(self, query: str, *args: Any) -> str: ...

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    async def fetchrow(self, query: str, *args: Any) -> Any: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...


class Connection(Executor, Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Any]: ...


class Pool(Executor, Protocol):
    def acquire(self) -> AbstractAsyncContextManager[Connection]: ...

    async def close(self) -> None: ...

    def terminate(self) -> None: ...


# What a caller outside db/ catches to survive a database outage without importing asyncpg.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)

# The part of DATABASE_ERRORS that says the server is away (down, restarting, out of
# connections, read-only after a failover, unreachable), not that the statement was wrong: what
# is retried later rather than refused. DATABASE_AWAY names only errors that cannot come from
# anything but a database connection, for handlers that see every error of a request;
# DATABASE_UNAVAILABLE adds the OS-level ones a database call raises too.
DATABASE_AWAY: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.InterfaceError,
)
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (*DATABASE_AWAY, OSError, TimeoutError)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(conn: Any) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, schema="pg_catalog", encoder=_dumps, decoder=orjson.loads, format="text"
        )


async def _keep_session(conn: Any) -> None:
    """What a connection needs on its way back to the pool: nothing more than asyncpg does
    anyway (an open transaction is rolled back). The gateway leaves no session state behind (no
    SET, LISTEN, cursor or session-level advisory lock outlives its call: the migrations' lock is
    released where it is taken), so asyncpg's default reset (`SELECT pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL`) would be one more round trip on every release for nothing:
    under load, as many as the statements themselves."""


async def open_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> Pool:
    """Open a pool on `dsn`; close it with `await pool.close()`."""
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, reset=_keep_session
    )
    return cast(Pool, pool)
