"""Fixtures of the gateway's tests: the log lines a test caused, as the gateway writes them."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from gateway.logs import configure_logging


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every log record of the test, debug included, as the gateway writes them (one JSON line
    each); the root logger's handlers and level are restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("debug", stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line]
