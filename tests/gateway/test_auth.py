"""The authenticator's memory of verified tokens: it saves the work, never a check."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from gateway.auth import Authenticator, mint_token
from gateway.errors import ApiError

SECRET = "auth-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"


class _Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token PyJWT really decodes (the real `jwt.decode`, counted)."""
    seen: list[str] = []
    real: Callable[..., Any] = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)  # the module `gateway.auth` calls it on
    return seen


async def test_a_verified_token_is_not_decoded_again(decodes: list[str]) -> None:
    authenticator = Authenticator(secret=SECRET)
    token = mint_token(SECRET, "alice", roles=["ops"])
    first = await authenticator.verify(token)
    again = await authenticator.verify(token)
    assert first == again and first.user_id == "alice" and first.is_ops
    assert decodes == [token]
    other = await authenticator.verify(mint_token(SECRET, "bob"))
    assert other.user_id == "bob" and len(decodes) == 2


@pytest.mark.parametrize(
    ("token_ttl_s", "cache_ttl_s", "trusted_s"),
    [(30, 3600, 30), (3600, 60, 60)],  # until the token's exp; at most the cache's TTL
    ids=["exp", "cache-ttl"],
)
async def test_a_remembered_token_is_checked_again_after_a_while(
    decodes: list[str], token_ttl_s: int, cache_ttl_s: float, trusted_s: int
) -> None:
    clock = _Clock()
    authenticator = Authenticator(secret=SECRET, clock=clock, cache_ttl_s=cache_ttl_s)
    token = mint_token(SECRET, "alice", ttl_s=token_ttl_s)
    await authenticator.verify(token)
    clock.now += trusted_s - 1
    await authenticator.verify(token)
    assert len(decodes) == 1
    clock.now += 2  # decoded again (at the exp, PyJWT then judges it by its own clock)
    await authenticator.verify(token)
    assert len(decodes) == 2


async def test_failures_are_not_remembered(decodes: list[str]) -> None:
    authenticator = Authenticator(secret=SECRET)
    forged = mint_token("another-secret-0123456789-abcdefghijklmnopqrstuvwxyz", "mallory")
    for _ in range(2):
        with pytest.raises(ApiError) as caught:
            await authenticator.verify(forged)
        assert caught.value.code == "invalid_token"
    expired = mint_token(SECRET, "alice", ttl_s=-10)
    with pytest.raises(ApiError) as caught:
        await authenticator.verify(expired)
    assert caught.value.code == "token_expired"
    assert decodes == [forged, forged, expired]


async def test_the_memory_is_bounded_and_forgets_the_least_recently_used(
    decodes: list[str],
) -> None:
    authenticator = Authenticator(secret=SECRET, cache_size=2)
    a, b, c = (mint_token(SECRET, user) for user in ("a", "b", "c"))
    for token in (a, b, a, c):  # a is used again before c comes: b is the one forgotten
        await authenticator.verify(token)
    assert decodes == [a, b, c]
    await authenticator.verify(a)
    await authenticator.verify(b)
    assert decodes == [a, b, c, b]
