"""Strict settings built in-process: unknown keys (file and environment) with the nearest known
one, file errors with their line, wrong values in the gateway's words, comma-separated lists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.settings import ConfigError, Settings, load_settings

# Variables `Settings` reads without the `COACH_` prefix.
STANDARD = ("DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what a test sets; relative config paths resolve in its temporary directory."""
    for name in list(os.environ):
        if name.upper().startswith("COACH_") or name in STANDARD:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def problems(monkeypatch: pytest.MonkeyPatch, toml: str | None = None, **env: str) -> list[str]:
    """The lines `load_settings` refuses with, given a config file and variables."""
    if toml is not None:
        Path("gateway.toml").write_text(toml)
        monkeypatch.setenv("COACH_CONFIG", "gateway.toml")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    for line in info.value.problems:
        assert "\n" not in line and "pydantic" not in line and "Traceback" not in line
    return info.value.problems


@pytest.mark.parametrize(
    ("toml", "unknown", "known"),
    [
        ("potr = 8001\n", "potr", "port"),
        ("[quotas]\nturns_per_minut = 5\n", "quotas.turns_per_minut", "quotas.turns_per_minute"),
        ("[breaker]\ncooldwn_s = 5\n", "breaker.cooldwn_s", "breaker.cooldown_s"),
        (
            '[providers.primary]\nkind = "sim"\napi_kye = "sk"\n',
            "providers.primary.api_kye",
            "providers.primary.api_key",
        ),
        ('[routes]\ncaht = ["primary:m"]\n', "routes.caht", "routes.chat"),
        (
            '[prices."gpt-x"]\ninput_per_mtk = 1.0\n',
            "prices.gpt-x.input_per_mtk",
            "prices.gpt-x.input_per_mtok",
        ),
        ("[quota]\nturns_per_minute = 5\n", "quota", "quotas"),
    ],
)
def test_an_unknown_key_in_the_file_is_named_with_the_nearest(
    monkeypatch: pytest.MonkeyPatch, toml: str, unknown: str, known: str
) -> None:
    assert problems(monkeypatch, toml) == [
        f"unknown setting `{unknown}` (in gateway.toml); did you mean `{known}`?"
    ]


@pytest.mark.parametrize(
    ("name", "known"),
    [
        ("COACH_POTR", "COACH_PORT"),
        ("COACH_QUOTAS__TURNS_PER_MINUT", "COACH_QUOTAS__TURNS_PER_MINUTE"),
        ("COACH_QUOTA__TURNS_PER_MINUTE", "COACH_QUOTAS__TURNS_PER_MINUTE"),
        ("COACH_BREAKER__AUTH_COOLDOWN", "COACH_BREAKER__AUTH_COOLDOWN_S"),
    ],
)
def test_an_unknown_variable_is_named_with_the_nearest(
    monkeypatch: pytest.MonkeyPatch, name: str, known: str
) -> None:
    assert problems(monkeypatch, **{name: "5"}) == [
        f"unknown setting `{name}`; did you mean `{known}`?"
    ]


def test_an_unknown_key_with_nothing_near_points_to_the_readme(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [line] = problems(monkeypatch, COACH_ZZZ="1")
    assert line.startswith("unknown setting `COACH_ZZZ`;") and "README.md" in line
    monkeypatch.delenv("COACH_ZZZ")
    [line] = problems(monkeypatch, "[providers.p]\nkind = 'sim'\n[providers.p.extra]\nx = 1\n")
    assert line.startswith("unknown setting `providers.p.extra` (in gateway.toml);")


def test_a_provider_table_from_the_environment_is_checked_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = problems(monkeypatch, COACH_PROVIDERS__P__KIND="sim", COACH_PROVIDERS__P__KINDD="x")
    assert lines == [
        "unknown setting `COACH_PROVIDERS__P__KINDD`; did you mean `COACH_PROVIDERS__P__KIND`?"
    ]


def test_the_config_variable_and_known_variables_are_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Path("gateway.toml").write_text("[quotas]\nturns_per_minute = 7\n")
    monkeypatch.setenv("COACH_CONFIG", "gateway.toml")
    monkeypatch.setenv("COACH_QUOTAS__CONNECTIONS", "3")
    monkeypatch.setenv("COACH_DATABASE_URL", "postgresql://u@h/db")
    settings = load_settings()
    assert (settings.quotas.turns_per_minute, settings.quotas.connections) == (7, 3)


def test_a_syntax_error_names_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    toml = "port = 8001\n[quotas]\nturns_per_minute = \n"
    assert problems(monkeypatch, toml) == [
        "config file gateway.toml (COACH_CONFIG): TOML syntax error at line 3, column 20:"
        " invalid value"
    ]


def test_a_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problems(monkeypatch, COACH_CONFIG="nope.toml") == [
        "config file nope.toml (COACH_CONFIG) does not exist"
    ]


def test_wrong_values_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    toml = '[providers.primary]\nkind = "opneai"\n[quotas]\nturns_per_minute = "x"\n'
    lines = problems(monkeypatch, toml, COACH_PORT="70000", COACH_VOICE__TTS="edge,espeak")
    assert sorted(lines) == sorted(
        [
            "setting `COACH_PORT` must be at most 65535, got '70000'",
            "setting `providers.primary.kind` (in gateway.toml) must be one of 'openai',"
            " 'anthropic' or 'sim', got 'opneai'",
            "setting `quotas.turns_per_minute` (in gateway.toml) must be an integer, got 'x'",
            "setting `COACH_VOICE__TTS` must be one of 'edge' or 'piper', got 'espeak'",
        ]
    )


def test_a_wrong_secret_value_is_not_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    [line] = problems(monkeypatch, DATABASE_URL="mysql://coach:hunter2@db/coach")
    assert line.startswith("setting `DATABASE_URL` must be a postgresql:// URL")
    assert "hunter2" not in line


def test_a_table_variable_that_is_not_json(monkeypatch: pytest.MonkeyPatch) -> None:
    [line] = problems(monkeypatch, COACH_QUOTAS="{turns: 5}")
    assert line.startswith("setting `COACH_QUOTAS` is not valid JSON")


def test_lists_from_the_environment_take_commas_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COACH_ALLOWED_ORIGINS", "http://a, http://b")
    monkeypatch.setenv("COACH_VOICE__TTS", "piper")
    monkeypatch.setenv("COACH_ROUTES__CHAT", "primary:m1,backup:m2")
    monkeypatch.setenv("COACH_GC_THRESHOLDS", "700,20,10")
    settings = load_settings()
    assert settings.allowed_origins == ["http://a", "http://b"]
    assert settings.voice.tts == ["piper"]
    assert settings.routes == {"chat": ["primary:m1", "backup:m2"]}
    assert settings.gc_thresholds == (700, 20, 10)
    monkeypatch.setenv("COACH_ALLOWED_ORIGINS", '["http://c"]')
    monkeypatch.setenv("COACH_VOICE__TTS", '["edge", "piper"]')
    monkeypatch.setenv("COACH_ROUTES", '{"chat": ["primary:m1"]}')
    monkeypatch.delenv("COACH_ROUTES__CHAT")
    settings = load_settings()
    assert settings.allowed_origins == ["http://c"]
    assert settings.voice.tts == ["edge", "piper"]
    assert settings.routes == {"chat": ["primary:m1"]}


def test_the_public_url_is_an_allowed_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COACH_ALLOWED_ORIGINS", "http://127.0.0.1:8080")
    monkeypatch.setenv("COACH_PUBLIC_URL", "https://coach.example.com/app/")
    settings = load_settings()
    assert settings.public_url == "https://coach.example.com/app"
    assert settings.allowed_origins == ["http://127.0.0.1:8080", "https://coach.example.com"]
    [line] = problems(monkeypatch, COACH_PUBLIC_URL="coach.example.com")
    assert line.startswith("setting `COACH_PUBLIC_URL` must be an http:// or https:// URL")


def test_arguments_are_strict_too() -> None:
    with pytest.raises(ValueError, match="turns_per_minut"):
        Settings(quotas={"turns_per_minut": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="potr"):
        Settings(potr=1)  # type: ignore[call-arg]
