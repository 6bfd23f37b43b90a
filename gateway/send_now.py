"""`send_now`: a send that does not wait, which the gateway's uvicorn protocols offer the app as
an ASGI extension (`{"send": ...}` under `SEND_NOW` in the scope's `extensions`).

`send_now(data)` writes `data` (a WebSocket text frame's UTF-8, or a piece of a streamed HTTP
response's body) to the transport at once, from the task that made it, when it can go at once;
otherwise it writes nothing and returns False, and the caller takes the ASGI send, which waits
for the transport (backpressure) or reports the disconnect. Through ASGI each send passes five
awaited layers (the endpoint's own, Starlette's exception wrappers, the request-context
middleware, uvicorn's send waiting to be writable); a streamed token is one send.

What `send_now` writes passes no middleware: the app's middleware must not rewrite message
bodies (none of the gateway's does; a compressing one would have to go before this is used).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["SEND_NOW", "SendNow", "offer_send_now", "send_now_of"]

SEND_NOW = "coach.send_now"

SendNow = Callable[[bytes], bool]
"""Write `data` now; False if it could not go now (nothing was written)."""


def offer_send_now(extensions: dict[Any, Any], send_now: SendNow) -> None:
    """Put the extension in a scope's `extensions` (by the server's protocol, before the app
    runs)."""
    extensions[SEND_NOW] = {"send": send_now}


def send_now_of(scope: Mapping[str, Any]) -> SendNow | None:
    """The connection's `send_now`, when its server offers one."""
    extension = (scope.get("extensions") or {}).get(SEND_NOW)
    return extension["send"] if extension else None
