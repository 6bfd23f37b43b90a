"""Liveness and readiness."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import json_response
from gateway.runtime import gateway_of

__all__ = ["health_routes"]


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    gateway = gateway_of(request)
    checks: dict[str, str] = {"draining": "yes" if gateway.draining else "no"}
    ready = not gateway.draining
    if gateway.persistence is not None:
        try:
            await gateway.persistence.ping()
            checks["database"] = "ok"
        except Exception as exc:  # any failure means not ready; the reason is reported
            checks["database"] = f"error: {type(exc).__name__}"
            ready = False
        # Turns waiting in the spool for Postgres (kept and answered meanwhile); a full spool
        # refuses new turns, so the gateway is not ready then.
        store = gateway.persistence.turns.status()
        checks["spool"] = "full" if store.full else f"{store.spooled} turns waiting"
        ready = ready and not store.full
    return json_response({"ready": ready, "checks": checks}, 200 if ready else 503)


def health_routes() -> list[Route]:
    return [Route("/healthz", healthz), Route("/readyz", readyz)]
