"""CPU per event (process time) of the WebSocket send path without the socket: the bounded
queue and a writer task (how every event went out before) against `SocketWriter.emit` (sent from
the emitting task when nothing is queued), awaiting the ASGI send or through the server's
`send_now` (no await); and `send_now` followed by the session feed's publish, as a turn with live
feeds enabled sends each token (`Gateway.run_turn`'s publisher). Each event is a new
`response.delta`, as each token is.

    python -m loadtests.micro.writer [--events 200000]

Prints microseconds per event and writes them to `loadtests/results/writer.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from gateway.outbound import Outbound, SocketWriter
from loadtests.bench_output import RESULTS, write_figures
from streams.events import ResponseDelta, encode_json
from streams.hub import Hub


class _NullSocket:
    def __init__(self) -> None:
        self.sent = 0

    async def send(self, data: bytes) -> None:
        self.sent += 1

    def send_now(self, data: bytes) -> bool:
        self.sent += 1
        return True


async def queued(events: int) -> float:
    """The old path: `Outbound.put`, then a writer task's `get`, `encode` and send."""
    sock, outbound = _NullSocket(), Outbound(256)

    async def writer() -> None:
        while (item := await outbound.get()) is not None:
            await sock.send(encode_json(item[1]))

    task = asyncio.create_task(writer())
    started = time.process_time()
    for _ in range(events):
        await outbound.put(ResponseDelta("turn_1", "Breathe"))
        await asyncio.sleep(0)  # the turn awaits its next upstream chunk
    outbound.close()
    await task
    assert sock.sent == events
    return (time.process_time() - started) / events * 1e6


async def direct(events: int, *, now: bool = False, feed: bool = False) -> float:
    """`SocketWriter.emit` with nothing queued: encoded and sent by the emitting task, through
    the awaited ASGI send or (`now`) the server's `send_now`; with `feed`, each event then also
    goes to the session's feed (its replay buffer; no reader), as the gateway's publisher does."""
    sock, hub = _NullSocket(), Hub()
    writer = SocketWriter(Outbound(256), sock.send, sock.send_now if now else None)
    started = time.process_time()
    for _ in range(events):
        event = ResponseDelta("turn_1", "Breathe")
        await writer.emit(event)
        if feed:
            hub.publish("sess_1", "user_1", event.type, event)
        await asyncio.sleep(0)
    writer.close()
    assert sock.sent == events
    return (time.process_time() - started) / events * 1e6


async def run(events: int) -> dict[str, float]:
    await direct(1000)  # warm-up
    return {
        "queued_us": await queued(events),
        "direct_us": await direct(events),
        "send_now_us": await direct(events, now=True),
        "send_now_feed_us": await direct(events, now=True, feed=True),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "writer.json")
    args = parser.parse_args(argv)
    try:
        import uvloop

        figures = uvloop.run(run(args.events))
    except ImportError:
        figures = asyncio.run(run(args.events))
    print(
        f"per event: queue + writer task {figures['queued_us']:.2f} us, "
        f"direct {figures['direct_us']:.2f} us, send_now {figures['send_now_us']:.2f} us, "
        f"send_now + feed {figures['send_now_feed_us']:.2f} us ({args.events} events, null socket)"
    )
    write_figures(args.out, {"events": args.events, **{k: round(v, 3) for k, v in figures.items()}})


if __name__ == "__main__":
    main()
