"""The server `serve` runs: its event loop keeps taking new connections while it is busy, and the
socket `serve --workers` shares sends small frames at once; the garbage collector's thresholds
while it serves."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import socket
import threading
import time
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.server import BurstAcceptor, GatewayServer, running_gateway, uvicorn_config
from gateway.workers import listening_socket
from tests.conftest import eventually, make_settings

BUSY_S = 0.002  # the work one turn of the loop does besides I/O, as under streaming load
CLIENTS = 40


class _Keep(asyncio.Protocol):
    """Keeps every transport made, in `made`."""

    def __init__(self, made: list[asyncio.BaseTransport]) -> None:
        self.made = made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(transport)


def test_a_busy_gateway_takes_every_waiting_connection_in_a_few_turns_of_its_loop(
    tmp_path: Path,
) -> None:
    settings = make_settings("http://127.0.0.1:9", tmp_path)
    config = uvicorn_config(create_app(settings), settings, host="127.0.0.1", port=0)
    loop_factory = config.get_loop_factory()
    assert loop_factory is not None
    loop = loop_factory()  # the loop `serve` (and each `--workers` process) runs on
    server = GatewayServer(config)
    turns = 0

    def busy() -> None:
        nonlocal turns
        turns += 1
        time.sleep(BUSY_S)  # holds the loop, not the GIL: the test's thread goes on connecting
        if not server.should_exit:
            loop.call_soon(busy)

    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),))
    thread.start()
    clients: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the gateway did not start"
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        loop.call_soon_threadsafe(busy)
        for _ in range(CLIENTS):
            client = socket.create_connection(("127.0.0.1", port), timeout=30)
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
            clients.append(client)
        started = turns
        answers = [client.recv(64) for client in clients]
        taken = turns - started
    finally:
        server.should_exit = True
        thread.join(30)
        for client in clients:
            client.close()
        loop.close()
    assert all(answer.startswith(b"HTTP/1.1 200") for answer in answers), answers[:3]
    # One connection per turn of the loop (libuv's own accept, under uvloop) takes CLIENTS
    # turns or more; accepting what waits (`BurstAcceptor`) takes a few.
    assert taken < CLIENTS // 4, taken


async def test_connections_accepted_from_the_workers_socket_send_without_delay(
    tmp_path: Path,
) -> None:
    settings = make_settings("http://127.0.0.1:9", tmp_path)
    config = uvicorn_config(create_app(settings), settings, host="127.0.0.1", port=0)
    sock = listening_socket(config)  # what `serve --workers N` hands each worker
    accepted: list[asyncio.BaseTransport] = []
    server = await asyncio.get_running_loop().create_server(lambda: _Keep(accepted), sock=sock)
    try:
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        await eventually(lambda: bool(accepted))
        option = (
            accepted[0].get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        )
        # Nagle's algorithm off: a small frame goes out without waiting for the last one's ACK.
        assert option != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


class _FailsOnce:
    """A listening socket whose first `accept` raises `error`."""

    def __init__(self, sock: socket.socket, error: OSError) -> None:
        self.sock = sock
        self.error = error
        self.failures = 0

    def accept(self) -> tuple[socket.socket, object]:
        if not self.failures:
            self.failures += 1
            raise self.error
        return self.sock.accept()

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize(
    ("error", "logged"),
    [
        (ConnectionAbortedError(errno.ECONNABORTED, "aborted"), None),  # skipped, burst goes on
        (OSError(errno.EINVAL, "Invalid argument"), "accept failed"),  # logged, tried next turn
    ],
)
async def test_the_acceptor_gets_past_a_failed_accept_without_pausing(
    error: OSError, logged: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    made: list[asyncio.BaseTransport] = []
    acceptor = BurstAcceptor(listener, lambda: _Keep(made))
    acceptor.RETRY_S = 3600.0  # a pause would outlast the test
    flaky = _FailsOnce(acceptor._sock, error)
    acceptor._sock = flaky  # type: ignore[assignment]
    writer = None
    try:
        with caplog.at_level(logging.WARNING, logger="coach.server"):
            _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            await eventually(lambda: len(made) == 1)
        assert flaky.failures == 1
        messages = [r.getMessage() for r in caplog.records]
        assert not any(m.startswith("accept paused") for m in messages), messages
        assert (logged in messages) if logged else not messages, messages
    finally:
        if writer is not None:
            writer.close()
        for transport in made:
            transport.close()
        acceptor.close()
        listener.close()


async def test_the_acceptor_pauses_when_out_of_descriptors_then_takes_connections_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    made: list[asyncio.BaseTransport] = []
    calls = 0

    def factory() -> asyncio.Protocol:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("no protocol for this one")
        return _Keep(made)

    acceptor = BurstAcceptor(listener, factory)
    acceptor.RETRY_S = 0.05
    flaky = _FailsOnce(acceptor._sock, OSError(errno.EMFILE, "Too many open files"))
    acceptor._sock = flaky  # type: ignore[assignment]
    writers = []
    try:
        with caplog.at_level(logging.WARNING, logger="coach.server"):
            for _ in range(2):
                _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
                writers.append(writer)
            # The first accept failed: the acceptor stopped, came back after RETRY_S, took both
            # connections; the first could not be set up (logged), the second was.
            await eventually(lambda: len(made) == 1 and calls == 2)
        assert flaky.failures == 1
        messages = [r.getMessage() for r in caplog.records]
        assert any(m.startswith("accept paused") for m in messages), messages
        assert "an accepted connection could not be set up" in messages, messages
    finally:
        for writer in writers:
            writer.close()
        for transport in made:
            transport.close()
        acceptor.close()
        listener.close()


async def test_the_collector_runs_on_the_configured_thresholds_once_the_gateway_serves(
    tmp_path: Path,
) -> None:
    before = gc.get_threshold()
    settings = make_settings("http://127.0.0.1:9", tmp_path, gc_thresholds=(1234, 56, 7))
    try:
        async with running_gateway(settings):
            assert gc.get_threshold() == (1234, 56, 7)
    finally:
        gc.set_threshold(*before)  # for the rest of the test run
