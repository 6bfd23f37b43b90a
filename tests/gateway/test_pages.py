"""The browser pages and their assets over a real uvicorn on loopback: headers, caching, types."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from gateway.pages import WEB, WebAssets, content_security_policy
from gateway.server import RunningGateway

MODULE = re.compile(r"""(?:src|href)="(/static/[^"]+)\"""")
IMPORT = re.compile(r"""from\s+"\./([\w./-]+)\"""")


@pytest.fixture
async def http(gateway: RunningGateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=gateway.url, timeout=5)


def asset_urls(html: str) -> list[str]:
    return MODULE.findall(html)


@pytest.mark.parametrize("path", ["/", "/ops"])
async def test_page_is_served_with_security_headers(http: httpx.AsyncClient, path: str) -> None:
    async with http:
        response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    csp = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if " " in d.strip())
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    host = http.base_url.netloc.decode()
    assert f"ws://{host}" in directives["connect-src"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["etag"]


@pytest.mark.parametrize("path", ["/", "/ops"])
async def test_page_has_no_inline_script_or_style(http: httpx.AsyncClient, path: str) -> None:
    async with http:
        html = (await http.get(path)).text
    assert "{{static}}" not in html
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    assert "http://" not in html and "https://" not in html, "nothing from another origin"


async def test_page_revalidates_with_etag(http: httpx.AsyncClient) -> None:
    async with http:
        first = await http.get("/")
        again = await http.get("/", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == first.headers["etag"]


async def test_assets_are_versioned_and_immutable(http: httpx.AsyncClient) -> None:
    async with http:
        html = (await http.get("/")).text
        urls = asset_urls(html)
        assert {u.rsplit("/", 1)[1] for u in urls} >= {"app.js", "style.css", "icon.svg"}
        types = {}
        for url in urls:
            response = await http.get(url)
            assert response.status_code == 200, url
            assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert response.headers["x-content-type-options"] == "nosniff"
            types[url.rsplit(".", 1)[1]] = response.headers["content-type"]
    assert types["js"] == "text/javascript; charset=utf-8"
    assert types["css"] == "text/css; charset=utf-8"
    assert types["svg"] == "image/svg+xml"


async def test_every_module_import_resolves(http: httpx.AsyncClient) -> None:
    """Modules import each other by relative path; each must exist under the same version."""
    async with http:
        html = (await http.get("/")).text + (await http.get("/ops")).text
        prefix = asset_urls(html)[0].rsplit("/", 1)[0]
        pending = [u.rsplit("/", 1)[1] for u in asset_urls(html) if u.endswith(".js")]
        seen: set[str] = set()
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            response = await http.get(f"{prefix}/{name}")
            assert response.status_code == 200, name
            pending.extend(IMPORT.findall(response.text))
    assert {"app.js", "ops.js", "realtime.js", "player.js", "recorder.js"} <= seen


async def test_unknown_asset_is_404(http: httpx.AsyncClient) -> None:
    async with http:
        html = (await http.get("/")).text
        prefix = asset_urls(html)[0].rsplit("/", 1)[0]
        missing = await http.get(f"{prefix}/nope.js")
        traversal = await http.get(f"{prefix}/..%2Fpages.py")
        page_as_asset = await http.get(f"{prefix}/index.html")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert traversal.status_code == 404
    assert page_as_asset.status_code == 404


async def test_stale_version_is_served_but_not_pinned(http: httpx.AsyncClient) -> None:
    async with http:
        response = await http.get("/static/0123456789ab/app.js")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"


async def test_asset_revalidates_with_etag(http: httpx.AsyncClient) -> None:
    async with http:
        url = asset_urls((await http.get("/")).text)[0]
        first = await http.get(url)
        again = await http.get(url, headers={"if-none-match": f"W/{first.headers['etag']}"})
    assert again.status_code == 304


def test_version_changes_with_content(tmp_path: Path) -> None:
    for src in WEB.iterdir():
        (tmp_path / src.name).write_bytes(src.read_bytes())
    before = WebAssets(tmp_path)
    (tmp_path / "style.css").write_text("body { color: red; }")
    after = WebAssets(tmp_path)
    assert before.version != after.version
    assert after.static_prefix.encode() in after.page("index.html").body


def test_csp_ignores_a_hostile_host_header() -> None:
    csp = content_security_policy("evil.example; script-src *")
    assert "evil" not in csp
    assert "connect-src 'self';" in csp
    assert "ws://[::1]:8000" in content_security_policy("[::1]:8000")
