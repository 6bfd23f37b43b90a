"""Fixtures of the gateway's tests: the whole gateway on Postgres (`stack`, one per test; a module
that needs other settings defines its own `stack`), its pool (`pool_of`), and the log lines a
test caused, as the gateway writes them."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from db.pool import Pool
from gateway.logs import configure_logging
from gateway.server import RunningGateway, running_gateway
from tests.conftest import make_settings


@pytest.fixture
async def stack(fast_sim: Any, tmp_path: Path, database_dsn: str) -> AsyncIterator[RunningGateway]:
    """The whole gateway (real uvicorn) on the module's Postgres database, assessments on, the
    sim as every model; the module imports `database_dsn` from tests.pg."""
    settings = make_settings(fast_sim.url, tmp_path, persistence=True, database_url=database_dsn)
    async with running_gateway(settings) as running:
        yield running


def pool_of(running: RunningGateway) -> Pool:
    """The running gateway's database pool."""
    persistence = running.app.state.gateway.persistence
    assert persistence is not None, "this gateway runs without a database"
    pool: Pool = persistence.pool
    return pool


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every log record of the test, debug included, as the gateway writes them (one JSON line
    each); the root logger's handlers and level are restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("debug", stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line]
