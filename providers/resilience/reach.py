"""Whether each upstream's address accepts connections: readiness's view of the upstreams.

A circuit breaker learns that a target is down only from the turns that fail on it; a gateway
whose upstream is not running at all (a simulated upstream never started, a wrong host or port)
would say it is ready until enough users had been failed. A TCP connect to the address a
provider's requests go to first (its host, or the proxy the environment names) is cheap (no
request, no TLS, nothing for the upstream to log or bill) and catches exactly that.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import time
from collections.abc import Mapping

from providers.resilience.config import Clock

__all__ = ["Address", "Reachability"]

Address = tuple[str, int]


class Reachability:
    """Which providers' addresses refuse connections, checked when asked and then remembered.

    An answer is kept `ttl_s`, so a readiness probe polled often costs one connect per address
    per period. A check connects to every address at once, each bounded by `timeout_s`, so an
    answer never takes much longer than `timeout_s`; callers that ask while a check runs share
    it, and one that gives up does not cancel it for the others.
    """

    def __init__(
        self,
        addresses: Mapping[str, Address],
        *,
        ttl_s: float = 5.0,
        timeout_s: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._addresses = dict(addresses)
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._checked_at = -math.inf
        self._unreachable: dict[str, str] = {}
        self._running: asyncio.Task[dict[str, str]] | None = None

    async def unreachable(self) -> Mapping[str, str]:
        """Provider -> why its address cannot be reached, for each provider whose address
        refused the connection, did not answer or has a host name that is not found."""
        if self._clock() - self._checked_at < self._ttl_s:
            return self._unreachable
        if self._running is None:
            self._running = asyncio.create_task(self._check(), name="upstream reachability")
        return await asyncio.shield(self._running)

    async def aclose(self) -> None:
        task, self._running = self._running, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _check(self) -> dict[str, str]:
        try:
            distinct = sorted(set(self._addresses.values()))
            answers = await asyncio.gather(*(self._problem(address) for address in distinct))
            problems = dict(zip(distinct, answers, strict=True))
            self._unreachable = {
                provider: problem
                for provider, address in self._addresses.items()
                if (problem := problems[address]) is not None
            }
            self._checked_at = self._clock()
            return self._unreachable
        finally:
            self._running = None

    async def _problem(self, address: Address) -> str | None:
        """Why `address` cannot be reached, or None when it accepts a connection."""
        host, port = address
        try:
            async with asyncio.timeout(self._timeout_s):
                _, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            return f"no answer from {host}:{port} within {self._timeout_s:g}s"
        except ConnectionRefusedError:
            return f"nothing accepts connections at {host}:{port}"
        except socket.gaierror:
            return f"host name {host!r} not found"
        except OSError:
            return f"cannot connect to {host}:{port}"
        writer.close()  # nothing was sent: nothing to wait for
        return None
