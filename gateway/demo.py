"""`coach-gateway demo`: everything on loopback, no keys, no set-up."""

from __future__ import annotations

from gateway.auth import load_secret, mint_token
from gateway.cli import wait_for_signal
from gateway.server import running_gateway
from gateway.settings import Settings
from providers.sim import running_sim

__all__ = ["run_demo"]

DEMO_USER = "demo-user"


async def run_demo(settings: Settings, *, host: str | None = None, port: int | None = None) -> int:
    host = host or settings.host
    port = port or settings.port
    secret = load_secret(settings, create=True)  # a made one is long enough for `serve` too
    assert secret is not None
    local = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    origins = list({*settings.allowed_origins, local, f"http://localhost:{port}"})
    public = settings.public_url or local  # its origin is allowed by `Settings` already
    async with running_sim() as sim:
        demo = settings.model_copy(
            update={"jwt_secret": secret, "sim_url": sim.url, "allowed_origins": origins}
        )
        async with running_gateway(demo, host=host, port=port) as gateway:
            token = mint_token(secret, DEMO_USER, roles=["ops"], ttl_s=7 * 24 * 3600)
            print(f"Coach Gateway demo on {gateway.url}  (simulated upstream on {sim.url})")
            print(f"Chat page:   {public}/#token={token}")
            print(f"Ops page:    {public}/ops#token={token}")
            print(f"Demo token for {DEMO_USER}:")
            print(token, flush=True)
            await wait_for_signal()
    return 0
