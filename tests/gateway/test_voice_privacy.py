"""The privacy default: a spoken demo turn (voice in, voice out) opens no connection beyond
loopback, so neither the user's audio nor the reply's text leaves the machine unless a remote
voice is configured."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from gateway.server import running_gateway
from gateway.settings import Settings, VoiceSettings
from gateway.speech import open_speech
from providers.tts import EdgeTTS, PiperTTS
from tests.conftest import make_settings
from tests.gateway.wsclient import ws_client
from tests.speech import SENTENCES, silence, speak

Token = Callable[..., str]


def _loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a name that would need resolving


@pytest.fixture
def destinations(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every host this process resolves or connects to (TCP and UDP) while the test runs."""
    seen: list[str] = []
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
    resolve = socket.getaddrinfo

    def _record(address: Any) -> None:
        if isinstance(address, tuple) and address:
            seen.append(str(address[0]))

    def _connect(sock: socket.socket, address: Any) -> None:
        _record(address)
        connect(sock, address)

    def _connect_ex(sock: socket.socket, address: Any) -> int:
        _record(address)
        return connect_ex(sock, address)

    def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(host))
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", _connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", _getaddrinfo)
    yield seen


def test_the_default_voice_is_local() -> None:
    assert VoiceSettings().tts == ["piper"]


async def test_the_default_chain_holds_no_network_voice(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        _, tts = await open_speech(VoiceSettings(), stack)
        chain = tts.inner.providers
    assert [type(p) for p in chain] == [PiperTTS]


async def test_edge_is_opt_in_with_piper_behind_it() -> None:
    async with AsyncExitStack() as stack:
        _, tts = await open_speech(VoiceSettings(tts=["edge"]), stack)
        chain = tts.inner.providers
    assert [type(p) for p in chain] == [EdgeTTS, PiperTTS]


@pytest.mark.slow
async def test_a_spoken_turn_stays_on_loopback(
    fast_sim: Any, tmp_path: Path, token: Token, destinations: list[str]
) -> None:
    settings: Settings = make_settings(fast_sim.url, tmp_path)
    audio = speak(SENTENCES[2]) + silence(1.0)
    async with (
        running_gateway(settings) as gateway,
        ws_client(gateway.ws_url, token()) as client,
    ):
        await client.recv()
        session = {"voice": {"output": True}, "turn_detection": {"type": "server_vad"}}
        await client.send(type="session.update", session=session)
        await client.until("session.updated")
        for i in range(0, len(audio), 3200):
            await client.conn.send(audio[i : i + 3200])
        events = await asyncio.wait_for(client.until("response.completed"), 60)
    kinds = [e["type"] for e in events]
    assert "transcript" in kinds and "response.audio" in kinds, kinds
    assert events[-1]["finish_reason"] == "stop"
    assert destinations, "nothing was recorded: the probe is not watching"
    remote = sorted({host for host in destinations if not _loopback(host)})
    assert remote == [], f"connections beyond loopback: {remote}"
