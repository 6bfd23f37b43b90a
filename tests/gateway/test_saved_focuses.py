"""The focuses a user chose (`PUT /v1/progress/focuses`) are what a new connection's coach plans
around, on the whole gateway (real uvicorn, Postgres, the sim over HTTP), until the client sets
its own with `session.update`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from gateway.server import RunningGateway
from tests.gateway.wsclient import ws_client
from tests.pg import database_dsn, server_dsn

__all__ = ["database_dsn", "server_dsn"]

WORKING_ON = "The learner is working on: "


async def test_a_new_connection_takes_the_saved_focuses(
    fast_sim: Any, stack: RunningGateway, token: Callable[..., str]
) -> None:
    headers = {"Authorization": f"Bearer {token('kit')}"}
    async with httpx.AsyncClient(base_url=stack.url, headers=headers) as http:
        saved = await http.put("/v1/progress/focuses", json={"focus_ids": ["pacing", "breathing"]})
    assert saved.status_code == 200
    async with ws_client(stack.ws_url, token("kit")) as kit:
        await kit.until("session.created")
        await kit.send(type="session.update", session={})
        settings = (await kit.until("session.updated"))[-1]["session"]
        assert settings["focus_ids"] == ["pacing", "breathing"]
        await kit.send(type="input_text", text="What should I do first?")
        await kit.until("response.completed")
        assert WORKING_ON + "pacing, breathing." in fast_sim.state.received[-1]["prompt"]
        # The client's own choice wins, for this connection.
        await kit.send(type="session.update", session={"focus_ids": ["clarity"]})
        await kit.until("session.updated")
        await kit.send(type="input_text", text="And now?")
        await kit.until("response.completed")
        assert WORKING_ON + "clarity." in fast_sim.state.received[-1]["prompt"]
    async with ws_client(stack.ws_url, token("lou")) as lou:  # no choice saved: none
        await lou.until("session.created")
        await lou.send(type="session.update", session={})
        assert (await lou.until("session.updated"))[-1]["session"]["focus_ids"] == []
