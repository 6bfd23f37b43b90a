"""Benchmark: the gateway under ramped streaming load, against the upstream called directly and,
optionally, against a peer proxy (LiteLLM).

    python -m loadtests.bench [--steps 50,200,500,1000] [--idle 5000] [--peer litellm] [--floor]
        [--http] [--product] [--before DIR] [--sequential] [--profile] [--quick] [--pin]
        [--out DIR] [--stamped]

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
  compare the gateway's CPU per event with, apart from its framework and features;
- `ws_product` and `http_product` (with `--product`): the same two routes through a second
  gateway as users run it (`bench_product`: Postgres on a fresh database, assessments on, log
  level info), with its assessment backlog sampled over the run and the time it takes to drain
  after; `--before DIR` adds `*_product_before`, the product from another copy of the code.
`--sequential` adds a step of one session at a time (one direct session beside it); `--profile`
samples each gateway run with py-spy (`bench_profile`) and reports where its CPU went.
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

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.bench_meta import git_rev, machine
from loadtests.bench_options import BenchOptions, options
from loadtests.bench_output import write_report
from loadtests.bench_peer import (
    PEER_KEY,
    PeerUnavailable,
    ensure_litellm,
    running_litellm,
)
from loadtests.bench_procs import (
    CpuSplit,
    Proc,
    free_port,
    gateway_env,
    raise_fd_limit,
    sim_argv,
    split_cpus,
    started,
)
from loadtests.bench_product import (
    PRODUCT_MODES,
    drain_time,
    product_database,
    product_env,
    sampled_backlog,
)
from loadtests.bench_profile import profiled, summarize_folded
from loadtests.bench_report import evaluate_targets, peer_ratios, print_report
from loadtests.bench_run import LoadShape, Probe, Target, idle_memory, run_load
from loadtests.bench_stats import FLOORS, PROXIES, added, cpu_us_per_event

__all__ = [
    "BenchOptions",
    "CpuSplit",
    "Servers",
    "main",
    "options",
    "run_bench",
    "run_mode",
    "servers",
    "split_cpus",
]

MODEL = "gpt-4o-mini"


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
    # The product gateways (`bench_product`) that run, by process name: (URL, database).
    products: dict[str, tuple[str, str]] = field(default_factory=dict)

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
        for proc, (url, _) in self.products.items():
            suffix = proc.removeprefix("product")
            targets.append(Target(f"ws_product{suffix}", "ws", realtime_url(url)))
            chat = f"{url}/v1/chat/completions"
            targets.append(Target(f"http_product{suffix}", "openai", chat, MODEL))
        return targets

    def product_of(self, target: Target) -> tuple[str, str] | None:
        """The product gateway's process name and database a run goes through, if any."""
        proc = PRODUCT_MODES.get(target.name)
        if proc is None or proc not in self.products:
            return None
        return proc, self.products[proc][1]


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
        found = Servers(
            sim_url, gw_url, {"gateway": gateway, "sim": sim}, http=opts.http or opts.product
        )
        if opts.product:
            await _start_product(opts, found, stack, log_dir, "product", None)
        if opts.before is not None:
            await _start_product(opts, found, stack, log_dir, "product_before", opts.before)
        if opts.floor:
            for mode, client in FLOORS.items():
                await _start_floor(found, stack, log_dir, mode, client)
        if opts.peer:
            await _start_peer(opts, found, stack, log_dir)
        yield found


async def _start_product(
    opts: BenchOptions,
    found: Servers,
    stack: contextlib.AsyncExitStack,
    log_dir: Path,
    name: str,
    source: Path | None,
) -> None:
    """A product gateway beside the relay one: same sim, same settings, plus a fresh database,
    assessments and log level info (`bench_product.product_env`); from `source` (a copy of the
    repository) when given."""
    dsn = await stack.enter_async_context(product_database())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)]
    argv += ["--workers", str(opts.workers)]
    env = {**gateway_env(found.sim_url), **opts.gateway_settings}
    env.update(product_env(dsn, Path(tempfile.mkdtemp(prefix="coach-bench-product-"))))
    if source is not None:
        env["PYTHONPATH"] = str(source)
    found.procs[name] = await stack.enter_async_context(
        started(name, argv, f"{url}/healthz", log_dir=log_dir, env=env, cwd=source)
    )
    found.products[name] = (url, dsn)


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
    named = {"direct": None, "peer_http": "peer", **{m: m for m in FLOORS}}
    proxy = {**named, **PRODUCT_MODES}.get(target.name, "gateway")
    names = ["sim"] if proxy is None else [proxy, "sim"]
    return {n: found.procs[n] for n in names if n in found.procs}


def _gateway_metrics(found: Servers, target: Target, opts: BenchOptions) -> str | None:
    """Where to read the gateway's garbage-collector pauses for a run through it (with one
    worker: each of several would answer for itself)."""
    if opts.workers != 1:
        return None
    if (product := found.product_of(target)) is not None:
        return f"{found.products[product[0]][0]}/metrics"
    return f"{found.gateway_url}/metrics" if "gateway" in _metered(found, target) else None


def probe_sessions(sessions: int) -> int:
    """Direct sessions beside `sessions` proxied ones: a fifth, enough samples for a p99; one
    beside one (the one-request-at-a-time case must not be measured under ten others' load)."""
    return 1 if sessions == 1 else max(10, sessions // 5)


async def run_mode(
    found: Servers, target: Target, sessions: int, opts: BenchOptions, log_dir: Path
) -> dict[str, Any]:
    """One run of `sessions` against `target`; a proxied one has direct sessions beside it. A
    product run also meters the assessment backlog, and waits for it to drain after the load:
    the next run must not share the machine with the pipeline's catching up."""
    if (product := found.product_of(target)) is not None:
        async with sampled_backlog(product[1]) as backlog:
            summary = await _profiled_run(found, target, sessions, opts, log_dir)
        await drain_time(product[1], backlog)
        summary["assessment_backlog"] = backlog.summary()
        return summary
    return await _profiled_run(found, target, sessions, opts, log_dir)


async def _profiled_run(
    found: Servers, target: Target, sessions: int, opts: BenchOptions, log_dir: Path
) -> dict[str, Any]:
    proxy = next(iter(_metered(found, target)))
    if not opts.profile or proxy not in ("gateway", *found.products):
        return await _run_mode(found, target, sessions, opts, log_dir)
    out = log_dir / f"profile-{target.name}-{sessions}.txt"  # big: beside the logs
    shape = opts.shape
    async with profiled(
        found.procs[proxy].pid, out, shape.ramp_s + shape.warmup_s + shape.duration_s
    ) as path:
        summary = await _run_mode(found, target, sessions, opts, log_dir)
    if path is not None and path.exists():
        summary["profile"] = {"file": str(path), **summarize_folded(path.read_text().splitlines())}
    return summary


async def _run_mode(
    found: Servers, target: Target, sessions: int, opts: BenchOptions, log_dir: Path
) -> dict[str, Any]:
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
            f"cpu {summary['cpu_percent']} ({cpu_us_per_event(summary)} us/event)"
            f"{_backlog_note(summary)}",
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


def _backlog_note(summary: Mapping[str, Any]) -> str:
    backlog = summary.get("assessment_backlog")
    if not backlog:
        return ""
    return f"  backlog max {backlog['max']}, drained in {backlog['drain_s']} s"


async def run_bench(opts: BenchOptions) -> dict[str, Any]:
    raise_fd_limit()
    log_dir = Path(tempfile.mkdtemp(prefix="coach-bench-"))
    stamp = time.strftime("%Y%m%dT%H%M%S")
    report: dict[str, Any] = {
        "meta": {
            "timestamp": stamp,
            "title": f"coach-gateway bench {stamp} ({os.cpu_count()} cores)",
            "git_rev": git_rev(),
            "machine": machine(),
            "sim_knobs": opts.knobs,
            "shape": {k: getattr(opts.shape, k) for k in opts.shape.__slots__},
            "steps": list(opts.steps),
            "gateway_workers": opts.workers,
            "floor": opts.floor,
            "http": opts.http,
            "product": opts.product,
            "before": str(opts.before) if opts.before else None,
            "sequential": opts.sequential,
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
        if opts.sequential:
            print("one session at a time", file=sys.stderr)
            report["sequential"] = await run_step(found, 1, opts, log_dir)
    report["peer_comparison"] = peer_ratios(report)
    report["targets"] = evaluate_targets(report)
    return report


def main(argv: list[str] | None = None) -> int:
    opts = options(argv, __doc__)
    report = asyncio.run(run_bench(opts))
    paths = write_report(report, opts.out, opts.quick, stamped=opts.stamped)
    print_report(report)
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
