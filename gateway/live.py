"""Fire-and-forget publishing to the channel layer, per `readings/live.py`.

Publishing must never slow ingest: a connection only appends its verified batch to its facility's
list, and one background task sends, in rounds. Each round takes everything pending and sends one
message per facility (statuses first, then readings), side by side; the next round starts when it is done. A
round costs a few Redis round trips per facility whatever it carries, so a busy gateway sends
bigger messages, not more of them, and a lightly loaded one sends each batch at once. Rounds start
at least `round_interval_s` apart (the gateway's `live_round_s`, 5 ms): under load a round then
carries many frames instead of one or two.

On channels_redis' pub/sub layer (production's) a round is one Redis round trip: every message of
the round goes out in one pipeline of PUBLISHes, on a connection of the publisher's own. The layer's
own `group_send` takes one PUBLISH at a time behind a lock per shard, which it shares with the
subscriptions; with 50 facilities a round was 50 round trips in a row, each a turn of a busy event
loop, and at 1,000 live devices the rounds took over a second (docs/live.md). Other layers (the
in-memory one of tests and `runweb`) get one `group_send` per message, side by side.

The pending lists are bounded (`max_pending` batches in all): while the layer is down or stuck the
newest batches beyond that are dropped and counted. A layer failure is logged and counted, never
raised into a connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from gateway.services import DeviceIdentity
from readings import live
from readings.batch import ReadingsBatch

logger = logging.getLogger(__name__)


class LivePublisher:
    def __init__(
        self,
        *,
        layer: Any,
        send_timeout_s: float = 1.0,
        max_pending: int = 20_000,
        concurrency: int = 32,
        round_interval_s: float = 0.0,
    ) -> None:
        self._layer = layer
        # Rounds start at least this far apart. A round costs the gateway ~0.3-0.6 ms of CPU whatever
        # it carries (the Redis client's pipeline, the round's tasks and timeout) against ~25 us per
        # message, and at live cadence with a fast Redis nearly every frame had a round of its own:
        # that, not the frames, was most of the gateway's CPU (docs/gateway.md). A batch after a
        # quiet spell still goes at once; under load one waits at most this long.
        self._round_interval_s = round_interval_s
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
        self._pipeline = RedisPipeline.for_layer(layer)
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
        loop = asyncio.get_running_loop()
        started = float("-inf")
        while True:
            await self._wakeup.wait()
            if (wait := started + self._round_interval_s - loop.time()) > 0:
                await asyncio.sleep(wait)  # what arrives meanwhile joins this round
            started = loop.time()
            self._wakeup.clear()
            statuses, self._statuses = self._statuses, {}
            readings, self._readings, self._pending = self._readings, {}, 0
            messages = [
                live.device_status_message(facility_id=f, statuses=list(s.values())) for f, s in statuses.items()
            ]
            readings_messages = [
                live.live_readings_message(facility_id=f, batches=batches) for f, batches in readings.items()
            ]
            if self._pipeline is not None:
                await self._send_pipelined(messages + readings_messages)
            else:
                await self._send_all(messages)
                await self._send_all(readings_messages)

    async def _send_pipelined(self, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        assert self._pipeline is not None
        try:
            async with asyncio.timeout(self._send_timeout_s):
                await self._pipeline.publish([(live.facility_group(m["facility_id"]), m) for m in messages])
            self.sent += len(messages)
        except Exception as exc:  # a broken layer must not stop publishing, let alone ingest
            self._failed(len(messages), "a round", exc)

    async def _send_all(self, messages: list[dict[str, Any]]) -> None:
        if messages:
            await asyncio.gather(*(self._send(live.facility_group(m["facility_id"]), m) for m in messages))

    def _failed(self, n: int, what: str, exc: BaseException) -> None:
        before, self.failed = self.failed, self.failed + n
        if (
            before == 0
            or any(before < mark <= self.failed for mark in (10, 100))
            or before // 1000 != self.failed // 1000
        ):
            logger.warning("live: publishing %s failed (%d failures so far): %r", what, self.failed, exc)

    async def _send(self, group: str, message: dict[str, Any]) -> None:
        try:
            async with self._slots:
                await asyncio.wait_for(self._layer.group_send(group, message), self._send_timeout_s)
            self.sent += 1
        except Exception as exc:  # a broken layer must not stop publishing, let alone ingest
            self._failed(1, f"to {group}", exc)

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
            await asyncio.gather(self._task, return_exceptions=True)
        if self._pipeline is not None:
            await self._pipeline.close()


def _batch_entry(identity: DeviceIdentity, batch: ReadingsBatch) -> dict[str, Any]:
    # The gateway drops absent channels before building a batch, so no NaN reaches JSON.
    return live.live_batch(
        device_id=identity.device_id,
        channel_ids=batch.channel_ids,
        timestamps_ms=batch.timestamps_ms,
        values=batch.values,
    )


class RedisPipeline:
    """PUBLISH many group messages in one round trip per Redis shard, as channels_redis' pub/sub layer would.

    The group's Redis channel, its shard and the serialization are the layer's own (so every
    consumer subscribed through the layer gets the message); only the connection is this object's,
    so a round never waits behind the layer's subscriptions. Tied to channels_redis 4.x's
    `RedisPubSubLoopLayer` (`_get_group_channel_name`, `_get_shard`, a shard's `host`); the version is
    pinned, and gateway/tests/test_live_publisher.py sends through it to a layer subscriber.
    """

    def __init__(self, layer: Any) -> None:
        self._layer = layer
        self._clients: dict[int, Any] = {}

    @classmethod
    def for_layer(cls, layer: Any) -> RedisPipeline | None:
        try:
            from channels_redis.pubsub import RedisPubSubChannelLayer
        except ImportError:  # pragma: no cover - channels_redis is a dependency
            return None
        return cls(layer) if isinstance(layer, RedisPubSubChannelLayer) else None

    def _client(self, shard: Any) -> Any:
        client = self._clients.get(id(shard))
        if client is None:
            from channels_redis.utils import create_pool
            from redis import asyncio as aioredis

            client = self._clients[id(shard)] = aioredis.Redis(connection_pool=create_pool(shard.host))
        return client

    async def publish(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        loop_layer = self._layer._get_layer()
        shards: dict[int, Any] = {}
        items: dict[int, list[tuple[str, bytes]]] = defaultdict(list)
        for group, message in messages:
            channel = loop_layer._get_group_channel_name(group)
            shard = loop_layer._get_shard(channel)
            shards[id(shard)] = shard
            items[id(shard)].append((channel, self._layer.serialize(message)))
        await asyncio.gather(*(self._publish(shards[key], batch) for key, batch in items.items()))

    async def _publish(self, shard: Any, items: list[tuple[str, bytes]]) -> None:
        pipe = self._client(shard).pipeline(transaction=False)
        for channel, data in items:
            pipe.publish(channel, data)
        await pipe.execute()

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose(close_connection_pool=True)
