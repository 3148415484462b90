"""Backpressure when the gateway is short of CPU (gateway/overload.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from gateway import protocol as p
from gateway.overload import Overload
from gateway.tests.helpers import FAST, RawClient, Recorder, running_gateway

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_enters_overload_on_sustained_lag_only_and_leaves_it_with_hysteresis():
    pushed: list[dict[str, str]] = []
    overload = Overload(push=lambda entries: pushed.append(entries) or 3, high_ms=100, low_ms=20)
    overload.observe(400)  # one long pause (a collector pass) is not an overload
    assert not overload.overloaded
    for _ in range(10):
        overload.observe(400)
    assert overload.overloaded and pushed == [{"batch": "60"}]
    for _ in range(5):
        overload.observe(50)  # between the thresholds: still overloaded, nobody told again
    assert overload.overloaded and len(pushed) == 1
    for _ in range(20):
        overload.observe(0)
    assert not overload.overloaded and pushed == [{"batch": "60"}, {"batch": "0"}]
    assert overload.episodes == 1


def _hog(until: float) -> None:
    """Take the gateway's event loop in 200-ms slices, as a process competing for the core does."""
    time.sleep(0.2)  # noqa: ASYNC251 - the point is to block the loop
    if time.monotonic() < until:
        asyncio.get_running_loop().call_soon(_hog, until)


async def test_an_overloaded_gateway_tells_its_devices_to_batch_more_and_back(meter, tmp_path):
    _, spec = meter
    config = dataclasses.replace(FAST, overload_lag_ms=100, idle_timeout_s=30, frame_timeout_s=30)
    async with running_gateway(tmp_path, enqueue=Recorder(), config=config) as (gateway, port, ctx):
        client = await RawClient.connect(port, ctx)
        await client.handshake(spec.serial, spec.private_key)
        asyncio.get_running_loop().call_soon(_hog, time.monotonic() + 2.0)
        frame = await client.frame(timeout=10)
        assert frame.type == p.FrameType.CONFIG
        assert p.Config.decode(frame.payload).entries == {"batch": "60"}
        assert gateway.overload.overloaded
        frame = await client.frame(timeout=10)  # the hog is gone: back to the device's own batch
        assert p.Config.decode(frame.payload).entries == {"batch": "0"}
        assert not gateway.overload.overloaded
        client.close()


async def test_the_simulated_device_applies_the_batch_it_is_told(meter, tmp_path):
    from gateway.tests.helpers import simulated

    _, spec = meter
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, batch=15, realtime=True)
        run = asyncio.create_task(device.run(duration_s=10))
        await asyncio.wait_for(device.connected.wait(), 5)
        for _ in range(100):
            if gateway.push_config(next(iter(gateway.connections)), {"batch": "60"}) and device.batch == 60:
                break
            await asyncio.sleep(0.05)
        assert device.batch == 60
        gateway.push_config(next(iter(gateway.connections)), {"batch": "0"})
        for _ in range(100):
            if device.batch == 15:
                break
            await asyncio.sleep(0.05)
        assert device.batch == 15
        device.stop()
        await run
