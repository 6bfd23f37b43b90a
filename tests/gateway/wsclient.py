"""A small test client for `/v1/realtime` on the real `websockets` library."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect


class Client:
    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn

    async def send(self, **event: Any) -> None:
        await self.conn.send(orjson.dumps(event).decode())

    async def recv(self) -> dict[str, Any]:
        raw = await self.conn.recv()
        obj: dict[str, Any] = orjson.loads(raw)
        return obj

    async def until(self, *types: str) -> list[dict[str, Any]]:
        """Every event up to and including the first one whose type is in `types`."""
        seen: list[dict[str, Any]] = []
        while True:
            event = await self.recv()
            seen.append(event)
            if event["type"] in types:
                return seen


@asynccontextmanager
async def ws_client(
    base: str, token: str | None = None, *, query: str = "", **kwargs: Any
) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{base}/v1/realtime{query}"
    async with connect(url, additional_headers=headers, open_timeout=5, **kwargs) as conn:
        yield Client(conn)
