"""An embedded Postgres (pgserver) of a test's own, that the test may kill by its pid and start
again: an outage of the real server, not a mock."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
from pgserver import pg_ctl  # type: ignore[attr-defined]
from pgserver.postgres_server import PostgresServer, get_server

__all__ = ["KillablePostgres"]


class KillablePostgres:
    def __init__(self, directory: Path) -> None:
        self._server: PostgresServer = get_server(directory / "pg", cleanup_mode="delete")
        info = self._server.get_postmaster_info()
        self.dsn = str(self._server.get_uri())
        self._socket_dir = info.socket_dir
        self.pid: int | None = info.pid

    def kill(self) -> None:
        """SIGKILL the postmaster and wait until it and its backends are gone."""
        assert self.pid is not None
        postmaster = psutil.Process(self.pid)
        processes = [postmaster, *postmaster.children(recursive=True)]
        os.kill(self.pid, signal.SIGKILL)
        # Not our children: nobody may reap them here, so a zombie counts as gone.
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in processes) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.pid = None

    def restart(self) -> None:
        """Start the server again on the same data and socket (crash recovery runs)."""
        args = ["-w", "-o", '-h ""', "-o", f"-k {self._socket_dir}", "-l", str(self._log), "start"]
        for attempt in range(20):
            try:
                pg_ctl(args, pgdata=self._server.pgdata, user=self._server.system_user, timeout=20)
                break
            except subprocess.CalledProcessError:
                if attempt == 19:
                    raise
                time.sleep(0.25)  # a killed backend may still hold the shared memory
        pid_line = (self._server.pgdata / "postmaster.pid").read_text().splitlines()[0]
        self.pid = int(pid_line)

    def close(self) -> None:
        if self.pid is not None:
            postmaster = psutil.Process(self.pid)
            postmaster.send_signal(signal.SIGINT)  # Postgres' fast shutdown
            deadline = time.monotonic() + 30
            while _alive(postmaster) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.pid = None
        self._server.cleanup()

    @property
    def _log(self) -> Path:
        return self._server.pgdata / "log"


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
