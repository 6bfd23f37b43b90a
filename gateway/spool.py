"""The turn spool: where finished turns wait while Postgres is unreachable (DESIGN.md,
"Durability").

Each process appends to a file of its own in `<data_dir>/spool/`, one JSON line per turn,
fsynced before the turn's `response.completed` is sent. The process holds its file with an
exclusive `flock` while it lives, so a file that nobody holds is an orphan: its process died,
and the next process to look drains it. The file is bounded (`max_bytes`): a full spool refuses
the turn (`SpoolFull`) and never drops one it holds. The turns also wait in memory, in order, so
that draining reads nothing back; the file is only read after a crash.

A torn last line (the process died while writing it) was never fsynced, so its turn was never
reported as completed: it is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import itertools
import logging
import os
import uuid
from collections import deque
from pathlib import Path

from pydantic import TypeAdapter

from streams.records import TurnRecord

__all__ = ["Orphan", "Spool", "SpoolFull", "record_from_json", "record_to_json"]

log = logging.getLogger("coach.spool")


class SpoolFull(Exception):
    """The spool has no room for another turn."""


@functools.cache
def _records() -> TypeAdapter[TurnRecord]:
    """A spool line's one (de)serialisation, derived from `TurnRecord`'s fields and types."""
    return TypeAdapter(TurnRecord)


def record_to_json(record: TurnRecord) -> bytes:
    return _records().dump_json(record)


def record_from_json(line: bytes) -> TurnRecord:
    """The turn on a spool line; `ValueError` if the line is not one (torn, or not a turn)."""
    return _records().validate_json(line)


class Spool:
    """This process's spool file and the turns in it, oldest first. Not thread-safe: one event
    loop uses it, and each append finishes (fsync included) before the next starts."""

    def __init__(self, directory: Path, *, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._path = directory / f"turns-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self._fd: int | None = None
        self._size = 0
        self._turns: deque[TurnRecord] = deque()
        self._lock = asyncio.Lock()  # appends and resets, one at a time

    def __len__(self) -> int:
        return len(self._turns)

    @property
    def full(self) -> bool:
        """No room for a turn of a typical size (so new turns are refused before they run)."""
        return self._size >= self.max_bytes * 0.95

    def oldest(self, n: int) -> list[TurnRecord]:
        """Up to `n` of the oldest turns, oldest first."""
        return list(itertools.islice(self._turns, n))

    def pop(self, n: int = 1) -> None:
        """The `n` oldest turns are in Postgres now."""
        for _ in range(n):
            self._turns.popleft()

    async def append(self, record: TurnRecord) -> None:
        """Write the turn and fsync it; `SpoolFull` if it does not fit."""
        line = record_to_json(record) + b"\n"
        async with self._lock:
            if self._size + len(line) > self.max_bytes:
                raise SpoolFull(f"the spool holds {self._size} bytes of {self.max_bytes}")
            await asyncio.to_thread(self._write, line)
            self._size += len(line)
            self._turns.append(record)

    async def reset(self) -> bool:
        """Empty the file once every turn in it is in Postgres; False if a turn came meanwhile."""
        async with self._lock:
            if self._turns:
                return False
            if self._fd is not None:
                await asyncio.to_thread(os.ftruncate, self._fd, 0)
            self._size = 0
            return True

    def close(self) -> None:
        """Let go of the file: removed when empty, else left for the next process to drain."""
        if self._fd is None:
            return
        if not self._turns:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()
        os.close(self._fd)  # releases the flock
        self._fd = None

    def _write(self, line: bytes) -> None:
        if self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _fsync_directory(self.directory)  # the new file's name survives a machine crash
            self._fd = fd
        os.write(self._fd, line)
        os.fsync(self._fd)

    def orphans(self) -> list[Orphan]:
        """Spool files that no living process holds, each locked for the caller to drain."""
        found: list[Orphan] = []
        for path in sorted(self.directory.glob("turns-*.jsonl")):
            if path == self._path:
                continue
            orphan = Orphan.lock(path)
            if orphan is not None:
                found.append(orphan)
        return found


class Orphan:
    """A dead process's spool file, locked by this one until `remove` or `release`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def lock(cls, path: Path) -> Orphan | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(path, fd)

    def turns(self) -> list[TurnRecord]:
        """The turns in the file, oldest first; a torn or unreadable line is skipped."""
        turns: list[TurnRecord] = []
        skipped = 0
        for line in self.path.read_bytes().splitlines():
            try:
                turns.append(record_from_json(line))
            except ValueError:  # pydantic's ValidationError among them
                skipped += 1
        if skipped:
            log.warning("spool %s: %d unreadable lines skipped", self.path.name, skipped)
        return turns

    def remove(self) -> None:
        """Every turn is in Postgres: delete the file and let go of it."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.release()

    def release(self) -> None:
        os.close(self._fd)


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
