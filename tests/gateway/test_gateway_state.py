"""The running gateway is reached one way: the app's state holds the `Gateway` and nothing else,
and a part the gateway runs without (no voice extra) is answered for, not a 500."""

from __future__ import annotations

import httpx

from gateway.audio_api import audio_routes
from gateway.auth import mint_token
from gateway.server import RunningGateway
from gateway.settings import Settings
from tests.conftest import TEST_SECRET
from tests.gateway.parts import parts_app, served


def test_the_apps_state_holds_only_the_gateway(gateway: RunningGateway) -> None:
    state = gateway.app.state
    assert state.gateway.settings.jwt_secret == TEST_SECRET
    for duplicate in ("settings", "auth", "persistence", "stt", "tts", "quotas"):
        assert not hasattr(state, duplicate), duplicate


async def test_audio_without_the_voice_extra_is_a_503_in_the_gateways_words() -> None:
    settings = Settings(jwt_secret=TEST_SECRET, persistence=False)
    headers = {"Authorization": f"Bearer {mint_token(TEST_SECRET, 'alice')}"}
    async with (
        parts_app(audio_routes(), settings) as app,
        served(app) as url,
        httpx.AsyncClient(base_url=url, headers=headers) as http,
    ):
        heard = await http.post(
            "/v1/audio/transcriptions", files={"file": ("a.wav", b"RIFF....WAVE")}
        )
        spoken = await http.post("/v1/audio/speech", json={"input": "Slow down."})
    for response, what in ((heard, "voice input"), (spoken, "voice output")):
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "audio_unavailable"
        assert error["message"] == f"{what} is not enabled on this gateway"
