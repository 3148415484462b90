"""Fire-and-forget publishing to the channel layer, per `readings/live.py`.

Publishing must never slow ingest: a connection only appends its verified batch to its facility's
list, and one background task sends, in rounds. Each round takes everything pending and sends one
message per facility (statuses first, then readings), side by side; the next round starts when it is done. A
round costs a few Redis round trips per facility whatever it carries, so a busy gateway sends
bigger messages, not more of them, and a lightly loaded one sends each batch at once.

The pending lists are bounded (`max_pending` batches in all): while the layer is down or stuck the
newest batches beyond that are dropped and counted. A layer failure is logged and counted, never
raised into a connection.
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
        self, *, layer: Any, send_timeout_s: float = 1.0, max_pending: int = 20_000, concurrency: int = 32
    ) -> None:
        self._layer = layer
        self._send_timeout_s = send_timeout_s
        self._max_pending = max_pending
        # Bounds the sends in flight. channels_redis' pub/sub layer sends one PUBLISH at a time per
        # Redis connection anyway (a lock), and the per-send timeout includes that wait; with one
        # message per facility and round that has been enough (docs/decisions/0004).
        self._slots = asyncio.Semaphore(concurrency)
        self._readings: dict[int, list[dict[str, Any]]] = {}
        self._pending = 0
        self._statuses: dict[int, dict[int, dict[str, Any]]] = {}  # facility -> device -> latest
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
        if self._pending >= self._max_pending:
            self.dropped += 1
            return
        self._readings.setdefault(identity.facility_id, []).append(_batch_entry(identity, batch))
        self._pending += 1
        self._wakeup.set()

    def status(self, identity: DeviceIdentity, *, online: bool, last_seen_ms: int | None) -> None:
        if self._layer is None:
            return
        self._statuses.setdefault(identity.facility_id, {})[identity.device_id] = live.device_status(
            device_id=identity.device_id, online=online, last_seen_ms=last_seen_ms
        )
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            statuses, self._statuses = self._statuses, {}
            readings, self._readings, self._pending = self._readings, {}, 0
            await self._send_all(
                [live.device_status_message(facility_id=f, statuses=list(s.values())) for f, s in statuses.items()]
            )
            await self._send_all(
                [live.live_readings_message(facility_id=f, batches=batches) for f, batches in readings.items()]
            )

    async def _send_all(self, messages: list[dict[str, Any]]) -> None:
        if messages:
            await asyncio.gather(*(self._send(live.facility_group(m["facility_id"]), m) for m in messages))

    async def _send(self, group: str, message: dict[str, Any]) -> None:
        try:
            async with self._slots:
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


def _batch_entry(identity: DeviceIdentity, batch: ReadingsBatch) -> dict[str, Any]:
    # The gateway drops absent channels before building a batch, so no NaN reaches JSON.
    return live.live_batch(
        device_id=identity.device_id,
        channel_ids=batch.channel_ids,
        timestamps_ms=batch.timestamps_ms,
        values=batch.values,
    )
