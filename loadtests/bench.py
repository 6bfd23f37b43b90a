"""Benchmark: the gateway under ramped streaming load, against the upstream called directly and,
optionally, against a peer proxy (LiteLLM).

    python -m loadtests.bench [--steps 50,200,500,1000] [--idle 5000] [--peer litellm] [--floor]
        [--http] [--quick] [--pin] [--out DIR] [--stamped]

The simulated upstream, the gateway, the peer and the load client each run as their own process
on loopback, so their CPU is measured apart. Per step (concurrent sessions, each running turns
back to back) every mode runs in turn with the same client code:
- `direct`: the client streams from the upstream itself (the baseline);
- `ws`: realtime WebSocket sessions through the gateway;
- `gateway_http` (with `--peer` or `--http`) and `peer_http` (with `--peer`): OpenAI-compatible
  streaming HTTP through the gateway and through the peer;
- `floor` and `floor_native` (with `--floor`): realtime sessions through
  `loadtests.micro.floor_relay`, the least a Python relay does per token, and the same relay
  streaming each turn with the gateway's own chat client and send path (`--client native`): to
  compare the gateway's CPU per event with, apart from its framework and features.
Added TTFT = client-observed TTFT through a proxy minus the upstream's own TTFT measured in the
same run: beside the proxied sessions the client runs `probe_sessions(n)` sessions that call the
upstream directly, so both feel the same load on the machine's shared cores. (The separate
`direct` run's TTFT is the other baseline, kept as `added_vs_direct_run_ms`.)
With `--pin` the proxies run on CPUs of their own (one per gateway worker) and the sim and the
clients on the others, as if the load came from another machine: the gateway is no longer
descheduled for them, and they have fewer cores.
Results: `loadtests/results/bench.json` and its plot `bench.png` (or under `--out`), replacing the
previous run's; `--stamped` also keeps `bench-<timestamp>.*` beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil  # type: ignore[import-untyped,unused-ignore]

from loadtests.bench_peer import (
    DEFAULT_VENV,
    PEER_KEY,
    PeerUnavailable,
    ensure_litellm,
    running_litellm,
)
from loadtests.bench_plot import plot
from loadtests.bench_procs import (
    Proc,
    free_port,
    gateway_env,
    raise_fd_limit,
    sim_argv,
    started,
)
from loadtests.bench_report import evaluate_targets, peer_ratios, print_report
from loadtests.bench_run import LoadShape, Probe, Target, idle_memory, run_load
from loadtests.bench_stats import FLOORS, PROXIES, added, cpu_us_per_event

__all__ = [
    "BenchOptions",
    "CpuSplit",
    "Servers",
    "main",
    "run_bench",
    "run_mode",
    "servers",
    "split_cpus",
]

RESULTS = Path(__file__).parent / "results"
MODEL = "gpt-4o-mini"


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
    stamped: bool = False  # also write the report under the run's timestamp


def realtime_url(http_url: str) -> str:
    """The realtime WebSocket endpoint of a server at `http_url` (the gateway or the floor)."""
    return http_url.replace("http://", "ws://", 1) + "/v1/realtime"


@dataclass
class Servers:
    sim_url: str
    gateway_url: str
    procs: dict[str, Proc]
    peer_url: str | None = None
    floor_urls: dict[str, str] = field(default_factory=dict)  # mode -> http URL
    peer_status: dict[str, Any] = field(default_factory=dict)
    http: bool = False  # the gateway's OpenAI-compatible route too, with or without a peer

    def targets(self) -> list[Target]:
        targets = [
            Target("direct", "openai", f"{self.sim_url}/v1/chat/completions", MODEL, "sk-sim"),
            Target("ws", "ws", realtime_url(self.gateway_url)),
        ]
        for mode, url in self.floor_urls.items():
            targets.append(Target(mode, "ws", realtime_url(url)))
        if self.http or self.peer_status:
            targets.append(
                Target("gateway_http", "openai", f"{self.gateway_url}/v1/chat/completions", MODEL)
            )
        if self.peer_url:
            url = f"{self.peer_url}/v1/chat/completions"
            targets.append(Target("peer_http", "openai", url, MODEL, PEER_KEY))
        return targets


@contextlib.asynccontextmanager
async def servers(opts: BenchOptions, log_dir: Path) -> AsyncIterator[Servers]:
    sim_port, gw_port = free_port(), free_port()
    sim_url, gw_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{gw_port}"
    gw_argv = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(gw_port)]
    gw_argv += ["--workers", str(opts.workers)]
    async with contextlib.AsyncExitStack() as stack:
        sim = await stack.enter_async_context(
            started("sim", sim_argv(sim_port, opts.knobs), f"{sim_url}/_sim/stats", log_dir=log_dir)
        )
        gateway = await stack.enter_async_context(
            started(
                "gateway",
                gw_argv,
                f"{gw_url}/healthz",
                log_dir=log_dir,
                env={**gateway_env(sim_url), **opts.gateway_settings},
            )
        )
        found = Servers(sim_url, gw_url, {"gateway": gateway, "sim": sim}, http=opts.http)
        if opts.floor:
            for mode, client in FLOORS.items():
                await _start_floor(found, stack, log_dir, mode, client)
        if opts.peer:
            await _start_peer(opts, found, stack, log_dir)
        yield found


async def _start_floor(
    found: Servers, stack: contextlib.AsyncExitStack, log_dir: Path, mode: str, client: str
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "loadtests.micro.floor_relay", "--port", str(port)]
    argv += ["--upstream", found.sim_url, "--client", client]
    found.procs[mode] = await stack.enter_async_context(
        started(mode, argv, f"{url}/healthz", log_dir=log_dir)
    )
    found.floor_urls[mode] = url


async def _start_peer(
    opts: BenchOptions, found: Servers, stack: contextlib.AsyncExitStack, log_dir: Path
) -> None:
    if opts.peer != "litellm":
        found.peer_status = {"name": opts.peer, "ran": False, "reason": "unknown peer"}
        return
    started_at = time.perf_counter()
    try:
        exe = await ensure_litellm(opts.peer_venv, log_dir)
        port = free_port()
        proc = await stack.enter_async_context(
            running_litellm(exe, found.sim_url, port, model=MODEL, log_dir=log_dir)
        )
    except PeerUnavailable as exc:
        found.peer_status = {"name": "litellm", "ran": False, "reason": str(exc)}
        print(f"peer unavailable: {exc}", file=sys.stderr)
        return
    found.procs["peer"] = proc
    found.peer_url = f"http://127.0.0.1:{port}"
    found.peer_status = {
        "name": "litellm",
        "ran": True,
        "version": _peer_version(opts.peer_venv),
        "venv": str(opts.peer_venv),
        "ready_after_s": round(time.perf_counter() - started_at, 1),
    }


def _peer_version(venv: Path) -> str | None:
    python = venv / "bin" / "python"
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or None
    return None


def _metered(found: Servers, target: Target) -> dict[str, Proc]:
    """The processes a run goes through: its proxy (named as in `bench_stats.PROXIES`), then
    the sim."""
    proxy = {"direct": None, "peer_http": "peer", **{m: m for m in FLOORS}}.get(
        target.name, "gateway"
    )
    names = ["sim"] if proxy is None else [proxy, "sim"]
    return {n: found.procs[n] for n in names if n in found.procs}


def _gateway_metrics(found: Servers, target: Target, opts: BenchOptions) -> str | None:
    """Where to read the gateway's garbage-collector pauses for a run through it (with one
    worker: each of several would answer for itself)."""
    if opts.workers != 1 or "gateway" not in _metered(found, target):
        return None
    return f"{found.gateway_url}/metrics"


def probe_sessions(sessions: int) -> int:
    """Direct sessions beside `sessions` proxied ones: a fifth, enough samples for a p99."""
    return max(10, sessions // 5)


async def run_mode(
    found: Servers, target: Target, sessions: int, opts: BenchOptions, log_dir: Path
) -> dict[str, Any]:
    """One run of `sessions` against `target`; a proxied one has direct sessions beside it."""
    direct = next(t for t in found.targets() if t.name == "direct")
    return await run_load(
        target,
        sessions,
        opts.shape,
        _metered(found, target),
        log_dir=log_dir,
        prefix=f"{target.name}-{sessions}-{int(time.time())}",
        probe=None if target == direct else Probe(direct, probe_sessions(sessions)),
        gateway_metrics=_gateway_metrics(found, target, opts),
    )


async def run_step(
    found: Servers, sessions: int, opts: BenchOptions, log_dir: Path
) -> dict[str, Any]:
    modes: dict[str, Any] = {}
    for target in found.targets():
        print(f"  {sessions:>5} sessions  {target.name:<13}", end="", flush=True, file=sys.stderr)
        summary = await run_mode(found, target, sessions, opts, log_dir)
        modes[target.name] = summary
        print(
            f"ttft p50 {summary['ttft_ms']['p50']} ms  "
            f"(direct beside it {(summary['probe'] or {}).get('ttft_ms', {}).get('p50')} ms)  "
            f"{summary['token_events_per_s']} ev/s  "
            f"err {summary['error_rate']:.2%}  open {summary['sessions_open']}  "
            f"in flight {summary['in_flight_at_close']} "
            f"(oldest {summary['oldest_in_flight_s']} s)  "
            f"cpu {summary['cpu_percent']} ({cpu_us_per_event(summary)} us/event)",
            file=sys.stderr,
        )
    direct = modes["direct"]
    proxied = {n: m for n, m in modes.items() if n != "direct"}
    return {
        "concurrency": sessions,
        "modes": modes,
        "added_ttft_ms": {n: added(m, m["probe"]) for n, m in proxied.items()},
        "added_vs_direct_run_ms": {n: added(m, direct) for n, m in proxied.items()},
        "cpu_us_per_event": {n: cpu_us_per_event(m) for n, m in proxied.items()},
    }


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def _git_rev() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        rev = out.stdout.strip()
        return f"{rev}-dirty" if rev and status.stdout.strip() else rev or None
    return None


async def run_bench(opts: BenchOptions) -> dict[str, Any]:
    raise_fd_limit()
    log_dir = Path(tempfile.mkdtemp(prefix="coach-bench-"))
    stamp = time.strftime("%Y%m%dT%H%M%S")
    report: dict[str, Any] = {
        "meta": {
            "timestamp": stamp,
            "title": f"coach-gateway bench {stamp} ({os.cpu_count()} cores)",
            "git_rev": _git_rev(),
            "machine": machine(),
            "sim_knobs": opts.knobs,
            "shape": {k: getattr(opts.shape, k) for k in opts.shape.__slots__},
            "steps": list(opts.steps),
            "gateway_workers": opts.workers,
            "floor": opts.floor,
            "http": opts.http,
            "quick": opts.quick,
            "logs": str(log_dir),
        }
    }
    cpus = split_cpus(os.sched_getaffinity(0), opts.workers) if opts.pin else None
    if cpus is not None:
        os.sched_setaffinity(0, cpus.load)  # the sim and every client inherit it
    async with servers(opts, log_dir) as found:
        if cpus is not None:
            report["meta"]["pinned"] = {
                "load": sorted(cpus.load),
                **{n: p.pin(cpus.proxy) for n, p in found.procs.items() if n in PROXIES},
            }
        report["peer"] = found.peer_status or None
        gw_ws = realtime_url(found.gateway_url)
        # A short warm-up run first, so that lazy imports and pools are not counted as memory
        # per idle session.
        await run_load(
            Target("ws", "ws", gw_ws),
            5,
            LoadShape(1.0, 0.5, 0.2),
            {},
            log_dir=log_dir,
            prefix="warm",
        )
        if opts.idle:
            print(f"idle: {opts.idle} sessions", file=sys.stderr)
            report["idle"] = await idle_memory(
                Target("ws", "ws", gw_ws),
                opts.idle,
                found.procs["gateway"],
                log_dir=log_dir,
                settle_s=0.5 if opts.quick else 2.0,
            )
            print(f"  {report['idle']}", file=sys.stderr)
        report["steps"] = [await run_step(found, n, opts, log_dir) for n in opts.steps]
    report["peer_comparison"] = peer_ratios(report)
    report["targets"] = evaluate_targets(report)
    return report


@dataclass(frozen=True, slots=True)
class CpuSplit:
    load: set[int]  # the sim and the clients
    proxy: set[int]  # the proxy under test


def split_cpus(allowed: set[int], workers: int) -> CpuSplit:
    """One CPU per gateway worker for the proxy, the lowest ones, and at least one left for the
    load; `--pin` on fewer than two CPUs is refused."""
    cpus = sorted(allowed)
    if len(cpus) < 2:
        raise SystemExit("--pin needs two CPUs or more")
    proxy = set(cpus[: min(workers, len(cpus) - 1)])
    return CpuSplit(set(cpus) - proxy, proxy)


def write_report(
    report: Mapping[str, Any], out: Path, quick: bool, *, stamped: bool = False
) -> list[Path]:
    """`bench.json` and its plot `bench.png` in `out` (`bench-quick.*` for `--quick`), in place
    of the previous run's: a folder holds its latest run, git the ones before. With `stamped`,
    also copies named after the run's start (`bench-<timestamp>.*`, which git ignores)."""
    out.mkdir(parents=True, exist_ok=True)
    base = "bench-quick" if quick else "bench"
    names = [base, f"{base}-{report['meta']['timestamp']}"] if stamped else [base]
    body = orjson.dumps(report, option=orjson.OPT_INDENT_2)
    paths = [out / f"{name}.json" for name in names]
    for path in paths:
        path.write_bytes(body)
    try:
        paths += [plot(report, out / f"{name}.png") for name in names]
    except ImportError:
        print(
            "matplotlib is not installed: no PNG; draw it later with "
            f"`python -m loadtests.bench_plot {paths[0]}` in a Python that has matplotlib",
            file=sys.stderr,
        )
    return paths


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.bench",
        description=__doc__,
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
        "--pin",
        action="store_true",
        help="the gateway (and the relays and the peer) on a CPU of its own per worker, the sim "
        "and the load clients on the others",
    )
    return p


def options(argv: list[str] | None = None) -> BenchOptions:
    a = _parser().parse_args(argv)
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
        stamped=a.stamped,
    )


def main(argv: list[str] | None = None) -> int:
    opts = options(argv)
    report = asyncio.run(run_bench(opts))
    paths = write_report(report, opts.out, opts.quick, stamped=opts.stamped)
    print_report(report)
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
