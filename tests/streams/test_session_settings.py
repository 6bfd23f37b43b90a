"""Session settings: a `session.update` is checked whole before it changes anything, and each
channel joined to a session has settings of its own."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.events import InputText, ProtocolError, SessionUpdate, has_nul, parse_client_event
from streams.prompts import FOCUS_IDS, system_prompt
from streams.records import SessionInfo
from streams.session import SessionChoices, SessionConfig, SessionRegistry

CHOICES = SessionChoices(frozenset({"gpt-4o-mini", "claude-haiku-4-5"}), FOCUS_IDS)


def _patch(session: dict[str, Any]) -> dict[str, Any]:
    """`session` as `parse_client_event` passes it on."""
    event = parse_client_event(orjson.dumps({"type": "session.update", "session": session}))
    assert isinstance(event, SessionUpdate)
    return event.session


def test_a_valid_patch_applies() -> None:
    patch = _patch({"coach": "voice", "focus_ids": ["pacing"], "model": "claude-haiku-4-5"})
    config = SessionConfig().updated(patch, CHOICES)
    assert (config.coach, config.focus_ids, config.model) == (
        "voice",
        ("pacing",),
        "claude-haiku-4-5",
    )
    assert config.updated(_patch({"model": "coach"}), CHOICES).model is None
    assert config.updated(_patch({"model": None}), CHOICES).model is None


@pytest.mark.parametrize(
    ("session", "code", "field"),
    [
        ({"coach": "voice", "model": "gpt-5-ultra"}, "unknown_model", "model"),
        ({"focus_ids": ["pacing"], "coach": "pirate"}, "unknown_coach", "coach"),
        ({"model": "gpt-4o-mini", "focus_ids": ["x" * 18_000]}, "unknown_focus", "focus_ids"),
    ],
)
def test_one_bad_value_refuses_the_whole_patch(
    session: dict[str, Any], code: str, field: str
) -> None:
    before = SessionConfig(coach="language")
    with pytest.raises(ProtocolError) as info:
        before.updated(_patch(session), CHOICES)
    assert info.value.code == code
    assert field in info.value.message
    assert len(info.value.message) < 400  # a client's value is quoted, not echoed whole
    assert before == SessionConfig(coach="language")


@pytest.mark.parametrize(
    "session",
    [
        {"coach": None},
        {"model": 4},
        {"focus_ids": None},
        {"focus_ids": ["pacing", "pacing"]},
        {"input_audio_format": None},
        {"voice": {"output": True, "speed": 2}},
        {"voice": {"output": True, "voice": "v" * 65}},
    ],
)
def test_wrong_types_are_refused_by_the_parser(session: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as info:
        _patch(session)
    assert info.value.code == "invalid_session"
    assert next(iter(session)) in info.value.message


def test_each_channel_on_a_session_has_its_own_settings() -> None:
    registry = SessionRegistry(history_turns=4)
    info = SessionInfo("s1", "alice", resumed=False)
    phone = registry.attach(info, lambda event: None)
    phone.config = phone.config.updated(_patch({"model": "claude-haiku-4-5"}), CHOICES)
    phone.add_exchange("hi", "hello")
    dashboard = registry.attach(info, lambda event: None)
    assert dashboard.history is phone.history and dashboard.sinks is phone.sinks
    assert dashboard.config == SessionConfig()
    registry.detach(phone, next(iter(phone.sinks)))
    registry.detach(dashboard, next(iter(dashboard.sinks)))
    again = registry.attach(info, lambda event: None)  # from the parked session
    assert list(again.history) == list(phone.history)
    assert again.config == SessionConfig()


def test_has_nul_finds_it_anywhere_without_recursing() -> None:
    assert has_nul({"a": ["b", {"c": "d\x00"}]})
    assert has_nul({"k\x00": 1})
    assert not has_nul({"a": ["\\u0000", 1, None, 2.5, True]})
    deep: Any = "\x00"
    for _ in range(5000):
        deep = [deep]
    assert has_nul(deep)


def test_nul_in_a_frame_is_invalid_text() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_event('{"type":"input_text","text":"a\\u0000b"}')
    assert info.value.code == "invalid_text"
    spelled_out = parse_client_event('{"type":"input_text","text":"a\\\\u0000b"}')
    assert isinstance(spelled_out, InputText) and spelled_out.text == "a\\u0000b"


def test_only_known_ids_reach_the_system_prompt() -> None:
    config = SessionConfig().updated(_patch({"focus_ids": ["pacing", "clarity"]}), CHOICES)
    prompt = system_prompt(config.coach, config.focus_ids)
    assert prompt.endswith("The learner is working on: pacing, clarity.")
