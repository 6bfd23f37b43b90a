"""Child processes of the benchmark (simulated upstream, gateway, peer, load client) and the
psutil meters that measure each one apart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil  # type: ignore[import-untyped,unused-ignore]

__all__ = [
    "BENCH_SECRET",
    "CpuMark",
    "CpuSplit",
    "Proc",
    "RssPeak",
    "free_port",
    "gateway_env",
    "raise_fd_limit",
    "split_cpus",
    "started",
]

BENCH_SECRET = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
_SIM_MAIN = "import sys; from providers.sim import run; raise SystemExit(run(sys.argv[1:]))"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def raise_fd_limit() -> None:
    """Children inherit it: the gateway and the client each hold one fd per idle session."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Proc:
    """A child process with its log file and a psutil handle."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    ps: psutil.Process = field(init=False)

    def __post_init__(self) -> None:
        self.ps = psutil.Process(self.process.pid)

    @property
    def pid(self) -> int:
        return self.process.pid

    def _tree(self) -> list[psutil.Process]:
        """The process and its live descendants (the workers of `serve --workers N`)."""
        procs = [self.ps]
        with contextlib.suppress(psutil.Error):
            procs += self.ps.children(recursive=True)
        return procs

    def rss(self) -> int:
        total = 0
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def cpu_s(self) -> float:
        total = 0.0
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        return total

    def pin(self, cpus: set[int]) -> list[int]:
        """Run the process, its threads and its children on `cpus` only; the CPUs its main
        thread is now allowed, as the kernel reads them back. (Threads and processes it makes
        later inherit them.)"""
        for proc in self._tree():
            with contextlib.suppress(OSError):
                for tid in os.listdir(f"/proc/{proc.pid}/task"):
                    with contextlib.suppress(OSError):  # a thread that has just ended
                        os.sched_setaffinity(int(tid), cpus)
        return sorted(os.sched_getaffinity(self.pid))

    async def stop(self, timeout_s: float = 10.0) -> int | None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        return self.process.returncode

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


async def spawn(
    name: str,
    argv: Sequence[str],
    *,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    stdout_pipe: bool = False,
    stdin_pipe: bool = False,
    cwd: Path | None = None,
) -> Proc:
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE if stdout_pipe else log,
            stderr=log,
            stdin=asyncio.subprocess.PIPE if stdin_pipe else asyncio.subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            limit=64 * 1024 * 1024,
            cwd=cwd,
        )
    return Proc(name, process, log_path)


async def wait_http(proc: Proc, url: str, timeout_s: float = 120.0) -> None:
    """Until `url` answers any HTTP status; raises with the log tail if the process dies."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.process.returncode is not None:
                raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    await resp.read()
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not answer {url} in {timeout_s}s:\n{proc.log_tail()}")


def sim_argv(port: int, knobs: Mapping[str, float | int]) -> list[str]:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in knobs.items()]
    return [sys.executable, "-c", _SIM_MAIN, "--host", "127.0.0.1", "--port", str(port), *flags]


def gateway_env(sim_url: str, *, send_queue: int = 1024) -> dict[str, str]:
    """Settings for a gateway under load: no database, quotas too high to interfere."""
    return {
        "COACH_JWT_SECRET": BENCH_SECRET,
        "COACH_PERSISTENCE": "false",
        "COACH_SIM_URL": sim_url,
        "COACH_QUOTAS__TURNS_PER_MINUTE": "100000000",
        "COACH_QUOTAS__TOKENS_PER_DAY": "100000000000",
        "COACH_QUOTAS__CONCURRENT_STREAMS": "100000",
        "COACH_QUOTAS__CONNECTIONS": "100000",
        "COACH_SEND_QUEUE_SIZE": str(send_queue),
        "COACH_LOG_LEVEL": "warning",
    }


@contextlib.asynccontextmanager
async def started(
    name: str,
    argv: Sequence[str],
    ready_url: str,
    *,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    ready_timeout_s: float = 120.0,
    cwd: Path | None = None,
) -> AsyncIterator[Proc]:
    """A server process, ready to serve, stopped when the block exits."""
    proc = await spawn(name, argv, log_dir=log_dir, env=env, cwd=cwd)
    try:
        await wait_http(proc, ready_url, ready_timeout_s)
        yield proc
    finally:
        await proc.stop()


@dataclass(frozen=True, slots=True)
class CpuMark:
    """CPU seconds of some processes at one instant."""

    at: float
    cpu_s: dict[str, float]

    @classmethod
    def take(cls, procs: Mapping[str, Proc]) -> CpuMark:
        cpu: dict[str, float] = {}
        for name, proc in procs.items():
            with contextlib.suppress(psutil.Error):
                cpu[name] = proc.cpu_s()
        return cls(time.perf_counter(), cpu)

    def percent_until(self, later: CpuMark) -> dict[str, float]:
        """CPU% of each process between the two marks (100 = one core busy)."""
        wall = max(later.at - self.at, 1e-9)
        return {
            name: round(100 * (later.cpu_s[name] - start) / wall, 1)
            for name, start in self.cpu_s.items()
            if name in later.cpu_s
        }


class RssPeak:
    """Samples a process's RSS twice a second while running; `peak` is the highest seen."""

    def __init__(self, proc: Proc, interval_s: float = 0.5) -> None:
        self._proc = proc
        self._interval = interval_s
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RssPeak:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _sample(self) -> None:
        while True:
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self._proc.rss())
            await asyncio.sleep(self._interval)


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
