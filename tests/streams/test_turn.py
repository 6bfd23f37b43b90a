"""The turn engine with a scripted provider behind the real router."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

import pytest

from providers.chat import ChatChunk, ChatProvider, ChatRequest, Usage
from providers.errors import StreamInterrupted
from providers.routing import Router, Target
from streams.events import ResponseCompleted, ResponseDelta, ResponseFailed, ServerEvent
from streams.records import Stored, TurnRecord
from streams.session import LiveSession
from streams.turn import TurnControl, TurnEngine, TurnInput


class Scripted(ChatProvider):
    """Answers each call with the given words; can fail after some of them."""

    kind = "scripted"

    def __init__(
        self, words: list[str], *, fail_after: int | None = None, delay: float = 0.0
    ) -> None:
        self.name = "scripted"
        self.words = words
        self.fail_after = fail_after
        self.delay = delay
        self.requests: list[ChatRequest] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.requests.append(request)
        for i, word in enumerate(self.words):
            if self.fail_after is not None and i == self.fail_after:
                raise StreamInterrupted("dropped")
            if self.delay:
                await asyncio.sleep(self.delay)
            yield ChatChunk(text=word)
        yield ChatChunk(usage=Usage(7, len(self.words)), finish_reason="stop")


class Recorder:
    def __init__(self) -> None:
        self.records: list[TurnRecord] = []

    async def turn_finished(self, record: TurnRecord) -> None:
        self.records.append(record)


def _engine(provider: Scripted, recorder: Recorder) -> TurnEngine:
    router = Router({"p": provider}, {"chat": [Target("p", "m")]})
    return TurnEngine(router, [recorder])


class Events(list[ServerEvent]):
    """Collects what a turn emits."""

    async def emit(self, event: ServerEvent) -> None:
        self.append(event)


async def _ignore(event: ServerEvent) -> None:
    return None


def _live(turns: int = 2) -> LiveSession:
    return LiveSession("s1", "u1", deque(maxlen=2 * turns))


async def test_history_is_sent_and_bounded() -> None:
    provider, recorder = Scripted(["Hello ", "there."]), Recorder()
    engine, live, events = _engine(provider, recorder), _live(turns=2), Events()
    for i in range(3):
        turn = TurnInput(f"t{i}", f"question {i}", "r", "ws")
        await engine.reply(live, turn, events.emit)
    last = provider.requests[-1].messages
    assert [m.role for m in last] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert [m.content for m in last if m.role == "user"] == [
        "question 0",
        "question 1",
        "question 2",
    ][-3:]
    assert len(live.history) == 4  # bounded to 2 turns
    assert [r.reply_text for r in recorder.records] == ["Hello there."] * 3
    assert recorder.records[0].input_tokens == 7


async def test_mid_stream_failure_keeps_partial_text() -> None:
    provider, recorder = Scripted(["One ", "two ", "three"], fail_after=2), Recorder()
    events = Events()
    record = await _engine(provider, recorder).reply(
        _live(), TurnInput("t", "q", "r", "ws"), events.emit
    )
    failed = events[-1]
    assert isinstance(failed, ResponseFailed)
    assert failed.partial_text == "One two "
    assert failed.error["code"] == "stream_interrupted"
    assert record.status == "failed" and record.reply_text == "One two "


async def test_cancel_records_what_was_sent() -> None:
    provider, recorder = Scripted([f"w{i} " for i in range(100)], delay=0.01), Recorder()
    events: list[ServerEvent] = []
    three_sent = asyncio.Event()

    async def emit(event: ServerEvent) -> None:
        events.append(event)
        if sum(isinstance(e, ResponseDelta) for e in events) >= 3:
            three_sent.set()

    control = TurnControl()
    engine = _engine(provider, recorder)
    task = asyncio.create_task(
        engine.reply(_live(), TurnInput("t", "q", "r", "ws"), emit, control=control)
    )
    await three_sent.wait()
    control.cancel_requested = True
    task.cancel()
    record = await task
    sent = "".join(e.text for e in events if isinstance(e, ResponseDelta))
    assert record.status == "cancelled" and record.reply_text == sent
    assert isinstance(events[-1], ResponseCompleted) and events[-1].finish_reason == "cancelled"


async def test_unrequested_cancel_propagates() -> None:
    provider = Scripted(["a "] * 50, delay=0.01)
    task = asyncio.create_task(
        _engine(provider, Recorder()).reply(_live(), TurnInput("t", "q", "r", "ws"), _ignore)
    )
    await asyncio.sleep(0.03)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_control_makes_its_streamed_event_only_when_used() -> None:
    control = TurnControl()  # what a connection holds before its first turn
    assert control._streamed is None
    waiting = asyncio.create_task(control.streamed.wait())
    await asyncio.sleep(0)
    control.streamed.set()  # the same event the waiter waits on
    await asyncio.wait_for(waiting, 1)


class SlowKeeper:
    """A `TurnKeeper` that takes its time, answering `stored` (None: could not store)."""

    def __init__(self, stored: Stored | None = "db", delay: float = 0.0) -> None:
        self.stored = stored
        self.delay = delay
        self.started = asyncio.Event()
        self.kept: list[TurnRecord] = []

    async def keep(self, record: TurnRecord) -> Stored | None:
        self.started.set()
        await asyncio.sleep(self.delay)
        self.kept.append(record)
        return self.stored


async def test_the_turn_is_kept_before_its_final_event() -> None:
    keeper, events = SlowKeeper("spool"), Events()

    async def emit(event: ServerEvent) -> None:
        if isinstance(event, ResponseCompleted):
            assert len(keeper.kept) == 1  # kept already
        await events.emit(event)

    engine = _engine(Scripted(["Hi ", "there."]), Recorder())
    engine.keeper = keeper
    await engine.reply(_live(), TurnInput("t", "q", "r", "ws"), emit)
    completed = events[-1]
    assert isinstance(completed, ResponseCompleted) and completed.stored == "spool"


async def test_keeping_runs_to_its_end_when_the_client_goes_away_meanwhile() -> None:
    keeper, control = SlowKeeper(delay=0.2), TurnControl()
    engine = _engine(Scripted(["Hi ", "there."]), Recorder())
    engine.keeper = keeper
    task = asyncio.create_task(
        engine.reply(_live(), TurnInput("t", "q", "r", "ws"), _ignore, control=control)
    )
    await keeper.started.wait()
    control.cancel_requested = True  # what a channel does when its client leaves
    task.cancel()
    record = await task
    assert [r.turn_id for r in keeper.kept] == ["t"] and record.status == "completed"


async def test_a_shutdowns_cancel_waits_for_keeping_then_propagates() -> None:
    keeper = SlowKeeper(delay=0.2)
    engine = _engine(Scripted(["Hi ", "there."]), Recorder())
    engine.keeper = keeper
    task = asyncio.create_task(engine.reply(_live(), TurnInput("t", "q", "r", "ws"), _ignore))
    await keeper.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(keeper.kept) == 1


async def test_a_turn_that_could_not_be_kept_is_reported_failed_and_not_remembered() -> None:
    recorder, events, live = Recorder(), Events(), _live()
    engine = _engine(Scripted(["Hi ", "there."]), recorder)
    engine.keeper = SlowKeeper(None)
    record = await engine.reply(live, TurnInput("t", "q", "r", "ws"), events.emit)
    failed = events[-1]
    assert isinstance(failed, ResponseFailed) and failed.partial_text == "Hi there."
    assert failed.error == {
        "code": "storage_unavailable",
        "message": "the turn could not be stored; retry shortly",
        "retryable": True,
    }
    assert record.status == "failed" and recorder.records[0].status == "failed"
    assert len(live.history) == 0
