"""The pool hands a connection back without a reset round trip, and still rolls back what a
caller left open."""

from __future__ import annotations

from typing import Any

from db.pool import open_pool


async def test_a_released_connection_costs_no_reset_statement(database_dsn: str) -> None:
    pool = await open_pool(database_dsn, min_size=1, max_size=1)
    statements: list[str] = []
    try:
        async with pool.acquire() as conn:
            raw: Any = conn
            raw.add_query_logger(lambda record: statements.append(record.query))
            assert await conn.fetchval("SELECT 1") == 1
        # The one connection again: asyncpg's default reset would have logged `RESET ALL`.
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT 2") == 2
    finally:
        await pool.close()
    assert statements == ["SELECT 1", "SELECT 2"]


async def test_a_transaction_left_open_is_rolled_back_on_release(database_dsn: str) -> None:
    pool = await open_pool(database_dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS pool_probe (n int)")
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO pool_probe VALUES (1)")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM pool_probe") == 0
            assert await conn.fetchval("SELECT 3") == 3  # not inside an aborted transaction
    finally:
        await pool.close()
