"""Fire-and-forget publishing to the channel layer, per `readings/live.py`.

Publishing must never slow ingest: the connection only drops the latest batch of its device into
a dict (one slot per device, so the buffer is bounded by the fleet size and a slow layer loses
stale samples, not fresh ones), and one background task sends. A layer failure is logged and
counted, never raised into a connection.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway.services import DeviceIdentity
from readings import live
from readings.batch import ReadingsBatch

logger = logging.getLogger(__name__)


class LivePublisher:
    def __init__(
        self, *, layer: Any, send_timeout_s: float = 1.0, max_pending: int = 50_000, concurrency: int = 24
    ) -> None:
        self._layer = layer
        self._concurrency = concurrency
        self._send_timeout_s = send_timeout_s
        self._max_pending = max_pending
        self._readings: dict[int, tuple[DeviceIdentity, ReadingsBatch]] = {}
        self._statuses: dict[int, dict[str, Any]] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.dropped = 0
        self.failed = 0

    def start(self) -> None:
        if self._layer is not None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="live-publisher")

    def readings(self, identity: DeviceIdentity, batch: ReadingsBatch) -> None:
        if self._layer is None:
            return
        if identity.device_id in self._readings:
            self.dropped += 1  # superseded before it was sent
        elif len(self._readings) >= self._max_pending:
            self.dropped += 1
            return
        self._readings[identity.device_id] = (identity, batch)
        self._wakeup.set()

    def status(self, identity: DeviceIdentity, *, online: bool, last_seen_ms: int | None) -> None:
        if self._layer is None:
            return
        self._statuses[identity.device_id] = live.device_status_message(
            device_id=identity.device_id, facility_id=identity.facility_id, online=online, last_seen_ms=last_seen_ms
        )
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            statuses, self._statuses = self._statuses, {}
            readings, self._readings = self._readings, {}
            # A group_send costs a few Redis round trips; one after another they cap the gateway at a
            # few hundred messages a second, so they go out side by side, at most `concurrency` at once
            # (two groups each: well inside redis-py's pool of 100 connections).
            await self._send_all(list(statuses.values()))
            await self._send_all([_readings_message(identity, batch) for identity, batch in readings.values()])

    async def _send_all(self, messages: list[dict[str, Any]]) -> None:
        for first in range(0, len(messages), self._concurrency):
            await asyncio.gather(*(self._send(m) for m in messages[first : first + self._concurrency]))

    async def _send(self, message: dict[str, Any]) -> None:
        groups = (live.device_group(message["device_id"]), live.facility_group(message["facility_id"]))
        await asyncio.gather(*(self._send_to(group, message) for group in groups))

    async def _send_to(self, group: str, message: dict[str, Any]) -> None:
        try:
            await asyncio.wait_for(self._layer.group_send(group, message), self._send_timeout_s)
            self.sent += 1
        except Exception as exc:  # a broken layer must not stop publishing, let alone ingest
            self.failed += 1
            if self.failed in (1, 10, 100) or self.failed % 1000 == 0:
                logger.warning("live: publishing to %s failed (%d failures so far): %r", group, self.failed, exc)

    async def flush(self, *, within_s: float) -> None:
        """Give queued messages a chance to go out (shutdown)."""
        if self._task is None:
            return
        try:
            async with asyncio.timeout(within_s):
                # The worker swaps the dicts out; polling is the simplest way to see them empty.
                while self._readings or self._statuses:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        except TimeoutError:
            pass

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _readings_message(identity: DeviceIdentity, batch: ReadingsBatch) -> dict[str, Any]:
    # The gateway drops absent channels before building a batch, so no NaN reaches JSON.
    values = {channel_id: batch.values[row].tolist() for row, channel_id in enumerate(batch.channel_ids.tolist())}
    return live.live_readings_message(
        device_id=identity.device_id,
        facility_id=identity.facility_id,
        ts=batch.timestamps_ms.tolist(),
        values=values,
    )
