"""Latency of each coaching skill: the first call (a model answer) and the cached call.

A whole gateway in-process (real uvicorn, a fresh database of `DATABASE_URL`'s server, else the
embedded Postgres), the simulated upstream with a 5 ms first token and no pacing, one user per
pair of calls over HTTP. Prints the medians and writes `loadtests/results/skills.json`.

    python -m loadtests.micro.skills [--users 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from gateway.auth import mint_token
from loadtests.micro.product import product_gateway

RESULTS = Path(__file__).parents[1] / "results"
SECRET = "skills-bench-secret-0123456789-abcdefghijklmnop"

Call = Callable[[httpx.AsyncClient, dict[str, str]], Awaitable[httpx.Response]]


async def _feedback(http: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    body = {"subject": {"kind": "take", "id": "t1"}, "observations": {"tempo_drift_bpm": 6}}
    return await http.post("/v1/feedback", headers=headers, json=body)


async def _practice(http: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await http.get("/v1/recommendations/practice", headers=headers)


SKILLS: dict[str, Call] = {"feedback": _feedback, "practice": _practice}


async def _timed(call: Call, http: httpx.AsyncClient, headers: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    response = await call(http, headers)
    elapsed_ms = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    (answer,) = response.json().values()
    return elapsed_ms, str(answer["source"])


async def run(users: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    async with (
        product_gateway(SECRET) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
    ):
        for name, call in SKILLS.items():
            first: list[float] = []
            cached: list[float] = []
            for n in range(users):
                token = mint_token(SECRET, f"bench-{name}-{n}")
                headers = {"Authorization": f"Bearer {token}"}
                elapsed, source = await _timed(call, http, headers)
                assert source == "model", f"{name}: the first call answered from {source}"
                first.append(elapsed)
                elapsed, source = await _timed(call, http, headers)
                assert source == "cache", f"{name}: the second call answered from {source}"
                cached.append(elapsed)
            figures[name] = {
                "first_call_ms_p50": round(statistics.median(first), 2),
                "cached_call_ms_p50": round(statistics.median(cached), 2),
                "users": users,
            }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=30, help="users per skill (default 30)")
    parser.add_argument("--out", type=Path, default=RESULTS / "skills.json")
    args = parser.parse_args()
    figures = asyncio.run(run(args.users))
    for name, row in figures.items():
        print(
            f"{name}: first call (model) p50 {row['first_call_ms_p50']} ms,"
            f" cached call p50 {row['cached_call_ms_p50']} ms ({row['users']} users)"
        )
    args.out.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
