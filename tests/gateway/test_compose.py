"""docker-compose.yml (Docker cannot run here): its services, and that every variable it sets on
the gateways is one the gateway's settings actually read."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices, BaseModel

from gateway.settings import Settings

# Through importlib: the PyYAML stubs are a dev extra that may be missing.
yaml: Any = importlib.import_module("yaml")
ROOT = Path(__file__).resolve().parents[2]
GATEWAYS = ("gateway-1", "gateway-2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def settings_env_names() -> set[str]:
    """Every environment variable `Settings` reads (nested ones as `COACH_X__Y`)."""
    names: set[str] = set()
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
            continue
        names.add(f"COACH_{name.upper()}")
        nested = info.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            names.update(f"COACH_{name.upper()}__{sub.upper()}" for sub in nested.model_fields)
    return names


def _env(compose: dict[str, Any], service: str) -> dict[str, str]:
    env = compose["services"][service]["environment"]
    assert isinstance(env, dict)
    return {str(k): str(v) for k, v in env.items()}


def _interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` / `${VAR:?error}` with VAR unset (`:?` gets a test value)."""

    def one(match: re.Match[str]) -> str:
        op, arg = match.group(2), match.group(3)
        return arg if op == ":-" else "value-for-" + match.group(1)

    return re.sub(r"\$\{(\w+)(:[-?])([^}]*)\}", one, value)


def test_services(compose: dict[str, Any]) -> None:
    services = set(compose["services"])
    assert {"proxy", *GATEWAYS, "postgres", "redis", "otel-collector", "jaeger"} <= services
    proxy = compose["services"]["proxy"]
    assert any("nginx.conf" in v for v in proxy["volumes"])
    assert set(proxy["depends_on"]) >= set(GATEWAYS)
    assert (ROOT / "Dockerfile").exists()


def test_gateway_env_is_read_by_settings(compose: dict[str, Any]) -> None:
    known = settings_env_names()
    for service in GATEWAYS:
        env = _env(compose, service)
        unknown = sorted(name for name in env if name not in known)
        assert not unknown, f"{service} sets variables the gateway never reads: {unknown}"
        for required in ("DATABASE_URL", "REDIS_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"):
            assert required in env
        assert any(name.startswith("COACH_JWT_SECRET") for name in env)


def test_gateway_env_parses(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(settings_env_names()):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("COACH_CONFIG", raising=False)
    for name, value in _env(compose, "gateway-1").items():
        monkeypatch.setenv(name, _interpolate(value))
    settings = Settings()
    assert settings.database_url == "postgresql://coach:coach@postgres:5432/coach"
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.otlp_endpoint == "http://otel-collector:4318"
    assert settings.jwt_secret == "value-for-COACH_JWT_SECRET"
    assert "http://localhost:8080" in settings.allowed_origins
    assert not settings.openai_api_key  # unset: the keyless sim upstream is used
    host, port = settings.sim_url.removeprefix("http://").split(":")
    assert host in compose["services"] and port in " ".join(compose["services"][host]["command"])


def test_wiring_between_services(compose: dict[str, Any]) -> None:
    nginx = (ROOT / "gateway/deploy/nginx.conf").read_text()
    for service in GATEWAYS:
        assert f"server {service}:8000" in nginx
    assert "proxy_set_header Upgrade $http_upgrade" in nginx
    # No session pinning: the replicas share sessions, feeds and quotas through Postgres and Redis.
    assert "hash " not in nginx and "ip_hash" not in nginx and "sticky" not in nginx
    assert "least_conn;" in nginx
    ids = {_env(compose, service)["COACH_REPLICA_ID"] for service in GATEWAYS}
    assert ids == set(GATEWAYS)
    assert '"path":"$uri"' in nginx  # no query strings (access tokens) in the proxy's log
    collector = yaml.safe_load((ROOT / "gateway/deploy/otel-collector.yaml").read_text())
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    assert collector["exporters"]["otlp/jaeger"]["endpoint"].startswith("jaeger:")
    assert "jaeger" in compose["services"]
    postgres = _env(compose, "postgres")
    url = _env(compose, "gateway-1")["DATABASE_URL"]
    assert f"{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@postgres" in url
    assert url.endswith("/" + postgres["POSTGRES_DB"])
