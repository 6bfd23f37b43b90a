"""The product beside the relay in `loadtests.bench`: a second gateway as users run it (Postgres on
a throwaway database, the assessment pipeline on, log level info), and the meter of its
assessment backlog.

The backlog is read from the outbox table itself (jobs `pending` or `running`), the truth the
in-process queue only hints at: sampled once a second while a product run's load goes, then
polled after the load stops until it is empty (the time to drain) or a bound runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

__all__ = [
    "PRODUCT_MODES",
    "RELAY_OF",
    "Backlog",
    "drain_time",
    "product_database",
    "product_env",
    "relay_mode",
    "sampled_backlog",
]

# Product runs -> the product gateway's process they go through (`bench --before` adds the
# second, from another source tree).
PRODUCT_MODES = {
    "ws_product": "product",
    "http_product": "product",
    "ws_product_before": "product_before",
    "http_product_before": "product_before",
}
# Product runs -> the relay runs they are judged against (same client, same step).
RELAY_OF = {"ws": "ws", "http": "gateway_http"}


def relay_mode(mode: str) -> str:
    """The relay run a product run is compared with: `ws_product*` -> `ws`, `http_product*` ->
    `gateway_http`."""
    return RELAY_OF[mode.split("_", 1)[0]]


_BACKLOG = "SELECT count(*) FROM assessment_jobs WHERE status IN ('pending', 'running')"


@contextlib.asynccontextmanager
async def product_database() -> AsyncIterator[str]:
    """A fresh database on `DATABASE_URL`'s server (else an embedded Postgres, the `pgserver`
    the gateway itself embeds, in a temporary directory), dropped at the end: the product starts
    from empty tables every run."""
    server = os.environ.get("DATABASE_URL")
    if not server:
        root = Path(tempfile.mkdtemp(prefix="coach-bench-pg-"))
        server = await asyncio.to_thread(_embedded_server, root)
    name = f"coach_bench_{uuid.uuid4().hex[:10]}"
    await _admin(server, f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    finally:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _embedded_server(root: Path) -> str:
    from pgserver.postgres_server import PostgresServer

    pgdata = root / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    return str(PostgresServer(pgdata, cleanup_mode="stop").get_uri())


async def _admin(server: str, statement: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def product_env(dsn: str, data_dir: Path) -> dict[str, str]:
    """What turns a bench gateway (`bench_procs.gateway_env`) into the product: persistence and
    assessments on, its own data directory (spool), and the log level a user runs."""
    return {
        "COACH_PERSISTENCE": "true",
        "DATABASE_URL": dsn,
        "COACH_DATA_DIR": str(data_dir),
        "COACH_LOG_LEVEL": "info",
    }


@dataclass(slots=True)
class Backlog:
    """Assessment jobs not yet done, one sample a second over a run (`series`), and how long
    the backlog took to empty after the load stopped."""

    series: list[int] = field(default_factory=list)
    drain_s: float | None = None
    left_after_drain: int | None = None
    by_status: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "max": max(self.series, default=None),
            "at_load_end": self.series[-1] if self.series else None,
            "series": self.series,
            "drain_s": self.drain_s,
            "left_after_drain": self.left_after_drain,
            "jobs_by_status": self.by_status,
        }


async def _count(conn: Any) -> int:
    return int(await conn.fetchval(_BACKLOG))


@contextlib.asynccontextmanager
async def sampled_backlog(dsn: str, interval_s: float = 1.0) -> AsyncIterator[Backlog]:
    """Samples the backlog every `interval_s` while the block runs (one connection of its own)."""
    backlog = Backlog()
    conn = await asyncpg.connect(dsn)

    async def sample() -> None:
        while True:
            backlog.series.append(await _count(conn))
            await asyncio.sleep(interval_s)

    task = asyncio.create_task(sample())
    try:
        yield backlog
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            backlog.series.append(await _count(conn))
        await conn.close()


async def drain_time(dsn: str, backlog: Backlog, *, bound_s: float = 45.0) -> None:
    """Polls until no job is pending or running (`backlog.drain_s`), at most `bound_s`
    (then `drain_s` stays None and `left_after_drain` says how many were left)."""
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        left = await _count(conn)
        while left and time.perf_counter() - started < bound_s:
            await asyncio.sleep(0.1)
            left = await _count(conn)
        if not left:
            backlog.drain_s = round(time.perf_counter() - started, 2)
        backlog.left_after_drain = left
        rows = await conn.fetch("SELECT status, count(*) AS n FROM assessment_jobs GROUP BY 1")
        backlog.by_status = {r["status"]: int(r["n"]) for r in rows}
    finally:
        await conn.close()
