"""The peer: LiteLLM's proxy in a venv of its own (created on demand, never the project's), with
one model pointing at the same simulated upstream."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from loadtests.bench_procs import Proc, spawn, wait_http

__all__ = ["PEER_KEY", "PeerUnavailable", "ensure_litellm", "running_litellm"]

PEER_KEY = "sk-bench-peer"
DEFAULT_VENV = Path("/tmp/coach-bench-litellm-venv")
PACKAGE = "litellm[proxy]"


class PeerUnavailable(RuntimeError):
    """The peer could not be installed or started; the message says why."""


async def _run(*argv: str, log: Path) -> int:
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=out)
        return await proc.wait()


async def ensure_litellm(venv: Path, log_dir: Path) -> Path:
    """The `litellm` executable of `venv`, installing `litellm[proxy]` there if it is missing."""
    exe = venv / "bin" / "litellm"
    if exe.exists():
        return exe
    log = log_dir / "peer-install.log"
    if not (venv / "bin" / "python").exists():
        # The base interpreter, so that the peer venv shares nothing with the project's.
        base = getattr(sys, "_base_executable", sys.executable)
        if await _run(base, "-m", "venv", str(venv), log=log) != 0:
            raise PeerUnavailable(f"could not create a venv at {venv}; see {log}")
    pip = str(venv / "bin" / "pip")
    if await _run(pip, "install", "--quiet", PACKAGE, log=log) != 0 or not exe.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise PeerUnavailable(f"pip install {PACKAGE} failed:\n{tail}")
    return exe


def _config(sim_url: str, model: str) -> str:
    return f"""model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: {sim_url}/v1
      api_key: sk-sim
litellm_settings:
  drop_params: true
  telemetry: false
  set_verbose: false
general_settings:
  master_key: {PEER_KEY}
"""


@contextlib.asynccontextmanager
async def running_litellm(
    exe: Path, sim_url: str, port: int, *, model: str, log_dir: Path
) -> AsyncIterator[Proc]:
    """LiteLLM's proxy (one worker) on loopback, ready to serve."""
    config = log_dir / "litellm.yaml"
    config.write_text(_config(sim_url, model))
    argv = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--num_workers", "1"]
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list at start
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "NO_DOCS": "True",
    }
    proc = await spawn("litellm", argv, log_dir=log_dir, env=env)
    try:
        try:
            await wait_http(proc, f"http://127.0.0.1:{port}/health/liveliness", 180.0)
        except RuntimeError as exc:
            raise PeerUnavailable(f"litellm did not start: {exc}") from exc
        yield proc
    finally:
        await proc.stop()
