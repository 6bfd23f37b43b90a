"""The static pages under `gateway/web/`."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

__all__ = ["page_routes"]

WEB = Path(__file__).parent / "web"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob: data:; connect-src 'self' ws: wss:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)


async def index(request: Request) -> Response:
    response = FileResponse(WEB / "index.html", media_type="text/html")
    response.headers["content-security-policy"] = CSP
    response.headers["cache-control"] = "no-cache"
    return response


def page_routes() -> list[Route]:
    return [Route("/", index)]
