"""gateway.firmware.ChunkTurns: at most so many chunk writes per turn of the event loop, the rest in order."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from gateway.firmware import ChunkTurns


class Turns:
    """Counts the event loop's turns: a callback that schedules itself again runs once in every turn."""

    def __init__(self) -> None:
        self.count = 0
        self._stopped = False
        self._loop = asyncio.get_running_loop()
        self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self.count += 1
        if not self._stopped:
            self._loop.call_soon(self._tick)

    def stop(self) -> None:
        self._stopped = True


async def writers(turns: ChunkTurns, clock: Turns, n: int, passed: list[tuple[int, int]]) -> None:
    async def write(i: int) -> None:
        await turns.take()
        passed.append((i, clock.count))

    await asyncio.gather(*(write(i) for i in range(n)))


async def test_at_most_per_turn_chunk_writes_go_in_one_turn_and_the_rest_wait_in_order():
    clock = Turns()
    passed: list[tuple[int, int]] = []
    await writers(ChunkTurns(per_turn=4), clock, 22, passed)
    clock.stop()
    assert [i for i, _ in passed] == list(range(22))  # first asked, first served
    per_turn = Counter(turn for _, turn in passed)
    assert max(per_turn.values()) == 4
    assert len(per_turn) == 6  # 4 + 4 + 4 + 4 + 4 + 2: none is lost or served twice


async def test_a_reading_that_needs_several_turns_is_not_queued_behind_a_wave_of_chunk_writes():
    # A reading's ack takes several turns (read, batcher, enqueue, callback); 500 downloads each asking
    # for a chunk must not get into those turns all at once.
    loop = asyncio.get_running_loop()
    clock = Turns()
    passed: list[tuple[int, int]] = []
    wave = asyncio.create_task(writers(ChunkTurns(per_turn=4), clock, 500, passed))
    await asyncio.sleep(0)  # the wave's writers are queued
    hops = 6
    acked = loop.create_future()

    def hop(left: int) -> None:
        if left == 0:
            acked.set_result(len(passed))
        else:
            loop.call_soon(hop, left - 1)

    loop.call_soon(hop, hops)
    chunks_before_the_ack = await acked
    await wave
    clock.stop()
    assert chunks_before_the_ack <= 4 * (hops + 2)
    assert len(passed) == 500


async def test_a_writer_cancelled_while_waiting_leaves_its_place_to_the_next():
    clock = Turns()
    turns = ChunkTurns(per_turn=2)
    passed: list[str] = []

    async def write(name: str) -> None:
        await turns.take()
        passed.append(name)

    tasks = {name: asyncio.create_task(write(name)) for name in ("a", "b", "gone", "c", "d")}
    await asyncio.sleep(0)  # a and b went in this turn; gone, c and d wait
    tasks["gone"].cancel()  # its connection closed
    async with asyncio.timeout(5):  # a slot given to the cancelled writer would leave c and d waiting forever
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    clock.stop()
    assert passed == ["a", "b", "c", "d"]
    assert tasks["gone"].cancelled()


async def test_a_lone_chunk_write_goes_at_once_and_every_turn_starts_afresh():
    turns = ChunkTurns(per_turn=1)
    loop = asyncio.get_running_loop()
    await turns.take()  # the first waits for a turn: the budget has not yet seen the loop on time
    await asyncio.sleep(0)
    for _ in range(3):  # one a turn: none of them ever waits
        waiter = loop.create_task(turns.take())
        await asyncio.sleep(0)
        assert waiter.done()
        await asyncio.sleep(0)  # the next turn


def hog(loop: asyncio.AbstractEventLoop, block_s: float, until: asyncio.Event) -> None:
    """Blocks the loop for `block_s` in every turn until `until` is set: a loop that runs late."""
    if until.is_set():
        return
    time.sleep(block_s)
    loop.call_soon(hog, loop, block_s, until)


async def test_no_chunk_write_goes_while_the_loop_runs_late_and_all_go_once_it_catches_up():
    loop = asyncio.get_running_loop()
    turns = ChunkTurns(per_turn=4, max_lag_ms=5)
    passed: list[int] = []

    async def write(i: int) -> None:
        await turns.take()
        passed.append(i)

    caught_up = asyncio.Event()
    loop.call_soon(hog, loop, 0.02, caught_up)
    writes = asyncio.gather(*(write(i) for i in range(12)))
    await asyncio.sleep(0.3)  # 15 turns of 20 ms
    assert passed == []
    assert turns.held_for_lag > 0
    caught_up.set()
    async with asyncio.timeout(5):
        await writes
    assert passed == list(range(12))


async def test_without_a_lag_bound_chunk_writes_go_into_late_turns_too():
    # The bound is what holds them: with it off (0), the late loop serves the chunks 4 a turn.
    loop = asyncio.get_running_loop()
    turns = ChunkTurns(per_turn=4, max_lag_ms=0)
    caught_up = asyncio.Event()
    loop.call_soon(hog, loop, 0.02, caught_up)
    try:
        async with asyncio.timeout(5):
            await asyncio.gather(*(turns.take() for _ in range(12)))
    finally:
        caught_up.set()
    assert turns.held_for_lag == 0


async def test_a_byte_rate_spreads_chunk_writes_over_time():
    turns = ChunkTurns(per_turn=4, max_lag_ms=0, bytes_per_s=200_000)
    started = time.monotonic()
    async with asyncio.timeout(5):
        for _ in range(4):  # a second's burst (200 KB) covers the first 2 of 100 KB; the other 2 take 0.5 s each
            await turns.take(100_000)
    assert time.monotonic() - started >= 0.95
    assert turns.held_for_rate > 0
