"""Several gateways sharing devices through Redis (gateway.cluster): takeover, presence, revocation."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from devices.models import Device
from devices.services import device_key_revoke
from gateway import protocol as p
from gateway.cluster import Cluster
from gateway.tests.helpers import RawClient, Recorder, nack_of, running_gateway
from gateway.tests.test_control import _joined

pytestmark = pytest.mark.django_db(transaction=True)


@contextlib.asynccontextmanager
async def two_gateways(tmp_path, redis_url) -> AsyncIterator[tuple[tuple, tuple]]:
    """Two gateways of one cluster (their own key prefix, so tests never see each other's devices)."""
    layer = get_channel_layer()
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    async with (
        running_gateway(
            tmp_path / "a",
            enqueue=Recorder(),
            channel_layer=layer,
            cluster=Cluster(redis_url=redis_url, prefix=prefix, gateway_id="gw-a", layer=layer),
        ) as a,
        running_gateway(
            tmp_path / "b",
            enqueue=Recorder(),
            channel_layer=layer,
            cluster=Cluster(redis_url=redis_url, prefix=prefix, gateway_id="gw-b", layer=layer),
        ) as b,
    ):
        yield a, b


async def _on(gateway_port_ctx, meter) -> RawClient:
    gateway, port, ctx = gateway_port_ctx
    issued, spec = meter
    client = await RawClient.connect(port, ctx)
    await client.handshake(spec.serial, spec.private_key)
    await _joined(gateway, issued.device.pk)
    for _ in range(200):  # the claim's answer gives the connection its generation
        if gateway.connections[issued.device.pk].generation is not None:
            return client
        await asyncio.sleep(0.01)
    raise AssertionError(f"the claim never came back ({gateway.cluster.failed} failures)")


async def _status(device_id: int) -> str:
    return await sync_to_async(lambda: Device.objects.get(pk=device_id).status)()


async def test_a_device_reconnecting_through_another_gateway_takes_over_within_a_second(
    meter, tmp_path, redis_url, live_layer
):
    device_id = meter[0].device.pk
    async with two_gateways(tmp_path, redis_url) as (a, b):
        old = await _on(a, meter)
        new = await _on(b, meter)
        started = time.monotonic()
        nack = nack_of(await old.frame(timeout=1.0))
        assert nack.code == p.ErrorCode.REPLACED
        assert await old.closed(timeout=1.0)
        assert time.monotonic() - started < 1.0
        assert a[0].stats["replaced_elsewhere"] == 1
        assert device_id not in a[0].connections and device_id in b[0].connections
        new.close()


async def test_the_old_gateway_never_marks_a_device_offline_that_another_one_holds(
    meter, tmp_path, redis_url, live_layer
):
    device_id = meter[0].device.pk
    async with two_gateways(tmp_path, redis_url) as (a, b):
        old = await _on(a, meter)
        new = await _on(b, meter)
        assert await old.closed(timeout=2.0)
        # Several presence rounds of both gateways (0.2 s each) after the old connection went.
        await asyncio.sleep(1.0)
        assert await _status(device_id) == Device.Status.ONLINE
        new.close()
        for _ in range(100):
            if await _status(device_id) == Device.Status.OFFLINE:
                break
            await asyncio.sleep(0.05)
        assert await _status(device_id) == Device.Status.OFFLINE


async def test_a_device_back_on_its_first_gateway_is_not_cut_off_by_the_second(meter, tmp_path, redis_url, live_layer):
    device_id = meter[0].device.pk
    async with two_gateways(tmp_path, redis_url) as (a, b):
        first = await _on(a, meter)
        second = await _on(b, meter)
        assert await first.closed(timeout=2.0)
        third = await _on(a, meter)
        assert await second.closed(timeout=2.0)
        await asyncio.sleep(0.5)  # any stale command would have arrived by now
        assert device_id in a[0].connections
        third.send(p.FrameType.PING, p.Ping(7).encode())
        assert (await third.frame(timeout=2.0)).type == p.FrameType.PONG
        assert await _status(device_id) == Device.Status.ONLINE


async def test_a_revoked_device_is_dropped_and_refused_on_every_gateway(meter, tmp_path, redis_url, live_layer):
    issued, spec = meter
    async with two_gateways(tmp_path, redis_url) as (a, b):
        client = await _on(a, meter)
        await sync_to_async(device_key_revoke)(device=await sync_to_async(Device.objects.get)(pk=issued.device.pk))
        assert nack_of(await client.frame(timeout=5)).code == p.ErrorCode.KEY_REVOKED
        assert await client.closed()
        for gateway, port, ctx in (a, b):  # the device comes back through either gateway: refused
            again = await RawClient.connect(port, ctx)
            with pytest.raises(AssertionError) as refused:
                await again.handshake(spec.serial, spec.private_key)
            assert refused.value.args[0].code == p.ErrorCode.KEY_REVOKED
            assert await again.closed()
            assert issued.device.pk not in gateway.connections
