"""A gateway to fuzz: `coach-gateway sim-upstream` and `coach-gateway serve` as processes, with
Postgres and assessments on, driven by synchronous clients from hypothesis tests.

The gateway runs in processes of its own (not on the test's event loop) because hypothesis
drives each example synchronously. Quotas and inbound bounds are set high: the suite sends
thousands of frames quickly, and what it checks is the answer to each, not the limits (those
have tests of their own).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.auth import mint_token
from tests.conftest import TEST_SECRET
from tests.pg import database_dsn, server_dsn

__all__ = ["database_dsn", "server_dsn"]

REPO = Path(__file__).resolve().parents[2]
STARTUP_S = 60.0


@dataclass(frozen=True)
class Fuzzed:
    url: str
    token: str

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/v1/realtime"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(proc: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{proc.args!r} exited with {proc.returncode}"
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {STARTUP_S} s")


@pytest.fixture(scope="module")
def fuzzed(database_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    sim_port, port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COACH_")}
    env.update(
        COACH_JWT_SECRET=TEST_SECRET,
        COACH_DATA_DIR=str(tmp_path_factory.mktemp("fuzz-data")),
        COACH_SIM_URL=f"http://127.0.0.1:{sim_port}",
        DATABASE_URL=database_dsn,
        COACH_LOG_LEVEL="warning",
        COACH_SHUTDOWN_GRACE_S="1",
        COACH_QUOTAS__TURNS_PER_MINUTE="100000",
        COACH_QUOTAS__TOKENS_PER_DAY="100000000",
        COACH_QUOTAS__CONNECTIONS="50",
        COACH_INBOUND_FRAMES_PER_S="100000",
        COACH_INBOUND_BYTES_PER_S="1000000000",
    )
    cli = [sys.executable, "-m", "gateway.cli"]
    sim = subprocess.Popen(
        [*cli, "sim-upstream", "--port", str(sim_port), "--ttft-ms", "1", "--tokens-per-s", "0"],
        cwd=REPO,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    gateway = subprocess.Popen([*cli, "serve", "--port", str(port)], cwd=REPO, env=env)
    try:
        _wait_ready(sim, f"http://127.0.0.1:{sim_port}/v1/models")
        url = f"http://127.0.0.1:{port}"
        _wait_ready(gateway, f"{url}/readyz")
        yield Fuzzed(url, mint_token(TEST_SECRET, "fuzzer", ttl_s=3600))
    finally:
        for proc in (gateway, sim):
            proc.terminate()
        for proc in (gateway, sim):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
