"""The gateway over real TLS with the real simulator: acks, at-least-once, presence, live publishing."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer

from devices.models import Device
from gateway import protocol as p
from gateway.tests.helpers import RawClient, Recorder, batch_payload, nack_of, running_gateway, simulated
from readings.live import batch_readings

pytestmark = pytest.mark.django_db(transaction=True)


def _by_timestamp(batches, channel_ids):
    """{(channel_id, ts): value} over everything the seam received (a resend overwrites with the same value)."""
    seen = {}
    for batch in batches:
        for row, channel_id in enumerate(batch.channel_ids.tolist()):
            for ts, value in zip(batch.timestamps_ms.tolist(), batch.values[row].tolist(), strict=True):
                seen[(channel_id, ts)] = value
    return seen


def _expected(device, channel_ids, scales):
    expected = {}
    for sent in device.acked:
        ts = sent.start_ms + sent.interval_ms * np.arange(sent.raw.shape[1])
        values = sent.raw.astype(np.float64) * scales[:, None]
        for row, channel_id in enumerate(channel_ids):
            for t, v in zip(ts.tolist(), values[row].tolist(), strict=True):
                expected[(channel_id, t)] = v
    return expected


async def test_the_gateway_hands_over_exactly_what_the_simulator_sent(meter, tmp_path):
    issued, spec = meter
    recorder = Recorder()
    channel_ids = await sync_to_async(
        lambda: list(issued.device.channels.order_by("index").values_list("id", flat=True))
    )()
    scales = np.array([c.scale for c in spec.channels])
    async with running_gateway(tmp_path, enqueue=recorder) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, max_batches=30, record=True)
        await device.run(duration_s=20)
    assert len(device.acked) == 30 and not device.unacked
    assert device.stats.readings_acked == 30 * 12 * 15
    stored = _by_timestamp(recorder.batches, channel_ids)
    assert stored == _expected(device, channel_ids, scales)
    assert {batch.tenant_id for batch in recorder.batches} == {issued.device.tenant_id}
    assert {batch.device_id for batch in recorder.batches} == {issued.device.pk}


async def test_a_batch_is_acked_only_after_the_seam_returned(meter, tmp_path):
    issued, spec = meter
    recorder = Recorder()
    recorder.block.clear()
    async with running_gateway(tmp_path, enqueue=recorder) as (gateway, port, ctx):
        client = await RawClient.connect(port, ctx)
        await client.handshake(spec.serial, spec.private_key)
        seq = client.send(p.FrameType.READINGS, batch_payload(12))
        with pytest.raises(TimeoutError):
            await client.frame(timeout=0.5)
        recorder.block.set()
        ack = await client.frame()
        assert ack.type == p.FrameType.ACK and p.Ack.decode(ack.payload).ref_seq == seq
        client.close()
    assert recorder.readings == 12 * 15


async def test_when_the_seam_fails_the_batch_is_nacked_and_resent_later(meter, tmp_path):
    issued, spec = meter
    recorder = Recorder()
    recorder.fail = True
    async with running_gateway(tmp_path, enqueue=recorder) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, max_batches=3, record=True)
        task = asyncio.create_task(device.run(duration_s=20))
        await asyncio.sleep(1.0)
        assert device.stats.batches_acked == 0
        assert device.last_error is not None and device.last_error.code == p.ErrorCode.UNAVAILABLE
        recorder.fail = False
        await task
    assert len(device.acked) == 3 and not device.unacked
    assert recorder.readings >= 3 * 12 * 15


async def test_unacked_batches_are_resent_after_a_reconnect_and_nothing_is_lost(meter, tmp_path):
    issued, spec = meter
    recorder = Recorder()
    recorder.block.clear()
    channel_ids = await sync_to_async(
        lambda: list(issued.device.channels.order_by("index").values_list("id", flat=True))
    )()
    async with running_gateway(tmp_path, enqueue=recorder) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, max_batches=10, record=True)
        task = asyncio.create_task(device.run(duration_s=20))
        while device.stats.batches_sent < 5:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        device.drop_connection()  # the link dies with batches in flight
        recorder.block.set()
        await task
    assert device.stats.resent >= 1
    assert gateway.stats.get("resent_frames", 0) >= 1
    assert len(device.acked) == 10
    scales = np.array([c.scale for c in spec.channels])
    assert _by_timestamp(recorder.batches, channel_ids) == _expected(device, channel_ids, scales)


async def test_a_reconnecting_device_replaces_its_old_connection(meter, tmp_path):
    issued, spec = meter
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        first = await RawClient.connect(port, ctx)
        await first.handshake(spec.serial, spec.private_key)
        second = await RawClient.connect(port, ctx)
        await second.handshake(spec.serial, spec.private_key)
        assert nack_of(await first.frame()).code == p.ErrorCode.REPLACED
        assert await first.closed()
        second.send(p.FrameType.PING, p.Ping(5).encode())
        assert (await second.frame()).type == p.FrameType.PONG
        assert len(gateway.connections) == 1
        second.close()


async def test_sigterm_drain_acks_the_batches_in_flight_before_closing(meter, tmp_path):
    issued, spec = meter
    recorder = Recorder()
    recorder.block.clear()
    async with running_gateway(tmp_path, enqueue=recorder) as (gateway, port, ctx):
        client = await RawClient.connect(port, ctx)
        await client.handshake(spec.serial, spec.private_key)
        seqs = [
            client.send(p.FrameType.READINGS, batch_payload(12, start_ms=1_764_170_000_000 + i * 30_000))
            for i in range(3)
        ]
        await asyncio.sleep(0.3)
        shutdown = asyncio.create_task(gateway.shutdown())
        await asyncio.sleep(0.2)
        recorder.block.set()
        await shutdown
        acked = [p.Ack.decode(f.payload).ref_seq for f in [await client.frame() for _ in seqs]]
        assert acked == seqs
        assert nack_of(await client.frame()).code == p.ErrorCode.SHUTTING_DOWN
        assert await client.closed()
    assert recorder.readings == 3 * 12 * 15


async def test_presence_is_written_in_coalesced_rounds(meter, tmp_path):
    issued, spec = meter
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, max_batches=None)
        task = asyncio.create_task(device.run(duration_s=20))
        await device.connected.wait()
        await asyncio.sleep(gateway.config.presence_interval_s * 3)
        online = await sync_to_async(Device.objects.get)(pk=issued.device.pk)
        assert online.status == Device.Status.ONLINE and online.last_seen is not None
        device.stop()
        await task
        await asyncio.sleep(gateway.config.presence_interval_s * 3)
    offline = await sync_to_async(Device.objects.get)(pk=issued.device.pk)
    assert offline.status == Device.Status.OFFLINE


async def test_accepted_batches_and_status_changes_are_published_to_the_facility_group(meter, tmp_path):
    issued, spec = meter
    layer = InMemoryChannelLayer()
    facility_channel = await layer.new_channel()
    await layer.group_add(f"facility.{issued.device.facility_id}", facility_channel)
    async with running_gateway(tmp_path, enqueue=Recorder(), channel_layer=layer) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, max_batches=3, record=True)
        await device.run(duration_s=10)
        status = await asyncio.wait_for(layer.receive(facility_channel), 2)
        messages = []
        while sum(len(m["batches"]) for m in messages) < 3:
            messages.append(await asyncio.wait_for(layer.receive(facility_channel), 2))
    assert status == {
        "type": "device.status",
        "facility_id": issued.device.facility_id,
        "statuses": [{"device_id": issued.device.pk, "online": True, "last_seen": status["statuses"][0]["last_seen"]}],
    }
    assert {(m["type"], m["facility_id"]) for m in messages} == {("readings.live", issued.device.facility_id)}
    batches = [batch for m in messages for batch in m["batches"]]
    assert [b["device_id"] for b in batches] == [issued.device.pk] * 3
    first_channel = await sync_to_async(lambda: issued.device.channels.get(index=0).pk)()
    for batch, sent in zip(batches, device.acked, strict=True):
        ts, values = batch_readings(batch)
        assert ts == [sent.start_ms + 2000 * k for k in range(15)]
        assert values[str(first_channel)] == (sent.raw[0] * spec.channels[0].scale).tolist()


class BrokenLayer:
    async def group_send(self, group, message):
        raise ConnectionError("redis is down")


class StuckLayer:
    async def group_send(self, group, message):
        await asyncio.sleep(3600)


@pytest.mark.parametrize("layer", [BrokenLayer(), StuckLayer()], ids=["failing", "hanging"])
async def test_a_broken_channel_layer_neither_loses_nor_delays_acks(meter, tmp_path, layer):
    issued, spec = meter
    recorder = Recorder()
    async with running_gateway(tmp_path, enqueue=recorder, channel_layer=layer) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, max_batches=20, record=True)
        await asyncio.wait_for(device.run(duration_s=10), 10)
    assert len(device.acked) == 20
    assert recorder.readings == 20 * 12 * 15


async def test_the_gateway_answers_pings_time_requests_events_and_pushes_config(meter, tmp_path):
    issued, spec = meter
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        client = await RawClient.connect(port, ctx)
        await client.handshake(spec.serial, spec.private_key)
        client.send(p.FrameType.PING, p.Ping(1234).encode())
        assert p.Ping.decode((await client.frame()).payload).time_ms == 1234
        client.send(p.FrameType.TIME_REQUEST, p.TimeRequest(1000).encode())
        response = p.TimeResponse.decode((await client.frame()).payload)
        assert response.device_send_ms == 1000 and response.server_send_ms >= response.server_receive_ms > 10**12
        seq = client.send(p.FrameType.EVENT, p.Event(10**12, p.Severity.ALARM, 7, "door open").encode())
        assert p.Ack.decode((await client.frame()).payload).ref_seq == seq
        assert gateway.push_config(issued.device.pk, {"batch": "30"})
        config = await client.frame()
        assert config.type == p.FrameType.CONFIG and p.Config.decode(config.payload).entries == {"batch": "30"}
        client.close()


async def test_a_simulator_applies_pushed_config_and_acks_it(meter, tmp_path):
    issued, spec = meter
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, max_batches=None)
        task = asyncio.create_task(device.run(duration_s=10))
        await device.connected.wait()
        gateway.push_config(issued.device.pk, {"batch": "30"})
        for _ in range(100):
            if device.config:
                break
            await asyncio.sleep(0.02)
        device.stop()
        await task
    assert device.config == {"batch": "30"}


async def test_a_counter_reset_travels_as_an_event_and_its_readings_still_arrive(meter, tmp_path):
    issued, spec = meter
    recorder = Recorder()
    async with running_gateway(tmp_path, enqueue=recorder) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, max_batches=3, record=True)
        device.meter.reset_chance = 1.0
        await device.run(duration_s=10)
    assert gateway.stats.get("events", 0) == 3
    assert device.meter.counter_resets == 3 and len(device.acked) == 3
    assert recorder.readings == 3 * 12 * 15


async def test_presence_is_one_coalesced_write_per_round_not_one_per_frame(meter, tmp_path, monkeypatch):
    from gateway import server

    issued, spec = meter
    calls = []
    real = server._presence_record

    async def counting(**kwargs):
        calls.append(kwargs)
        return await real(**kwargs)

    monkeypatch.setattr(server, "_presence_record", counting)
    config = server.GatewayConfig(presence_interval_s=0.5, rate_per_s=1000, rate_burst=1000)
    async with running_gateway(tmp_path, enqueue=Recorder(), config=config) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, max_batches=200)
        started = asyncio.get_running_loop().time()
        await device.run(duration_s=20)
        elapsed = asyncio.get_running_loop().time() - started
    assert device.stats.batches_acked == 200
    # One write per presence round (plus the final one at shutdown), however many frames arrived.
    assert len(calls) <= elapsed / 0.5 + 2
    assert all(set(call["last_seen_ms"]) == {issued.device.pk} for call in calls)
