"""A fresh Postgres database per test module.

The server is `DATABASE_URL` when set (trust auth; the test creates and drops a uniquely named
database on it), otherwise an embedded `pgserver` cluster started once per test run in a
temporary directory.
"""

from __future__ import annotations

import functools
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import pytest

from db import embedded
from db.migrate import migrate
from db.pool import Pool, open_pool

__all__ = ["create_database", "database_dsn", "drop_database", "migrated_pool", "server_dsn"]


def with_database(dsn: str, name: str) -> str:
    """`dsn` pointing at database `name` instead."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def create_database(admin_dsn: str) -> str:
    """Create a uniquely named empty database; return its DSN."""
    name = f"coach_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_dsn, name)


async def drop_database(admin_dsn: str, dsn: str) -> None:
    name = urlsplit(dsn).path.lstrip("/")
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@functools.cache
def _embedded_dsn() -> str:
    # One cluster per test run, shared by every package's conftest that imports these fixtures.
    return embedded.start(Path(tempfile.mkdtemp(prefix="coach-pg-")))


@pytest.fixture(scope="session")
def server_dsn() -> str:
    """The server tests create their databases on."""
    return os.environ.get("DATABASE_URL") or _embedded_dsn()


@pytest.fixture(scope="module")
async def database_dsn(server_dsn: str) -> AsyncIterator[str]:
    """A fresh, empty database for one test module."""
    dsn = await create_database(server_dsn)
    yield dsn
    await drop_database(server_dsn, dsn)


@pytest.fixture(scope="module")
async def migrated_pool(database_dsn: str) -> AsyncIterator[Pool]:
    """A pool on the module's database with every migration applied."""
    pool = await open_pool(database_dsn, max_size=8)
    await migrate(pool)
    yield pool
    await pool.close()
