"""How fast the turn spool takes turns while Postgres is away, and drains them when it returns.

Appends N finished turns to a spool (each fsynced, as while Postgres is unreachable), then
times the drainer writing them all to Postgres (batched transactions, in order, once each) on a
fresh database of `DATABASE_URL`'s server (else the embedded Postgres). Prints the figures and
writes `loadtests/results/spool_drain.json`.

    python -m loadtests.micro.spool_drain [--turns 1000] [--sessions 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path

import orjson

from db import admin, embedded
from db.migrate import migrate
from db.pool import open_pool
from db.sessions import open_session
from gateway.spool import Spool
from gateway.turn_store import TurnStore
from streams.records import TurnRecord

RESULTS = Path(__file__).parents[1] / "results"


def _turn(session_id: str, user_id: str, n: int) -> TurnRecord:
    return TurnRecord(
        turn_id=f"t{n}",
        request_id=f"req-{uuid.uuid4().hex}",
        user_id=user_id,
        session_id=session_id,
        channel="ws",
        user_text=f"How do I hold a long note? ({n})",
        reply_text="Breathe low, keep the jaw loose, and let the note ride on steady air. " * 3,
        status="completed",
        finish_reason="stop",
        provider="primary",
        model="gpt-4o-mini",
        input_tokens=120,
        output_tokens=60,
        ttft_ms=30.0,
        upstream_ttft_ms=28.0,
        total_ms=900.0,
        cost_usd=0.0001,
    )


async def run(turns: int, sessions: int) -> dict[str, object]:
    server = os.environ.get("DATABASE_URL")
    if not server:
        data_dir = Path(tempfile.mkdtemp(prefix="coach-bench-pg-"))
        server = await asyncio.to_thread(embedded.start, data_dir)
    dsn = await admin.create_database(server, f"coach_bench_{uuid.uuid4().hex[:10]}")
    pool = await open_pool(dsn, max_size=4)
    try:
        await migrate(pool)
        ids = []
        for n in range(sessions):
            opened = await open_session(pool, f"user-{n}", None, idle_s=3600)
            ids.append((opened.session.id, f"user-{n}"))
        spool = Spool(Path(tempfile.mkdtemp(prefix="coach-spool-")), max_bytes=1 << 30)
        records = [_turn(*ids[n % sessions], n) for n in range(turns)]
        started = time.perf_counter()
        for record in records:
            await spool.append(record)
        append_s = time.perf_counter() - started
        store = TurnStore(pool, spool, lambda job_id: True)
        started = time.perf_counter()
        await store.drain()
        drain_s = time.perf_counter() - started
        stored = await pool.fetchval("SELECT count(*) FROM interactions")
        store.close()
    finally:
        await pool.close()
        await admin.drop_database(server, dsn.rsplit("/", 1)[1])
    return {
        "turns": turns,
        "stored": int(stored),
        "append_ms_per_turn": round(append_s * 1000 / turns, 3),
        "drain_s": round(drain_s, 3),
        "drained_turns_per_s": round(turns / drain_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=20)
    args = parser.parse_args()
    result = asyncio.run(run(args.turns, args.sessions))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "spool_drain.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
