"""Assessment pipeline throughput: jobs/s from a table of pending turns to stored assessments,
with the simulated upstream as the assessor (real HTTP, the real OpenAI adapter).

    python -m loadtests.micro.pipeline [--jobs 400] [--workers 4] [--ttft-ms 20] [--dsn DSN]
        [--assessor sim|instant] [--out FILE]

`--assessor instant` answers in-process with no HTTP: the pipeline's own ceiling (claims,
filter, validation, the transaction per job).

Uses `--dsn`, else `DATABASE_URL`, else an embedded Postgres in a temporary directory; the run
gets its own throwaway database. Prints the figures and writes them to
`loadtests/results/pipeline.json` (or `--out`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from assess.assessor import Assessor
from assess.pipeline import PipelineConfig, open_pipeline
from db import embedded, jobs, sessions
from db.admin import create_database, drop_database
from db.interactions import NewInteraction, record_turn
from db.migrate import migrate
from db.pool import Pool, open_pool
from db.prompt_runs import NewPromptRun
from gateway.settings import ProviderConfig
from loadtests.bench_output import RESULTS
from providers.chat import ChatChunk, ChatProvider, ChatRequest, Usage
from providers.factory import build_chat_provider
from providers.routing import Router, Target
from providers.sim import running_sim

TEXT = (
    "Here is my practice pitch: our team builds tools that help nurses plan their shifts, and we "
    "cut overtime by a third across four hospitals, so I am asking you for a pilot in your ward."
)


class InstantJudge(ChatProvider):
    """Answers an assessment request at once with JSON that fits its schema."""

    name = "instant"
    kind = "instant"

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        assert request.json_schema is not None
        props = request.json_schema["properties"]
        ids = [
            line.split(":", 1)[1].strip()
            for line in request.messages[-1].content.splitlines()
            if line.startswith("ALLOWED_IDS:")
        ]
        answer = {
            "rubric_version": props["rubric_version"]["enum"][0],
            "kind": props["kind"]["enum"][0],
            "interaction_ids": ids[0].split(",") if ids else [],
            "assessments": {
                focus: {
                    "category": "progress",
                    "score": 6,
                    "explanation": "",
                    "errors": [],
                    "tags": [],
                }
                for focus in props["assessments"]["required"]
            },
        }
        yield ChatChunk(text=orjson.dumps(answer).decode())
        yield ChatChunk(usage=Usage(100, 60), finish_reason="stop")


async def seed(pool: Pool, n: int) -> None:
    """`n` finished turns with pending jobs, spread over sessions of 10 turns."""
    session_id = ""
    for i in range(n):
        if i % 10 == 0:
            opened = await sessions.open_session(pool, f"bench-{i // 10}", None, idle_s=3600)
            session_id = opened.session.id
        rid = f"bench-{uuid.uuid4().hex}"
        turn = NewInteraction(
            session_id=session_id,
            user_id=f"bench-{i // 10}",
            turn_id=rid,
            request_id=rid,
            channel="ws",
            user_text=TEXT,
            reply_text="Slow down at the ask.",
            status="completed",
            finish_reason="stop",
            total_ms=100.0,
            focus_ids=("pacing", "clarity"),
        )
        run = NewPromptRun(request_id=rid, purpose="chat", status="completed", latency_ms=100.0)
        await record_turn(pool, turn, run, enqueue=True)


async def drain(pool: Pool, config: PipelineConfig, router: Router) -> float:
    started = time.perf_counter()
    async with open_pipeline(pool, Assessor(router), config):
        while True:
            counts = await jobs.job_counts(pool)
            if not counts.get("pending") and not counts.get("running"):
                break
            await asyncio.sleep(0.02)
    return time.perf_counter() - started


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    admin = args.dsn or os.environ.get("DATABASE_URL")
    if not admin:
        admin = await asyncio.to_thread(embedded.start, Path(tempfile.mkdtemp()))
    name = f"coach_bench_{uuid.uuid4().hex[:8]}"
    dsn = await create_database(admin, name)
    try:
        pool = await open_pool(dsn, max_size=args.workers + 6)
        try:
            await migrate(pool)
            await seed(pool, args.jobs)
            cfg = PipelineConfig(workers=args.workers, queue_size=256, poll_s=0.05)
            if args.assessor == "instant":
                router = Router({"primary": InstantJudge()}, {"assess": [Target("primary", "x")]})
                elapsed = await drain(pool, cfg, router)
            else:
                async with running_sim() as sim:
                    await sim.set_knobs(ttft_ms=args.ttft_ms, tokens_per_s=0)
                    config = ProviderConfig(
                        kind="openai", base_url=f"{sim.url}/v1", api_key="sk-sim"
                    )
                    provider = build_chat_provider("primary", config, sim_url=sim.url)
                    router = Router({"primary": provider}, {"assess": [Target("primary", "sim")]})
                    elapsed = await drain(pool, cfg, router)
            await router.aclose()
            counts = await jobs.job_counts(pool)
            stored = await pool.fetchval("SELECT count(*) FROM assessments")
        finally:
            await pool.close()
    finally:
        await drop_database(admin, name)
    return {
        "benchmark": "pipeline",
        "assessor": args.assessor,
        "at": datetime.now(UTC).isoformat(),
        "jobs": args.jobs,
        "workers": args.workers,
        "sim_ttft_ms": args.ttft_ms,
        "elapsed_s": round(elapsed, 3),
        "jobs_per_s": round(args.jobs / elapsed, 1),
        "job_status": counts,
        "assessments": int(stored),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--ttft-ms", type=float, default=20.0)
    parser.add_argument("--dsn")
    parser.add_argument("--assessor", choices=["sim", "instant"], default="sim")
    parser.add_argument("--out", type=Path, default=RESULTS / "pipeline.json")
    args = parser.parse_args()
    result = asyncio.run(bench(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(
        f"pipeline ({result['assessor']}): {result['jobs']} jobs in {result['elapsed_s']} s"
        f" with {result['workers']} workers = {result['jobs_per_s']} jobs/s"
        f" ({result['assessments']} assessments, status {result['job_status']})"
    )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
