"""Backpressure when the gateway is short of CPU (gateway/overload.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
from collections.abc import Callable

import pytest

from gateway import protocol as p
from gateway.overload import HandshakeAdmission, Overload
from gateway.tests.helpers import FAST, RawClient, Recorder, batch_payload, running_gateway


async def evidence(condition: Callable[[], object], within_s: float = 10.0) -> None:
    """Wait until `condition()` holds; fail the test if it never does (evidence, not a clock)."""
    for _ in range(int(within_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the gateway never showed what the test waits for, within {within_s:g} s")


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


def test_under_overload_only_the_devices_nobody_watches_are_told_to_batch_harder():
    pushed: dict[int, list[dict[str, str]]] = {}
    connected = [1, 2, 3, 4]
    watched = {2}

    def push_one(device_id: int, entries: dict[str, str]) -> bool:
        pushed.setdefault(device_id, []).append(entries)
        return True

    overload = Overload(
        push=lambda entries: sum(push_one(d, entries) for d in connected),
        high_ms=100,
        low_ms=20,
        sweep_s=0,
        watched=watched.__contains__,
        push_one=push_one,
        devices=lambda: connected,
    )
    for _ in range(10):
        overload.observe(400)
    assert overload.overloaded
    assert pushed == {1: [{"batch": "60"}], 3: [{"batch": "60"}], 4: [{"batch": "60"}]}
    assert 2 not in pushed  # the watched device stays live

    watched.discard(2)  # its viewer left (and the hold-over ran out) while the overload lasts
    watched.add(3)  # someone opens device 3: it keeps what it was told, live mode ignores `batch`
    overload.observe(400)
    assert pushed[2] == [{"batch": "60"}]
    assert pushed[1] == [{"batch": "60"}], "a device told once is not told again every sweep"
    connected.append(5)  # connected during the overload: the gateway told it after WELCOME
    overload.observe(400)
    assert 5 not in pushed and 5 in overload.told()

    for _ in range(30):
        overload.observe(0)
    assert not overload.overloaded
    assert all(entries[-1] == {"batch": "0"} for entries in pushed.values())
    assert set(pushed) == {1, 2, 3, 4, 5}


@pytest.fixture
def watched_and_idle():
    from gateway.tests.conftest import provision
    from gateway.tests.helpers import spec_for

    watched, idle = provision(serial="SN-WATCHED-1"), provision(serial="SN-IDLE-1")
    return (watched.device.pk, spec_for(watched)), spec_for(idle)


async def test_an_overloaded_gateway_keeps_a_watched_device_live(watched_and_idle, tmp_path):
    """The real gateway: one device with a live viewer, one without; the loop is hogged."""
    (watched_id, watched_spec), idle_spec = watched_and_idle
    config = dataclasses.replace(FAST, overload_lag_ms=100, idle_timeout_s=30, frame_timeout_s=30)
    async with running_gateway(tmp_path, enqueue=Recorder(), config=config) as (gateway, port, ctx):
        watched = await RawClient.connect(port, ctx)
        await watched.handshake(watched_spec.serial, watched_spec.private_key)
        idle = await RawClient.connect(port, ctx)
        await idle.handshake(idle_spec.serial, idle_spec.private_key)
        gateway.livemode.on_command(watched_id, {"viewer": "dashboard-1", "lease_s": 60})
        frame = await watched.frame(timeout=10)
        assert p.Config.decode(frame.payload).entries == {p.CONFIG_MODE: p.MODE_LIVE}

        asyncio.get_running_loop().call_soon(_hog, time.monotonic() + 2.0)
        frame = await idle.frame(timeout=10)
        assert p.Config.decode(frame.payload).entries == {"batch": "60"}
        assert gateway.overload.overloaded
        # The overload is seen and over; the watched device was told nothing but that it is back to normal.
        frame = await idle.frame(timeout=10)
        assert p.Config.decode(frame.payload).entries == {"batch": "0"}
        frame = await watched.frame(timeout=10)
        assert p.Config.decode(frame.payload).entries == {"batch": "0"}
        assert gateway.overload.episodes == 1
        watched.close()
        idle.close()


async def test_handshakes_beyond_the_bound_wait_their_turn_while_established_devices_are_served(meter, tmp_path):
    _, spec = meter
    config = dataclasses.replace(FAST, handshake_timeout_s=60.0)
    async with running_gateway(tmp_path, enqueue=Recorder(), config=config) as (gateway, port, ctx):
        gateway.admission = HandshakeAdmission(limit=1, wait_s=60.0)
        established = await RawClient.connect(port, ctx)
        await established.handshake(spec.serial, spec.private_key)
        # TCP only, no ClientHello yet: admitted, its TLS handshake holds the only slot.
        _, holder = await asyncio.open_connection("127.0.0.1", port)
        await evidence(lambda: gateway.admission.in_progress)
        waiting = asyncio.create_task(RawClient.connect(port, ctx))
        await evidence(lambda: gateway.admission.waiting)
        assert gateway.admission.in_progress == 1 and gateway.admission.waiting == 1
        seq = established.send(p.FrameType.READINGS, batch_payload(12))
        frame = await established.frame()
        assert frame.type == p.FrameType.ACK and p.Ack.decode(frame.payload).ref_seq == seq
        assert not waiting.done()  # its TLS handshake has not even started
        holder.close()  # the handshake in the slot fails: the waiting device's starts
        late = await asyncio.wait_for(waiting, 30)
        late.send(p.FrameType.HELLO, p.Hello(spec.serial).encode())
        assert (await late.frame()).type == p.FrameType.CHALLENGE
        for client in (established, late):
            client.close()


async def test_a_connection_that_waits_too_long_for_its_handshake_is_closed_before_any_tls(meter, tmp_path):
    _, spec = meter
    config = dataclasses.replace(FAST, handshake_timeout_s=60.0)
    async with running_gateway(tmp_path, enqueue=Recorder(), config=config) as (gateway, port, ctx):
        gateway.admission = HandshakeAdmission(limit=1, wait_s=0.2)
        _, holder = await asyncio.open_connection("127.0.0.1", port)  # holds the slot, never says hello
        await evidence(lambda: gateway.admission.in_progress)
        with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
            await RawClient.connect(port, ctx)
        assert gateway.stats["handshakes_shed"] == 1
        holder.close()
        await evidence(lambda: not gateway.admission.in_progress)
        again = await RawClient.connect(port, ctx)  # the slot is free again
        await again.handshake(spec.serial, spec.private_key)
        again.close()
