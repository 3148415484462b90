"""The gateway's firmware database work: on a thread of its own, with the devices' statuses written in rounds.

Every other database call of the gateway (identities at the handshake, presence, events) shares one
thread, asgiref's. A rollout adds four or five calls per device within seconds (ACCEPTED, progress,
VERIFIED, INSTALLED, the new version in HELLO), each a transaction of its own; on that one thread a
wave of a thousand devices queued every handshake and every status behind thousands of round trips
(bench/rollout.py at 600 devices: the thread busy 196 s of 228, a status waiting 25 s for its
turn, a transfer that takes 0.12 s alone taking minutes while the event loop sat idle).

So firmware work runs on its own single thread (one connection, writes in the order they were
submitted), and statuses are coalesced: whatever the devices report while a round is being
written goes into the next round, one transaction for all of them (`firmware_transfers_record`).
A lone status is written after `linger_s`; under load a round holds hundreds.

The version a device reports in HELLO goes the same way (`version_reported`): the handshake does not
wait for it. A wave's reboots bring hundreds of devices back within seconds; awaiting each one's
write before WELCOME put every reconnecting device, and the batches it had in flight at its reboot,
behind the rounds of statuses on this thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import connections

from firmware.services import StatusReport
from gateway import services

logger = logging.getLogger(__name__)
T = TypeVar("T")

# At most this many statuses in one transaction; more wait for the next round.
MAX_ROUND = 1000
# At most this many firmware chunks are served per turn of the event loop (see ChunkTurns).
CHUNKS_PER_TURN = 4
# Chunk writes wait while a turn of the event loop runs this late (see ChunkTurns); 0: never.
CHUNK_MAX_LAG_MS = 5.0
# While chunks wait for the loop to catch up, it is looked at again this often.
CHUNK_PROBE_S = 0.005
# A round of reported versions that could not be written is tried again after this long.
VERSIONS_RETRY_S = 1.0


class ChunkTurns:
    """The gateway's budget for firmware chunk writes: they go only into turns of the event loop it has spare.

    Three bounds, all per gateway process:
    - at most `per_turn` chunk writes in one turn; the rest wait their turn, in order. A device asks for its
      next chunk as soon as it has the last, so in a wave of a thousand downloads every loop turn held a
      chunk (CRC, TLS encryption, a copy) for each of them, while a reading's ack needs several turns (read,
      batcher, enqueue thread, callback): the acks waited seconds (bench/rollout.py: p95 318 times the
      baseline);
    - none while the loop lags more than `max_lag_ms`: how late the budget's own callback runs after it
      was scheduled is how late an ack's callbacks run, whatever makes the loop late (a wave's reconnects,
      the GIL taken by the database threads, another process on the core). Bounded turns alone still let
      4 chunks into every turn of a loop that is already late; with this bound a chunk goes only into a
      turn that ran on time, so chunks never add to a lag that something else started;
    - at most `bytes_per_s` of chunk data a second (a token bucket with a second's burst), for a gateway
      that must leave its CPU or uplink to something else; 0: no cap.
    """

    def __init__(
        self,
        *,
        per_turn: int = CHUNKS_PER_TURN,
        max_lag_ms: float = CHUNK_MAX_LAG_MS,
        bytes_per_s: float = 0.0,
        probe_s: float = CHUNK_PROBE_S,
    ) -> None:
        self.per_turn = max(1, per_turn)
        self.max_lag_s = max(0.0, max_lag_ms) / 1000
        self.bytes_per_s = max(0.0, bytes_per_s)
        self.probe_s = probe_s
        self._tokens = self.bytes_per_s
        self._filled_at = time.monotonic()
        self._used = 0
        self._waiting: deque[tuple[asyncio.Future[None], int]] = deque()
        self._armed = False
        self._due = 0.0  # loop time at which the armed callback should run
        # The last turn found the loop lagging (or none was measured yet): even a lone chunk waits for a turn.
        self._late = True
        # What the bounds held back: turns skipped because the loop lagged, and because the bucket was empty.
        self.held_for_lag = 0
        self.held_for_rate = 0

    async def take(self, size: int = 0) -> None:
        """Wait for the turn of a chunk write of `size` bytes."""
        if self._used < self.per_turn and not self._waiting and not self._late and self._spend(size):
            self._used += 1
            self._arm()
            return
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((future, size))
        self._arm()
        await future

    def _spend(self, size: int) -> bool:
        if not self.bytes_per_s:
            return True
        now = time.monotonic()
        self._tokens = min(self.bytes_per_s, self._tokens + (now - self._filled_at) * self.bytes_per_s)
        self._filled_at = now
        if self._tokens < min(size, self.bytes_per_s):  # a chunk larger than the burst goes once it is full
            return False
        self._tokens -= size
        return True

    def _arm(self, delay: float = 0.0) -> None:
        if self._armed:
            return
        self._armed = True
        loop = asyncio.get_running_loop()
        self._due = loop.time() + delay
        # call_soon from within a turn runs in the next turn: this is the turn boundary.
        if delay:
            loop.call_later(delay, self._turn)
        else:
            loop.call_soon(self._turn)

    def _turn(self) -> None:
        self._armed = False
        self._used = 0
        loop = asyncio.get_running_loop()
        self._late = bool(self.max_lag_s) and loop.time() - self._due > self.max_lag_s
        if self._late and self._waiting:
            # The loop ran late: what came in meanwhile (frames, acks) goes first; look again soon.
            self.held_for_lag += 1
            self._arm(self.probe_s)
            return
        while self._waiting and self._used < self.per_turn:
            future, size = self._waiting[0]
            if future.done():  # cancelled: the connection went meanwhile
                self._waiting.popleft()
                continue
            if not self._spend(size):
                self.held_for_rate += 1
                self._arm(max(self.probe_s, (min(size, self.bytes_per_s) - self._tokens) / self.bytes_per_s))
                return
            self._waiting.popleft()
            future.set_result(None)
            self._used += 1
        if self._waiting or self._used:
            self._arm()


class FirmwareWork:
    def __init__(self, *, linger_s: float = 0.01, chunk_turns: ChunkTurns | None = None) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-firmware")
        self._linger_s = linger_s
        self._pending: list[tuple[StatusReport, asyncio.Future[bool]]] = []
        self._versions: dict[int, str] = {}  # device id: the version it reported in HELLO, not yet written
        self._wakeup: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._writing: asyncio.Task[None] | None = None
        self.rounds = 0
        self.statuses = 0
        self.versions = 0
        self.chunk_turns = chunk_turns or ChunkTurns()

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._runner = asyncio.get_running_loop().create_task(self._run(), name="gateway-firmware-statuses")

    async def call(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        """Run one of gateway.services' firmware functions on the firmware thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, **kwargs))

    def record(
        self, *, transfer_id: int, device_id: int, state: str, offset: int | None, message: str = ""
    ) -> asyncio.Future[bool]:
        """Queue one status for the next round; the future says whether the transfer was (still) active."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((StatusReport(transfer_id, device_id, state, offset, message), future))
        assert self._wakeup is not None, "start() first"
        self._wakeup.set()
        return future

    def version_reported(self, *, device_id: int, version: str) -> None:
        """Queue the version a device reported in HELLO for the next round; nobody waits for the write.

        A later report of the same device replaces one not yet written: the last HELLO is what it runs.
        A failed round is logged and tried again; the device, still stored with its old version, also
        reports the new one again at its next handshake.
        """
        self._versions[device_id] = version
        assert self._wakeup is not None, "start() first"
        self._wakeup.set()

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._linger_s:
                await asyncio.sleep(self._linger_s)
            # Shielded: close() cancels the runner, never a round half written.
            self._writing = asyncio.ensure_future(self._round())
            await asyncio.shield(self._writing)
            if self._pending:
                self._wakeup.set()

    async def _round(self) -> None:
        await self._statuses_round()
        await self._versions_round(retry=True)

    async def _versions_round(self, *, retry: bool) -> None:
        versions, self._versions = self._versions, {}
        if not versions:
            return
        try:
            await self.call(services.device_firmware_versions_record, versions=versions)
        except Exception:  # noqa: BLE001 - logged, and tried again: nobody waits for this write
            logger.exception("gateway: recording the firmware versions of %d devices failed", len(versions))
            if retry:
                for device_id, version in versions.items():
                    self._versions.setdefault(device_id, version)  # a newer report, if any, wins
                assert self._wakeup is not None
                asyncio.get_running_loop().call_later(VERSIONS_RETRY_S, self._wakeup.set)
            return
        self.versions += len(versions)

    async def _statuses_round(self) -> None:
        batch, self._pending = self._pending[:MAX_ROUND], self._pending[MAX_ROUND:]
        if not batch:
            return
        try:
            answers = await self.call(services.firmware_statuses_record, reports=[report for report, _ in batch])
        except Exception as exc:  # noqa: BLE001 - every waiting connection hears of it, as with one write
            logger.exception("gateway: recording %d firmware statuses failed", len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.rounds += 1
        self.statuses += len(batch)
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)

    async def close(self) -> None:
        """Write what is still queued, stop, and close the thread's database connection."""
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        if self._writing is not None:
            await asyncio.gather(self._writing, return_exceptions=True)
        while self._pending:
            await self._statuses_round()
        await self._versions_round(retry=False)  # once: the devices report again when they reconnect
        try:
            await self.call(connections.close_all)
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)
