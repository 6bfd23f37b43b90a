"""Gateway-added time to first token over sequential turns (the issue's first figure).

Starts the simulated upstream and the gateway as their own processes on loopback, runs N
sequential turns over one WebSocket (one session, so the context grows to its bound), and prints
p50/p99 of `ttft_ms - upstream_ttft_ms` from each `response.completed` (what the gateway adds
between receiving a turn and sending its first delta, by its own clocks), the client-observed
TTFT through the gateway, the client-observed TTFT calling the upstream directly, and the end of
a turn as the client sees it (`response.completed` minus the last `response.delta`: with
persistence on, the commit that comes before `response.completed`). Writes
`loadtests/results/added_ttft.json` (or `--out`).

    python -m loadtests.added_ttft [--turns 200] [--pipeline] [--out FILE]

With `--pipeline`, a second gateway with persistence and the assessment pipeline on is measured
against the same upstream in the same run (chat TTFT with the pipeline on versus off).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import jwt
import orjson
from websockets.asyncio.client import connect

RESULTS = Path(__file__).parent / "results"
SECRET = "bench-secret-bench-secret-bench-secret-0123"


def mint_token(user: str, *, ttl_s: int = 3600) -> str:
    """A bearer for `user` as `coach-gateway token` makes one (HS256; `sub`, `iat`, `exp`),
    signed with `SECRET`: the program talks to the gateway and needs none of its code."""
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + ttl_s}, SECRET, algorithm="HS256")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def process(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def wait_ready(url: str) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(1200):  # a loaded machine can take a while to import the SDKs
            try:
                if (await http.get(url)).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_turns(
    ws_url: str, token: str, turns: int
) -> tuple[list[float], list[float], list[float]]:
    added, client_ttft, turn_end = [], [], []
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(f"{ws_url}/v1/realtime", additional_headers=headers) as ws:
        await ws.recv()
        for i in range(turns):
            sent = time.perf_counter()
            await ws.send(orjson.dumps({"type": "input_text", "text": f"tip {i}"}).decode())
            first: float | None = None
            last = 0.0
            while True:
                event = orjson.loads(await ws.recv())
                if event["type"] == "response.delta":
                    last = time.perf_counter()
                    first = first or last
                if event["type"] in ("response.completed", "response.failed", "rate_limited"):
                    break
            if event["type"] != "response.completed" or first is None:
                raise RuntimeError(f"turn {i} failed: {event}")
            timings = event["timings"]
            added.append(timings["ttft_ms"] - timings["upstream_ttft_ms"])
            client_ttft.append((first - sent) * 1000)
            turn_end.append((time.perf_counter() - last) * 1000)
    return added, client_ttft, turn_end


async def direct_ttft(sim_url: str, turns: int) -> list[float]:
    """Client-observed TTFT calling the upstream itself, for the same kind of request."""
    body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "user", "content": "tip"}],
    }
    headers = {"Authorization": "Bearer sk-sim"}
    samples = []
    async with httpx.AsyncClient(base_url=sim_url, timeout=30) as http:
        for _ in range(turns):
            sent = time.perf_counter()
            async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data:") and '"content":"' in line:
                        samples.append((time.perf_counter() - sent) * 1000)
                        break
    return samples


def summary(
    added: list[float], client: list[float], direct: list[float], turn_end: list[float]
) -> dict[str, object]:
    return {
        "turn_end_ms": {"p50": round(pct(turn_end, 0.5), 3), "p99": round(pct(turn_end, 0.99), 3)},
        "added_ttft_ms": {
            "p50": round(pct(added, 0.5), 3),
            "p99": round(pct(added, 0.99), 3),
            "mean": round(statistics.fmean(added), 3),
        },
        "client_ttft_ms": {"p50": round(pct(client, 0.5), 3), "p99": round(pct(client, 0.99), 3)},
        "client_added_ttft_ms": {
            "p50": round(pct(client, 0.5) - pct(direct, 0.5), 3),
            "p99": round(pct(client, 0.99) - pct(direct, 0.99), 3),
        },
    }


async def measure_gateway(
    exe: str, env: dict[str, str], sim_port: int, turns: int, direct: list[float]
) -> dict[str, object]:
    gw_port = free_port()
    with process([exe, "serve", "--port", str(gw_port)], env):
        await wait_ready(f"http://127.0.0.1:{gw_port}/healthz")
        token = mint_token(f"bench-{gw_port}")
        await run_turns(f"ws://127.0.0.1:{gw_port}", token, 10)  # warm up
        added, client, turn_end = await run_turns(f"ws://127.0.0.1:{gw_port}", token, turns)
    return summary(added, client, direct, turn_end)


async def main_async(turns: int, pipeline: bool) -> dict[str, object]:
    sim_port = free_port()
    exe = str(Path(sys.executable).with_name("coach-gateway"))
    env = {
        "COACH_JWT_SECRET": SECRET,
        "COACH_PERSISTENCE": "false",
        "COACH_SIM_URL": f"http://127.0.0.1:{sim_port}",
        "COACH_QUOTAS__TURNS_PER_MINUTE": "100000",
        "COACH_QUOTAS__TOKENS_PER_DAY": "1000000000",
        "COACH_LOG_LEVEL": "warning",
    }
    result: dict[str, object] = {"turns": turns, "sim_ttft_ms": 20}
    with process([exe, "sim-upstream", "--port", str(sim_port), "--ttft-ms", "20"], env):
        await wait_ready(f"http://127.0.0.1:{sim_port}/_sim/stats")
        direct = await direct_ttft(f"http://127.0.0.1:{sim_port}", turns)
        result["direct_upstream_ttft_ms"] = {
            "p50": round(pct(direct, 0.5), 3),
            "p99": round(pct(direct, 0.99), 3),
        }
        result["pipeline_off"] = await measure_gateway(exe, env, sim_port, turns, direct)
        if pipeline:
            # Same sim, same client: persistence on, so every turn is stored and assessed by the
            # in-process pipeline (DATABASE_URL if set, else the embedded Postgres).
            with_db = {**env, "COACH_PERSISTENCE": "true"}
            result["pipeline_on"] = await measure_gateway(exe, with_db, sim_port, turns, direct)
    result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument(
        "--pipeline", action="store_true", help="also run with persistence and assessment on"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "added_ttft.json")
    args = parser.parse_args()
    result = asyncio.run(main_async(args.turns, args.pipeline))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
