"""Authentication: JWT (HS256 with a secret, or RS256 against a JWKS URL) and the origin check.

Tokens arrive as `Authorization: Bearer`, as the WebSocket subprotocol `bearer.<jwt>` (browsers
cannot set headers on a WebSocket), or as the `access_token` query parameter (redacted from logs).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from gateway.errors import ApiError, error_response
from gateway.settings import Settings

__all__ = [
    "Authenticator",
    "Principal",
    "authenticate_request",
    "bearer_subprotocol_token",
    "load_secret",
    "mint_token",
    "origin_allowed",
    "refuse_origin",
]

log = logging.getLogger("coach.auth")

SUBPROTOCOL = "coach.v1"
_ORIGIN_SHOWN = 200  # characters of a refused Origin in the log line
_SECRET_FILE = "jwt_secret"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    roles: frozenset[str]
    tier: str | None = None  # the token's `tier` claim: which quota limits apply (`Quotas`)

    @property
    def is_ops(self) -> bool:
        return "ops" in self.roles


def load_secret(settings: Settings, *, create: bool = False) -> str | None:
    """The configured secret, else the one the demo keeps in its data directory.

    With `create`, a missing data-directory secret is generated (the keyless demo).
    """
    if settings.jwt_secret:
        return settings.jwt_secret
    path = Path(settings.data_dir) / _SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.write_text(secret)
    path.chmod(0o600)
    return secret


def mint_token(
    secret: str,
    user_id: str,
    *,
    roles: list[str] | None = None,
    ttl_s: int = 3600,
    tier: str | None = None,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + ttl_s}
    if roles:
        claims["roles"] = roles
    if tier:
        claims["tier"] = tier
    return jwt.encode(claims, secret, algorithm="HS256")


class Authenticator:
    """Verifies tokens; turns every failure into a 401 `ApiError`.

    A token that verified is remembered (the `cache_size` most recent) until its `exp`, or for
    `cache_ttl_s` at most, so that a key taken out of the JWKS stops admitting what it signed
    within that time: an OpenAI-compatible client sends the same token with every request, and
    verifying it again each time was a visible part of a turn's CPU.
    """

    def __init__(
        self,
        *,
        secret: str | None,
        jwks_url: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        cache_size: int = 4096,
        cache_ttl_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret and not jwks_url:
            raise ValueError("a JWT secret or a JWKS URL is required")
        self._secret = secret
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None
        self._audience = audience
        self._issuer = issuer
        # token -> (its principal, until when to trust it); least recently used first
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_ttl_s = cache_ttl_s
        self._clock = clock

    async def verify(self, token: str | None) -> Principal:
        if not token:
            raise ApiError(401, "unauthenticated", "a bearer token is required")
        now = self._clock()
        if (known := self._verified.get(token)) is not None:
            principal, until = known
            if now < until:
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]
        principal, expires_at = await self._decode(token)
        self._verified[token] = (principal, min(expires_at, now + self._cache_ttl_s))
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return principal

    async def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            key, algorithm = await self._key_for(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["sub", "exp"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise ApiError(401, "token_expired", "token expired") from exc
        except jwt.PyJWKClientConnectionError as exc:
            message = "the token's signing keys cannot be fetched right now"
            raise ApiError(503, "auth_unavailable", message, retryable=True) from exc
        except (jwt.PyJWTError, ValueError) as exc:
            raise ApiError(401, "invalid_token", _token_problem(exc)) from exc
        sub = claims.get("sub")
        if not isinstance(sub, str) or not 0 < len(sub) <= 128:
            raise ApiError(401, "invalid_token", "token `sub` is not a user id")
        roles = claims.get("roles") or []
        if isinstance(roles, str):
            roles = roles.split()
        tier = claims.get("tier")
        if tier is not None and not (isinstance(tier, str) and 0 < len(tier) <= 64):
            raise ApiError(401, "invalid_token", "token `tier` is not a tier name")
        principal = Principal(sub, frozenset(str(r) for r in roles), tier)
        return principal, float(claims["exp"])

    async def _key_for(self, token: str) -> tuple[Any, str]:
        if self._jwks is not None and jwt.get_unverified_header(token).get("alg") == "RS256":
            # PyJWKClient fetches over blocking HTTP (and caches): keep it off the event loop.
            signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
            return signing_key.key, "RS256"
        if self._secret is None:
            raise ValueError("HS256 tokens are not accepted here")
        return self._secret, "HS256"


# Why a token was refused, in the gateway's words (PyJWT's own name its internals), most
# specific class first: an invalid signature is also a DecodeError.
_TOKEN_PROBLEMS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.InvalidSignatureError, "token signature invalid"),
    (jwt.DecodeError, "token malformed"),
    (jwt.ImmatureSignatureError, "token not valid yet"),
    (jwt.InvalidAudienceError, "token audience not accepted"),
    (jwt.InvalidIssuerError, "token issuer not accepted"),
    (jwt.InvalidAlgorithmError, "token algorithm not accepted"),
    (jwt.exceptions.InvalidSubjectError, "token `sub` is not a user id"),
    (jwt.PyJWKClientError, "token signing key unknown"),
)


def _token_problem(exc: Exception) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token lacks the `{exc.claim}` claim"
    for kind, message in _TOKEN_PROBLEMS:
        if isinstance(exc, kind):
            return message
    if isinstance(exc, ValueError):  # an HS256 token where only JWKS keys are configured
        return "token algorithm not accepted"
    return "token not valid"


def bearer_subprotocol_token(conn: HTTPConnection) -> str | None:
    """The token from `Sec-WebSocket-Protocol: coach.v1, bearer.<jwt>`, if sent that way."""
    for proto in conn.headers.get("sec-websocket-protocol", "").split(","):
        proto = proto.strip()
        if proto.startswith("bearer."):
            return proto.removeprefix("bearer.")
    return None


def connection_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return bearer_subprotocol_token(conn) or conn.query_params.get("access_token")


async def authenticate_request(conn: HTTPConnection) -> Principal:
    """The caller of an HTTP request or WebSocket handshake; raises a 401 `ApiError`."""
    # `gateway_of(conn).auth`, without importing `gateway.runtime` (which imports this module)
    authenticator: Authenticator = conn.app.state.gateway.auth
    principal = await authenticator.verify(connection_token(conn))
    conn.state.principal = principal
    conn.app.state.gateway.quotas.assign_tier(principal.user_id, principal.tier)
    return principal


def origin_allowed(conn: HTTPConnection, allowed: list[str]) -> bool:
    """CSWSH guard: a browser's Origin must be in the allow-list; non-browser clients send none."""
    origin = conn.headers.get("origin")
    return origin is None or "*" in allowed or origin in allowed


async def refuse_origin(ws: WebSocket, close_code: int) -> None:
    """Refuse a handshake from a foreign Origin: a JSON 403 naming the reason where the server
    can send a body with its refusal, else a bare 403 (a close before accept); one log line
    with the refused origin either way."""
    origin = ws.headers.get("origin", "")[:_ORIGIN_SHOWN]
    error = ApiError(403, "origin_not_allowed", "this Origin may not open the WebSocket")
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        log.warning("websocket origin refused", extra={"origin": origin})
        await ws.send_denial_response(error_response(error))
        return
    log.warning(
        "websocket origin refused without a body: the server lacks the denial extension",
        extra={"origin": origin},
    )
    await ws.close(close_code, "origin not allowed")
