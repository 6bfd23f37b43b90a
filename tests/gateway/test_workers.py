"""`serve --workers 2`: real worker processes on one socket, and the gateway's drain on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import TEST_SECRET
from tests.gateway.wsclient import ws_client

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def workers_of(pid: int) -> list[psutil.Process]:
    """The live worker processes (spawn also starts multiprocessing's resource tracker)."""
    workers = []
    for child in psutil.Process(pid).children():
        try:
            if "resource_tracker" not in " ".join(child.cmdline()):
                workers.append(child)
        except psutil.Error:  # exited, or a zombie not yet reaped
            pass
    return workers


@pytest.fixture
async def served(
    fast_sim: Any, tmp_path: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    port = free_port()
    env = {
        **os.environ,
        "COACH_JWT_SECRET": TEST_SECRET,
        "COACH_PERSISTENCE": "false",
        "COACH_SIM_URL": fast_sim.url,
        "COACH_DATA_DIR": str(tmp_path),
        "COACH_SHUTDOWN_GRACE_S": "5",
        "COACH_LOG_LEVEL": "warning",
    }
    argv = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port), "--workers", "2"]
    proc = await asyncio.create_subprocess_exec(*argv, cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            try:
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.returncode is None, "serve --workers exited early"
            await asyncio.sleep(0.1)
    try:
        yield proc, url
    finally:
        if proc.returncode is None:
            proc.kill()  # the workers get SIGTERM from the kernel (PR_SET_PDEATHSIG)
            await proc.wait()


async def test_two_workers_serve_and_drain_on_sigterm(
    served: tuple[asyncio.subprocess.Process, str], fast_sim: Any, token: Callable[..., str]
) -> None:
    proc, url = served
    workers = workers_of(proc.pid)
    assert len(workers) == 2
    await fast_sim.set_knobs(tokens_per_s=20, reply_tokens=20)  # a reply of about a second
    async with ws_client(url.replace("http", "ws"), token()) as client:
        await client.recv()
        await client.send(type="input_text", text="one more", turn_id="last")
        await client.until("response.delta")
        proc.send_signal(signal.SIGTERM)
        events = await client.until("response.completed", "response.failed")
        assert events[-1]["type"] == "response.completed"  # the running turn finished
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1012
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)


async def test_a_worker_that_dies_is_replaced(
    served: tuple[asyncio.subprocess.Process, str],
) -> None:
    proc, url = served
    first, second = workers_of(proc.pid)
    first.kill()
    for _ in range(100):
        pids = {child.pid for child in workers_of(proc.pid)}
        if len(pids) == 2 and first.pid not in pids:
            break
        await asyncio.sleep(0.1)
    assert len(pids) == 2 and first.pid not in pids and second.pid in pids
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{url}/healthz")).status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 20) == 0


async def test_workers_do_not_outlive_a_killed_supervisor(
    served: tuple[asyncio.subprocess.Process, str],
) -> None:
    proc, _ = served
    workers = workers_of(proc.pid)
    assert len(workers) == 2
    proc.kill()  # no chance to stop them itself
    await proc.wait()
    gone, alive = await asyncio.to_thread(psutil.wait_procs, workers, timeout=15)
    assert not alive and len(gone) == 2


async def test_a_worker_that_cannot_start_stops_the_server(fast_sim: Any, tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "COACH_REDIS_URL")},
        "COACH_JWT_SECRET": TEST_SECRET,
        "COACH_SIM_URL": fast_sim.url,
        "COACH_DATA_DIR": str(tmp_path),
        "COACH_LOG_LEVEL": "warning",
        "COACH_PERSISTENCE": "false",
        # The workers' lifespan cannot reach this quota store: startup fails in each of them.
        # (An unreachable database is refused by `serve` itself, before any worker starts.)
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    argv = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(free_port())]
    proc = await asyncio.create_subprocess_exec(
        *argv, "--workers", "2", cwd=REPO, env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 3  # uvicorn's startup failure, not a restart loop
    assert b"a worker could not start" in err


async def test_without_redis_the_supervisor_warns_first(fast_sim: Any, tmp_path: Path) -> None:
    """Quotas are counted per worker without Redis: the supervisor says so at start."""
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "COACH_REDIS_URL")},
        "COACH_JWT_SECRET": TEST_SECRET,
        "COACH_SIM_URL": fast_sim.url,
        "COACH_DATA_DIR": str(tmp_path),
        "COACH_LOG_LEVEL": "warning",
        "COACH_PERSISTENCE": "false",
    }
    argv = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(free_port())]
    proc = await asyncio.create_subprocess_exec(
        *argv, "--workers", "2", cwd=REPO, env=env, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(60):
            while b"each worker keeps its own quota counters" not in (
                line := await proc.stderr.readline()
            ):
                assert line, "serve exited without the warning"
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)


@pytest.mark.parametrize("after_s", [0.3, 0.8, 1.5])
async def test_workers_told_to_stop_while_they_start_all_exit(
    after_s: float, fast_sim: Any, tmp_path: Path
) -> None:
    """A SIGTERM that reaches a worker while it imports and builds the app is not lost (raised
    inside an import's lock callback, it used to be dropped, and the worker served on)."""
    env = {
        **os.environ,
        "COACH_JWT_SECRET": TEST_SECRET,
        "COACH_PERSISTENCE": "false",
        "COACH_SIM_URL": fast_sim.url,
        "COACH_DATA_DIR": str(tmp_path),
        "COACH_LOG_LEVEL": "warning",
    }
    port = str(free_port())
    argv = [sys.executable, "-m", "gateway.cli", "serve", "--port", port, "--workers", "2"]
    proc = await asyncio.create_subprocess_exec(*argv, cwd=REPO, env=env)
    try:
        await asyncio.sleep(after_s)
        workers = workers_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        # 0 once serving; 143 (SIGTERM's SystemExit) while the command starts; -15 (the
        # signal's default action) before it set its handler, in its first imports.
        assert await asyncio.wait_for(proc.wait(), 30) in (0, 143, -signal.SIGTERM)
        assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
