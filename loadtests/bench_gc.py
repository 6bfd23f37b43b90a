"""Garbage-collector pauses of the gateway holding many idle sessions while some stream, under
each of several collector thresholds (`COACH_GC_THRESHOLDS`), one fresh gateway each.

    python -m loadtests.bench_gc [--idle 2000] [--sessions 200] [--duration 60]
        [--thresholds 700,10,10 700,50,10] [--rounds 1]

Every collection stops the event loop, and a full one walks every object of every connection,
so its pause grows with the sessions held: that is what idle sessions add to a streaming run.
Per setting: collections per minute by generation, their mean pause, how many stopped the loop
for more than 5 / 25 / 100 ms, the share of time stopped (all from the gateway's
`coach_gc_pause_seconds`), and the added TTFT of the streaming sessions beside it. Rounds
alternate the settings, so that a change of the machine's speed falls on each alike.
Results: `loadtests/results/gc.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from loadtests.bench import BenchOptions, run_mode, servers
from loadtests.bench_output import RESULTS, write_figures
from loadtests.bench_procs import raise_fd_limit
from loadtests.bench_run import LoadShape, holding_idle
from loadtests.bench_stats import added

__all__ = ["main", "run_setting"]

Thresholds = tuple[int, int, int]


async def run_setting(
    thresholds: Thresholds, idle: int, sessions: int, shape: LoadShape, log_dir: Path
) -> dict[str, Any]:
    """One gateway on `thresholds`: `idle` idle sessions held while `sessions` stream."""
    env = {"COACH_GC_THRESHOLDS": "[{},{},{}]".format(*thresholds)}
    opts = BenchOptions(shape=shape, gateway_settings=env)
    async with servers(opts, log_dir) as found:
        ws = next(t for t in found.targets() if t.name == "ws")
        async with holding_idle(ws, idle, log_dir=log_dir) as held:
            run = await run_mode(found, ws, sessions, opts, log_dir)
    return {
        "thresholds": list(thresholds),
        "idle_connected": held.connected,
        "sessions": sessions,
        "gc": run["gateway_gc"],
        "added_ttft_ms": added(run, run["probe"]),
        "gateway_reported_added_ms": run["gateway_reported_added_ms"],
        "turns_ok": run["turns_ok"],
        "token_events_per_s": run["token_events_per_s"],
        "error_rate": run["error_rate"],
        "cpu_percent": run["cpu_percent"],
    }


def _line(result: dict[str, Any]) -> str:
    gc, add = result["gc"], result["added_ttft_ms"]
    if gc is None:
        return f"{','.join(map(str, result['thresholds'])):>12}  the gateway's /metrics unread"
    gens = "  ".join(
        f"gen{g} {gc[f'gen{g}']['per_minute']:>6}/min x {gc[f'gen{g}']['mean_ms'] or 0:6.1f} ms"
        for g in "012"
    )
    return (
        f"{','.join(map(str, result['thresholds'])):>12}  {gens}  "
        f"over 5 ms {gc['over_5ms_per_minute']:>5}/min  over 100 ms "
        f"{sum(gc[f'gen{g}']['over_100ms'] for g in '012'):>2}  "
        f"stopped {gc['stopped_percent']:>5}%  added TTFT p50 {add['p50']} / p99 {add['p99']} ms  "
        f"{result['token_events_per_s']} token events/s"
    )


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    raise_fd_limit()
    log_dir = Path(tempfile.mkdtemp(prefix="coach-bench-gc-"))
    shape = LoadShape(duration_s=args.duration, warmup_s=args.warmup)
    results = []
    for _ in range(args.rounds):
        for thresholds in args.thresholds:
            result = await run_setting(thresholds, args.idle, args.sessions, shape, log_dir)
            print(_line(result), flush=True)
            results.append(result)
    return results


def _thresholds(text: str) -> Thresholds:
    values = tuple(int(v) for v in text.split(","))
    if len(values) != 3:
        raise argparse.ArgumentTypeError("three integers, e.g. 700,50,10")
    return values


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.bench_gc",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--idle", type=int, default=2000, help="idle sessions held")
    p.add_argument("--sessions", type=int, default=200, help="streaming sessions beside them")
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds per setting")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument(
        "--thresholds", type=_thresholds, nargs="+", default=[(700, 10, 10), (700, 50, 10)]
    )
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS / "gc.json")
    args = p.parse_args(argv)
    print(
        f"{args.idle} idle + {args.sessions} streaming sessions, {args.duration} s each",
        file=sys.stderr,
    )
    results = asyncio.run(run(args))
    write_figures(
        args.out,
        {
            "idle": args.idle,
            "sessions": args.sessions,
            "duration_s": args.duration,
            "runs": results,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
