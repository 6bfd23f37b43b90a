"""Postgres behind the turn engine: the session store, the turn store (outbox writer, with its
spool), the assessment pipeline and the budget store, opened together from settings.

`DATABASE_URL` selects a server; without it the embedded Postgres (`pgserver`) is started in
the data directory (`<data_dir>/postgres`, per OS user).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from assess.assessor import Assessor
from assess.pipeline import Notify, Pipeline, PipelineConfig
from assess.work import JobRules
from db import embedded
from db.budgets import BudgetStore
from db.focuses import list_focuses, set_active_focuses
from db.interactions import recent_exchanges
from db.migrate import migrate
from db.pool import Pool, open_pool
from db.sessions import ClosedSession, open_session
from gateway.settings import AssessSettings, Settings
from gateway.spool import Spool
from gateway.turn_store import TurnStore
from providers.chat import Message
from providers.routing import Router
from streams.records import SessionInfo

__all__ = [
    "DbSessionStore",
    "JobHints",
    "Persistence",
    "database_dsn",
    "migrate_only",
    "open_persistence",
    "pipeline_config",
]

log = logging.getLogger("coach.persistence")

# Connections for chat's own work (opening sessions, storing turns, budgets): the pipeline has a
# pool of its own (`pipeline_connections`), so a turn's write never waits behind assessments.
CHAT_CONNECTIONS = 16


def pipeline_connections(workers: int) -> int:
    """The assessment pipeline's pool: its workers mostly wait on the model, and hold a
    connection only for a job's short steps."""
    return max(2, min(workers, 8))


@dataclass(slots=True)
class JobHints:
    """Where new job ids go: the pipeline once it runs; until then they wait in the table. And
    who hears of the sessions closed for idleness (`on_closed`, e.g. to recap them)."""

    pipeline: Pipeline | None = None
    on_closed: Callable[[str, str], None] | None = None  # (user_id, session_id)

    def submit(self, job_id: int) -> bool:
        return self.pipeline is not None and self.pipeline.submit_nowait(job_id)

    def closed(self, sessions: Sequence[ClosedSession]) -> None:
        """Sessions this process closed for idleness: their summary jobs are queued already."""
        if self.on_closed is not None:
            for session in sessions:
                self.on_closed(session.user_id, session.session_id)


class DbSessionStore:
    """`streams.records.SessionStore` on Postgres.

    A user's session as last opened here is taken again, without the database, by the next
    `open(user, None)` within `reuse_s` of that: the OpenAI-compatible route opens the session
    on every request, on its way to the first token, and that was seven round trips each time
    (user, idle sessions closed, session found, history read). Within seconds the answer cannot
    have changed but by `session.end` here, which `forget`s it (ended in another worker, a
    session takes turns for at most `reuse_s` more). Bounded: the oldest entries go first."""

    def __init__(
        self,
        pool: Pool,
        *,
        idle_minutes: float,
        history_turns: int,
        hints: JobHints,
        reuse_s: float = 30.0,
        remembered: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._idle_s = idle_minutes * 60
        self._history_turns = history_turns
        self._hints = hints
        # Never as long as the idle window: a session remembered was active within it.
        self._reuse_s = min(reuse_s, self._idle_s / 4)
        self._remembered = remembered
        self._clock = clock
        self._recent: OrderedDict[str, tuple[SessionInfo, float]] = OrderedDict()

    async def open(self, user_id: str, session_id: str | None) -> SessionInfo:
        """Resume `session_id` (the caller's, else `LookupError`), or the caller's session active
        within the idle window, or a new one; the caller's idle sessions are closed on the way."""
        if session_id is None and (recent := self._recent.get(user_id)) is not None:
            info, opened_at = recent
            if self._clock() - opened_at < self._reuse_s:
                return info
        opened = await open_session(self._pool, user_id, session_id, idle_s=self._idle_s)
        for closed in opened.closed:
            self._hints.submit(closed.job_id)
        self._hints.closed(opened.closed)
        history: tuple[Message, ...] = ()
        if opened.resumed:
            history = await self._history(opened.session.id)
        self._remember(SessionInfo(opened.session.id, user_id, True, history))
        return SessionInfo(opened.session.id, user_id, opened.resumed, history)

    def _remember(self, info: SessionInfo) -> None:
        self._recent[info.user_id] = (info, self._clock())
        self._recent.move_to_end(info.user_id)
        while len(self._recent) > self._remembered:
            self._recent.popitem(last=False)

    def forget(self, user_id: str, session_id: str) -> None:
        """The session was ended: the next `open` goes to the database."""
        recent = self._recent.get(user_id)
        if recent is not None and recent[0].session_id == session_id:
            del self._recent[user_id]

    async def _history(self, session_id: str) -> tuple[Message, ...]:
        exchanges = await recent_exchanges(self._pool, session_id, self._history_turns)
        messages: list[Message] = []
        for user_text, reply_text in exchanges:
            if user_text and reply_text:
                messages += [Message("user", user_text), Message("assistant", reply_text)]
        return tuple(messages)

    async def touch(self, session_id: str) -> None:
        """Nothing to do: storing a turn notes the session's activity in the same transaction
        (`db.interactions.record_turn`), also when the turn waited in the spool."""


def pipeline_config(s: AssessSettings) -> PipelineConfig:
    idle_s = s.session_idle_minutes * 60
    return PipelineConfig(
        workers=s.workers,
        queue_size=s.queue_size,
        lease_s=s.lease_s,
        poll_s=s.poll_s,
        drain_s=s.drain_s,
        session_idle_s=idle_s,
        sweep_s=max(1.0, min(60.0, idle_s / 4)),
        # The model call keeps JobRules' own timeout: the lease is renewed while it runs.
        rules=JobRules(buffer_min_turns=s.buffer_min_turns, buffer_max_turns=s.buffer_max_turns),
    )


@dataclass(slots=True)
class Persistence:
    """Everything on the database; `aclose()` drains the pipeline and closes the pool."""

    pool: Pool
    dsn: str
    settings: AssessSettings
    pipeline_pool: Pool
    sessions: DbSessionStore
    turns: TurnStore
    budgets: BudgetStore
    hints: JobHints = field(default_factory=JobHints)
    _drainer: asyncio.Task[None] | None = None

    @property
    def pipeline(self) -> Pipeline | None:
        return self.hints.pipeline

    async def start_assessments(self, router: Router, *, notify: Notify | None = None) -> None:
        """Start the pipeline on `router`'s `assess` route (once; not when disabled)."""
        if self.hints.pipeline is not None or not self.settings.enabled:
            return
        pipeline = Pipeline(
            self.pipeline_pool,
            Assessor(router),
            pipeline_config(self.settings),
            notify=notify,
            on_closed=self.hints.closed,
        )
        await pipeline.start()
        self.hints.pipeline = pipeline

    async def focus_catalog(self, timeout_s: float = 5.0) -> frozenset[str]:
        """The ids of the focuses a user may pick."""
        async with asyncio.timeout(timeout_s):
            return frozenset(focus.id for focus in await list_focuses(self.pool))

    async def save_focuses(self, user_id: str, focus_ids: Sequence[str]) -> None:
        """Make `focus_ids` the user's active focuses; `ValueError` names unknown ones."""
        known = await self.focus_catalog()
        unknown = [f for f in focus_ids if f not in known]
        if unknown:
            raise ValueError(f"unknown focus ids {unknown}; known: {sorted(known)}")
        await set_active_focuses(self.pool, user_id, focus_ids)

    async def ping(self) -> None:
        """Raises if the database does not answer."""
        async with asyncio.timeout(2.0):
            await self.pool.fetchval("SELECT 1")

    async def aclose(self) -> None:
        pipeline, self.hints.pipeline = self.hints.pipeline, None
        if pipeline is not None:
            await pipeline.aclose()
        drainer, self._drainer = self._drainer, None
        if drainer is not None:
            drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drainer
        self.turns.close()
        if self.pipeline_pool is not self.pool:
            await self.pipeline_pool.close()
        await self.pool.close()


async def database_dsn(settings: Settings) -> str:
    """`DATABASE_URL`, else the embedded server in the data directory (started if needed)."""
    if settings.database_url:
        return settings.database_url
    return await asyncio.to_thread(embedded.start, settings.data_dir)


async def open_persistence(
    settings: Settings, *, router: Router | None = None, notify: Notify | None = None
) -> Persistence:
    """Connect, migrate, and (given a `router`) start the assessment pipeline.

    Without a router the pipeline can be started later with `start_assessments` (e.g. once the
    router is built on `persistence.budgets`); jobs written meanwhile wait in the table.
    """
    dsn = await database_dsn(settings)
    pool = await open_pool(dsn, max_size=CHAT_CONNECTIONS)
    try:
        await migrate(pool)
        pipeline_pool = pool
        if settings.assess.enabled:
            size = pipeline_connections(settings.assess.workers)
            pipeline_pool = await open_pool(dsn, max_size=size)
    except BaseException:
        await pool.close()
        raise
    hints = JobHints()
    a = settings.assess
    turns = TurnStore(
        pool,
        Spool(settings.data_dir / "spool", max_bytes=settings.spool_max_mb * 1024 * 1024),
        hints.submit,
        assess=a.enabled,
        write_timeout_s=settings.store_timeout_s,
    )
    try:
        recovered = await turns.recover()  # before any turn of ours: a session's order holds
    except BaseException:
        if pipeline_pool is not pool:
            await pipeline_pool.close()
        await pool.close()
        raise
    if recovered:
        log.info("recovered %d spooled turns of an earlier run", recovered)
    persistence = Persistence(
        pool=pool,
        dsn=dsn,
        settings=a,
        pipeline_pool=pipeline_pool,
        sessions=DbSessionStore(
            pool,
            idle_minutes=a.session_idle_minutes,
            history_turns=settings.history_turns,
            hints=hints,
        ),
        turns=turns,
        budgets=BudgetStore(pool),
        hints=hints,
    )
    persistence._drainer = asyncio.create_task(turns.run(), name="turn-spool-drainer")
    if router is not None:
        await persistence.start_assessments(router, notify=notify)
    return persistence


async def migrate_only(settings: Settings) -> int:
    """`coach-gateway migrate`: apply the migrations and print what was applied."""
    pool = await open_pool(await database_dsn(settings), max_size=2)
    try:
        applied = await migrate(pool)
    finally:
        await pool.close()
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0
