"""What the OpenAI-compatible route adds to time to first token, one request at a time, in
product mode (Postgres on, assessments on, log level info).

A whole product gateway runs in process (`product_gateway`: real uvicorn on loopback, the
simulated upstream over real HTTP, a throwaway Postgres database); an aiohttp client sends the
load client's streamed `POST /v1/chat/completions` body through the gateway and, alternately,
straight to the simulated upstream. Added TTFT is the gateway's TTFT minus the direct one of
the same round (p50, p90, p99 over `--requests` pairs); CPU per request is this process's CPU
over the gateway requests minus that over the direct ones. With `--profile PATH` the gateway
requests also run under cProfile (the stats, sorted by own time, go to PATH and the top lines
to stdout); the timed figures are then not comparable with an unprofiled run.

    python -m loadtests.micro.openai_route [--requests 400] [--rounds 2] [--profile PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import pstats
import statistics
import sys
import time
from dataclasses import dataclass

import aiohttp
import orjson

from gateway.auth import mint_token
from loadtests.micro.product import product_gateway

SECRET = "openai-route-bench-secret-0123456789abcdef"
SYSTEM_TEXT = "You are a concise coach."
TURN_TEXT = "How do I keep a steady pace on a long run?"


@dataclass(slots=True)
class Round:
    added_ms: list[float]
    gateway_cpu_us: float


def _body(model: str) -> bytes:
    return orjson.dumps(
        {
            "model": model,
            "stream": True,
            "messages": [
                {"role": "system", "content": SYSTEM_TEXT},
                {"role": "user", "content": TURN_TEXT},
            ],
        }
    )


async def _ttft_ms(http: aiohttp.ClientSession, url: str, body: bytes, token: str) -> float:
    """Milliseconds from sending the request to its first content delta; reads to `[DONE]`."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    started = time.perf_counter()
    first: float | None = None
    async with http.post(url, data=body, headers=headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url}: {resp.status} {await resp.text()}")
        async for line in resp.content:
            if not line.startswith(b"data: "):
                continue
            payload = line[6:].strip()
            if payload == b"[DONE]":
                break
            if first is None:
                chunk = orjson.loads(payload)
                for choice in chunk.get("choices") or ():
                    if (choice.get("delta") or {}).get("content"):
                        first = time.perf_counter()
    if first is None:
        raise RuntimeError(f"{url}: no content delta")
    return (first - started) * 1000


async def _round(
    http: aiohttp.ClientSession,
    gateway_url: str,
    sim_url: str,
    model: str,
    token: str,
    requests: int,
    profiler: cProfile.Profile | None,
) -> Round:
    body = _body(model)
    added: list[float] = []
    gateway_cpu = direct_cpu = 0.0
    for _ in range(requests):
        cpu = time.process_time()
        direct = await _ttft_ms(http, sim_url, body, "sk-sim")
        direct_cpu += time.process_time() - cpu
        cpu = time.process_time()
        if profiler is not None:
            profiler.enable()
        through = await _ttft_ms(http, gateway_url, body, token)
        if profiler is not None:
            profiler.disable()
        gateway_cpu += time.process_time() - cpu
        added.append(through - direct)
    return Round(added, (gateway_cpu - direct_cpu) * 1e6 / requests)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(requests: int, rounds: int, profile_path: str | None) -> None:
    logging.getLogger().handlers.clear()
    async with product_gateway(SECRET, log_level="info") as gw:
        settings = gw.app.state.gateway.settings
        sim_url = f"{settings.sim_url.rstrip('/')}/v1/chat/completions"
        model = gw.app.state.gateway.router.targets("chat")[0].model
        token = mint_token(SECRET, "bench-user")
        url = f"{gw.url}/v1/chat/completions"
        async with aiohttp.ClientSession() as http:
            for _ in range(20):  # warm both paths: connections, caches, the first session
                await _ttft_ms(http, url, _body(model), token)
                await _ttft_ms(http, sim_url, _body(model), "sk-sim")
            for n in range(rounds):
                profiler = cProfile.Profile() if profile_path and n == rounds - 1 else None
                result = await _round(http, url, sim_url, model, token, requests, profiler)
                added = result.added_ms
                print(
                    f"round {n + 1}: added TTFT p50 {statistics.median(added):.3f} ms  "
                    f"p90 {_quantile(added, 0.9):.3f} ms  p99 {_quantile(added, 0.99):.3f} ms  "
                    f"gateway CPU {result.gateway_cpu_us:.0f} us/request  ({requests} requests)"
                )
                if profiler is not None and profile_path:
                    profiler.dump_stats(profile_path)
                    out = io.StringIO()
                    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(40)
                    print(out.getvalue())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", default=None, help="write cProfile stats here")
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds, args.profile))
    sys.exit(0)
