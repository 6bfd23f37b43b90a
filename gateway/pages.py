"""The browser pages under `gateway/web/`: the chat page (`/`), the ops dashboard (`/ops`) and
their static assets (`/static/<version>/<name>`).

The files are read once when the app is built. `<version>` is a hash of all of them, so an asset
URL changes whenever any file does: assets are served `immutable` for a year, pages `no-cache`
with an ETag. Pages name their assets through the `{{static}}` placeholder; ES modules import
each other by relative path and so stay under the same version.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import ApiError

__all__ = ["WebAssets", "content_security_policy", "page_routes"]

WEB = Path(__file__).parent / "web"
PAGES = {"/": "index.html", "/ops": "ops.html"}
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
}
ASSET_CACHE = "public, max-age=31536000, immutable"
PAGE_CACHE = "no-cache"
# A request for another version (a page cached before a deploy) still gets the current file,
# but must not pin it for a year under the old URL.
STALE_ASSET_CACHE = "no-cache"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "microphone=(self), camera=(), geolocation=(), payment=()",
}
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def content_security_policy(host: str | None) -> str:
    """No inline script or style, nothing from another origin; WebSockets to this host only."""
    sockets = f" ws://{host} wss://{host}" if host and _HOST.match(host) else ""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"media-src 'self' blob:; connect-src 'self'{sockets}; font-src 'self'; "
        "manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
        "object-src 'none'; require-trusted-types-for 'script'"
    )


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def _asset(body: bytes, media_type: str) -> Asset:
    return Asset(body, media_type, f'"{hashlib.sha256(body).hexdigest()[:20]}"')


class WebAssets:
    """The files of one web directory, loaded once, with their ETags and a version hash."""

    def __init__(self, root: Path = WEB) -> None:
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in MEDIA_TYPES)
        raw = {p.relative_to(root).as_posix(): p.read_bytes() for p in files}
        digest = hashlib.sha256()
        for name, body in raw.items():
            digest.update(name.encode() + b"\0" + body + b"\0")
        self.version = digest.hexdigest()[:12]
        self.static_prefix = f"/static/{self.version}"
        self._pages: dict[str, Asset] = {}
        self._assets: dict[str, Asset] = {}
        for name, body in raw.items():
            media_type = MEDIA_TYPES[Path(name).suffix]
            if name.endswith(".html"):
                page = body.replace(b"{{static}}", self.static_prefix.encode())
                self._pages[name] = _asset(page, media_type)
            else:
                self._assets[name] = _asset(body, media_type)

    def page(self, name: str) -> Asset:
        return self._pages[name]

    def asset(self, name: str) -> Asset | None:
        return self._assets.get(name)


def _respond(request: Request, asset: Asset, cache_control: str) -> Response:
    headers = {
        **SECURITY_HEADERS,
        "cache-control": cache_control,
        "etag": asset.etag,
        "content-security-policy": content_security_policy(request.headers.get("host")),
    }
    if asset.etag in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, headers=headers, media_type=asset.media_type)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def page_routes(assets: WebAssets | None = None) -> list[Route]:
    """`/`, `/ops` and `/static/<version>/<name>`, served from `assets` (default: gateway/web)."""
    web = assets or WebAssets()

    def page_route(path: str, name: str) -> Route:
        async def endpoint(request: Request) -> Response:
            return _respond(request, web.page(name), PAGE_CACHE)

        return Route(path, endpoint, name=f"page:{name}")

    async def static(request: Request) -> Response:
        name = str(request.path_params["name"])
        asset = web.asset(name)
        if asset is None:
            raise ApiError(404, "not_found", "no such asset")
        fresh = request.path_params["version"] == web.version
        return _respond(request, asset, ASSET_CACHE if fresh else STALE_ASSET_CACHE)

    routes = [page_route(path, name) for path, name in PAGES.items()]
    routes.append(Route("/static/{version}/{name:path}", static, name="static"))
    return routes
