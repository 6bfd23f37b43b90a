"""What a tool round costs a turn: time to the first text of a turn with one tool round (the
model calls `get_progress`, the gateway runs it on Postgres, the model answers from it) against
a plain turn, over the WebSocket of a whole gateway in-process (real uvicorn, Postgres, the
simulated upstream with a 5 ms first token and no pacing), one turn at a time.

Prints the medians and p95 of `timings.ttft_ms` (gateway: turn received to first text) and of
the client's own clock, one turn's events as the socket carried them, and writes
`loadtests/results/agent.json` (or `--out`).

    python -m loadtests.micro.agent [--turns 40]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import connect

from gateway.auth import mint_token
from loadtests.micro.product import product_gateway

RESULTS = Path(__file__).parents[1] / "results"
SECRET = "agent-bench-secret-0123456789-abcdefghijklmnopq"
TOOL_TURN = "How is my progress this week?"
PLAIN_TURN = "Give me one tip for a calm opening."


async def _turns(url: str, token: str, text: str, turns: int, tools: bool) -> dict[str, Any]:
    gateway_ms: list[float] = []
    client_ms: list[float] = []
    transcript: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(f"{url}/v1/realtime", additional_headers=headers) as ws:
        await _until(ws, "session.created")
        await ws.send(
            orjson.dumps({"type": "session.update", "session": {"tools": tools}}).decode()
        )
        await _until(ws, "session.updated")
        for n in range(turns):
            sent = time.perf_counter()
            await ws.send(orjson.dumps({"type": "input_text", "text": text}).decode())
            first: float | None = None
            events: list[dict[str, Any]] = []
            while True:
                event = orjson.loads(await ws.recv())
                events.append(event)
                if event["type"] == "response.delta" and first is None:
                    first = (time.perf_counter() - sent) * 1000
                if event["type"] in ("response.completed", "response.failed"):
                    break
            done = events[-1]
            assert done["type"] == "response.completed", done
            calls = [e for e in events if e["type"] == "response.tool_call"]
            assert bool(calls) == tools, f"tools={tools} but {len(calls)} tool calls"
            assert first is not None
            gateway_ms.append(done["timings"]["ttft_ms"])
            client_ms.append(first)
            if n == 0:
                transcript = events
    return {
        "gateway_ttft_ms": _summary(gateway_ms),
        "client_ttft_ms": _summary(client_ms),
        "transcript": transcript,
    }


async def _until(ws: Any, kind: str) -> None:
    while orjson.loads(await ws.recv())["type"] != kind:
        pass


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 2),
        "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 2),
    }


async def run(turns: int) -> dict[str, Any]:
    figures: dict[str, Any] = {"turns": turns}
    async with product_gateway(SECRET) as gateway:
        for name, text, tools in (
            ("plain", PLAIN_TURN, False),
            ("one_tool_round", TOOL_TURN, True),
        ):
            token = mint_token(SECRET, f"agent-bench-{name}")
            figures[name] = await _turns(gateway.ws_url, token, text, turns, tools)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=40, help="turns of each kind (default 40)")
    parser.add_argument("--out", type=Path, default=RESULTS / "agent.json")
    args = parser.parse_args()
    figures = asyncio.run(run(args.turns))
    for name in ("plain", "one_tool_round"):
        row = figures[name]
        gw, client = row["gateway_ttft_ms"], row["client_ttft_ms"]
        print(
            f"{name:15} TTFT to first text: gateway p50 {gw['p50']} ms p95 {gw['p95']} ms;"
            f" client p50 {client['p50']} ms p95 {client['p95']} ms ({args.turns} turns)"
        )
    print("one turn with a tool round, as the WebSocket carried it (deltas folded):")
    deltas = 0
    for event in figures["one_tool_round"]["transcript"]:
        if event["type"] == "response.delta":
            deltas += 1
            if deltas > 2:
                continue
        elif deltas > 2:
            print(f"  ... {deltas - 2} more response.delta")
            deltas = 0
        line = orjson.dumps(event).decode()
        print("  " + (line if len(line) <= 200 else line[:197] + "..."))
    args.out.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
