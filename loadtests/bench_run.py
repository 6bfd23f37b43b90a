"""One measured run: a load-client process against one target, with CPU and RSS metered for
the window in which the client records samples."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from loadtests.bench_metrics import Samples, gc_pauses, scrape
from loadtests.bench_procs import BENCH_SECRET, CpuMark, Proc, RssPeak, spawn
from loadtests.bench_stats import summarize_run

__all__ = [
    "IdleSessions",
    "LoadShape",
    "Probe",
    "Target",
    "holding_idle",
    "idle_memory",
    "run_load",
]


@dataclass(frozen=True, slots=True)
class LoadShape:
    """How long and how a step runs."""

    duration_s: float = 15.0
    warmup_s: float = 3.0
    ramp_s: float = 2.0
    turn_timeout_s: float = 30.0
    think_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Target:
    """Where the client sends its sessions, and how it authenticates."""

    name: str
    mode: str  # "ws" | "openai"
    url: str
    model: str = "gpt-4o-mini"
    api_key: str | None = None  # None: a JWT per session, signed with BENCH_SECRET

    def client_args(self) -> list[str]:
        args = ["--mode", self.mode, "--url", self.url, "--model", self.model]
        if self.api_key is None:
            return [*args, "--jwt-secret-env", "BENCH_JWT_SECRET"]
        return [*args, "--api-key", self.api_key]


@dataclass(frozen=True, slots=True)
class Probe:
    """Sessions that call the upstream directly in the same run as the measured ones."""

    target: Target
    sessions: int

    def client_args(self) -> list[str]:
        args = ["--probe-url", self.target.url, "--probe-sessions", str(self.sessions)]
        return args + (["--probe-api-key", self.target.api_key] if self.target.api_key else [])


def _client_argv(
    target: Target, sessions: int, shape: LoadShape, prefix: str, probe: Probe | None
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "loadtests.bench_client",
        *target.client_args(),
        "--sessions",
        str(sessions),
        "--duration",
        str(shape.duration_s),
        "--warmup",
        str(shape.warmup_s),
        "--ramp",
        str(shape.ramp_s),
        "--turn-timeout",
        str(shape.turn_timeout_s),
        "--think-ms",
        str(shape.think_ms),
        "--user-prefix",
        prefix,
        *(probe.client_args() if probe is not None else []),
    ]


async def _lines(proc: Proc) -> Any:
    assert proc.process.stdout is not None
    while line := await proc.process.stdout.readline():
        with contextlib.suppress(orjson.JSONDecodeError):
            yield orjson.loads(line)


async def run_load(
    target: Target,
    sessions: int,
    shape: LoadShape,
    metered: Mapping[str, Proc],
    *,
    log_dir: Path,
    prefix: str,
    probe: Probe | None = None,
    gateway_metrics: str | None = None,
) -> dict[str, Any]:
    """Run the client against `target` (and `probe` beside it) and return its summary plus CPU%
    and RSS of `metered` (and of the client itself) over the measurement window, and with
    `gateway_metrics` (a gateway's `/metrics` URL) its garbage collector's pauses then."""
    client = await spawn(
        f"client-{target.name}-{sessions}",
        _client_argv(target, sessions, shape, prefix, probe),
        log_dir=log_dir,
        env={"BENCH_JWT_SECRET": BENCH_SECRET},
        stdout_pipe=True,
    )
    procs = {**metered, "client": client}
    start: CpuMark | None = None
    cpu: dict[str, float] = {}
    metrics_at_start: Samples | None = None
    gc: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    peaks = {name: RssPeak(proc) for name, proc in metered.items()}
    async with contextlib.AsyncExitStack() as stack:
        for peak in peaks.values():
            await stack.enter_async_context(peak)
        async for event in _lines(client):
            match event.get("event"):
                case "measuring":
                    start = CpuMark.take(procs)
                    if gateway_metrics:
                        metrics_at_start = await scrape(gateway_metrics)
                case "window_end" if start is not None:
                    end = CpuMark.take(procs)
                    cpu = start.percent_until(end)
                    if gateway_metrics and metrics_at_start is not None:
                        at_end = await scrape(gateway_metrics)
                        if at_end is not None:
                            gc = gc_pauses(metrics_at_start, at_end, end.at - start.at)
                case "result":
                    result = event
    await client.process.wait()
    if result is None:
        raise RuntimeError(f"the load client gave no result:\n{client.log_tail()}")
    summary = summarize_run(result)
    summary["cpu_percent"] = cpu
    summary["rss_peak_mib"] = {n: round(p.peak / 2**20, 1) for n, p in peaks.items()}
    summary["gateway_gc"] = gc
    return summary


@dataclass(frozen=True, slots=True)
class IdleSessions:
    client: Proc
    connected: int


@contextlib.asynccontextmanager
async def holding_idle(
    target: Target, sessions: int, *, log_dir: Path
) -> AsyncIterator[IdleSessions]:
    """`sessions` idle WebSocket sessions on `target`, open while the block runs."""
    client = await spawn(
        f"client-idle-{sessions}",
        [
            sys.executable,
            "-m",
            "loadtests.bench_client",
            *target.client_args(),
            "--mode",  # the last --mode wins
            "idle",
            "--sessions",
            str(sessions),
            "--user-prefix",
            "idle",
        ],
        log_dir=log_dir,
        env={"BENCH_JWT_SECRET": BENCH_SECRET},
        stdout_pipe=True,
        stdin_pipe=True,
    )
    lines = _lines(client)
    connected = 0
    try:
        async for event in lines:
            if event.get("event") == "idle_ready":
                connected = int(event["connected"])
                break
        yield IdleSessions(client, connected)
    finally:
        assert client.process.stdin is not None
        client.process.stdin.close()  # the client closes its sessions and exits
        async for _ in lines:
            pass
        await client.process.wait()


async def idle_memory(
    target: Target, sessions: int, gateway: Proc, *, log_dir: Path, settle_s: float = 2.0
) -> dict[str, Any]:
    """Gateway RSS before and after opening `sessions` idle WebSocket sessions."""
    await asyncio.sleep(settle_s)
    before = gateway.rss()
    async with holding_idle(target, sessions, log_dir=log_dir) as idle:
        connected = idle.connected
        await asyncio.sleep(settle_s)
        after = gateway.rss() if connected else before
        client_rss = idle.client.rss()
    await asyncio.sleep(settle_s)
    released = gateway.rss()
    per_session = (after - before) / connected if connected else None
    return {
        "sessions_wanted": sessions,
        "sessions_connected": connected,
        "gateway_rss_before_mib": round(before / 2**20, 1),
        "gateway_rss_after_mib": round(after / 2**20, 1),
        "gateway_rss_after_close_mib": round(released / 2**20, 1),
        "rss_per_session_kib": round(per_session / 1024, 1) if per_session is not None else None,
        "client_rss_mib": round(client_rss / 2**20, 1),
    }
