"""A signed firmware image over a real TLS socket to the simulator: resume, verification, refusal."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading

import pytest
from asgiref.sync import sync_to_async

from devices.models import Device
from firmware.models import FirmwareImage, FirmwareTransfer
from firmware.services import firmware_image_create, firmware_transfer_start
from firmware.signing import signing_public_key
from gateway.tests.helpers import Recorder, running_gateway, simulated

pytestmark = pytest.mark.django_db(transaction=True)
IMAGE = os.urandom(100_000)


@pytest.fixture(autouse=True)
def _signing_key(settings):
    settings.FIRMWARE_SIGNING_KEY = "42" * 32


def start_transfer(issued, *, version="1.1.0", image=IMAGE):
    firmware = firmware_image_create(firmware_line="eb-meter", version=version, image=image)
    return firmware_transfer_start(device=issued.device, image=firmware)


async def run_until_finished(device, transfer_id, *, within_s=30, version=None):
    """Run the device until the transfer has ended (and, given `version`, the device is back reporting it)."""
    task = asyncio.create_task(device.run(duration_s=within_s))
    try:
        async with asyncio.timeout(within_s):
            while True:
                transfer = await sync_to_async(FirmwareTransfer.objects.get)(pk=transfer_id)
                if transfer.state not in FirmwareTransfer.ACTIVE_STATES:
                    reported = await sync_to_async(Device.objects.get)(pk=transfer.device_id)
                    if version is None or reported.firmware_version == version:
                        return transfer
                await asyncio.sleep(0.05)
    finally:
        device.stop()
        await task


async def test_a_signed_image_is_installed_and_recorded(meter, tmp_path):
    issued, spec = meter
    transfer = await sync_to_async(start_transfer)(issued)
    public_key = await sync_to_async(signing_public_key)()
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, max_batches=None, firmware_public_key=public_key)
        done = await run_until_finished(device, transfer.pk, version="1.1.0")
    assert done.state == FirmwareTransfer.State.INSTALLED and done.offset == len(IMAGE)
    assert device.firmware_version == "1.1.0"
    assert device.firmware_results == [("1.1.0", 4, "")]
    assert device.reboots == 1  # it booted the image and said HELLO again, with the new version
    assert (await sync_to_async(Device.objects.get)(pk=issued.device.pk)).firmware_version == "1.1.0"


async def test_the_transfer_resumes_after_a_dropped_connection(meter, tmp_path):
    issued, spec = meter
    transfer = await sync_to_async(start_transfer)(issued)
    public_key = await sync_to_async(signing_public_key)()
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, max_batches=None, firmware_public_key=public_key)
        device.drop_connection_at = 40_000
        done = await run_until_finished(device, transfer.pk)
    assert done.state == FirmwareTransfer.State.INSTALLED
    assert done.attempts == 2
    assert device.stats.reconnects >= 1
    # After the reconnect the device asked for the rest, not for the start again.
    resumed_at = device.firmware_requests.index(next(o for o in device.firmware_requests if o >= 40_000))
    chunk = device.firmware_requests[1] - device.firmware_requests[0]
    assert device.firmware_requests[resumed_at] == device.firmware_requests[resumed_at - 1] + chunk
    assert device.firmware_requests.count(0) == 1
    assert device.firmware_version == "1.1.0"


async def test_the_device_refuses_an_image_with_a_wrong_signature(meter, tmp_path):
    issued, spec = meter
    transfer = await sync_to_async(start_transfer)(issued)
    await sync_to_async(FirmwareImage.objects.filter(pk=transfer.image_id).update)(signature=b"\x01" * 64)
    public_key = await sync_to_async(signing_public_key)()
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, max_batches=None, firmware_public_key=public_key)
        done = await run_until_finished(device, transfer.pk)
    assert (done.state, done.message) == (FirmwareTransfer.State.FAILED, "signature invalid")
    assert device.firmware_version == "1.0.0"


async def test_the_device_refuses_an_image_whose_hash_is_wrong(meter, tmp_path):
    issued, spec = meter
    transfer = await sync_to_async(start_transfer)(issued)
    tampered = bytes([IMAGE[0] ^ 1]) + IMAGE[1:]
    await sync_to_async(FirmwareImage.objects.filter(pk=transfer.image_id).update)(image=tampered)
    public_key = await sync_to_async(signing_public_key)()
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, max_batches=None, firmware_public_key=public_key)
        done = await run_until_finished(device, transfer.pk)
    assert (done.state, done.message) == (FirmwareTransfer.State.FAILED, "sha256 mismatch")
    assert device.firmware_version == "1.0.0"


async def test_a_device_told_to_fail_reports_the_failure(meter, tmp_path):
    issued, spec = meter
    transfer = await sync_to_async(start_transfer)(issued)
    public_key = await sync_to_async(signing_public_key)()
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, max_batches=None, firmware_public_key=public_key, failure_share=1.0)
        done = await run_until_finished(device, transfer.pk)
    assert (done.state, done.message) == (FirmwareTransfer.State.FAILED, "simulated installation failure")


async def test_a_device_already_running_the_version_rejects_the_offer(meter, tmp_path):
    issued, spec = meter
    transfer = await sync_to_async(start_transfer)(issued, version="1.0.0")
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, max_batches=None)
        done = await run_until_finished(device, transfer.pk)
    assert done.state == FirmwareTransfer.State.REJECTED and "already installed" in done.message


async def test_readings_keep_flowing_during_a_transfer(meter, tmp_path):
    issued, spec = meter
    transfer = await sync_to_async(start_transfer)(issued)
    public_key = await sync_to_async(signing_public_key)()
    recorder = Recorder()
    async with running_gateway(tmp_path, enqueue=recorder) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, max_batches=None, firmware_public_key=public_key)
        await run_until_finished(device, transfer.pk)
    assert recorder.readings > 0 and device.stats.batches_acked > 0


async def test_a_device_cannot_touch_another_tenants_transfer(meter, other_meter, tmp_path):
    from gateway import protocol as p
    from gateway.tests.helpers import RawClient, nack_of

    victim, _ = other_meter
    issued, spec = meter
    transfer = await sync_to_async(start_transfer)(victim)
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        client = await RawClient.connect(port, ctx)
        await client.handshake(spec.serial, spec.private_key)
        client.send(p.FrameType.FIRMWARE_REQUEST, p.FirmwareRequest(transfer.pk, 0, 1024).encode())
        nack = nack_of(await client.frame())
        assert (nack.code, nack.fatal) == (p.ErrorCode.FIRMWARE, False)
        client.send(p.FrameType.FIRMWARE_STATUS, p.FirmwareStatus(transfer.pk, p.FirmwareState.FAILED, 0).encode())
        assert nack_of(await client.frame()).code == p.ErrorCode.FIRMWARE
        client.close()
    untouched = await sync_to_async(FirmwareTransfer.objects.get)(pk=transfer.pk)
    assert untouched.state in (FirmwareTransfer.State.PENDING, FirmwareTransfer.State.OFFERED)
    assert untouched.device_id == victim.device.pk


async def stored_version(device_id: int) -> str:
    return (await sync_to_async(Device.objects.get)(pk=device_id)).firmware_version


async def until_stored(device_id: int, version: str, *, within_s: float = 10.0) -> None:
    async with asyncio.timeout(within_s):
        while True:
            if await stored_version(device_id) == version:
                return
            await asyncio.sleep(0.05)


async def test_a_device_back_on_a_new_version_is_welcomed_before_the_version_is_written(meter, tmp_path):
    issued, spec = meter
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        # The firmware thread is busy (as with a wave's rounds of statuses) until `held` is set.
        held = threading.Event()
        busy = asyncio.ensure_future(gateway.firmware.call(held.wait, timeout=30))
        device = simulated(dataclasses.replace(spec, firmware_version="1.1.0"), port, ctx, max_batches=None)
        task = asyncio.create_task(device.run(duration_s=30))
        try:
            async with asyncio.timeout(10):  # before: WELCOME waited for the write behind the busy thread
                await device.connected.wait()
            assert await stored_version(issued.device.pk) == "1.0.0"
        finally:
            held.set()
        await busy
        await until_stored(issued.device.pk, "1.1.0")  # the next round wrote it
        device.stop()
        await task
    assert device.stats.reconnects == 0


async def test_a_reported_version_whose_write_failed_is_written_in_a_later_round(meter, tmp_path, monkeypatch):
    from gateway import services

    issued, spec = meter
    write = services.device_firmware_versions_record
    rounds: list[dict[int, str]] = []

    def fails_once(*, versions: dict[int, str]) -> None:
        rounds.append(dict(versions))
        if len(rounds) == 1:
            raise RuntimeError("database unavailable")
        write(versions=versions)

    monkeypatch.setattr(services, "device_firmware_versions_record", fails_once)
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        device = simulated(dataclasses.replace(spec, firmware_version="1.1.0"), port, ctx, max_batches=None)
        task = asyncio.create_task(device.run(duration_s=30))
        await until_stored(issued.device.pk, "1.1.0")
        device.stop()
        await task
    assert rounds == [{issued.device.pk: "1.1.0"}] * 2
    assert device.stats.reconnects == 0  # tried again by the gateway, not by a new handshake


async def test_a_devices_readings_are_acked_while_its_chunk_request_waits(meter, tmp_path):
    issued, spec = meter
    transfer = await sync_to_async(start_transfer)(issued)
    public_key = await sync_to_async(signing_public_key)()
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        requested, release = asyncio.Event(), asyncio.Event()
        load = gateway.firmware_image

        async def held_image(image_id: int) -> bytes:  # the chunk waits, as behind a wave's chunk turns
            requested.set()
            await release.wait()
            return await load(image_id)

        gateway.firmware_image = held_image  # type: ignore[method-assign]
        device = simulated(spec, port, ctx, max_batches=None, firmware_public_key=public_key)
        task = asyncio.create_task(device.run(duration_s=30))
        try:
            async with asyncio.timeout(10):
                await requested.wait()
                acked = device.stats.batches_acked
                while True:
                    if device.stats.batches_acked >= acked + 20:  # before: none, the reads waited for the chunk
                        break
                    await asyncio.sleep(0.02)
            assert device.firmware_bytes_received == 0
        finally:
            release.set()
        async with asyncio.timeout(20):
            while True:
                done = await sync_to_async(FirmwareTransfer.objects.get)(pk=transfer.pk)
                if done.state not in FirmwareTransfer.ACTIVE_STATES:
                    break
                await asyncio.sleep(0.05)
        device.stop()
        await task
    assert done.state == FirmwareTransfer.State.INSTALLED and device.firmware_bytes_received == len(IMAGE)


async def test_chunk_requests_beyond_the_queue_are_refused_and_the_queued_ones_served(meter, tmp_path):
    from gateway import protocol as p
    from gateway.server import Connection
    from gateway.tests.helpers import RawClient, nack_of

    issued, spec = meter
    await sync_to_async(start_transfer)(issued)
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        requested, release = asyncio.Event(), asyncio.Event()
        load = gateway.firmware_image

        async def held_image(image_id: int) -> bytes:
            requested.set()
            await release.wait()
            return await load(image_id)

        gateway.firmware_image = held_image  # type: ignore[method-assign]
        client = await RawClient.connect(port, ctx)
        await client.handshake(spec.serial, spec.private_key)
        frame = await client.frame(timeout=10)
        while frame.type != p.FrameType.FIRMWARE_OFFER:
            frame = await client.frame(timeout=10)
        offer = p.FirmwareOffer.decode(frame.payload)
        sent = 10
        for k in range(sent):
            client.send(p.FrameType.FIRMWARE_REQUEST, p.FirmwareRequest(offer.transfer_id, k * 1000, 1000).encode())
        refused: list[int] = []
        async with asyncio.timeout(10):
            await requested.wait()
            # One request is being served (its image held), at most FIRMWARE_REQUESTS_QUEUED wait: the rest are refused.
            while len(refused) < sent - 1 - Connection.FIRMWARE_REQUESTS_QUEUED:
                nack = nack_of(await client.frame())
                assert (nack.code, nack.fatal) == (p.ErrorCode.FIRMWARE, False)
                assert "one range at a time" in nack.message
                refused.append(nack.ref_seq)
        release.set()
        offsets: list[int] = []
        while len(offsets) + len(refused) < sent:
            frame = await client.frame(timeout=10)
            if frame.type == p.FrameType.NACK:
                refused.append(nack_of(frame).ref_seq)  # the first request was taken before the rest came
                continue
            assert frame.type == p.FrameType.FIRMWARE_CHUNK
            chunk = p.FirmwareChunk.decode(frame.payload)
            assert bytes(chunk.data) == IMAGE[chunk.offset : chunk.offset + 1000]
            offsets.append(chunk.offset)
        assert len(refused) in (
            sent - 1 - Connection.FIRMWARE_REQUESTS_QUEUED,
            sent - Connection.FIRMWARE_REQUESTS_QUEUED,
        )
        assert offsets == sorted(offsets) and len(offsets) == sent - len(refused)  # served in order, none lost
        client.close()
