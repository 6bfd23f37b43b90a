"""An embedded Postgres (the `pgserver` package) for machines without a database server.

The cluster lives in `<data_dir>/postgres`, the caller's per-user data directory (by default
`$XDG_DATA_HOME/coach-gateway`), so each OS user gets their own. It listens on a Unix socket
only. `start` is idempotent: a cluster already initialised is reused and a server already running
on it is joined, also from another process. `start` blocks (initdb takes a few seconds the first
time): call it through `asyncio.to_thread`.

Each process that starts or joins the server holds it until it exits, by a shared `flock` on
`<data_dir>/postgres.holders`; the last one to let go stops the server. The kernel drops a
process's locks however it ends, so a process killed with `kill -9` leaves no stale record that
would keep the server up for ever after (pgserver's own list of pids does: hence its
`cleanup_mode=None` here). The server it leaves running is joined by the next process, which
stops it on exit; the lock files of a server killed along with it are removed before the next
start. Holds are let go by `atexit`, so a process must end by `SystemExit` on SIGTERM
(`gateway.cli.exit_on_sigterm`), not by the signal's default action.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import signal
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil  # a dependency of pgserver

with warnings.catch_warnings():
    # pgserver asks platformdirs for a runtime directory as it is imported; without
    # XDG_RUNTIME_DIR (containers, CI, a root shell) platformdirs warns and uses /tmp, which is
    # nothing a user of the demo can act on.
    warnings.simplefilter("ignore")
    from pgserver.postgres_server import PostgresServer

__all__ = ["start"]

log = logging.getLogger("coach.embedded")
# pgserver logs every initdb and pg_ctl command line with its whole output at INFO: a dozen
# multi-line records before the demo's banner. Its warnings and errors still show.
logging.getLogger("pgserver").setLevel(logging.WARNING)

STOP_TIMEOUT_S = 30.0  # a fast shutdown ends the sessions and writes a checkpoint
QUIT_TIMEOUT_S = 5.0
POLL_S = 0.05


def start(data_dir: Path) -> str:
    """Start (or join) the embedded server under `data_dir` and hold it until this process
    exits; return its DSN."""
    hold = _Hold(data_dir)
    atexit.register(hold.release)  # before `acquire`: a start cut short still lets go
    return hold.acquire()


class _Hold:
    """One hold on the embedded server under `data_dir`: `acquire` starts or joins it,
    `release` lets go and stops it when nothing else holds it."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.pgdata = data_dir.resolve() / "postgres"
        self._mutex = data_dir / "postgres.lock"  # one start or stop at a time
        self._holders = data_dir / "postgres.holders"
        self._fd: int | None = None

    def acquire(self) -> str:
        with _locked(self._mutex):
            if self._fd is None:
                self._fd = _open_locked(self._holders, fcntl.LOCK_SH)
            _clear_stale_lock_files(self.pgdata)
            self.pgdata.mkdir(exist_ok=True)
            # Not `get_server`: it keeps one instance per process, which reports a server that
            # was running when it was made as running still.
            return str(PostgresServer(self.pgdata, cleanup_mode=None).get_uri())

    def release(self) -> None:
        if self._fd is None:
            return
        with _locked(self._mutex):
            os.close(self._fd)
            self._fd = None
            try:
                last = _open_locked(self._holders, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another process holds the server
            try:
                _stop(self.pgdata)
            finally:
                os.close(last)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = _open_locked(path, fcntl.LOCK_EX)
    try:
        yield
    finally:
        os.close(fd)


def _open_locked(path: Path, operation: int) -> int:
    # Not inherited by the processes started meanwhile (PEP 446): the postmaster must not hold it.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, operation)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lock_file(pgdata: Path) -> list[str] | None:
    """The lines of `postmaster.pid`: pid, data directory, start time, port, socket directory,
    ... (Postgres writes it at start and removes it at a clean stop)."""
    try:
        return (pgdata / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None


def _postgres(pid: int) -> psutil.Process | None:
    """The live (not zombie) process `pid` when it is a Postgres one."""
    try:
        process = psutil.Process(pid)
        alive = process.status() != psutil.STATUS_ZOMBIE
        return process if alive and process.name() == "postgres" else None
    except psutil.Error:
        return None


def _postmaster(pgdata: Path) -> psutil.Process | None:
    """The server running on `pgdata`, if one is."""
    lines = _lock_file(pgdata)
    if not lines or not lines[0].strip().isdigit():
        return None
    process = _postgres(int(lines[0]))
    try:
        return process if process is not None and str(pgdata) in process.cmdline() else None
    except psutil.Error:
        return None


def _clear_stale_lock_files(pgdata: Path) -> None:
    """Remove the lock files of a server that ended without removing them (killed, or its
    machine or container stopped). Postgres refuses to start while the pid they name is alive,
    and pgserver reports the dead server as running, but the pid may since belong to another
    process or to a zombie that nothing reaps."""
    lines = _lock_file(pgdata)
    if not lines or not lines[0].strip().isdigit() or _postgres(int(lines[0])) is not None:
        return
    log.warning(
        "removing the lock files of an embedded Postgres that is no longer running",
        extra={"pgdata": str(pgdata), "pid": int(lines[0])},
    )
    (pgdata / "postmaster.pid").unlink(missing_ok=True)
    if len(lines) >= 5 and lines[3].strip() and lines[4].strip():
        socket_lock = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}.lock"
        socket_lock.unlink(missing_ok=True)


def _stop(pgdata: Path) -> None:
    process = _postmaster(pgdata)
    if process is None:
        return
    log.info("stopping the embedded Postgres", extra={"pgdata": str(pgdata)})
    # Postgres' fast shutdown, as `pg_ctl stop` sends it (and with no need to run as its user).
    if _signal_and_wait(process, signal.SIGINT, STOP_TIMEOUT_S):
        return
    log.warning("the embedded Postgres did not stop in time: immediate shutdown")
    if not _signal_and_wait(process, signal.SIGQUIT, QUIT_TIMEOUT_S):
        log.error("the embedded Postgres did not stop", extra={"pid": process.pid})


def _signal_and_wait(process: psutil.Process, signum: int, timeout_s: float) -> bool:
    """Send `signum`; True once the process has ended (or is a zombie) within `timeout_s`."""
    try:
        process.send_signal(signum)
    except psutil.NoSuchProcess:
        return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(POLL_S)
    return False
