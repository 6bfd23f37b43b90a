"""Where finished turns are stored: Postgres, or the spool while Postgres is unreachable.

A turn goes to Postgres in one transaction (interaction, prompt run, assessment job; see
`db.interactions.record_turn`), then its job is handed to the assessment pipeline. When the
write fails because the server is away, the turn goes to the spool (`gateway.spool`), and so
does every turn after it until the spool is empty again: the drainer writes the spooled turns to
Postgres in order, once each (a request id already written is skipped), so a session's turns
reach the table in the order they were answered. A spooled turn the database refuses for its
content (not for being away) is set aside in `rejected-*.jsonl` beside the spool, never dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, fields

from db.interactions import NewInteraction, record_turn, record_turns
from db.pool import DATABASE_ERRORS, DATABASE_UNAVAILABLE, Pool
from db.prompt_runs import NewPromptRun
from gateway.spool import Spool, SpoolFull, record_to_json
from streams.records import Stored, TurnRecord

__all__ = ["TurnStore", "TurnStoreStatus"]

log = logging.getLogger("coach.turn_store")


@dataclass(frozen=True, slots=True)
class TurnStoreStatus:
    """What `/readyz` says of the store."""

    spooled: int
    full: bool


class TurnStore:
    """Stores each finished turn once; `run()` (the drainer) must run while turns come in."""

    def __init__(
        self,
        pool: Pool,
        spool: Spool,
        hint: Callable[[int], bool],
        *,
        assess: bool = True,
        write_timeout_s: float = 5.0,
        retry_s: tuple[float, float] = (0.2, 5.0),
        batch: int = 100,
    ) -> None:
        self._pool = pool
        self._spool = spool
        self._hint = hint
        self._assess = assess
        self._timeout_s = write_timeout_s
        self._retry_s = retry_s
        self._batch = batch  # spooled turns written per transaction while draining
        self._wake = asyncio.Event()
        self._reachable = True  # as last seen: a change is logged once
        self.drained_total = 0

    @property
    def full(self) -> bool:
        """The spool has no room: new turns are refused until it drains."""
        return self._spool.full

    def status(self) -> TurnStoreStatus:
        return TurnStoreStatus(len(self._spool), self._spool.full)

    async def put(self, record: TurnRecord) -> Stored | None:
        """Store the turn; None if it could be stored nowhere (spool full, disk failing)."""
        if not len(self._spool):  # nothing waits before it: straight to Postgres
            try:
                await self._write(record)
                return "db"
            except DATABASE_UNAVAILABLE as exc:
                self._away(exc)
            except DATABASE_ERRORS as exc:
                log.error("turn %s refused by the database: %r", record.request_id, exc)
                return None
            except Exception as exc:  # e.g. a connection broken by a killed server
                log.warning("writing turn %s failed: %r", record.request_id, exc)
                self._away(exc)
        try:
            await self._spool.append(record)
        except (SpoolFull, OSError) as exc:
            log.error("turn %s not stored: %s", record.request_id, exc)
            return None
        self.wake()
        return "spool"

    async def recover(self) -> int:
        """Write the turns of dead processes' spool files to Postgres (at start, before any
        turn of this process); a file is removed once all its turns are in. Returns how many
        turns were written."""
        written = 0
        for orphan in await asyncio.to_thread(self._spool.orphans):
            try:
                turns = await asyncio.to_thread(orphan.turns)
                for start in range(0, len(turns), self._batch):
                    batch = turns[start : start + self._batch]
                    await self._write_batch(batch, orphan.path.name)
                    written += len(batch)
            except DATABASE_UNAVAILABLE as exc:
                log.warning("spool %s left for later: %s", orphan.path.name, type(exc).__name__)
                orphan.release()
                continue
            await asyncio.to_thread(orphan.remove)
            log.info("spool %s recovered: %d turns", orphan.path.name, len(turns))
        return written

    async def run(self) -> None:
        """The drainer: once the spool holds turns, write them to Postgres as soon as it
        answers, oldest first, backing off while it does not."""
        while True:
            await self._wake.wait()
            await self.drain()
            if not len(self._spool) and await self._spool.reset():
                self._wake.clear()
                log.info("spool drained; turns go straight to the database again")

    def wake(self) -> None:
        """Have the drainer look at the spool now (it wakes by itself when a turn is spooled)."""
        self._wake.set()

    def close(self) -> None:
        """Let go of the spool file (left for the next start if turns still wait in it)."""
        self._spool.close()

    async def drain(self) -> None:
        """Write every spooled turn to Postgres, oldest first, in batches; back off while it is
        away. Returns once the spool is empty."""
        delay = self._retry_s[0]
        while batch := self._spool.oldest(self._batch):
            try:
                await self._write_batch(batch, "spool")
            except Exception as exc:  # away, or a client error: the drainer must live on
                if not isinstance(exc, DATABASE_UNAVAILABLE):
                    log.exception("writing %d spooled turns failed", len(batch))
                self._away(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_s[1])
                continue
            delay = self._retry_s[0]
            self._spool.pop(len(batch))
            self.drained_total += len(batch)

    async def _write_batch(self, batch: list[TurnRecord], source: str) -> None:
        """The turns in one transaction; when the database refuses one of them for its content,
        each alone, so that only that one is set aside (`rejected-<source>`)."""
        items = [(_interaction(r), _chat_run(r)) for r in batch]
        try:
            # A turn's statements take a few ms each under load: allow for the batch's size.
            async with asyncio.timeout(self._timeout_s + 0.05 * len(batch)):
                writes = await record_turns(self._pool, items, enqueue=self._assess)
        except DATABASE_UNAVAILABLE:
            raise
        except DATABASE_ERRORS:
            for record in batch:
                await self._write_or_set_aside(record, source)
            return
        self._reachable = True
        for write in writes:
            if write.job_id is not None:
                self._hint(write.job_id)

    async def _write_or_set_aside(self, record: TurnRecord, source: str) -> None:
        try:
            await self._write(record)
        except DATABASE_UNAVAILABLE:
            raise
        except DATABASE_ERRORS as exc:
            log.error("turn %s refused by the database (%r); set aside", record.request_id, exc)
            await asyncio.to_thread(self._set_aside, record, source)

    def _set_aside(self, record: TurnRecord, source: str) -> None:
        path = self._spool.directory / f"rejected-{source}"
        with path.open("ab") as out:
            out.write(record_to_json(record) + b"\n")

    async def _write(self, record: TurnRecord) -> None:
        async with asyncio.timeout(self._timeout_s):
            write = await record_turn(
                self._pool, _interaction(record), _chat_run(record), enqueue=self._assess
            )
        self._reachable = True
        if write.job_id is not None:
            self._hint(write.job_id)  # a full queue: the job waits in the table

    def _away(self, exc: BaseException) -> None:
        if self._reachable:
            log.warning("database unreachable (%s); turns go to the spool", type(exc).__name__)
        self._reachable = False


def _interaction(r: TurnRecord) -> NewInteraction:
    """The turn's interaction: each of `NewInteraction`'s columns from the record's field of the
    same name (the record's cost goes to its prompt run instead)."""
    return NewInteraction(**{f.name: getattr(r, f.name) for f in fields(NewInteraction)})


def _chat_run(r: TurnRecord) -> NewPromptRun:
    return NewPromptRun(
        request_id=r.request_id,
        purpose="chat",
        status=r.status if r.error_code is None else f"{r.status}:{r.error_code}",
        latency_ms=r.total_ms,
        user_id=r.user_id,
        session_id=r.session_id,
        provider=r.provider,
        model=r.model,
        input_tokens=r.input_tokens,
        output_tokens=r.output_tokens,
        ttft_ms=r.upstream_ttft_ms,
        cost_usd=r.cost_usd,
    )
