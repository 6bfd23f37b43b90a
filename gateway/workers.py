"""`serve --workers N`: N worker processes on one listening socket, each a full `GatewayServer`.

uvicorn's own multi-worker mode would run its plain `Server` in each worker, without the
gateway's drain on shutdown (running turns finish, sockets close with 1012) or its settings
(WebSocket limits, keep-alive pings). Here the parent binds the socket, starts the workers
(spawned, each building its app from the same environment and config file), forwards SIGINT
and SIGTERM to them, and starts a worker again if one dies while the server is not stopping.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn

from gateway.settings import Settings

__all__ = ["listening_socket", "serve_workers"]

log = logging.getLogger("coach.workers")

RESTART_DELAY_S = 1.0  # a worker that dies at once is not restarted in a tight loop
POLL_S = 0.5
STARTUP_FAILURE = 3  # uvicorn's exit status when a server cannot start: not worth a restart
PR_SET_PDEATHSIG = 1  # <sys/prctl.h>


def listening_socket(config: uvicorn.Config) -> socket.socket:
    """uvicorn's own bound socket (IPv6, SO_REUSEADDR, exit 3 if the port is taken), as a TCP
    socket object. `bind_socket` leaves its protocol 0; uvloop turns Nagle off on every
    connection anyway, but the standard library's loop (when uvloop is not installed) sets
    `TCP_NODELAY` only on connections accepted from a socket that says TCP. Without it each
    small WebSocket frame after the first waited for the client's delayed ACK."""
    sock = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    return sock


def serve_workers(config: uvicorn.Config, workers: int, settings: Settings) -> int:
    """Serve with `workers` processes on `config`'s address until SIGINT or SIGTERM; returns the
    exit status. Each worker reads its settings from the environment (and config file) itself."""
    if settings.redis_url is None:
        log.warning(
            "no REDIS_URL: each worker keeps its own quota counters, so a user may get up to"
            " %d times each per-user limit",
            workers,
            extra={"workers": workers},
        )
    host, port = config.host, config.port
    sock = listening_socket(config)
    context = multiprocessing.get_context("spawn")
    stopping: list[int] = []

    def start() -> BaseProcess:
        process = context.Process(target=_worker, args=(sock, host, port), name="coach-worker")
        process.start()
        return process

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)
        for process in processes:
            if process.is_alive():
                _signal(process, signal.SIGTERM)

    processes = [start() for _ in range(workers)]
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # held since the command began
    log.info("serving", extra={"workers": workers, "host": host, "port": port})
    status = 0
    try:
        while not stopping:
            time.sleep(POLL_S)
            for index, process in enumerate(processes):
                if process.is_alive() or stopping:
                    continue
                if process.exitcode == STARTUP_FAILURE:
                    log.error("a worker could not start; stopping the others")
                    status = STARTUP_FAILURE
                    stop(signal.SIGTERM, None)
                    break
                log.warning("worker exited; starting another", extra={"code": process.exitcode})
                time.sleep(RESTART_DELAY_S)
                if stopping:  # a signal came during the delay: start nothing more
                    break
                processes[index] = start()
        for process in processes:
            process.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    return status


def _signal(process: BaseProcess, signum: int) -> None:
    if process.pid is None:
        return
    with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
        os.kill(process.pid, signum)


def _exit_with_parent() -> None:
    """Ask Linux for SIGTERM (a graceful drain) when the supervisor dies, even by SIGKILL, so
    that no orphaned worker keeps serving; elsewhere this is a no-op."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed", extra={"errno": ctypes.get_errno()})
    if os.getppid() == 1:  # the parent died before the call above
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(sock: socket.socket, host: str, port: int) -> None:
    """One worker process: the app from the environment, served on the inherited socket."""
    from gateway.cli import deliver_sigterm, exit_on_sigterm, hold_sigterm

    hold_sigterm()  # until the worker is about to serve (see `hold_sigterm`)
    exit_on_sigterm()
    _exit_with_parent()  # may send SIGTERM at once: it waits like any other
    from gateway.app import create_app
    from gateway.logs import configure_logging
    from gateway.server import GatewayServer, uvicorn_config

    settings = Settings()
    configure_logging(settings.log_level)
    server = GatewayServer(uvicorn_config(create_app(settings), settings, host=host, port=port))
    deliver_sigterm()
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)
