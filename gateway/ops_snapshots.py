"""The ops board: every replica's latest ops snapshot, shared over Redis.

Each replica writes its own snapshot every `ops_snapshot_interval_s` to `<prefix>:ops:replica:
<id>` with a time to live of `ttl_s` (three intervals, at least two seconds), and keeps its id in
the set `<prefix>:ops:replicas`; in the same round trip it reads the others'. A replica that stops
writing (killed, cut off) has its key expire, so it drops out of every other replica's view
within `ttl_s` plus an interval, and its id is then taken out of the set. While Redis is down a
replica's view holds itself only.

`cluster_view` turns this replica's snapshot and the others' into what the ops feed sends: the
local figures at the top level as with one replica, plus `replica`, `replicas` (one row per
replica) and `totals`: counts summed, latencies and rates the worst replica's (percentiles of
different replicas do not add up).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = ["LINK_ERRORS", "OpsBoard", "cluster_view", "totals"]

log = logging.getLogger("coach.replicas")

LINK_ERRORS = (RedisError, OSError, TimeoutError)
SUMMED = (
    "active_sessions",
    "connections",
    "running_turns",
    "turns_last_minute",
    "feed_subscribers",
    "coaching_in_flight",
    "assess_queue_depth",
)
WORST = ("ttft_p50_ms", "ttft_p95_ms", "error_rate", "event_loop_lag_ms")


class OpsBoard:
    """This replica's place on the board, and the others' latest snapshots (`others`)."""

    def __init__(self, client: Redis, prefix: str, replica_id: str, *, interval_s: float) -> None:
        self._client = client
        self._prefix = prefix
        self.replica_id = replica_id
        self.interval_s = interval_s
        self.ttl_s = max(3 * interval_s, 2.0)
        self.others: dict[str, dict[str, Any]] = {}
        self._unreadable: set[str] = set()  # replicas whose snapshot is no JSON object: said once

    async def run(self, local: Callable[[], dict[str, Any]]) -> None:
        """Exchange snapshots every interval for as long as the gateway runs."""
        while True:
            try:
                async with asyncio.timeout(max(self.interval_s, 1.0)):
                    await self.exchange(local())
            except LINK_ERRORS:
                self.others = {}  # the link's log line and metric are `gateway.replicas`'
            await asyncio.sleep(self.interval_s)

    async def exchange(self, snapshot: dict[str, Any]) -> None:
        index = f"{self._prefix}:ops:replicas"
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.set(self._key(self.replica_id), orjson.dumps(snapshot), px=int(self.ttl_s * 1000))
            pipe.sadd(index, self.replica_id)
            pipe.smembers(index)
            members = (await pipe.execute())[2]
        ids = sorted(i for i in (m.decode() for m in members) if i != self.replica_id)
        values = await self._client.mget([self._key(i) for i in ids]) if ids else []
        gone = [i for i, value in zip(ids, values, strict=True) if value is None]
        if gone:
            await self._client.srem(index, *gone)
        others: dict[str, dict[str, Any]] = {}
        for replica_id, value in zip(ids, values, strict=True):
            if value and (theirs := self._read(replica_id, value)) is not None:
                others[replica_id] = theirs
        self.others = others

    def _read(self, replica_id: str, value: bytes | str) -> dict[str, Any] | None:
        """Another replica's snapshot, or None when it is not a JSON object (logged once until
        it reads again: a stray write to its key, or a replica of another version)."""
        try:
            snapshot = orjson.loads(value)
        except orjson.JSONDecodeError:
            snapshot = None
        if isinstance(snapshot, dict):
            self._unreadable.discard(replica_id)
            return snapshot
        if replica_id not in self._unreadable:
            self._unreadable.add(replica_id)
            log.warning("the ops snapshot of replica %s is unreadable; left out", replica_id)
        return None

    def _key(self, replica_id: str) -> str:
        return f"{self._prefix}:ops:replica:{replica_id}"


def cluster_view(
    local: dict[str, Any], replica_id: str, others: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """What the ops feed sends (see the module docstring)."""
    mine = {**local, "replica": replica_id}
    rows = [mine, *({**snap, "replica": rid} for rid, snap in sorted(others.items()))]
    return {**mine, "replicas": rows, "totals": totals(rows)}


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"replicas": len(rows)}
    for key in (*SUMMED, *WORST):
        values = [r[key] for r in rows if isinstance(r.get(key), int | float)]
        out[key] = (sum(values) if key in SUMMED else max(values)) if values else None
    rejections: Counter[str] = Counter()
    for row in rows:
        rejections.update(row.get("quota_rejections") or {})
    out["quota_rejections"] = dict(rejections)
    return out
