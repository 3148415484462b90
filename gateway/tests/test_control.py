"""The device control bus: a revoked, re-keyed or disabled device is dropped at once, wherever it is."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from devices.control import CONFIG, device_control_send_async
from devices.models import Device
from devices.services import device_key_revoke, device_key_rotate
from gateway import protocol as p
from gateway.tests.helpers import RawClient, Recorder, nack_of, running_gateway
from portal.tests.live import require_live_layer

pytestmark = pytest.mark.django_db(transaction=True)


async def _joined(gateway, device_id: int) -> None:
    for _ in range(200):
        if device_id in gateway.control.members:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the gateway never joined the device's control group")


async def _connected(gateway, port, ctx, meter):
    issued, spec = meter
    client = await RawClient.connect(port, ctx)
    await client.handshake(spec.serial, spec.private_key)
    await _joined(gateway, issued.device.pk)
    return client


@pytest.mark.parametrize("change", [device_key_revoke, device_key_rotate])
async def test_a_key_change_drops_the_live_connection_at_once(meter, tmp_path, request, change):
    require_live_layer(request)
    issued, _ = meter
    async with running_gateway(tmp_path, enqueue=Recorder(), channel_layer=get_channel_layer()) as (gw, port, ctx):
        client = await _connected(gw, port, ctx, meter)
        await sync_to_async(change)(device=await sync_to_async(Device.objects.get)(pk=issued.device.pk))
        nack = nack_of(await client.frame(timeout=5))
        assert nack.code == p.ErrorCode.KEY_REVOKED
        assert await client.closed()
        assert gw.stats["disconnected_by_command"] == 1


async def test_a_command_for_another_device_leaves_this_one_connected(meter, other_meter, tmp_path, request):
    require_live_layer(request)
    async with running_gateway(tmp_path, enqueue=Recorder(), channel_layer=get_channel_layer()) as (gw, port, ctx):
        client = await _connected(gw, port, ctx, meter)
        other = other_meter[0].device
        await sync_to_async(device_key_revoke)(device=await sync_to_async(Device.objects.get)(pk=other.pk))
        await device_control_send_async(device_id=meter[0].device.pk, kind=CONFIG, entries={"interval_s": "30"})
        frame = await client.frame(timeout=5)  # the config for this device arrives, no NACK before it
        assert frame.type == p.FrameType.CONFIG
        assert p.Config.decode(frame.payload).entries == {"interval_s": "30"}
        assert "disconnected_by_command" not in gw.stats
        client.close()


async def test_the_gateway_leaves_the_group_when_the_device_disconnects(meter, tmp_path, request):
    require_live_layer(request)
    device_id = meter[0].device.pk
    async with running_gateway(tmp_path, enqueue=Recorder(), channel_layer=get_channel_layer()) as (gw, port, ctx):
        client = await _connected(gw, port, ctx, meter)
        client.close()
        for _ in range(200):
            if device_id not in gw.control.members:
                break
            await asyncio.sleep(0.02)
        assert device_id not in gw.control.members
