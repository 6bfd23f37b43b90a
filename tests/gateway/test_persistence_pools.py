"""The assessment pipeline has a database pool of its own: while every one of its connections is
busy, a finished turn still goes straight to Postgres (never waiting behind assessments, nor
pushed to the spool for it)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from gateway.persistence import open_persistence, pipeline_connections
from gateway.settings import AssessSettings, Settings
from tests.gateway.test_persistence import record
from tests.pg import database_dsn, server_dsn

__all__ = ["database_dsn", "server_dsn"]


async def test_a_turn_is_stored_while_the_pipeline_holds_all_its_connections(
    database_dsn: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=database_dsn, data_dir=tmp_path, store_timeout_s=2.0)
    persistence = await open_persistence(settings)
    try:
        async with contextlib.AsyncExitStack() as held:
            for _ in range(pipeline_connections(settings.assess.workers)):
                await held.enter_async_context(persistence.pipeline_pool.acquire())
            info = await persistence.sessions.open("hana", None)
            stored = await persistence.turns.put(record("hana", info.session_id, "Pacing tips?"))
        assert stored == "db"
    finally:
        await persistence.aclose()


async def test_without_assessments_there_is_one_pool(database_dsn: str, tmp_path: Path) -> None:
    off = AssessSettings(enabled=False)
    settings = Settings(database_url=database_dsn, data_dir=tmp_path, assess=off)
    persistence = await open_persistence(settings)
    try:
        assert persistence.pipeline_pool is persistence.pool
    finally:
        await persistence.aclose()
