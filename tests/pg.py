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
from urllib.parse import urlsplit

import pytest

from db import admin, embedded
from db.migrate import migrate
from db.pool import Pool, open_pool

__all__ = ["create_database", "database_dsn", "drop_database", "migrated_pool", "server_dsn"]


async def create_database(admin_dsn: str) -> str:
    """Create a uniquely named empty database; return its DSN."""
    return await admin.create_database(admin_dsn, f"coach_test_{uuid.uuid4().hex[:12]}")


async def drop_database(admin_dsn: str, dsn: str) -> None:
    await admin.drop_database(admin_dsn, urlsplit(dsn).path.lstrip("/"))


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
