"""The live publisher's rounds: one channel-layer message per facility and round, never per frame.

The channel layer here is Channels' in-memory layer with a delay: these tests are about how the
publisher groups batches, not about Redis (the consumer tests cover the Redis layer).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import numpy as np
import pytest
from channels.layers import InMemoryChannelLayer

from gateway.live import LivePublisher, RespConnection
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


async def test_after_redis_drops_the_publishers_connection_the_next_round_reconnects_and_arrives(redis_url):
    """Real Redis: the raw RESP connection is killed from the server side between rounds."""
    import redis.asyncio as aioredis
    from channels_redis.pubsub import RedisPubSubChannelLayer

    prefix = f"test-pipeline-kill-{id(object())}"
    layer = RedisPubSubChannelLayer(hosts=[redis_url], prefix=prefix)
    listener = RedisPubSubChannelLayer(hosts=[redis_url], prefix=prefix)
    channel = await listener.new_channel()
    await listener.group_add("facility.1", channel)
    admin = aioredis.Redis.from_url(redis_url)
    publisher = LivePublisher(layer=layer)
    publisher.start()
    try:
        publisher.readings(identity(1, 1), batch(1, 1000))
        first = await asyncio.wait_for(listener.receive(channel), 5)
        assert publisher._pipeline is not None
        (connection,) = publisher._pipeline._shards.values()
        host, port = connection._writer.get_extra_info("sockname")[:2]
        assert await admin.execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}", "SKIPME", "yes") == 1
        publisher.readings(identity(1, 1), batch(1, 3000))  # finds the connection gone
        async with asyncio.timeout(10):
            while publisher.sent + publisher.failed < 2:  # noqa: ASYNC110 - waits for the round's outcome
                await asyncio.sleep(0.01)
        publisher.readings(identity(1, 1), batch(1, 5000))
        later = [await asyncio.wait_for(listener.receive(channel), 5)]
        if publisher.failed == 0:  # the kill landed before the write: that round went out on a new connection
            later.append(await asyncio.wait_for(listener.receive(channel), 5))
    finally:
        await publisher.close()
        await admin.aclose()
        await listener.flush()
        await layer.flush()
    assert batch_readings(first["batches"][0])[0] == [1000]
    assert batch_readings(later[-1]["batches"][0])[0] == [5000]
    assert publisher.failed <= 1 and publisher.sent + publisher.failed == 3


async def test_a_redis_that_refuses_the_publishers_credentials_counts_the_rounds_as_failed(redis_url, caplog):
    from channels_redis.pubsub import RedisPubSubChannelLayer

    # This Redis has no password: AUTH with one is refused, as a wrong one would be.
    address = redis_url.replace("redis://", "redis://:not-the-password@", 1)
    layer = RedisPubSubChannelLayer(hosts=[address], prefix="test-pipeline-auth")
    publisher = LivePublisher(layer=layer, send_timeout_s=2)
    publisher.start()
    try:
        publisher.readings(identity(1, 1), batch(1, 1000))
        async with asyncio.timeout(10):
            while not publisher.failed:  # noqa: ASYNC110 - waits for the round's outcome
                await asyncio.sleep(0.01)
    finally:
        await publisher.close()
    assert publisher.failed == 1 and publisher.sent == 0
    assert "Redis refused AUTH" in caplog.text


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_layer", "close_thread_connections")
async def test_a_facility_dashboard_shows_what_the_publishers_raw_rounds_carry_and_a_device_page_only_its_own(
    settings,
):
    """The gateway's publisher on the process's channel layer (Redis pub/sub in CI) to the portal's consumers."""
    from channels.db import database_sync_to_async
    from channels.layers import get_channel_layer

    from accounts.tests.factories import MembershipFactory
    from devices.tests.factories import DeviceFactory, FacilityFactory
    from portal.tests.live import communicator, session_cookie, snapshot_of

    settings.LIVE_DEVICE_INTERVAL_S = 0.1

    def make() -> tuple[int, list[tuple[int, int]], bytes]:
        facility = FacilityFactory(name="Store")
        meters = [DeviceFactory(facility=facility, name=f"Meter {k}") for k in (1, 2)]
        cookie = session_cookie(MembershipFactory(tenant=facility.tenant).user)
        return facility.pk, [(m.pk, m.channels.get(quantity="active_power").pk) for m in meters], cookie

    facility_id, meters, cookie = await database_sync_to_async(make)()
    layer = get_channel_layer()
    publisher = LivePublisher(layer=layer)
    dashboard = communicator(f"/ws/facilities/{facility_id}/live", cookie=cookie)
    device_page = communicator(f"/ws/devices/{meters[1][0]}/live", cookie=cookie)
    assert (await dashboard.connect(timeout=5))[0] and (await device_page.connect(timeout=5))[0]
    await snapshot_of(dashboard)
    await snapshot_of(device_page)
    publisher.start()
    now = int(time.time() * 1000)

    def meter_identity(device_id: int, channel_id: int) -> DeviceIdentity:
        return dataclasses.replace(identity(device_id, facility_id), channel_ids=np.array([channel_id]))

    try:
        for (device_id, channel_id), watts in zip(meters, (1500.0, 2500.0), strict=True):
            publisher.readings(
                meter_identity(device_id, channel_id),
                ReadingsBatch(
                    tenant_id=1,
                    device_id=device_id,
                    seq=1,
                    channel_ids=np.array([channel_id]),
                    timestamps_ms=np.array([now]),
                    values=np.array([[watts]]),
                ),
            )
        shown = {}
        while len(shown) < 2:
            message = await dashboard.receive_json_from(timeout=5)
            if message["type"] == "readings":
                shown[message["device_id"]] = (message["ts"], message["values"])
        own = await device_page.receive_json_from(timeout=5)
        while own["type"] != "readings":
            own = await device_page.receive_json_from(timeout=5)
        assert await device_page.receive_nothing(timeout=0.5)
        if type(layer).__name__ == "RedisPubSubChannelLayer":  # CI's: the rounds went out as raw RESP
            assert publisher._pipeline is not None
            assert [type(c) for c in publisher._pipeline._shards.values()] == [RespConnection]
    finally:
        await publisher.close()
        await dashboard.disconnect()
        await device_page.disconnect()
    (first, first_channel), (second, second_channel) = meters
    assert shown == {
        first: ([now], {str(first_channel): [1500.0]}),
        second: ([now], {str(second_channel): [2500.0]}),
    }
    assert own["device_id"] == second and own["values"] == {str(second_channel): [2500.0]}
    assert publisher.failed == 0 and publisher.sent >= 1
