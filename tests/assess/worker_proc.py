"""A pipeline process for the crash, two-process and SIGTERM tests.

    python -m tests.assess.worker_proc DSN [--workers N] [--delay S] [--hang] [--lease S]
        [--drain S] [--until-empty] [--markers DIR] [--wait-go] [--default-config]

With --default-config the pipeline is the one the gateway's default settings make (the workers,
lease and drain options are ignored then). With --wait-go it starts working only once a line
arrives on stdin. Runs until SIGTERM (or, with --until-empty, until no job is pending or
running), closes the pipeline (drain), then prints one JSON line: the job ids it called the
model for, and its stats.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from pathlib import Path

import orjson

from assess.assessor import Assessor
from assess.pipeline import Pipeline, PipelineConfig
from assess.work import JobRules
from db import jobs as jobs_db
from db.pool import open_pool
from gateway.persistence import pipeline_config
from gateway.settings import AssessSettings
from tests.assess.fakes import FakeAssessProvider, fake_router, job_of


def make_config(args: argparse.Namespace) -> PipelineConfig:
    if args.default_config:
        return pipeline_config(AssessSettings())
    return PipelineConfig(
        workers=args.workers,
        queue_size=64,
        lease_s=args.lease,
        poll_s=0.05,
        drain_s=args.drain,
        sweep_s=3600,
        rules=JobRules(call_timeout_s=600),
    )


async def main(args: argparse.Namespace) -> None:
    config = make_config(args)
    pool = await open_pool(args.dsn, max_size=config.workers + 3)
    markers = Path(args.markers) if args.markers else None
    provider = FakeAssessProvider(delay_s=args.delay, hang=args.hang, marker_dir=markers)
    pipeline = Pipeline(pool, Assessor(fake_router(provider)), config)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    if args.wait_go:  # a barrier, so that several processes begin together
        await asyncio.to_thread(sys.stdin.readline)
    await pipeline.start()
    if args.until_empty:
        while True:
            counts = await jobs_db.job_counts(pool)
            if (not counts.get("pending") and not counts.get("running")) or stop.is_set():
                break
            await asyncio.sleep(0.05)
    else:
        await stop.wait()
    await pipeline.aclose()
    await pool.close()
    report = {
        "called": [job_of(r) for r in provider.calls],
        "stats": dataclasses.asdict(pipeline.stats),
    }
    print(orjson.dumps(report).decode(), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--hang", action="store_true")
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--drain", type=float, default=5.0)
    parser.add_argument("--until-empty", action="store_true")
    parser.add_argument("--markers")
    parser.add_argument("--wait-go", action="store_true")
    parser.add_argument("--default-config", action="store_true")
    asyncio.run(main(parser.parse_args()))
