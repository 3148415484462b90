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
# A round of reported versions that could not be written is tried again after this long.
VERSIONS_RETRY_S = 1.0


class ChunkTurns:
    """Lets at most `per_turn` chunk writes into each turn of the event loop; the rest wait their turn, in order.

    A device asks for its next chunk as soon as it has the last, so in a wave of a thousand downloads every
    loop turn held a chunk (CRC, TLS encryption, a copy) for each of them: hundreds of milliseconds per turn.
    A reading's ack needs several turns (read, batcher, enqueue thread, callback), a chunk one, so during a
    wave the acks waited seconds (bench/rollout.py: p95 318 times the baseline). Bounded turns keep the
    readings' few turns short; the chunks still take every turn the loop has spare.
    """

    def __init__(self, *, per_turn: int = CHUNKS_PER_TURN) -> None:
        self.per_turn = per_turn
        self._used = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._armed = False

    async def take(self) -> None:
        if self._used < self.per_turn and not self._waiting:
            self._used += 1
            self._arm()
            return
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._arm()
        await future

    def _arm(self) -> None:
        if not self._armed:
            self._armed = True
            # call_soon from within a turn runs in the next turn: this is the turn boundary.
            asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        self._armed = False
        self._used = 0
        while self._waiting and self._used < self.per_turn:
            future = self._waiting.popleft()
            if not future.done():  # cancelled: the connection went meanwhile
                future.set_result(None)
                self._used += 1
        if self._waiting or self._used:
            self._arm()


class FirmwareWork:
    def __init__(self, *, linger_s: float = 0.01) -> None:
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
        self.chunk_turns = ChunkTurns()

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
