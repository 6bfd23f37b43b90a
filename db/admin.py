"""Creating and dropping whole databases (test runs and benchmarks use throwaway ones)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

__all__ = ["create_database", "drop_database", "with_database"]

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def with_database(dsn: str, name: str) -> str:
    """`dsn` pointing at database `name` instead."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


async def create_database(admin_dsn: str, name: str) -> str:
    """Create the empty database `name` on the server of `admin_dsn`; return its DSN."""
    if not _NAME.match(name):
        raise ValueError(f"bad database name {name!r}")
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_dsn, name)


async def drop_database(admin_dsn: str, name: str) -> None:
    """Drop `name`, disconnecting whoever is still on it."""
    if not _NAME.match(name):
        raise ValueError(f"bad database name {name!r}")
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
