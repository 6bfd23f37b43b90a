"""The stall deadline: each wait for a chunk is bounded, the time between waits is not."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator

import pytest

from providers.resilience.stall import StallDeadline


async def paced(gaps: list[float]) -> AsyncIterator[int]:
    for i, gap in enumerate(gaps):
        await asyncio.sleep(gap)
        yield i


async def drain(
    deadline: StallDeadline, stream: AsyncIterator[int], hold_s: float = 0
) -> list[int]:
    got = []
    try:
        while True:
            try:
                got.append(await deadline.wait(anext(stream)))
            except StopAsyncIteration:
                return got
            await asyncio.sleep(hold_s)  # the consumer's own time: never counted
    finally:
        deadline.close()


async def test_a_wait_longer_than_the_limit_times_out() -> None:
    deadline = StallDeadline(0.1)
    got: list[int] = []
    stream = paced([0.01, 0.01, 0.5, 0.01])
    with pytest.raises(TimeoutError, match=r"nothing arrived within 0.1s"):
        while True:
            got.append(await deadline.wait(anext(stream)))
    deadline.close()
    assert got == [0, 1]


async def test_many_short_waits_add_up_past_the_limit_without_expiring() -> None:
    # 12 gaps of 30 ms: 360 ms in all, each wait well under the 100 ms limit.
    assert await drain(StallDeadline(0.1), paced([0.03] * 12)) == list(range(12))


async def test_time_the_consumer_holds_a_chunk_does_not_count() -> None:
    assert await drain(StallDeadline(0.1), paced([0.01] * 3), hold_s=0.25) == [0, 1, 2]


async def test_no_limit_waits_as_long_as_it_takes() -> None:
    assert await drain(StallDeadline(None), paced([0.05, 0.05])) == [0, 1]


async def test_a_cancel_from_outside_stays_a_cancel() -> None:
    deadline = StallDeadline(5.0)
    task = asyncio.create_task(drain(deadline, paced([10.0])))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_outer_timeout_is_not_taken_for_a_stall() -> None:
    deadline = StallDeadline(0.05)
    with pytest.raises(TimeoutError) as info:
        async with asyncio.timeout(0.02):
            await drain(deadline, paced([1.0]))
    assert "nothing arrived within" not in str(info.value)


async def test_a_closed_deadline_lets_the_task_go_without_the_garbage_collector() -> None:
    async def read_once() -> None:
        with StallDeadline(5.0) as deadline:
            await deadline.wait(asyncio.sleep(0))

    gc.disable()  # only reference counts free things now: a reference cycle would keep the task
    try:
        task = asyncio.create_task(read_once())
        await task
        await asyncio.sleep(0)  # the loop's handle that woke this test lets go of the task
        gone = weakref.ref(task)
        del task
        assert gone() is None
    finally:
        gc.enable()
