"""The embedded Postgres under real `coach-gateway` processes (no `DATABASE_URL`): the command
that started it stops it when it exits, also after an earlier one was killed with SIGKILL, and a
command that joined it leaves it running for the others.

The tests share one data directory (initdb once) and each ends with no server running on it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import TEST_SECRET

pytestmark = pytest.mark.slow  # embedded Postgres clusters started and stopped by real commands

REPO = Path(__file__).resolve().parents[2]
STARTUP_S = 60.0  # initdb, the first time
EXIT_S = 30.0


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    # Not under pytest's numbered temporary directories: another pytest run removes the
    # oldest of those, the cluster with it, while this module runs.
    with tempfile.TemporaryDirectory(prefix="coach-embedded-") as path:
        yield Path(path).resolve()


def postmaster(data_dir: Path) -> psutil.Process | None:
    """The live server process on the data directory's cluster, if any."""
    pgdata = str(data_dir / "postgres")
    for process in psutil.process_iter(["name", "cmdline", "status"]):
        info = process.info
        if info["status"] == psutil.STATUS_ZOMBIE or info["name"] != "postgres":
            continue
        if pgdata in (info["cmdline"] or []):
            return process
    return None


async def ended(process: psutil.Process, timeout_s: float = EXIT_S) -> bool:
    """Whether `process` ends within `timeout_s` (a zombie has: nothing here reaps the
    server, whose parent is init)."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                if process.status() == psutil.STATUS_ZOMBIE:
                    return True
            except psutil.NoSuchProcess:
                return True
            await asyncio.sleep(0.05)


@pytest.fixture
async def procs(data_dir: Path) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """The commands a test starts; what a failed test left of them and of the server is ended."""
    started: list[asyncio.subprocess.Process] = []
    yield started
    for proc in started:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if (server := postmaster(data_dir)) is not None:
        server.send_signal(signal.SIGQUIT)
        await ended(server)


def command_env(data_dir: Path) -> dict[str, str]:
    unset = ("DATABASE_URL", "COACH_DATABASE_URL", "REDIS_URL", "COACH_REDIS_URL", "COACH_CONFIG")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(
        COACH_JWT_SECRET=TEST_SECRET,
        COACH_DATA_DIR=str(data_dir),
        COACH_PERSISTENCE="true",
        COACH_SHUTDOWN_GRACE_S="2",
        COACH_LOG_LEVEL="warning",
    )
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start(
    procs: list[asyncio.subprocess.Process], data_dir: Path, command: str, *args: str
) -> tuple[asyncio.subprocess.Process, str]:
    """`coach-gateway COMMAND --port P ARGS`, once `/readyz` says its database is open."""
    port = free_port()
    argv = [sys.executable, "-m", "gateway.cli", command, "--port", str(port), *args]
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=REPO, env=command_env(data_dir), stdout=asyncio.subprocess.DEVNULL
    )
    procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as http, asyncio.timeout(STARTUP_S):
        while True:
            assert proc.returncode is None, f"{command} exited early"
            try:
                if await database_open(http, url):
                    return proc, url
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


async def ready(url: str) -> bool:
    async with httpx.AsyncClient() as http:
        return await database_open(http, url)


async def database_open(http: httpx.AsyncClient, url: str) -> bool:
    """`/readyz` says the database answers (its routes are out: no upstream runs here)."""
    checks = (await http.get(f"{url}/readyz")).json()["checks"]
    return bool(checks.get("database") == "ok")


async def stop(proc: asyncio.subprocess.Process, signum: int = signal.SIGTERM) -> int:
    proc.send_signal(signum)
    return await asyncio.wait_for(proc.wait(), EXIT_S)


async def migrate(data_dir: Path) -> int:
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "gateway.cli", "migrate"],
        cwd=REPO,
        env=command_env(data_dir),
        stdout=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(proc.wait(), STARTUP_S)


async def kill_a_holder(data_dir: Path) -> psutil.Process:
    """A process that started (or joined) the server, killed with SIGKILL: the server it leaves
    running, and whatever record of it there is, are what the next command finds."""
    holder = await asyncio.create_subprocess_exec(
        *[sys.executable, "-c", HOLDER, str(data_dir)],
        cwd=REPO,
        env=command_env(data_dir),
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdout is not None
    assert await asyncio.wait_for(holder.stdout.readline(), STARTUP_S) == b"held\n"
    holder.kill()
    await holder.wait()
    orphan = postmaster(data_dir)
    assert orphan is not None
    return orphan


HOLDER = """
import sys, time
from pathlib import Path
from db import embedded
embedded.start(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(600)
"""


async def test_serve_stops_the_server_it_started_on_sigterm(
    procs: list[asyncio.subprocess.Process], data_dir: Path
) -> None:
    assert postmaster(data_dir) is None
    proc, _ = await start(procs, data_dir, "serve")
    assert postmaster(data_dir) is not None
    assert await stop(proc) == 143  # by `SystemExit`, after its `atexit` handlers
    assert postmaster(data_dir) is None
    assert not (data_dir / "postgres" / "postmaster.pid").exists()  # a clean stop


async def test_serve_with_workers_stops_the_server_they_started(
    procs: list[asyncio.subprocess.Process], data_dir: Path
) -> None:
    assert postmaster(data_dir) is None
    proc, _ = await start(procs, data_dir, "serve", "--workers", "2")
    assert postmaster(data_dir) is not None
    assert await stop(proc) == 0
    assert postmaster(data_dir) is None


# The next three find the server left running by a killed process, and stop it all the same.


async def test_serve_stops_the_server_on_sigint(
    procs: list[asyncio.subprocess.Process], data_dir: Path
) -> None:
    orphan = await kill_a_holder(data_dir)
    proc, _ = await start(procs, data_dir, "serve")
    assert postmaster(data_dir) == orphan
    await stop(proc, signal.SIGINT)
    assert postmaster(data_dir) is None


async def test_migrate_stops_the_server(data_dir: Path) -> None:
    await kill_a_holder(data_dir)
    assert await migrate(data_dir) == 0
    assert postmaster(data_dir) is None


async def test_demo_stops_the_server(
    procs: list[asyncio.subprocess.Process], data_dir: Path
) -> None:
    orphan = await kill_a_holder(data_dir)
    proc, _ = await start(procs, data_dir, "demo")
    assert postmaster(data_dir) == orphan
    assert await stop(proc) == 0
    assert postmaster(data_dir) is None


async def test_the_server_of_a_killed_serve_is_stopped_by_the_next(
    procs: list[asyncio.subprocess.Process], data_dir: Path
) -> None:
    killed, _ = await start(procs, data_dir, "serve")
    killed.kill()
    await killed.wait()
    orphan = postmaster(data_dir)
    assert orphan is not None  # nothing could stop it

    proc, _ = await start(procs, data_dir, "serve")
    assert postmaster(data_dir) == orphan  # joined, not started again
    assert await stop(proc) == 143
    assert postmaster(data_dir) is None


async def test_a_server_killed_with_its_serve_leaves_nothing_in_the_way(
    procs: list[asyncio.subprocess.Process], data_dir: Path
) -> None:
    killed, _ = await start(procs, data_dir, "serve")
    server = postmaster(data_dir)
    assert server is not None
    killed.kill()
    await killed.wait()
    os.killpg(server.pid, signal.SIGKILL)  # all of it (pg_ctl made it a session leader)
    assert await ended(server)
    # Its lock file names a pid that the system has since given to another process (as after
    # a container restart); here, to a process of ours.
    lock_file = data_dir / "postgres" / "postmaster.pid"
    stranger = await asyncio.create_subprocess_exec("sleep", "60")
    try:
        lines = lock_file.read_text().splitlines()
        lock_file.write_text("\n".join([str(stranger.pid), *lines[1:]]) + "\n")

        proc, url = await start(procs, data_dir, "serve")
        assert await ready(url)
        assert await stop(proc) == 143
        assert postmaster(data_dir) is None
        assert stranger.returncode is None  # not taken for the server and stopped
    finally:
        stranger.kill()
        await stranger.wait()


async def test_a_command_that_joined_the_server_leaves_it_to_the_others(
    procs: list[asyncio.subprocess.Process], data_dir: Path
) -> None:
    first, first_url = await start(procs, data_dir, "serve")
    server = postmaster(data_dir)
    assert server is not None

    assert await migrate(data_dir) == 0  # joins the running server, and exits
    assert postmaster(data_dir) == server
    assert await ready(first_url)

    second, second_url = await start(procs, data_dir, "serve")
    assert postmaster(data_dir) == server
    assert await stop(first) == 143  # the one that started it goes first
    assert postmaster(data_dir) == server
    assert await ready(second_url)

    assert await stop(second) == 143
    assert postmaster(data_dir) is None


async def test_a_first_start_says_nothing_of_pgserver_internals() -> None:
    """initdb and pg_ctl command lines, and platformdirs' warning when XDG_RUNTIME_DIR is unset,
    stay out of a command's output; the gateway's own lines still show."""
    with tempfile.TemporaryDirectory(prefix="coach-embedded-") as path:
        env = {**command_env(Path(path)), "COACH_LOG_LEVEL": "info"}
        env.pop("XDG_RUNTIME_DIR", None)
        proc = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "gateway.cli", "migrate"],
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(proc.communicate(), STARTUP_S)
    text = output.decode()
    assert proc.returncode == 0, text
    assert '"logger":"coach.embedded"' in text
    assert "pgserver" not in text
    assert "Warning" not in text
