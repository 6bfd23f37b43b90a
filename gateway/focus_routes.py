"""What a user practises: the drill catalog, the focus catalog, and the caller's focus choice.

`GET /v1/drills` reads the catalog loaded at start-up and works without a database; the focus
routes read and write Postgres (503 without one). A refused focus choice changes nothing.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from db.focuses import MAX_ACTIVE, Focus, active_focuses, list_focuses, set_active_focuses
from gateway.auth import authenticate_request
from gateway.errors import ApiError, json_response
from gateway.persistence import Persistence
from gateway.requests import read_json, wrong_type
from gateway.runtime import gateway_of
from streams.prompts import FOCUS_IDS

__all__ = ["focus_routes"]

_SHOWN = 40  # characters of a client's value quoted back in an error


def focus_routes() -> list[Route]:
    return [
        Route("/v1/drills", drills, methods=["GET"]),
        Route("/v1/focuses", focuses, methods=["GET"]),
        Route("/v1/progress/focuses", choose_focuses, methods=["PUT"]),
    ]


async def drills(request: Request) -> Response:
    """The catalog, or with `?focus_id=` the drills of that focus."""
    await authenticate_request(request)
    catalog = gateway_of(request).drills
    focus_id = request.query_params.get("focus_id")
    if focus_id is None:
        return json_response(catalog.to_json())
    # The focuses the catalog was checked against: no database needed to list drills.
    if focus_id not in FOCUS_IDS:
        raise _unknown("focus_id", [focus_id], FOCUS_IDS)
    return json_response(catalog.to_json(catalog.for_focuses([focus_id])))


async def focuses(request: Request) -> Response:
    await authenticate_request(request)
    found = await list_focuses(_persistence(request).pool)
    return json_response({"focuses": [_focus_json(f) for f in found]})


async def choose_focuses(request: Request) -> Response:
    """`{focus_ids}` become the caller's active focuses, in order; answers them."""
    principal = await authenticate_request(request)
    persistence = _persistence(request)
    chosen = _focus_ids(await read_json(request))
    known = await persistence.focus_catalog()
    unknown = [f for f in chosen if f not in known]
    if unknown:
        raise _unknown("focus_ids", unknown, known)
    await set_active_focuses(persistence.pool, principal.user_id, chosen)
    active = await active_focuses(persistence.pool, principal.user_id)
    return json_response(
        {"focus_ids": [f.id for f in active], "focuses": [_focus_json(f) for f in active]}
    )


def _focus_ids(body: dict[str, Any]) -> list[str]:
    value = body.get("focus_ids")
    if not isinstance(value, list):
        raise wrong_type("focus_ids", "a list of focus ids", value)
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise wrong_type(f"focus_ids[{index}]", "a string", item)
    if len(value) > MAX_ACTIVE or len(set(value)) != len(value):
        raise ApiError(
            400,
            "invalid_request",
            f"focus_ids must hold at most {MAX_ACTIVE} distinct focus ids, got {len(value)}"
            + ("" if len(set(value)) == len(value) else " with repeats"),
        )
    return value


def _unknown(name: str, values: list[str], known: frozenset[str]) -> ApiError:
    shown = ", ".join(_show(v) for v in values)
    message = f"{name}: unknown focus {shown}; known: {', '.join(sorted(known))}"
    return ApiError(400, "unknown_focus", message)


def _show(value: str) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _persistence(request: Request) -> Persistence:
    found = gateway_of(request).persistence
    if found is None:
        raise ApiError(503, "persistence_unavailable", "this gateway runs without a database")
    return found


def _focus_json(focus: Focus) -> dict[str, str]:
    return {"id": focus.id, "name": focus.name, "description": focus.description}
