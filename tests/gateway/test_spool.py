"""The turn spool: bounded, fsynced, each process's file its own, a dead process's file drained
once by the next; on a real Postgres for the draining."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from db.pool import Pool
from db.sessions import open_session
from gateway.spool import Spool, SpoolFull, record_from_json, record_to_json
from gateway.turn_store import TurnStore
from streams.records import TurnRecord
from tests.pg import database_dsn, migrated_pool, server_dsn

__all__ = ["database_dsn", "migrated_pool", "server_dsn"]


def turn(session_id: str = "s1", user_id: str = "u1", n: int = 0) -> TurnRecord:
    return TurnRecord(
        turn_id=f"t{n}",
        request_id=f"req-{uuid.uuid4().hex[:12]}",
        user_id=user_id,
        session_id=session_id,
        channel="ws",
        user_text=f"question {n}",
        reply_text="Breathe from the belly.",
        status="completed",
        finish_reason="stop",
        provider="primary",
        model="gpt-4o-mini",
        input_tokens=12,
        output_tokens=5,
        ttft_ms=3.5,
        upstream_ttft_ms=2.0,
        total_ms=40.0,
        cost_usd=0.0001,
        focus_ids=("pacing",),
    )


def spool_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("turns-*.jsonl"))


def append_bytes(path: Path, data: bytes) -> None:
    with path.open("ab") as file:
        file.write(data)


def test_a_record_survives_its_json_line() -> None:
    record = replace(
        turn(),
        fallbacks=[{"target": "primary", "error": "upstream_timeout"}],
        error_code="upstream_timeout",
        audio_in_ms=1200,
        first_audio_ms=310.5,
        started_at=datetime(2026, 12, 7, 9, 30, 0, 123456, tzinfo=UTC),
    )
    assert record_from_json(record_to_json(record)) == record


# A line exactly as the gateway wrote it before the spool's serialisation was derived from
# `TurnRecord` (orjson, `+00:00` offsets): a spool left by that version must still drain.
EARLIER_LINE = (
    b'{"turn_id":"t7","request_id":"req-earlier-7","user_id":"USER","session_id":"SESSION",'
    b'"channel":"ws","user_text":"How do I slow down?","reply_text":"Pause between sentences.",'
    b'"status":"completed","finish_reason":"stop","provider":"primary","model":"gpt-4o-mini",'
    b'"input_tokens":12,"output_tokens":5,"ttft_ms":3.5,"upstream_ttft_ms":2.0,"total_ms":40.0,'
    b'"cost_usd":0.0001,"fallbacks":[{"target":"a","error":"upstream_timeout"}],'
    b'"error_code":null,"focus_ids":["pacing","filler"],"audio_in_ms":1200,'
    b'"first_audio_ms":310.5,"started_at":"2026-12-07T09:30:00.123456+00:00"}\n'
)


async def test_a_dead_processes_file_is_an_orphan_and_a_torn_line_is_skipped(
    tmp_path: Path,
) -> None:
    dead = Spool(tmp_path, max_bytes=1 << 20)
    turns = [turn(n=n) for n in range(3)]
    for record in turns:
        await dead.append(record)
    living = Spool(tmp_path, max_bytes=1 << 20)
    assert living.orphans() == []  # held by its (living) process
    dead.close()  # the process is gone, its turns not yet drained: the file stays
    append_bytes(spool_files(tmp_path)[0], b'{"turn_id": "torn')  # died writing this one
    (orphan,) = living.orphans()
    assert orphan.turns() == turns
    orphan.remove()
    assert spool_files(tmp_path) == []


async def test_a_full_spool_refuses_and_keeps_what_it_holds(tmp_path: Path) -> None:
    one = len(record_to_json(turn())) + 1
    spool = Spool(tmp_path, max_bytes=2 * one + 10)
    await spool.append(turn(n=1))
    await spool.append(turn(n=2))
    assert spool.full
    with pytest.raises(SpoolFull):
        await spool.append(turn(n=3))
    assert [r.turn_id for r in spool.oldest(10)] == ["t1", "t2"]
    spool.pop(2)
    assert await spool.reset() and not spool.full
    assert [f.stat().st_size for f in spool_files(tmp_path)] == [0]


async def test_orphans_are_written_once_even_when_recovered_twice(
    migrated_pool: Pool, tmp_path: Path
) -> None:
    opened = await open_session(migrated_pool, "ulla", None, idle_s=3600)
    session_id = opened.session.id
    dead = Spool(tmp_path / "spool", max_bytes=1 << 20)
    turns = [turn(session_id, "ulla", n) for n in range(4)]
    for record in turns:
        await dead.append(record)
    dead.close()
    (path,) = spool_files(tmp_path / "spool")
    shutil.copy(path, tmp_path / "copy")
    hinted: list[int] = []

    def hint(job_id: int) -> bool:
        hinted.append(job_id)
        return True

    store = TurnStore(migrated_pool, Spool(tmp_path / "spool", max_bytes=1 << 20), hint)
    assert await store.recover() == 4
    shutil.copy(tmp_path / "copy", path)  # as if the first recovery died before removing it
    assert await store.recover() == 4
    rows = await migrated_pool.fetch(
        "SELECT turn_id FROM interactions WHERE session_id = $1 ORDER BY id", session_id
    )
    assert [r["turn_id"] for r in rows] == ["t0", "t1", "t2", "t3"]
    assert len(hinted) == 4  # one assessment job each
    assert spool_files(tmp_path / "spool") == []


async def test_a_spooled_turn_the_database_refuses_is_set_aside_not_dropped(
    migrated_pool: Pool, tmp_path: Path
) -> None:
    opened = await open_session(migrated_pool, "vic", None, idle_s=3600)
    spool = Spool(tmp_path, max_bytes=1 << 20)
    good = [turn(opened.session.id, "vic", n) for n in range(3)]
    refused = turn("no-such-session", "vic", 9)  # its session is gone: a foreign key error
    for record in (good[0], refused, good[1], good[2]):
        await spool.append(record)
    store = TurnStore(migrated_pool, spool, lambda job_id: True)
    await store.drain()
    assert len(spool) == 0 and store.drained_total == 4
    rows = await migrated_pool.fetch(
        "SELECT turn_id FROM interactions WHERE user_id = 'vic' ORDER BY id"
    )
    assert [r["turn_id"] for r in rows] == ["t0", "t1", "t2"]
    (aside,) = read_lines(tmp_path / "rejected-spool")
    assert record_from_json(aside) == refused
    store.close()


def read_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def test_a_line_an_earlier_version_wrote_reads_as_the_same_turn() -> None:
    record = record_from_json(EARLIER_LINE.strip())
    assert (record.request_id, record.channel, record.focus_ids) == (
        "req-earlier-7",
        "ws",
        ("pacing", "filler"),
    )
    assert record.started_at == datetime(2026, 12, 7, 9, 30, 0, 123456, tzinfo=UTC)
    assert record.fallbacks == [{"target": "a", "error": "upstream_timeout"}]
    assert (record.ttft_ms, record.total_ms, record.cost_usd) == (3.5, 40.0, 0.0001)


async def test_a_spool_an_earlier_version_wrote_is_recovered(
    migrated_pool: Pool, tmp_path: Path
) -> None:
    opened = await open_session(migrated_pool, "wes", None, idle_s=3600)
    line = EARLIER_LINE.replace(b"USER", b"wes").replace(b"SESSION", opened.session.id.encode())
    (tmp_path / "turns-1-0ld0ld00.jsonl").write_bytes(line)
    store = TurnStore(migrated_pool, Spool(tmp_path, max_bytes=1 << 20), lambda job_id: True)
    assert await store.recover() == 1
    row = await migrated_pool.fetchrow(
        "SELECT i.focus_ids, i.fallbacks, i.audio_in_ms, i.first_audio_ms, p.cost_usd"
        " FROM interactions i JOIN prompt_runs p USING (request_id) WHERE i.request_id = $1",
        "req-earlier-7",
    )
    assert dict(row) == {
        "focus_ids": ["pacing", "filler"],
        "fallbacks": [{"target": "a", "error": "upstream_timeout"}],
        "audio_in_ms": 1200,
        "first_audio_ms": 310.5,
        "cost_usd": 0.0001,
    }
    assert spool_files(tmp_path) == []
