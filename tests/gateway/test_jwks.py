"""RS256 tokens checked against a JWKS served over real HTTP: a token signed by a key of the set
is admitted; when the set cannot be fetched, the caller is told to retry (HTTP 503
`auth_unavailable`, WebSocket close 1013), not that its token is bad."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.server import RunningGateway, running_gateway, serving
from tests.conftest import make_settings

KID = "test-key-1"


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def rs256_token(key: rsa.RSAPrivateKey, user: str = "rsa-user") -> str:
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + 600}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID})


@pytest.fixture
async def jwks_url(private_key: rsa.RSAPrivateKey) -> AsyncIterator[str]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
    jwk |= {"kid": KID, "use": "sig", "alg": "RS256"}

    async def keys(request: Request) -> JSONResponse:
        return JSONResponse({"keys": [jwk]})

    app = Starlette(routes=[Route("/jwks.json", keys)])
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    async with serving(uvicorn.Server(config)) as port:
        yield f"http://127.0.0.1:{port}/jwks.json"


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/jwks.json"


def gateway_with(fast_sim: Any, tmp_path: Path, url: str) -> Any:
    """A gateway that checks RS256 tokens against the key set at `url` (and HS256 ones against
    the test secret)."""
    return running_gateway(make_settings(fast_sim.url, tmp_path, jwks_url=url))


async def test_a_token_signed_by_a_key_of_the_set_is_admitted(
    fast_sim: Any, tmp_path: Path, jwks_url: str, private_key: rsa.RSAPrivateKey
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    gw: RunningGateway
    async with gateway_with(fast_sim, tmp_path, jwks_url) as gw, httpx.AsyncClient() as http:
        good = {"Authorization": f"Bearer {rs256_token(private_key)}"}
        admitted = await http.get(f"{gw.url}/v1/models", headers=good)
        bad = {"Authorization": f"Bearer {rs256_token(other)}"}
        refused = await http.get(f"{gw.url}/v1/models", headers=bad)
    assert admitted.status_code == 200
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_token"


async def test_keys_that_cannot_be_fetched_ask_for_a_retry(
    fast_sim: Any, tmp_path: Path, private_key: rsa.RSAPrivateKey
) -> None:
    gw: RunningGateway
    async with gateway_with(fast_sim, tmp_path, closed_port_url()) as gw:
        token = rs256_token(private_key)
        async with httpx.AsyncClient(base_url=gw.url) as http:
            answer = await http.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 503
        assert answer.json()["error"] | {"message": ""} == {
            "code": "auth_unavailable",
            "message": "",
            "retryable": True,
            "type": "service_unavailable",
        }
        headers = {"Authorization": f"Bearer {token}"}
        async with connect(f"{gw.ws_url}/v1/realtime", additional_headers=headers) as ws:
            with pytest.raises(ConnectionClosed):
                await ws.recv()
        assert ws.close_code == 1013
