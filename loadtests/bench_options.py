"""The options of `python -m loadtests.bench`: what a run measures, and its command line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.bench_peer import DEFAULT_VENV
from loadtests.bench_run import LoadShape

__all__ = ["RESULTS", "BenchOptions", "options"]

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True, slots=True)
class BenchOptions:
    steps: tuple[int, ...] = (50, 200, 500, 1000)
    idle: int = 5000
    peer: str | None = None
    quick: bool = False
    shape: LoadShape = field(default_factory=LoadShape)
    knobs: dict[str, float | int] = field(
        default_factory=lambda: {"ttft_ms": 50.0, "tokens_per_s": 50.0, "reply_tokens": 40}
    )
    out: Path = RESULTS
    peer_venv: Path = DEFAULT_VENV
    workers: int = 1  # gateway worker processes (`serve --workers N`)
    floor: bool = False  # also run `loadtests.micro.floor_relay`, both of its upstream clients
    gateway_settings: dict[str, str] = field(default_factory=dict)  # more COACH_* for it
    pin: bool = False  # the proxies on CPUs of their own, the sim and clients on the others
    http: bool = False  # `gateway_http` without a peer to compare it with
    product: bool = False  # also the product (`bench_product`): `ws_product`, `http_product`
    # Also the product from another source tree (e.g. the commit before a change), in the same
    # run: `ws_product_before`, `http_product_before`.
    before: Path | None = None
    sequential: bool = False  # also one session at a time through each gateway
    profile: bool = False  # py-spy on the gateway through each run (`bench_profile`)
    stamped: bool = False  # also write the report under the run's timestamp


def _parser(description: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.bench",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--steps", default=None, help="concurrent sessions per step, e.g. 50,200")
    p.add_argument("--idle", type=int, default=None, help="idle sessions for memory (0 = skip)")
    p.add_argument("--peer", choices=["litellm"], default=None)
    p.add_argument("--peer-venv", type=Path, default=DEFAULT_VENV)
    p.add_argument("--quick", action="store_true", help="tiny steps, seconds: a smoke run")
    p.add_argument("--duration", type=float, default=None, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=None)
    p.add_argument("--think-ms", type=float, default=0.0, help="pause between turns")
    p.add_argument("--ttft-ms", type=float, default=50.0, help="upstream first-token delay")
    p.add_argument("--tokens-per-s", type=float, default=50.0, help="upstream token rate")
    p.add_argument("--reply-tokens", type=int, default=40)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument(
        "--stamped",
        action="store_true",
        help="also keep this run as bench-<timestamp>.json/.png beside bench.json (git ignores "
        "them)",
    )
    p.add_argument("--workers", type=int, default=1, help="gateway worker processes")
    p.add_argument(
        "--floor",
        action="store_true",
        help="also run the minimal relay (loadtests.micro.floor_relay), plain and with the "
        "gateway's chat client",
    )
    p.add_argument(
        "--http",
        action="store_true",
        help="also the gateway's OpenAI-compatible route (gateway_http), as --peer runs it",
    )
    p.add_argument(
        "--product",
        action="store_true",
        help="also the product: a second gateway with Postgres (a fresh database on "
        "DATABASE_URL's server), assessments and log level info (ws_product, http_product)",
    )
    p.add_argument(
        "--before",
        type=Path,
        default=None,
        help="also the product from this copy of the repository (e.g. the commit before a "
        "change, `git archive`d): ws_product_before, http_product_before",
    )
    p.add_argument(
        "--sequential",
        action="store_true",
        help="also one session at a time through every mode (the openai SDK's usual pattern)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy on the gateway (relay and product) through each run: profile-<mode>-<n>.txt "
        "in the run's log folder, summarised in the report",
    )
    p.add_argument(
        "--pin",
        action="store_true",
        help="the gateway (and the relays and the peer) on a CPU of its own per worker, the sim "
        "and the load clients on the others",
    )
    return p


def options(argv: list[str] | None = None, description: str | None = None) -> BenchOptions:
    """The options from a command line (`description`: the program's help text)."""
    a = _parser(description).parse_args(argv)
    default_steps = "5,10" if a.quick else "50,200,500,1000"
    steps = tuple(int(s) for s in (a.steps or default_steps).split(",") if s.strip())
    duration = a.duration or (1.5 if a.quick else 15.0)
    warmup = a.warmup if a.warmup is not None else (0.3 if a.quick else 3.0)
    ramp = 0.2 if a.quick else 2.0
    shape = LoadShape(duration, warmup, ramp, think_ms=a.think_ms)
    knobs: dict[str, float | int] = {
        "ttft_ms": a.ttft_ms,
        "tokens_per_s": a.tokens_per_s,
        "reply_tokens": 10 if a.quick else a.reply_tokens,
    }
    idle = a.idle if a.idle is not None else (50 if a.quick else 5000)
    return BenchOptions(
        steps,
        idle,
        a.peer,
        a.quick,
        shape,
        knobs,
        a.out,
        a.peer_venv,
        workers=a.workers,
        floor=a.floor,
        pin=a.pin,
        http=a.http,
        product=a.product,
        before=a.before.resolve() if a.before else None,
        sequential=a.sequential,
        profile=a.profile,
        stamped=a.stamped,
    )
