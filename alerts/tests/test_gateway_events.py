"""EVENT frames over real TLS through the real gateway: stored before the ACK; undefined ones nacked and counted."""

from __future__ import annotations

import numpy as np
import pytest
from asgiref.sync import sync_to_async

from alerts.models import Event
from gateway import protocol as p
from gateway.simulator import Meter
from gateway.tests.helpers import RawClient, Recorder, nack_of, running_gateway, simulated

pytestmark = pytest.mark.django_db(transaction=True)
DOOR_OPEN = 0x020


async def test_a_device_event_is_stored_with_its_time_severity_and_message_before_the_ack(
    meter, tmp_path, close_thread_connections
):
    issued, spec = meter
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        client = await RawClient.connect(port, ctx)
        await client.handshake(spec.serial, spec.private_key)
        at_ms = 1_764_170_000_123
        seq = client.send(p.FrameType.EVENT, p.Event(at_ms, p.Severity.ALARM, DOOR_OPEN, "door open").encode())
        ack = await client.frame()
        assert ack.type == p.FrameType.ACK and p.Ack.decode(ack.payload).ref_seq == seq
        # A device-specific code is kept too, named by its number.
        client.send(p.FrameType.EVENT, p.Event(at_ms + 1, p.Severity.INFO, 0x101, "fan 2 slow").encode())
        assert (await client.frame()).type == p.FrameType.ACK
        client.close()
    rows = await sync_to_async(
        lambda: list(
            Event.objects.order_by("id").values("device_id", "kind", "code", "severity", "message", "occurred_at")
        )
    )()
    assert [(r["kind"], r["code"], r["severity"], r["message"]) for r in rows] == [
        ("door_open", DOOR_OPEN, 2, "door open"),
        ("device", 0x101, 0, "fan 2 slow"),
    ]
    assert rows[0]["device_id"] == issued.device.pk
    assert int(rows[0]["occurred_at"].timestamp() * 1000) == at_ms


async def test_an_undefined_event_is_nacked_counted_and_not_stored(meter, tmp_path, close_thread_connections):
    _, spec = meter
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        client = await RawClient.connect(port, ctx)
        await client.handshake(spec.serial, spec.private_key)
        undefined = bytearray(p.Event(1_764_170_000_000, 0, DOOR_OPEN, "x").encode())
        undefined[6] = (undefined[6] & 0x0F) | 0xF0  # severity 15
        client.send(p.FrameType.EVENT, bytes(undefined))
        assert nack_of(await client.frame()).code == p.ErrorCode.MALFORMED
        assert gateway.stats.get("events_refused") == 1
    assert not await sync_to_async(Event.objects.exists)()


async def test_the_simulators_counter_reset_events_are_all_in_the_event_history(
    meter, tmp_path, close_thread_connections
):
    issued, spec = meter
    resetting = Meter(spec, np.random.default_rng(3), reset_chance=1.0)
    async with running_gateway(tmp_path, enqueue=Recorder()) as (_, port, ctx):
        device = simulated(spec, port, ctx, max_batches=3, record=True, meter=resetting)
        await device.run(duration_s=20)
    kinds = await sync_to_async(lambda: list(Event.objects.values_list("kind", flat=True)))()
    assert kinds == ["counter_reset"] * resetting.counter_resets and resetting.counter_resets == 3
