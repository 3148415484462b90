"""Fire-and-forget publishing to the channel layer, per `readings/live.py`.

Publishing must never slow ingest: a connection only appends its verified batch to its facility's
list, and one background task sends, in rounds. Each round takes everything pending and sends one
message per facility (statuses first, then readings), side by side; the next round starts when it is done. A
round costs a few Redis round trips per facility whatever it carries, so a busy gateway sends
bigger messages, not more of them, and a lightly loaded one sends each batch at once. Rounds start
at least `round_interval_s` apart (the gateway's `live_round_s`, 5 ms): under load a round then
carries many frames instead of one or two.

On channels_redis' pub/sub layer (production's) a round is one Redis round trip: every message of
the round goes out as one write of raw RESP PUBLISHes, on a connection of the publisher's own
(`RedisPipeline`, `RespConnection`). The layer's
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

    A shard on plain TCP gets the round as raw RESP on one connection of its own (`RespConnection`):
    redis-py's asyncio pipeline cost ~800 us of CPU for a round of 25 PUBLISHes, the raw bytes ~130
    (no hiredis here: its pure-Python reply parser and the pipeline's command objects were most of
    it). Any other shard (TLS, a Unix socket, Sentinel) keeps redis-py's pipeline.
    """

    def __init__(self, layer: Any) -> None:
        self._layer = layer
        self._shards: dict[int, RespConnection | _RedisPyPipeline] = {}

    @classmethod
    def for_layer(cls, layer: Any) -> RedisPipeline | None:
        try:
            from channels_redis.pubsub import RedisPubSubChannelLayer
        except ImportError:  # pragma: no cover - channels_redis is a dependency
            return None
        return cls(layer) if isinstance(layer, RedisPubSubChannelLayer) else None

    def _shard(self, shard: Any) -> RespConnection | _RedisPyPipeline:
        client = self._shards.get(id(shard))
        if client is None:
            from channels_redis.utils import create_pool
            from redis.asyncio.connection import Connection, ConnectionPool

            pool = create_pool(shard.host)
            if type(pool) is ConnectionPool and pool.connection_class is Connection:
                kwargs = pool.connection_kwargs
                client = RespConnection(
                    host=kwargs.get("host", "localhost"),
                    port=int(kwargs.get("port", 6379)),
                    username=kwargs.get("username"),
                    password=kwargs.get("password"),
                )
            else:
                client = _RedisPyPipeline(pool)
            self._shards[id(shard)] = client
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
        if len(items) == 1:  # one shard (the common case): no gather and its tasks
            ((key, batch),) = items.items()
            await self._shard(shards[key]).publish(batch)
            return
        await asyncio.gather(*(self._shard(shards[key]).publish(batch) for key, batch in items.items()))

    async def close(self) -> None:
        shards, self._shards = self._shards, {}
        for client in shards.values():
            await client.close()


class RespConnection:
    """A round of PUBLISHes as raw RESP on one TCP connection to Redis: one write, then every reply.

    PUBLISH is not scoped to a database, so the connection only authenticates. Every reply to a
    PUBLISH is one line (an integer, or an error), so a round's replies are counted by their line
    ends, not parsed. Rounds are sent one after the other (LivePublisher._run), never overlapping;
    a round that fails or is cancelled (the publisher's timeout) leaves the connection's replies
    unaccounted for, so the connection is dropped and the next round opens a new one.
    """

    def __init__(self, *, host: str, port: int, username: str | None = None, password: str | None = None) -> None:
        self._host, self._port = host, port
        self._auth = [a for a in (username, password) if a is not None] if password is not None else []
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @staticmethod
    def command(*args: bytes | str) -> bytes:
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg.encode() if isinstance(arg, str) else arg
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(parts)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self._host, self._port)
        if self._auth:
            writer.write(self.command("AUTH", *self._auth))
            reply = await reader.readline()
            if not reply.startswith(b"+OK"):
                writer.close()
                raise ConnectionError(f"Redis refused AUTH: {reply.decode(errors='replace').strip()}")
        self._reader, self._writer = reader, writer
        return reader, writer

    async def publish(self, items: list[tuple[str, bytes]]) -> None:
        if self._writer is None or self._reader is None or self._writer.is_closing():
            reader, writer = await self._connect()
        else:
            reader, writer = self._reader, self._writer
        try:
            writer.write(
                b"".join(
                    b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(c), c, len(d), d)
                    for c, d in ((channel.encode(), data) for channel, data in items)
                )
            )
            replies = b""
            while replies.count(b"\n") < len(items):
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionError("Redis closed the connection")
                replies += chunk
        except BaseException:
            self._drop()
            raise
        if replies.startswith(b"-") or b"\n-" in replies:
            line = next(r for r in replies.split(b"\r\n") if r.startswith(b"-"))
            raise ConnectionError(f"Redis refused a PUBLISH: {line[1:].decode(errors='replace')}")

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def close(self) -> None:
        writer = self._writer
        self._drop()
        if writer is not None:
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass


class _RedisPyPipeline:
    def __init__(self, pool: Any) -> None:
        from redis import asyncio as aioredis

        self._client = aioredis.Redis(connection_pool=pool)

    async def publish(self, items: list[tuple[str, bytes]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for channel, data in items:
            pipe.publish(channel, data)
        await pipe.execute()

    async def close(self) -> None:
        await self._client.aclose(close_connection_pool=True)
