"""The simulated fresh_sim itself: knobs, stats, reproducibility, both wire formats."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest

from providers.sim import RunningSim, SimKnobs, schema_errors
from providers.sim.corpus import sentences
from providers.sim.knobs import KnobError
from tests.conftest import eventually

USER: Any = [{"role": "user", "content": "How do I keep a steady tempo?"}]
SCHEMA: Any = {
    "type": "object",
    "properties": {"tip": {"type": "string"}, "minutes": {"type": "integer", "minimum": 5}},
    "required": ["tip", "minutes"],
}

TOOLS: Any = [{"name": "tip", "input_schema": SCHEMA}]


def oai(sim: RunningSim, **kw: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{sim.url}/v1", api_key="sk-x", max_retries=0, **kw)


def claude(sim: RunningSim, **kw: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=sim.url, api_key="sk-x", max_retries=0, **kw)


async def stream_text(sim: RunningSim, content: str = "Hello coach", model: str = "gpt-4o") -> str:
    client = oai(sim)
    try:
        stream = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": content}], stream=True
        )
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    finally:
        await client.close()
    return "".join(parts)


# -- knobs ---------------------------------------------------------------------------------


async def test_config_round_trip_and_partial_update(fresh_sim: RunningSim) -> None:
    async with httpx.AsyncClient(base_url=fresh_sim.url) as http:
        before = (await http.get("/_sim/config")).json()
        assert before["ttft_ms"] == 1 and before["fail_status"] == 500
        response = await http.post("/_sim/config", json={"fail_rate": 0.25, "retry_after": 3})
        assert response.status_code == 200
        after = (await http.get("/_sim/config")).json()
    assert after == {**before, "fail_rate": 0.25, "retry_after": 3.0}
    assert fresh_sim.knobs.fail_rate == 0.25


@pytest.mark.parametrize(
    ("patch", "problem"),
    [
        ({"fail_rate": 1.5}, "fail_rate"),
        ({"fail_status": 200}, "fail_status"),
        ({"ttft_ms": -1}, "ttft_ms"),
        ({"drop_after": 2.5}, "drop_after"),
        ({"seed": "x"}, "seed"),
        ({"warp_speed": 9}, "warp_speed"),
        ({"models": {"gpt-4o": {"hang_rate": 7}}}, "gpt-4o"),
    ],
)
async def test_bad_knob_is_a_400_and_changes_nothing(
    fresh_sim: RunningSim, patch: dict[str, Any], problem: str
) -> None:
    before = fresh_sim.knobs
    async with httpx.AsyncClient(base_url=fresh_sim.url) as http:
        response = await http.post("/_sim/config", json={"tokens_per_s": 5, **patch})
    assert response.status_code == 400
    problems = response.json()["error"]["problems"]
    assert len(problems) == 1 and problem in problems[0]
    assert fresh_sim.knobs == before


async def test_config_body_must_be_a_json_object(fresh_sim: RunningSim) -> None:
    async with httpx.AsyncClient(base_url=fresh_sim.url) as http:
        assert (await http.post("/_sim/config", content=b"[1]")).status_code == 400
        assert (await http.post("/_sim/config", content=b"{nope")).status_code == 400


def test_knob_updates_validate_in_process() -> None:
    knobs = SimKnobs().updated({"tokens_per_s": 10, "retry_after": 2})
    assert knobs.tokens_per_s == 10.0 and isinstance(knobs.tokens_per_s, float)
    with pytest.raises(KnobError) as info:
        SimKnobs().updated({"hang_rate": -0.1, "require_key": ""})
    assert len(info.value.problems) == 2


async def test_per_model_overrides(fresh_sim: RunningSim) -> None:
    await fresh_sim.set_knobs(models={"gpt-4o": {"fail_rate": 1.0, "fail_status": 503}})
    with pytest.raises(openai.InternalServerError) as info:
        await stream_text(fresh_sim, model="gpt-4o")
    assert info.value.status_code == 503
    assert await stream_text(fresh_sim, model="gpt-4o-mini")


# -- stats ---------------------------------------------------------------------------------


async def test_stats_count_endpoints_and_outcomes(fresh_sim: RunningSim) -> None:
    await stream_text(fresh_sim)
    await fresh_sim.set_knobs(fail_rate=1.0)
    with pytest.raises(openai.InternalServerError):
        await stream_text(fresh_sim)
    await fresh_sim.set_knobs(fail_rate=0.0)
    client = claude(fresh_sim)
    message = await client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=USER)
    await client.close()
    assert message.stop_reason in ("end_turn", "max_tokens")
    async with httpx.AsyncClient(base_url=fresh_sim.url) as http:
        assert (await http.get("/v1/models")).status_code == 200
        stats = (await http.get("/_sim/stats")).json()
        assert stats["requests"] == 4
        assert stats["in_flight"] == 0
        assert stats["by_endpoint"] == {"chat.completions": 2, "messages": 1, "models": 1}
        assert stats["by_outcome"]["ok"] == 3
        assert stats["by_outcome"]["failed"] == 1
        assert stats["by_status"] == {"500": 1}
        await http.post("/_sim/reset")
        stats = (await http.get("/_sim/stats")).json()
    assert stats["requests"] == 0 and sum(stats["by_outcome"].values()) == 0


# -- replies -------------------------------------------------------------------------------


async def test_replies_are_reproducible_by_seed_and_content(fresh_sim: RunningSim) -> None:
    first = await stream_text(fresh_sim, "Tell me about posture")
    again = await stream_text(fresh_sim, "Tell me about posture")
    other_prompt = await stream_text(fresh_sim, "Tell me about breathing")
    await fresh_sim.set_knobs(seed=99)
    other_seed = await stream_text(fresh_sim, "Tell me about posture")
    assert first == again
    assert first != other_prompt
    assert first != other_seed
    assert first.endswith(".") and " " in first


SINGING_WORDS = ("sing", "note", "vowel", "pitch", "drone", "melody", "hum", "voice", "lip trill")
STRENGTH_WORDS = ("bar", "rep", "press", "lift", "squat", "bench", "set", "weight")
BENCH = "How do I get my bench press up? My elbows flare on heavy sets."


def _sentences(text: str) -> list[str]:
    return [part if part.endswith(".") else f"{part}." for part in text.split(". ")]


async def test_a_bench_press_question_gets_strength_training_tips(fresh_sim: RunningSim) -> None:
    text = await stream_text(fresh_sim, BENCH)
    assert set(_sentences(text)) <= set(sentences("strength"))
    assert any(word in text.lower() for word in STRENGTH_WORDS)
    assert not any(word in text.lower() for word in SINGING_WORDS)


async def test_a_singing_question_gets_voice_tips(fresh_sim: RunningSim) -> None:
    text = await stream_text(fresh_sim, "How do I sing high notes without straining my voice?")
    assert set(_sentences(text)) <= set(sentences("voice"))
    assert not any(word in text.lower() for word in STRENGTH_WORDS[:5])


async def test_the_last_user_message_names_the_topic(fresh_sim: RunningSim) -> None:
    client = claude(fresh_sim)
    message = await client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=400,
        system="You are a patient singing coach.",
        messages=[
            {"role": "user", "content": "My voice cracks when I sing; is my singing breath low?"},
            {"role": "assistant", "content": "Breathe low and slow."},
            {"role": "user", "content": BENCH},
        ],
    )
    hello = await client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=400,
        system="You are a patient singing coach.",
        messages=[{"role": "user", "content": "Hello there"}],
    )
    await client.close()
    assert message.content[0].type == "text" and hello.content[0].type == "text"
    assert set(_sentences(message.content[0].text)) <= set(sentences("strength"))
    assert set(_sentences(hello.content[0].text)) <= set(sentences("voice"))  # the persona's


async def test_general_questions_get_general_coaching(fresh_sim: RunningSim) -> None:
    text = await stream_text(fresh_sim, "How do I stay motivated?")
    assert set(_sentences(text)) <= set(sentences("general"))


async def test_on_topic_replies_are_reproducible_by_seed(fresh_sim: RunningSim) -> None:
    first = await stream_text(fresh_sim, BENCH)
    assert await stream_text(fresh_sim, BENCH) == first
    await fresh_sim.set_knobs(seed=7)
    other_seed = await stream_text(fresh_sim, BENCH)
    assert other_seed != first
    assert set(_sentences(other_seed)) <= set(sentences("strength"))


SKILL: Any = {
    "type": "object",
    "properties": {
        "tips": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "drill_ids": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "focus_id": {"type": "string"},
        "minutes": {"type": "integer", "minimum": 1, "maximum": 90},
    },
    "required": ["tips", "drill_ids", "focus_id", "minutes"],
    "additionalProperties": False,
}
DRILLS = ("bench-pause-reps", "lip-trills", "filler-pause", "squat-tempo")
SKILL_PROMPT = (
    f"Feedback on: bench press, 5 sets of 5.\nALLOWED_DRILL_IDS: {','.join(DRILLS)}\n"
    "ALLOWED_FOCUS_IDS: pacing,breathing"
)


async def test_skill_answers_over_both_wire_formats(fresh_sim: RunningSim) -> None:
    messages: Any = [{"role": "user", "content": SKILL_PROMPT}]
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "skill", "schema": SKILL}}
    client = oai(fresh_sim)
    shaped = await client.chat.completions.create(
        model="gpt-4o", messages=messages, response_format=fmt
    )
    await client.close()
    anthropic_client = claude(fresh_sim)
    message = await anthropic_client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=400,
        messages=messages,
        tools=[{"name": "skill", "input_schema": SKILL}],
        tool_choice={"type": "tool", "name": "skill"},
    )
    await anthropic_client.close()
    block = message.content[0]
    assert block.type == "tool_use"
    answers: list[Any] = [json.loads(shaped.choices[0].message.content or ""), block.input]
    for answer in answers:
        assert schema_errors(SKILL, answer) == []
        assert answer["drill_ids"] and set(answer["drill_ids"]) <= set(DRILLS)
        assert answer["focus_id"] in ("pacing", "breathing")
        assert set(answer["tips"]) <= set(sentences("strength"))
        assert answer["minutes"] in range(5, 35, 5)


async def test_first_token_delay_is_honoured(fresh_sim: RunningSim) -> None:
    await fresh_sim.set_knobs(ttft_ms=250)
    started = time.perf_counter()
    await stream_text(fresh_sim)
    assert time.perf_counter() - started >= 0.25


async def test_token_rate_is_honoured(fresh_sim: RunningSim) -> None:
    await fresh_sim.set_knobs(tokens_per_s=200, reply_tokens=40)
    started = time.perf_counter()
    text = await stream_text(fresh_sim)
    assert time.perf_counter() - started >= (len(text.split()) - 1) / 200


async def test_openai_non_stream_and_schema(fresh_sim: RunningSim) -> None:
    client = oai(fresh_sim)
    plain = await client.chat.completions.create(model="gpt-4o", messages=USER, max_tokens=3)
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "tip", "schema": SCHEMA}}
    shaped = await client.chat.completions.create(
        model="gpt-4o",
        messages=USER,
        response_format=fmt,
    )
    await client.close()
    assert plain.choices[0].finish_reason == "length"
    assert len((plain.choices[0].message.content or "").split()) == 3
    assert plain.usage is not None and plain.usage.completion_tokens == 3
    assert plain.usage.prompt_tokens == 7
    answer = json.loads(shaped.choices[0].message.content or "")
    assert schema_errors(SCHEMA, answer) == []


async def test_anthropic_non_stream_tool_answer(fresh_sim: RunningSim) -> None:
    client = claude(fresh_sim)
    message = await client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=400,
        system="You are a coach.",
        messages=USER,
        tools=TOOLS,
        tool_choice={"type": "tool", "name": "tip"},
    )
    await client.close()
    block = message.content[0]
    assert block.type == "tool_use" and block.name == "tip"
    assert schema_errors(SCHEMA, block.input) == []
    assert message.stop_reason == "tool_use"
    assert message.usage.input_tokens == 4 + 7


async def test_models_list_in_both_shapes(fresh_sim: RunningSim) -> None:
    client = oai(fresh_sim)
    ids = [m.id async for m in client.models.list()]
    await client.close()
    other = claude(fresh_sim)
    claude_ids = [m.id async for m in other.models.list()]
    await other.close()
    assert "gpt-4o-mini" in ids and "claude-haiku-4-5" in claude_ids


async def test_missing_key_is_401_in_each_shape(fresh_sim: RunningSim) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": USER}
    async with httpx.AsyncClient(base_url=fresh_sim.url) as http:
        chat = await http.post("/v1/chat/completions", json=body)
        msgs = await http.post("/v1/messages", json=body)
    assert chat.status_code == 401 and chat.json()["error"]["code"] == "invalid_api_key"
    assert msgs.status_code == 401
    assert msgs.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }


async def test_bad_request_body_is_400(fresh_sim: RunningSim) -> None:
    headers = {"x-api-key": "k"}
    async with httpx.AsyncClient(base_url=fresh_sim.url, headers=headers) as http:
        no_max = await http.post("/v1/messages", json={"model": "m", "messages": USER})
        no_msgs = await http.post("/v1/chat/completions", json={"model": "m"})
    assert no_max.status_code == 400 and "max_tokens" in no_max.json()["error"]["message"]
    assert no_msgs.status_code == 400 and no_msgs.json()["error"]["type"] == "invalid_request_error"


async def test_non_stream_hang_holds_until_the_client_leaves(fresh_sim: RunningSim) -> None:
    await fresh_sim.set_knobs(hang_rate=1.0)
    client = oai(fresh_sim, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="gpt-4o", messages=USER)
    await client.close()
    await eventually(lambda: fresh_sim.stats()["by_outcome"]["hung"] == 1)


async def test_drop_is_not_logged_as_an_app_error(
    fresh_sim: RunningSim, caplog: pytest.LogCaptureFixture
) -> None:
    await fresh_sim.set_knobs(drop_after=2)
    with caplog.at_level(logging.ERROR), pytest.raises(openai.APIConnectionError):
        await stream_text(fresh_sim)
    assert fresh_sim.stats()["by_outcome"]["dropped"] == 1
    assert not [r for r in caplog.records if r.name.startswith("uvicorn")]


async def test_fail_rate_is_a_share_of_requests(fresh_sim: RunningSim) -> None:
    await fresh_sim.set_knobs(fail_rate=0.5, seed=3)
    outcomes = []
    for _ in range(40):
        try:
            await stream_text(fresh_sim)
            outcomes.append(True)
        except openai.InternalServerError:
            outcomes.append(False)
    assert 8 <= outcomes.count(False) <= 32


# -- the program -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_run_serves_with_flags_until_sigint() -> None:
    port = _free_port()
    code = "import sys; from providers.sim import run; sys.exit(run(sys.argv[1:]))"
    args = ["--port", str(port), "--ttft-ms", "7", "--fail-status", "529", "--seed", "5"]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        *args,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            config = None
            for _ in range(200):
                try:
                    config = (await http.get("/_sim/config")).json()
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        assert config is not None
        assert (config["ttft_ms"], config["fail_status"], config["seed"]) == (7.0, 529, 5)
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_run_rejects_bad_flags() -> None:
    from providers.sim import run

    with pytest.raises(SystemExit) as info:
        run(["--fail-rate", "3"])
    assert info.value.code == 2


def test_retry_after_header_from_an_int_override() -> None:
    """A per-model `retry_after` arrives as a JSON int; the header must still be written."""
    from providers.sim.knobs import SimKnobs
    from providers.sim.state import error_headers

    knobs = SimKnobs(models={"m": {"retry_after": 30}}).for_model("m")
    assert error_headers(knobs) == {"retry-after": "30"}
    assert error_headers(SimKnobs(retry_after=1.5)) == {"retry-after": "1.5"}
