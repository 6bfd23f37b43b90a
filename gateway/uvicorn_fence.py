"""The fence around what the gateway's protocols take from uvicorn's internals.

`gateway.http_protocol` and `gateway.ws_protocol` subclass uvicorn's httptools and
websockets-sansio protocols and override or read parts of them that are not uvicorn's public
API (each module's docstring lists them). pyproject bounds uvicorn to the minor versions those
parts were read from; this check, at start-up, covers an install outside the bound (a pinned
lock file, `--no-deps`): when the installed uvicorn is outside the range, or a method the
subclasses override or call is gone, the server runs uvicorn's own protocols instead, with one
warning. The gateway then works on the plain ASGI path: no `send_now` (tokens go through the
ASGI send), no request-head deadline, no count of protocol-level frames (the app's bounds on
messages still hold).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["TESTED_UVICORN", "Protocols", "fenced_protocols", "missing_internals"]

log = logging.getLogger("coach.server")

# The uvicorn versions whose internals the subclasses were written against and tested with:
# from the first, inclusive, to the second, exclusive (pyproject says the same).
TESTED_UVICORN = ((0, 55, 0), (0, 56, 0))

# What the subclasses override or call, by class: renamed in a later uvicorn, the override
# would silently never run. (Instance attributes are read too; the tests pin them.)
EXPECTED: Mapping[type, tuple[str, ...]] = {
    HttpToolsProtocol: (
        "connection_made",
        "connection_lost",
        "on_message_begin",
        "on_headers_complete",
        "on_response_complete",
    ),
    WebSocketsSansIOProtocol: (
        "handle_connect",
        "handle_ping",
        "handle_pong",
        "handle_cont",
        "send_receive_event_to_app",
        "handle_parser_exception",
        "data_received",
    ),
}

Protocols = tuple[type | str, type | str]
STOCK: Protocols = ("httptools", "websockets-sansio")


def _version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts)


def missing_internals(
    version: str = uvicorn.__version__, expected: Mapping[type, tuple[str, ...]] = EXPECTED
) -> list[str]:
    """What of uvicorn's internals the protocols need is not there; empty when all is."""
    missing: list[str] = []
    low, high = TESTED_UVICORN
    if not low <= _version(version) < high:
        missing.append(f"uvicorn {version} (tested: >={_dotted(low)},<{_dotted(high)})")
    for cls, names in expected.items():
        missing += [f"{cls.__name__}.{n}" for n in names if not callable(getattr(cls, n, None))]
    return missing


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def fenced_protocols(wanted: Protocols, missing: list[str] | None = None) -> Protocols:
    """`wanted` (the gateway's protocol classes) when uvicorn has what they need; uvicorn's own
    protocols, with a warning naming what is missing, otherwise."""
    missing = missing_internals() if missing is None else missing
    if not missing:
        return wanted
    log.warning(
        "uvicorn's protocols are used as they are: the gateway's need %s; tokens go through"
        " the ASGI send, and request heads have no deadline",
        ", ".join(missing),
        extra={"missing": missing},
    )
    return STOCK
