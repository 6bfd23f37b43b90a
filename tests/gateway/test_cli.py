"""The real `coach-gateway` entry point: configuration mistakes, a taken port, a database that is
not there, a short secret, each one line on stderr and no traceback; `--version` and the help."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_SECRET

ENTRY = Path(sys.executable).with_name("coach-gateway")
COMMANDS = ("serve", "demo", "token", "migrate")
STANDARD = ("DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")
TIMEOUT_S = 60  # a command that should have stopped at once but serves is killed after this


def command(*args: str) -> list[str]:
    if ENTRY.exists():
        return [str(ENTRY), *args]
    return [sys.executable, "-m", "gateway.cli", *args]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """This environment without settings: its own data directory, no database."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("COACH_") and name not in STANDARD
    }
    return {
        **clean,
        "COACH_DATA_DIR": str(tmp_path / "data"),
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
        "COACH_PERSISTENCE": "false",
    }


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def refused(done: subprocess.CompletedProcess[str], status: int) -> str:
    """The one line a refused command printed."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == status and len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize("name", COMMANDS)
def test_an_unknown_variable_stops_every_command(
    name: str, env: dict[str, str], tmp_path: Path
) -> None:
    env |= {"COACH_JWT_SECRET": TEST_SECRET, "COACH_QUOTAS__TURNS_PER_MINUT": "5"}
    argv = command(name, "alice") if name == "token" else command(name)
    assert refused(run(argv, env, tmp_path), 2) == (
        "unknown setting `COACH_QUOTAS__TURNS_PER_MINUT`;"
        " did you mean `COACH_QUOTAS__TURNS_PER_MINUTE`?"
    )


@pytest.mark.parametrize("name", COMMANDS)
def test_an_unknown_file_key_stops_every_command(
    name: str, env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "nope.toml").write_text("[quotas]\nturns_per_minut = 5\n")
    env |= {"COACH_JWT_SECRET": TEST_SECRET, "COACH_CONFIG": "nope.toml"}
    argv = command(name, "alice") if name == "token" else command(name)
    assert refused(run(argv, env, tmp_path), 2) == (
        "unknown setting `quotas.turns_per_minut` (in nope.toml);"
        " did you mean `quotas.turns_per_minute`?"
    )


def test_a_toml_syntax_error_names_its_line(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_text('[providers.primary]\nkind = "sim\n')
    env |= {"COACH_JWT_SECRET": TEST_SECRET, "COACH_CONFIG": "gateway.toml"}
    line = refused(run(command("token", "alice"), env, tmp_path), 2)
    assert line.startswith("config file gateway.toml (COACH_CONFIG): TOML syntax error at line 2")


def test_a_missing_config_file_stops_serve(env: dict[str, str], tmp_path: Path) -> None:
    env |= {"COACH_JWT_SECRET": TEST_SECRET, "COACH_CONFIG": "nope.toml"}
    line = refused(run(command("serve", "--port", "0"), env, tmp_path), 2)
    assert line == "config file nope.toml (COACH_CONFIG) does not exist"


def test_an_unknown_provider_kind(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_text('[providers.primary]\nkind = "openia"\n')
    env |= {"COACH_JWT_SECRET": TEST_SECRET, "COACH_CONFIG": "gateway.toml"}
    assert refused(run(command("token", "alice"), env, tmp_path), 2) == (
        "setting `providers.primary.kind` (in gateway.toml) must be one of 'openai',"
        " 'anthropic' or 'sim', got 'openia'"
    )


def test_a_route_to_a_provider_not_configured(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_text(
        '[providers.primary]\nkind = "sim"\n[routes]\nchat = ["primary:m", "backup:m"]\n'
    )
    env |= {"COACH_JWT_SECRET": TEST_SECRET, "COACH_CONFIG": "gateway.toml"}
    line = refused(run(command("serve", "--port", "0"), env, tmp_path), 2)
    assert line.startswith("setting `routes`: route 'chat' names provider 'backup'")


@pytest.mark.parametrize("args", [("serve", "--port", "0"), ("token", "alice")])
def test_serve_and_token_refuse_a_short_secret(
    args: tuple[str, ...], env: dict[str, str], tmp_path: Path
) -> None:
    env |= {"COACH_JWT_SECRET": "a" * 31}
    line = refused(run(command(*args), env, tmp_path), 2)
    assert "(COACH_JWT_SECRET) is too short (31 bytes)" in line
    assert "secrets.token_urlsafe(32)" in line


@pytest.mark.parametrize("name", ["serve", "demo"])
def test_a_taken_port_is_one_line(name: str, env: dict[str, str], tmp_path: Path) -> None:
    env |= {"COACH_JWT_SECRET": TEST_SECRET}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = refused(run(command(name, "--port", str(port)), env, tmp_path), 1)
    assert line == f"port {port} on 127.0.0.1 is in use; pass --port or set COACH_PORT"


@pytest.mark.parametrize("name", ["serve", "migrate"])
def test_a_database_that_is_not_there_is_one_line(
    name: str, env: dict[str, str], tmp_path: Path, closed_port: int
) -> None:
    env |= {
        "COACH_JWT_SECRET": TEST_SECRET,
        "COACH_PERSISTENCE": "true",
        "DATABASE_URL": f"postgresql://coach:hunter2@127.0.0.1:{closed_port}/coach",
    }
    argv = command(name, "--port", "0") if name == "serve" else command(name)
    line = refused(run(argv, env, tmp_path), 1)
    assert line.startswith(
        f"cannot use the database at 127.0.0.1:{closed_port}"
        f" (postgresql://coach:***@127.0.0.1:{closed_port}/coach): connection refused"
    )
    assert "hunter2" not in line and "DATABASE_URL" in line


async def test_serve_warns_when_no_provider_is_configured(
    env: dict[str, str], tmp_path: Path, fast_sim: Any
) -> None:
    env |= {"COACH_JWT_SECRET": TEST_SECRET, "COACH_SIM_URL": fast_sim.url}
    proc = await asyncio.create_subprocess_exec(
        *command("serve", "--port", "0"), env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    before_start = []
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while b"Application startup complete" not in (line := await proc.stderr.readline()):
                assert line, "serve exited before it started"
                before_start.append(line.decode())
    finally:
        proc.terminate()
        await proc.communicate()
    warnings = [line for line in before_start if "no provider configured" in line]
    assert len(warnings) == 1 and fast_sim.url in warnings[0]


def test_version(env: dict[str, str], tmp_path: Path) -> None:
    done = run(command("--version"), env, tmp_path)
    assert done.returncode == 0
    assert done.stdout.strip() == f"coach-gateway {version('coach-gateway')}"


def test_help_says_where_settings_come_from(env: dict[str, str], tmp_path: Path) -> None:
    done = run(command("--help"), env, tmp_path)
    assert done.returncode == 0
    for words in ("COACH_", "COACH_CONFIG", "TOML", "README.md", "--version"):
        assert words in done.stdout
    serve = run(command("serve", "--help"), env, tmp_path).stdout
    assert "port to listen on (default 8000; setting COACH_PORT)" in " ".join(serve.split())
    sim = " ".join(run(command("sim-upstream", "--help"), env, tmp_path).stdout.split())
    assert "--ttft-ms MS delay before the first token, in milliseconds (default 20)" in sim
    assert "/_sim/config" in sim


def option_helps(text: str) -> dict[str, str]:
    """Each `--flag` of a help text with its help, its wrapped lines joined."""
    helps: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("  -"):
            head, _, rest = line.strip().partition("  ")
            current = head.split(", ")[-1].split()[0]
            helps[current] = rest.strip()
        elif current and line.startswith("    ") and line.strip():
            helps[current] = f"{helps[current]} {line.strip()}".strip()
        else:
            current = None
    helps.pop("--help", None)
    return helps


@pytest.mark.parametrize("name", ["serve", "demo", "token", "sim-upstream"])
def test_every_option_says_its_default_and_setting(
    name: str, env: dict[str, str], tmp_path: Path
) -> None:
    helps = option_helps(run(command(name, "--help"), env, tmp_path).stdout)
    expected = {"serve": {"--host", "--port", "--workers"}, "demo": {"--host", "--port"}}
    assert set(helps) >= expected.get(name, set())
    for flag, text in helps.items():
        if flag == "--access-log":  # a switch
            continue
        assert "default" in text, (flag, text)
        if name != "sim-upstream":  # the sim reads no settings
            assert "setting" in text, (flag, text)
