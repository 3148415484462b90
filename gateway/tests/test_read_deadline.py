"""The read deadlines of an authenticated connection (one lazily re-armed timer per connection, server.ReadDeadline)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from gateway import protocol as p
from gateway.tests.helpers import FAST, RawClient, Recorder, batch_payload, nack_of, running_gateway

pytestmark = pytest.mark.django_db(transaction=True)

IDLE_S = 1.0


async def test_a_device_that_keeps_talking_outlives_many_idle_timeouts_and_is_dropped_once_silent(meter, tmp_path):
    config = dataclasses.replace(FAST, idle_timeout_s=IDLE_S)
    async with running_gateway(tmp_path, enqueue=Recorder(), config=config) as (gateway, port, ctx):
        client = await RawClient.connect(port, ctx)
        await client.handshake(meter[1].serial, meter[1].private_key)
        loop = asyncio.get_running_loop()
        started = loop.time()
        pongs = 0
        # Three idle timeouts of traffic: the timer armed at the first read fires while the device is
        # still talking and must move on to the newer deadline, not drop it.
        while loop.time() - started < 3 * IDLE_S:
            last_sent = loop.time()  # the gateway reads this ping after it: its idle deadline is later
            client.send(p.FrameType.PING, p.Ping(pongs).encode())
            frame = await client.frame()
            assert frame.type == p.FrameType.PONG, nack_of(frame)
            pongs += 1
            await asyncio.sleep(IDLE_S / 10)
        nack = nack_of(await client.frame(timeout=IDLE_S + 10))
        assert nack.code == p.ErrorCode.TIMEOUT
        # Dropped for being silent, not early: an idle timeout after the last frame it read (less the
        # timer's clock resolution), measured from before that frame was sent.
        assert loop.time() - last_sent >= IDLE_S - 0.01
        assert await client.closed()
        assert gateway.stats.get("timeouts") == 1


async def test_a_frame_split_across_reads_gets_the_frame_timeout_not_the_idle_one(meter, tmp_path):
    config = dataclasses.replace(FAST, idle_timeout_s=30.0, frame_timeout_s=0.5)
    async with running_gateway(tmp_path, enqueue=Recorder(), config=config) as (gateway, port, ctx):
        client = await RawClient.connect(port, ctx)
        await client.handshake(meter[1].serial, meter[1].private_key)
        frame = p.encode_frame(p.FrameType.READINGS, 3, batch_payload(12))
        client.send_raw(frame[:10])  # then nothing: the rest of the frame never comes
        loop = asyncio.get_running_loop()
        sent = loop.time()
        nack = nack_of(await client.frame(timeout=10))
        assert nack.code == p.ErrorCode.TIMEOUT
        assert loop.time() - sent < 10  # the 0.5-s frame timeout, long before the 30-s idle one
        assert await client.closed()
