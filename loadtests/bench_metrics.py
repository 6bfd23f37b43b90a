"""The gateway's own figures over a measured window: its Prometheus `/metrics` read at the
window's start and end, and the garbage collector's pauses between the two readings."""

from __future__ import annotations

import sys
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["OVER_MS", "Samples", "gc_pauses", "samples", "scrape"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""Each sample of a `/metrics` page by its name and sorted labels."""

_GC = "coach_gc_pause_seconds"
OVER_MS = (5, 25, 100)  # bounds of the gateway's pause histogram (`gateway.metrics.LAG_BUCKETS`)


async def scrape(url: str, timeout_s: float = 5.0) -> Samples | None:
    """The samples of one `/metrics` page; None (said on stderr) when it cannot be read, so
    that a run is not lost for the figures it reads there."""
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp,
        ):
            resp.raise_for_status()
            return samples(await resp.text())
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"could not read {url}: {exc!r}", file=sys.stderr)
        return None


def samples(text: str) -> Samples:
    """The samples of a page in Prometheus' text format."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def gc_pauses(before: Samples, after: Samples, window_s: float) -> dict[str, Any]:
    """Collections between the two readings, by generation: how many, the time they stopped
    the event loop, and how many stopped it for more than 5, 25 and 100 ms; per minute too."""
    per_minute = 60 / window_s if window_s > 0 else 0.0
    figures: dict[str, Any] = {}
    stopped_s = 0.0
    for gen in ("0", "1", "2"):
        count = _delta(before, after, f"{_GC}_count", generation=gen)
        total_s = _delta(before, after, f"{_GC}_sum", generation=gen)
        stopped_s += total_s
        over = {
            f"over_{ms}ms": count
            - _delta(before, after, f"{_GC}_bucket", generation=gen, le=str(ms / 1000))
            for ms in OVER_MS
        }
        figures[f"gen{gen}"] = {
            "collections": int(count),
            "per_minute": round(count * per_minute, 1),
            "total_ms": round(total_s * 1000, 1),
            "mean_ms": round(total_s * 1000 / count, 2) if count else None,
            **{k: int(v) for k, v in over.items()},
        }
    over_5ms = sum(figures[f"gen{g}"]["over_5ms"] for g in "012")
    figures["over_5ms_per_minute"] = round(over_5ms * per_minute, 1)
    figures["stopped_percent"] = round(100 * stopped_s / window_s, 2) if window_s > 0 else None
    return figures


def _delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)
