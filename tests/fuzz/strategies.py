"""Hypothesis strategies for what clients send: any JSON, JSON objects shaped like the
protocol's events and bodies with any values in their fields, text that is not JSON, bytes."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import strategies as st

__all__ = ["any_json", "body", "shaped", "ws_frame"]

_scalar = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "\x00", "\ud7ff", "coach", "clarity", "pcm16", "webm", "-1"])
)

any_json: st.SearchStrategy[Any] = st.recursive(
    _scalar,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def shaped(keys: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with some of `keys`, each value from its strategy or any JSON, and maybe keys the
    protocol does not know."""
    known = st.fixed_dictionaries({}, optional={k: v | any_json for k, v in keys.items()})
    unknown = st.dictionaries(st.text(max_size=10), any_json, max_size=2)
    return st.builds(lambda k, u: {**u, **k}, known, unknown)


_SESSION = shaped(
    {
        "voice": shaped({"output": st.booleans(), "input": st.booleans()}),
        "focus_ids": st.lists(
            st.sampled_from(["clarity", "structure", "pacing", "nope"]), max_size=4
        ),
        "input_audio_format": st.sampled_from(["pcm16", "webm", "mp3"]),
        "model": st.sampled_from(["coach", "gpt-4o-mini", "unknown"]),
        "coach": st.text(max_size=12),
    }
)
_TYPES = [
    "session.update",
    "input_text",
    "input_audio.commit",
    "response.cancel",
    "metrics.push",
    "session.end",
    "assessment.request",
    "ping",
]
_EVENT = st.builds(
    lambda kind, fields: {**fields, "type": kind},
    # Mostly the protocol's own types, so that most frames reach a parser past the first check.
    st.one_of(*[st.sampled_from(_TYPES)] * 3, any_json),
    shaped(
        {
            "text": st.text(max_size=200),
            "turn_id": st.text(max_size=70),
            "scope": st.sampled_from(["recent", "session"]),
            "session": _SESSION,
            "metrics": st.dictionaries(
                st.text(max_size=12), st.floats(allow_nan=False) | any_json, max_size=40
            ),
        }
    ),
)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# A text frame (str) or a binary one (bytes: audio of the declared format, or garbage).
ws_frame: st.SearchStrategy[str | bytes] = st.one_of(
    _EVENT.map(_dumps),
    any_json.map(_dumps),
    st.text(max_size=300),
    st.binary(max_size=2048),
)


def body(keys: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[bytes]:
    """An HTTP body: a JSON object shaped by `keys`, any JSON, text, or bytes."""
    return st.one_of(
        shaped(keys).map(orjson.dumps),
        any_json.map(orjson.dumps),
        st.text(max_size=300).map(str.encode),
        st.binary(max_size=512),
    )
