"""A whole gateway in-process as users run it, for the component benchmarks that measure a
product feature (skills, the scheduler, the agent): real uvicorn, Postgres on a throwaway
database of `DATABASE_URL`'s server (else the embedded one), assessments on, the simulated
upstream as every model (5 ms first token, no pacing), quotas out of the way."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from db import admin, embedded
from gateway.server import RunningGateway, running_gateway
from gateway.settings import QuotaSettings, Settings
from providers.sim import SimKnobs, running_sim

__all__ = ["product_gateway"]


@contextlib.asynccontextmanager
async def product_gateway(secret: str, **settings: Any) -> AsyncIterator[RunningGateway]:
    """The gateway, its sim and its database, gone when the block ends; `settings` override
    the defaults above."""
    server = os.environ.get("DATABASE_URL")
    if not server:
        server = await asyncio.to_thread(embedded.start, Path(tempfile.mkdtemp(prefix="coach-pg-")))
    name = f"coach_bench_{uuid.uuid4().hex[:10]}"
    dsn = await admin.create_database(server, name)
    try:
        async with running_sim(SimKnobs(ttft_ms=5, tokens_per_s=0)) as sim:
            base: dict[str, Any] = {
                "jwt_secret": secret,
                "database_url": dsn,
                "data_dir": Path(tempfile.mkdtemp(prefix="coach-bench-")),
                "sim_url": sim.url,
                "quotas": QuotaSettings(turns_per_minute=0, tokens_per_day=0),
                "log_level": "warning",
            }
            async with running_gateway(Settings(**{**base, **settings})) as gateway:
                yield gateway
    finally:
        await admin.drop_database(server, name)
