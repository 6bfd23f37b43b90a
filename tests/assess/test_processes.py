"""Real processes on one database: a SIGKILLed worker, two workers at once, a SIGTERM drain."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from db.pool import Pool
from gateway.persistence import pipeline_config
from gateway.settings import AssessSettings
from tests.assess.helpers import (
    add_turn,
    job_statuses,
    lease_of,
    open_session,
    wait_renewed,
)
from tests.conftest import eventually

ROOT = Path(__file__).resolve().parents[2]


async def spawn(dsn: str, *args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.assess.worker_proc",
        dsn,
        *args,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        assert (await proc.stdout.readline()).strip() == b"ready"
    return proc


async def report(proc: asyncio.subprocess.Process, timeout_s: float = 30) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        out, _ = await proc.communicate()
    assert proc.returncode == 0
    result: dict[str, Any] = orjson.loads(out.strip().splitlines()[-1])
    return result


async def wait_for(path: Path, timeout_s: float = 20) -> None:
    """Until a marker file appears in `path` (the worker's model call started)."""
    await eventually(lambda: any(path.iterdir()), timeout_s)


async def test_killed_worker_job_is_taken_up_once_its_short_lease_runs_out(
    migrated_pool: Pool, database_dsn: str, tmp_path: Path
) -> None:
    """Default settings: the victim renews its lease while its model call hangs, so the lease
    can be short; once the victim is SIGKILLed, a survivor already running takes the job up when
    that lease runs out (at most lease_s + poll_s after the kill) and assesses it once."""
    defaults = pipeline_config(AssessSettings())
    assert defaults.lease_s + defaults.poll_s <= 10
    sid = await open_session(migrated_pool, "u-crash")
    _, job_id = await add_turn(migrated_pool, "u-crash", sid)
    victim = await spawn(database_dsn, "--default-config", "--hang", "--markers", str(tmp_path))
    await wait_for(tmp_path)  # the model call is in flight: the job is claimed and leased
    claimed = await lease_of(migrated_pool, job_id)
    survivor = await spawn(database_dsn, "--default-config", "--until-empty")
    await wait_renewed(migrated_pool, job_id, claimed)  # the victim's heartbeat
    victim.kill()  # SIGKILL: no drain, no release
    await victim.wait()
    left = await migrated_pool.fetchrow(
        "SELECT status, lease_until, now() AS killed_at FROM assessment_jobs WHERE id = $1", job_id
    )
    assert left["status"] == "running"
    # Free again at most a lease after the kill (a second more: a renewal the victim sent as
    # it died may still land).
    assert left["lease_until"] - left["killed_at"] < timedelta(seconds=defaults.lease_s + 1)

    result = await report(survivor)
    assert result["called"] == [job_id]
    row = await migrated_pool.fetchrow(
        "SELECT status, attempts, updated_at,"
        " (SELECT count(*) FROM assessments WHERE job_id = $1) AS n,"
        " (SELECT count(*) FROM prompt_runs WHERE job_id = $1 AND purpose = 'assess') AS runs"
        " FROM assessment_jobs WHERE id = $1",
        job_id,
    )
    assert row["status"] == "done" and row["attempts"] == 2
    assert row["n"] == 2 and row["runs"] == 1  # two focuses, each once; one model call
    assert row["updated_at"] > left["lease_until"]  # taken up only once the lease ran out


async def test_two_processes_never_assess_a_turn_twice(
    migrated_pool: Pool, database_dsn: str
) -> None:
    sid = await open_session(migrated_pool, "u-two")
    job_ids = [(await add_turn(migrated_pool, "u-two", sid))[1] for _ in range(40)]
    args = ("--workers", "4", "--delay", "0.02", "--until-empty", "--wait-go")
    procs = [await spawn(database_dsn, *args) for _ in range(2)]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    results = [await report(p, 60) for p in procs]
    called = Counter(j for r in results for j in r["called"])
    assert set(called) == set(job_ids) and max(called.values()) == 1
    assert all(r["called"] for r in results), "both processes took work"
    assert set((await job_statuses(migrated_pool, job_ids)).values()) == {"done"}
    per_job = await migrated_pool.fetch(
        "SELECT job_id, count(*) AS n FROM assessments WHERE job_id = ANY($1::bigint[])"
        " GROUP BY job_id",
        job_ids,
    )
    assert len(per_job) == 40 and {r["n"] for r in per_job} == {2}
    runs = await migrated_pool.fetchval(
        "SELECT count(*) FROM prompt_runs WHERE purpose = 'assess' AND job_id = ANY($1::bigint[])",
        job_ids,
    )
    assert runs == 40


async def test_sigterm_drains_then_leaves_the_rest_pending(
    migrated_pool: Pool, database_dsn: str, tmp_path: Path
) -> None:
    sid = await open_session(migrated_pool, "u-term")
    job_ids = [(await add_turn(migrated_pool, "u-term", sid))[1] for _ in range(8)]
    proc = await spawn(
        database_dsn,
        "--workers",
        "2",
        "--delay",
        "0.6",
        "--drain",
        "1.0",
        "--markers",
        str(tmp_path),
    )
    await wait_for(tmp_path)
    started = asyncio.get_running_loop().time()
    proc.send_signal(signal.SIGTERM)
    result = await report(proc, 10)
    assert asyncio.get_running_loop().time() - started < 4.0
    statuses = await job_statuses(migrated_pool, job_ids)
    assert "running" not in statuses.values()
    done = [j for j, s in statuses.items() if s == "done"]
    assert len(done) >= 2 and result["stats"]["done"] == len(done)
    assert list(statuses.values()).count("pending") >= 2
