"""`GET /v1/drills`, `GET /v1/focuses` and `PUT /v1/progress/focuses` over a real uvicorn on
loopback, on a real Postgres: a refused choice changes nothing, another user's stays theirs,
and `GET /v1/progress` lists what was chosen."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from db.focuses import active_focuses, set_active_focuses
from gateway.auth import mint_token
from gateway.drills import load_catalog
from gateway.focus_routes import focus_routes
from gateway.persistence import Persistence, open_persistence
from gateway.rest import rest_routes
from gateway.settings import Settings
from streams.prompts import FOCUS_IDS
from tests.gateway.parts import parts_app, served
from tests.pg import database_dsn, server_dsn

__all__ = ["database_dsn", "server_dsn"]

SECRET = "focus-test-secret-0123456789-abcdefghijklmnop"


@pytest.fixture(scope="module")
async def persistence(
    database_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Persistence]:
    settings = Settings(
        database_url=database_dsn, data_dir=tmp_path_factory.mktemp("data"), jwt_secret=SECRET
    )
    p = await open_persistence(settings)
    yield p
    await p.aclose()


@pytest.fixture(scope="module")
async def base_url(persistence: Persistence) -> AsyncIterator[str]:
    settings = Settings(jwt_secret=SECRET, persistence=False)
    routes = [*focus_routes(), *rest_routes()]
    async with parts_app(routes, settings, persistence=persistence) as app, served(app) as url:
        yield url


@pytest.fixture(scope="module")
async def no_db_url() -> AsyncIterator[str]:
    """The same routes on a gateway without a database."""
    settings = Settings(jwt_secret=SECRET, persistence=False)
    async with parts_app(focus_routes(), settings) as app, served(app) as url:
        yield url


def client(base_url: str, user: str | None) -> httpx.AsyncClient:
    headers = {} if user is None else {"Authorization": f"Bearer {mint_token(SECRET, user)}"}
    return httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10)


async def chosen(persistence: Persistence, user: str) -> list[str]:
    return [f.id for f in await active_focuses(persistence.pool, user)]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


async def test_drills_with_and_without_a_filter(base_url: str, no_db_url: str) -> None:
    shipped = load_catalog(None)
    for url in (base_url, no_db_url):  # the catalog needs no database
        async with client(url, "drill-reader") as http:
            everything = await http.get("/v1/drills")
            breathing = await http.get("/v1/drills", params={"focus_id": "breathing"})
        assert everything.status_code == 200 and everything.json() == shipped.to_json()
        drills = breathing.json()["drills"]
        assert drills and all("breathing" in d["focus_ids"] for d in drills)
        assert len(drills) == len(shipped.for_focuses(["breathing"])) < len(shipped.drills)


async def test_drills_refuse_an_unknown_focus_and_a_stranger(base_url: str) -> None:
    async with client(base_url, "drill-reader") as http:
        unknown = await http.get("/v1/drills", params={"focus_id": "squats"})
    error = error_of(unknown, 400)
    assert error["code"] == "unknown_focus" and error["message"].startswith("focus_id:")
    assert "'squats'" in error["message"]
    async with client(base_url, None) as http:
        assert error_of(await http.get("/v1/drills"), 401)["code"] == "unauthenticated"


async def test_focus_catalog(base_url: str, no_db_url: str) -> None:
    async with client(base_url, "catalog-reader") as http:
        answered = await http.get("/v1/focuses")
    assert answered.status_code == 200
    focuses = answered.json()["focuses"]
    assert {f["id"] for f in focuses} == FOCUS_IDS
    pacing = next(f for f in focuses if f["id"] == "pacing")
    assert pacing["name"] == "Pacing" and pacing["description"]
    async with client(no_db_url, "catalog-reader") as http:
        assert error_of(await http.get("/v1/focuses"), 503)["code"] == "persistence_unavailable"
        refused = await http.put("/v1/progress/focuses", json={"focus_ids": ["pacing"]})
        assert error_of(refused, 503)["code"] == "persistence_unavailable"


async def test_choosing_focuses_in_order(base_url: str, persistence: Persistence) -> None:
    async with client(base_url, "erin") as http:
        answered = await http.put(
            "/v1/progress/focuses", json={"focus_ids": ["structure", "breathing", "pacing"]}
        )
        assert answered.status_code == 200
        body = answered.json()
        assert body["focus_ids"] == ["structure", "breathing", "pacing"]
        assert [f["id"] for f in body["focuses"]] == body["focus_ids"]
        assert body["focuses"][0]["name"] == "Structure"
        progress = (await http.get("/v1/progress")).json()["data"]
        # Chosen, not yet assessed: listed, in order, with no level yet.
        assert [(p["focus_id"], p["active"], p["level"]) for p in progress] == [
            ("structure", True, None),
            ("breathing", True, None),
            ("pacing", True, None),
        ]
        fewer = await http.put("/v1/progress/focuses", json={"focus_ids": ["clarity"]})
        assert fewer.json()["focus_ids"] == ["clarity"]
        none = await http.put("/v1/progress/focuses", json={"focus_ids": []})
        assert none.status_code == 200 and none.json() == {"focus_ids": [], "focuses": []}
    assert await chosen(persistence, "erin") == []


REFUSED = {
    "four": ({"focus_ids": ["pacing", "clarity", "structure", "breathing"]}, "invalid_request"),
    "duplicates": ({"focus_ids": ["pacing", "pacing"]}, "invalid_request"),
    "unknown": ({"focus_ids": ["pacing", "squats"]}, "unknown_focus"),
    "not a list": ({"focus_ids": "pacing"}, "invalid_request"),
    "not strings": ({"focus_ids": ["pacing", 3]}, "invalid_request"),
    "missing": ({"focus": ["pacing"]}, "invalid_request"),
}


@pytest.mark.parametrize("case", list(REFUSED))
async def test_a_refused_choice_changes_nothing(
    case: str, base_url: str, persistence: Persistence
) -> None:
    body, code = REFUSED[case]
    user = f"frank-{case.replace(' ', '-')}"
    await set_active_focuses(persistence.pool, user, ["filler_words", "clarity"])
    async with client(base_url, user) as http:
        answered = await http.put("/v1/progress/focuses", json=body)
    error = error_of(answered, 400)
    assert error["code"] == code and "focus_ids" in error["message"], error
    assert await chosen(persistence, user) == ["filler_words", "clarity"]


async def test_refusals_say_what_is_wrong(base_url: str) -> None:
    async with client(base_url, "gina") as http:
        four = await http.put(
            "/v1/progress/focuses", json={"focus_ids": ["pacing", "clarity", "structure", "x"]}
        )
        wrong = await http.put("/v1/progress/focuses", json={"focus_ids": {"a": 1}})
        item = await http.put("/v1/progress/focuses", json={"focus_ids": ["pacing", None]})
        unknown = await http.put("/v1/progress/focuses", json={"focus_ids": ["squats"]})
        not_json = await http.put("/v1/progress/focuses", content=b"{nope")
    assert (
        error_of(four, 400)["message"] == "focus_ids must hold at most 3 distinct focus ids, got 4"
    )
    assert error_of(wrong, 400)["message"] == "focus_ids must be a list of focus ids, not an object"
    assert error_of(item, 400)["message"] == "focus_ids[1] must be a string, not null"
    message = error_of(unknown, 400)["message"]
    assert message.startswith("focus_ids: unknown focus 'squats'; known: breathing, clarity")
    assert error_of(not_json, 400)["code"] == "invalid_json"


async def test_another_users_choice_is_theirs(base_url: str, persistence: Persistence) -> None:
    await set_active_focuses(persistence.pool, "hana", ["pitch_accuracy"])
    async with client(base_url, "ivan") as http:
        answered = await http.put("/v1/progress/focuses", json={"focus_ids": ["pacing"]})
    assert answered.status_code == 200
    assert await chosen(persistence, "hana") == ["pitch_accuracy"]
    assert await chosen(persistence, "ivan") == ["pacing"]
    async with client(base_url, None) as http:
        stranger = await http.put("/v1/progress/focuses", json={"focus_ids": ["clarity"]})
    assert error_of(stranger, 401)["code"] == "unauthenticated"
