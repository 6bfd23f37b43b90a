"""An embedded Postgres (the `pgserver` package) for machines without a database server.

The cluster lives in `<data_dir>/postgres`, the caller's per-user data directory (by default
`$XDG_DATA_HOME/coach-gateway`), so each OS user gets their own. It listens on a Unix socket
only. `start` is idempotent: a cluster already initialised is reused and a server already running
on it is joined, also from another process. The server stops when the last process that started
or joined it exits. `start` blocks (initdb takes a few seconds the first time): call it through
`asyncio.to_thread`.
"""

from __future__ import annotations

from pathlib import Path

from pgserver.postgres_server import get_server

__all__ = ["start"]


def start(data_dir: Path) -> str:
    """Start (or join) the embedded server under `data_dir`; return its DSN."""
    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir / "postgres", cleanup_mode="stop")
    return str(server.get_uri())
