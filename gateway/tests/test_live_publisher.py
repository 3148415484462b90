"""The live publisher's rounds: one channel-layer message per facility and round, never per frame.

The channel layer here is Channels' in-memory layer with a delay: these tests are about how the
publisher groups batches, not about Redis (the consumer tests cover the Redis layer).
"""

from __future__ import annotations

import asyncio

import numpy as np
from channels.layers import InMemoryChannelLayer

from gateway.live import LivePublisher
from gateway.services import DeviceIdentity
from readings.batch import ReadingsBatch
from readings.live import batch_readings


def identity(device_id: int, facility_id: int) -> DeviceIdentity:
    return DeviceIdentity(
        device_id=device_id,
        tenant_id=1,
        facility_id=facility_id,
        serial=f"D{device_id}",
        public_key=None,
        key_version=1,
        revoked=False,
        disabled=False,
        channel_ids=np.array([10 * device_id]),
        scales=np.array([1.0]),
    )


def batch(device_id: int, start_ms: int) -> ReadingsBatch:
    return ReadingsBatch(
        tenant_id=1,
        device_id=device_id,
        seq=1,
        channel_ids=np.array([10 * device_id]),
        timestamps_ms=np.array([start_ms]),
        values=np.array([[float(start_ms)]]),
    )


async def test_batches_arriving_while_a_round_is_sent_go_out_together_in_one_message_per_facility():
    class SlowLayer(InMemoryChannelLayer):
        async def group_send(self, group, message):
            await asyncio.sleep(0.2)
            await super().group_send(group, message)

    layer = SlowLayer()
    channels = {f: await layer.new_channel() for f in (1, 2)}
    for facility_id, channel in channels.items():
        await layer.group_add(f"facility.{facility_id}", channel)
    publisher = LivePublisher(layer=layer)
    publisher.start()

    publisher.readings(identity(1, 1), batch(1, 1000))
    await asyncio.sleep(0.05)  # the first round is on its way; these three wait for the next one
    publisher.readings(identity(2, 1), batch(2, 2000))
    publisher.readings(identity(1, 1), batch(1, 3000))
    publisher.readings(identity(3, 2), batch(3, 4000))
    first = await asyncio.wait_for(layer.receive(channels[1]), 2)
    second = await asyncio.wait_for(layer.receive(channels[1]), 2)
    other = await asyncio.wait_for(layer.receive(channels[2]), 2)
    await asyncio.sleep(0.05)  # the publisher counts a send once group_send has returned
    await publisher.close()

    def entries(message):  # type: ignore[no-untyped-def]
        return [(b["device_id"], *batch_readings(b)) for b in message["batches"]]

    assert entries(first) == [(1, [1000], {"10": [1000.0]})]
    assert entries(second) == [(2, [2000], {"20": [2000.0]}), (1, [3000], {"10": [3000.0]})]
    assert entries(other) == [(3, [4000], {"30": [4000.0]})]
    assert publisher.sent == 3 and publisher.dropped == 0


async def test_batches_that_arrive_within_the_round_interval_of_a_round_go_out_together_in_the_next_one():
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("facility.1", channel)
    publisher = LivePublisher(layer=layer, round_interval_s=2.0)
    publisher.start()
    publisher.readings(identity(1, 1), batch(1, 1000))  # after a quiet spell: a round of its own
    first = await asyncio.wait_for(layer.receive(channel), 2)
    publisher.readings(identity(2, 1), batch(2, 2000))
    await asyncio.sleep(0.1)  # a round of its own for each, were rounds not spaced
    publisher.readings(identity(3, 1), batch(3, 3000))
    second = await asyncio.wait_for(layer.receive(channel), 5)
    await publisher.close()
    assert [b["device_id"] for b in first["batches"]] == [1]
    assert [b["device_id"] for b in second["batches"]] == [2, 3]


async def test_while_the_layer_hangs_the_pending_batches_are_capped_and_the_excess_counted_as_dropped():
    class HangingLayer:
        async def group_send(self, group, message):
            await asyncio.sleep(3600)

    publisher = LivePublisher(layer=HangingLayer(), max_pending=5, send_timeout_s=60)
    publisher.start()
    publisher.readings(identity(1, 1), batch(1, 0))
    await asyncio.sleep(0.01)  # the first round hangs in group_send
    for k in range(1, 9):
        publisher.readings(identity(1, 1), batch(1, 2000 * k))
    await publisher.close()
    assert publisher.dropped == 3 and publisher.sent == 0


async def test_a_reconnect_storm_goes_out_as_one_status_message_per_facility_with_each_devices_latest():
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("facility.1", channel)
    publisher = LivePublisher(layer=layer)
    for device_id in range(1, 201):
        publisher.status(identity(device_id, 1), online=False, last_seen_ms=1000)
        publisher.status(identity(device_id, 1), online=True, last_seen_ms=2000 + device_id)
    publisher.start()
    message = await asyncio.wait_for(layer.receive(channel), 2)
    await asyncio.sleep(0.05)
    await publisher.close()
    assert message["type"] == "device.status" and message["facility_id"] == 1
    assert message["statuses"] == [{"device_id": d, "online": True, "last_seen": 2000 + d} for d in range(1, 201)]
    assert publisher.sent == 1


async def test_on_the_redis_pubsub_layer_a_round_goes_out_as_one_pipeline_that_layer_subscribers_receive(redis_url):
    """Real Redis: the pipelined round reaches channels subscribed through the layer, never via group_send."""
    from channels_redis.pubsub import RedisPubSubChannelLayer

    class NoGroupSend(RedisPubSubChannelLayer):
        async def group_send(self, group, message):  # the pipeline must not fall back to it
            raise AssertionError("group_send used")

    prefix = f"test-pipeline-{id(object())}"
    layer = NoGroupSend(hosts=[redis_url], prefix=prefix)
    listener = RedisPubSubChannelLayer(hosts=[redis_url], prefix=prefix)  # as a web process would
    channels = {f: await listener.new_channel() for f in (1, 2)}
    for facility_id, channel in channels.items():
        await listener.group_add(f"facility.{facility_id}", channel)
    publisher = LivePublisher(layer=layer)
    publisher.start()
    try:
        publisher.status(identity(1, 1), online=True, last_seen_ms=5)
        publisher.readings(identity(1, 1), batch(1, 1000))
        publisher.readings(identity(2, 1), batch(2, 2000))
        publisher.readings(identity(3, 2), batch(3, 4000))
        status = await asyncio.wait_for(listener.receive(channels[1]), 5)
        readings = await asyncio.wait_for(listener.receive(channels[1]), 5)
        other = await asyncio.wait_for(listener.receive(channels[2]), 5)
    finally:
        await publisher.close()
        await listener.flush()
        await layer.flush()

    assert status["type"] == "device.status" and [s["device_id"] for s in status["statuses"]] == [1]
    assert [(b["device_id"], *batch_readings(b)) for b in readings["batches"]] == [
        (1, [1000], {"10": [1000.0]}),
        (2, [2000], {"20": [2000.0]}),
    ]
    assert [(b["device_id"], *batch_readings(b)) for b in other["batches"]] == [(3, [4000], {"30": [4000.0]})]
    assert publisher.sent == 3 and publisher.failed == 0


async def test_when_redis_is_unreachable_a_pipelined_round_is_counted_as_failed_and_publishing_goes_on():
    from channels_redis.pubsub import RedisPubSubChannelLayer

    layer = RedisPubSubChannelLayer(hosts=["redis://127.0.0.1:1/0"], prefix="test-pipeline-down")
    publisher = LivePublisher(layer=layer, send_timeout_s=0.5)
    publisher.start()
    try:
        publisher.readings(identity(1, 1), batch(1, 1000))
        publisher.readings(identity(3, 2), batch(3, 2000))
        for _ in range(100):
            if publisher.failed:
                break
            await asyncio.sleep(0.05)
        publisher.readings(identity(1, 1), batch(1, 3000))
        for _ in range(100):
            if publisher.failed >= 3:
                break
            await asyncio.sleep(0.05)
    finally:
        await publisher.close()
    assert publisher.failed == 3 and publisher.sent == 0
