"""The gateway's chunk budget over a real TLS socket to the simulator: a rollout takes only the time readings leave."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable

import pytest
from asgiref.sync import sync_to_async

from firmware.models import FirmwareTransfer
from firmware.services import firmware_image_create, firmware_transfer_start
from firmware.signing import signing_public_key
from gateway.tests.helpers import FAST, Recorder, running_gateway, simulated

pytestmark = pytest.mark.django_db(transaction=True)
IMAGE = os.urandom(100_000)  # two chunks: 65,472 bytes and 34,528


@pytest.fixture(autouse=True)
def _signing_key(settings):
    settings.FIRMWARE_SIGNING_KEY = "42" * 32


def start_transfer(issued):
    firmware = firmware_image_create(firmware_line="eb-meter", version="1.1.0", image=IMAGE)
    return firmware_transfer_start(device=issued.device, image=firmware)


def hog(loop: asyncio.AbstractEventLoop, block_s: float, until: asyncio.Event) -> None:
    """Blocks the loop for `block_s` in every turn until `until` is set: a gateway whose loop runs late."""
    if until.is_set():
        return
    time.sleep(block_s)
    loop.call_soon(hog, loop, block_s, until)


async def until(condition: Callable[[], bool], *, every_s: float = 0.05) -> None:
    while True:
        if condition():
            return
        await asyncio.sleep(every_s)


async def until_finished(transfer_id: int, *, within_s: float = 20) -> FirmwareTransfer:
    async with asyncio.timeout(within_s):
        while True:
            transfer = await sync_to_async(FirmwareTransfer.objects.get)(pk=transfer_id)
            if transfer.state not in FirmwareTransfer.ACTIVE_STATES:
                return transfer
            await asyncio.sleep(0.05)


async def test_no_chunk_goes_out_while_the_gateways_loop_runs_late_but_readings_are_acked(meter, tmp_path):
    issued, spec = meter
    transfer = await sync_to_async(start_transfer)(issued)
    public_key = await sync_to_async(signing_public_key)()
    config = dataclasses.replace(FAST, firmware_chunk_max_lag_ms=5, handshake_timeout_s=10, frame_timeout_s=10)
    async with running_gateway(tmp_path, enqueue=Recorder(), config=config) as (gateway, port, ctx):
        loop = asyncio.get_running_loop()
        caught_up = asyncio.Event()
        loop.call_soon(hog, loop, 0.03, caught_up)  # every turn 30 ms late, from before the device connects
        device = simulated(spec, port, ctx, max_batches=None, firmware_public_key=public_key)
        task = asyncio.create_task(device.run(duration_s=60))
        try:
            async with asyncio.timeout(30):
                # Offered and accepted: the device's first chunk request waits for a turn the loop has spare.
                await until(lambda: gateway.firmware.chunk_turns.held_for_lag > 0)
                acked = device.stats.batches_acked
                await until(lambda: device.stats.batches_acked >= acked + 5)  # its readings are still acked meanwhile
            assert device.firmware_requests == [0]
            assert gateway.stats.get("firmware_chunk_bytes", 0) == 0
            assert device.firmware_bytes_received == 0
        finally:
            caught_up.set()
        done = await until_finished(transfer.pk)  # the loop caught up: the chunks go
        device.stop()
        await task
    assert done.state == FirmwareTransfer.State.INSTALLED
    assert device.firmware_bytes_received == len(IMAGE) and device.firmware_version == "1.1.0"


async def test_a_chunk_rate_cap_spreads_a_download_over_time(meter, tmp_path):
    issued, spec = meter
    transfer = await sync_to_async(start_transfer)(issued)
    public_key = await sync_to_async(signing_public_key)()
    # 40 KB/s with a second's burst: the first chunk goes at once and leaves the bucket 25 KB short, so
    # the second (34.5 KB) waits for 60 KB of tokens, 1.5 s. Uncapped, the whole transfer takes a fraction of that.
    config = dataclasses.replace(FAST, firmware_chunk_mb_s=0.04)
    async with running_gateway(tmp_path, enqueue=Recorder(), config=config) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, max_batches=None, firmware_public_key=public_key)
        task = asyncio.create_task(device.run(duration_s=60))
        async with asyncio.timeout(20):
            await until(lambda: device.firmware_bytes_received > 0, every_s=0.01)
        first_chunk_at = time.monotonic()
        done = await until_finished(transfer.pk)
        finished_at = time.monotonic()
        device.stop()
        await task
    assert done.state == FirmwareTransfer.State.INSTALLED and device.firmware_bytes_received == len(IMAGE)
    assert finished_at - first_chunk_at >= 1.4
    assert gateway.firmware.chunk_turns.held_for_rate > 0
