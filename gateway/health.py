"""Liveness and readiness.

`/readyz` is ready when the gateway is not draining, its database answers (when it has one),
its spool is not full, and the chat route has a target that could take a turn: a circuit that is
not open or unusable, a daily budget not spent, and an address that accepts connections
(`providers.resilience.Reachability`, checked at most every few seconds). It names every route
whose targets are all out (`routes_out`, and a `route:<name>` check line each); only the chat
route makes the gateway unready, since a turn cannot run without it. The database ping and the
upstream check run at once, each bounded, so an answer takes a couple of seconds at worst.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import json_response
from gateway.runtime import Gateway, gateway_of
from providers.routing import RouteStatus

__all__ = ["health_routes"]

# The route a turn needs: without a usable target of it the gateway is not ready.
CHAT_ROUTE = "chat"


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    gateway = gateway_of(request)
    checks: dict[str, str] = {"draining": "yes" if gateway.draining else "no"}
    database_ok, routes = await asyncio.gather(
        _database(gateway, checks), gateway.router.route_status()
    )
    ready = not gateway.draining and database_ok
    if gateway.persistence is not None:
        # Turns waiting in the spool for Postgres (kept and answered meanwhile); a full spool
        # refuses new turns, so the gateway is not ready then.
        store = gateway.persistence.turns.status()
        checks["spool"] = "full" if store.full else f"{store.spooled} turns waiting"
        ready = ready and not store.full
    routes_out = sorted(name for name, status in routes.items() if status.is_out)
    checks.update({f"route:{name}": _route_line(status) for name, status in routes.items()})
    ready = ready and CHAT_ROUTE not in routes_out
    body = {"ready": ready, "checks": checks, "routes_out": routes_out}
    return json_response(body, 200 if ready else 503)


async def _database(gateway: Gateway, checks: dict[str, str]) -> bool:
    """Whether the database answers (True without one); its check line goes to `checks`."""
    if gateway.persistence is None:
        return True
    try:
        await gateway.persistence.ping()  # bounded by the ping itself
    except Exception as exc:  # any failure means not ready; the reason is reported
        checks["database"] = f"error: {type(exc).__name__}"
        return False
    checks["database"] = "ok"
    return True


def _route_line(status: RouteStatus) -> str:
    usable = len(status.usable)
    line = f"{usable} of {usable + len(status.out)} targets usable"
    why = "; ".join(f"{target}: {reason}" for target, reason in status.out.items())
    if not usable:
        return f"out: {why}"
    return f"ok: {line}" + (f" ({why})" if why else "")


def health_routes() -> list[Route]:
    return [Route("/healthz", healthz), Route("/readyz", readyz)]
