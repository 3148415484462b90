"""Rollouts end to end: the real TLS gateway, simulated devices, and the rollout state machine ticking.

The tick runs the same service the beat task runs. Tests wait for evidence in the database (a state,
a version reported in HELLO), never for a fixed time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import os
import warnings
from collections.abc import Callable
from dataclasses import replace

import pytest
from asgiref.sync import sync_to_async
from django.db.models import Count
from django.utils import timezone

from accounts.access import Access
from accounts.models import Role
from accounts.tests.factories import TenantFactory
from devices.models import Device
from devices.services import device_provision
from devices.tests.factories import TWO_CHANNELS, DeviceTypeFactory, FacilityFactory
from firmware.models import FirmwareTransfer, Rollout, RolloutDevice
from firmware.planning import RolloutSpec, rollout_plan
from firmware.services import firmware_image_create
from firmware.services.rollouts import rollout_advance, rollout_create, rollout_resume
from firmware.signing import signing_public_key
from gateway.server import Gateway
from gateway.tests.helpers import FAST, Recorder, simulated, spec_for, tls_contexts
from gateway.tls import client_context
from portal.tests.servers import gateway as gateway_process
from portal.tests.servers import server_env

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.e2e,
    pytest.mark.usefixtures("close_thread_connections"),
]

# Devices stream in real time (a batch per 30 s), so the fleet idles while firmware moves.
CONFIG = replace(FAST, idle_timeout_s=120.0, firmware_poll_s=0.1, handshake_timeout_s=10.0)


@pytest.fixture(autouse=True)
def _signing_key(settings):
    settings.FIRMWARE_SIGNING_KEY = "42" * 32


class World:
    def __init__(self, n: int, *, image_size: int = 4096, timezones: tuple[str, ...] = ("Europe/Berlin",)) -> None:
        self.tenant = TenantFactory()
        self.access = Access(tenant_id=self.tenant.pk, role=Role.ADMIN, facility_ids=None, user_id=None)
        self.device_type = DeviceTypeFactory(channels=[dict(c) for c in TWO_CHANNELS], firmware_line="eb-meter")
        facilities = [FacilityFactory(tenant=self.tenant, timezone=zone) for zone in timezones]
        self.old = firmware_image_create(firmware_line="eb-meter", version="1.0.0", image=os.urandom(image_size))
        self.new = firmware_image_create(firmware_line="eb-meter", version="1.1.0", image=os.urandom(image_size))
        self.issued = [
            device_provision(
                tenant=self.tenant,
                serial=f"SN-RO-{i:04d}",
                device_type=self.device_type,
                facility=facilities[i % len(facilities)],
                firmware_version="1.0.0",
            )
            for i in range(n)
        ]
        self.public_key = signing_public_key()

    def specs(self):
        return [spec_for(issued) for issued in self.issued]

    def rollout_spec(self, **kwargs) -> RolloutSpec:
        kwargs.setdefault("target_kind", Rollout.TargetKind.DEVICE_TYPE)
        return RolloutSpec(name="fleet update", image=self.new, device_type=self.device_type, **kwargs)


def meter(world: World, spec, port: int, client_ctx, **kwargs):
    """A simulated device streaming in real time that trusts the platform's firmware-signing key."""
    return simulated(
        spec, port, client_ctx, max_batches=None, realtime=True, firmware_public_key=world.public_key, **kwargs
    )


async def start_gateway(folder, *, port: int = 0, server_ctx=None) -> tuple[Gateway, int]:
    if server_ctx is None:
        server_ctx, _ = tls_contexts(folder)
    gateway = Gateway(ssl_context=server_ctx, config=CONFIG, enqueue=Recorder())
    _, bound = await gateway.start(host="127.0.0.1", port=port)
    return gateway, bound


async def wait_for(check: Callable[[], bool], *, within_s: float, what: str, tick: Callable[[], None] | None = None):
    """Poll the database (and advance the rollout, as beat would) until `check` holds."""
    try:
        async with asyncio.timeout(within_s):
            while True:
                if tick is not None:
                    await sync_to_async(tick)()
                if await sync_to_async(check)():
                    return
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"no {what} within {within_s} s: {await sync_to_async(progress)()}")


def progress() -> str:
    """Where the rollouts stand, for a failure message."""
    devices = RolloutDevice.objects.values_list("status", "transfer__state").annotate(n=Count("id")).order_by()
    return f"rollouts {list(Rollout.objects.values_list('state', 'pause_reason'))}, devices {sorted(devices)}"


def online_count(world: World) -> int:
    return Device.objects.filter(tenant=world.tenant, status=Device.Status.ONLINE).count()


def rollout_state(rollout_id: int) -> str:
    return Rollout.objects.get(pk=rollout_id).state


def ticker(rollout_id: int, now: Callable[[], dt.datetime] = timezone.now) -> Callable[[], None]:
    return lambda: rollout_advance(rollout_id=rollout_id, now=now())


async def run_fleet(devices):
    return [asyncio.create_task(device.run()) for device in devices]


def _stacks(tasks) -> str:
    out = io.StringIO()
    for task in tasks:
        task.print_stack(limit=12, file=out)
    return out.getvalue()


async def stop_fleet(devices, tasks, *, within_s: float = 60.0):
    """Stop the simulated devices; one that does not stop is a harness fault, reported with its stack."""
    for device in devices:
        device.stop()
    _, stuck = await asyncio.wait(tasks, timeout=within_s)
    if stuck:
        warnings.warn(
            f"{len(stuck)} simulated devices did not stop within {within_s} s:\n{_stacks(stuck)}", stacklevel=2
        )
        for task in stuck:
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def shutdown(gateway, *, within_s: float = 60.0) -> None:
    """The gateway's shutdown, bounded: one that hangs fails the test with every task's stack."""
    try:
        await asyncio.wait_for(gateway.shutdown(), within_s)
    except TimeoutError:
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        pytest.fail(f"the gateway did not shut down within {within_s} s; tasks:\n{_stacks(others)}")


async def test_a_200_device_rollout_pauses_at_the_error_threshold_and_completes_after_the_fix(tmp_path):
    world = await sync_to_async(World)(200)
    gateway, port = await start_gateway(tmp_path)
    _, client_ctx = tls_contexts(tmp_path)
    # Every tenth device fails to install: 10 % forced failures.
    devices = [
        meter(world, spec, port, client_ctx, failure_share=1.0 if i % 10 == 0 else 0.0)
        for i, spec in enumerate(await sync_to_async(world.specs)())
    ]
    failing = {d.spec.serial for i, d in enumerate(devices) if i % 10 == 0}
    tasks = await run_fleet(devices)
    try:
        await wait_for(lambda: online_count(world) == 200, within_s=60, what="fleet online")
        rollout = await sync_to_async(rollout_create)(
            access=world.access,
            spec=world.rollout_spec(
                wave_kind="equal",
                wave_values=[3],
                # 95 %: the first wave (67 devices, 7 of them failing) cannot pass before its retries.
                success_threshold_percent=95,
                error_threshold_count=5,
                max_attempts=3,
                retry_backoff_s=3600,  # no retry before the pause: resume retries at once
                device_timeout_s=120,
            ),
        )
        tick = ticker(rollout.pk)
        await wait_for(lambda: rollout_state(rollout.pk) == Rollout.State.PAUSED, within_s=120, what="pause", tick=tick)
        paused = await sync_to_async(Rollout.objects.get)(pk=rollout.pk)
        assert "error threshold" in paused.pause_reason and paused.errors_since_resume >= 5
        waves = await sync_to_async(lambda: list(paused.waves.order_by("index").values_list("state", flat=True)))()
        assert waves == ["running", "pending", "pending"]
        # Paused, the transfers in progress finish and are recorded; wait until all have.
        await wait_for(
            lambda: not paused.devices.filter(status=RolloutDevice.Status.IN_PROGRESS).exists(),
            within_s=60,
            what="the paused wave to settle",
            tick=tick,
        )
        first_wave = await sync_to_async(
            lambda: set(paused.devices.filter(wave__index=0).values_list("device__serial", flat=True))
        )()
        waiting = await sync_to_async(
            lambda: set(
                paused.devices.filter(status=RolloutDevice.Status.RETRY_WAIT).values_list("device__serial", flat=True)
            )
        )()
        assert waiting == failing & first_wave and len(waiting) == 7
        # The cause is fixed (a good batch of flash, a fixed bootloader): the retries now succeed.
        for device in devices:
            device.failure_share = 0.0
        await sync_to_async(rollout_resume)(access=world.access, rollout=paused)
        await wait_for(
            lambda: rollout_state(rollout.pk) == Rollout.State.COMPLETED, within_s=180, what="completion", tick=tick
        )
    finally:
        await stop_fleet(devices, tasks)
        await shutdown(gateway)
    done = await sync_to_async(Rollout.objects.get)(pk=rollout.pk)
    entries = await sync_to_async(lambda: list(done.devices.select_related("device", "wave")))()
    assert len(entries) == 200 and {e.status for e in entries} == {RolloutDevice.Status.SUCCEEDED}
    assert {e.device.firmware_version for e in entries} == {"1.1.0"}
    retried = {e.device.serial for e in entries if e.attempts > 1}
    # Exactly the failing devices of the first wave needed a second attempt; the later waves ran after the fix.
    assert retried == waiting
    assert {e.attempts for e in entries if e.device.serial in retried} == {2}
    assert all(d.firmware_version == "1.1.0" for d in devices)
    assert all(d.reboots >= 1 for d in devices)


async def test_transfers_start_only_inside_each_facilitys_maintenance_window(tmp_path):
    world = await sync_to_async(World)(4, timezones=("Europe/Berlin", "America/New_York"))
    gateway, port = await start_gateway(tmp_path)
    _, client_ctx = tls_contexts(tmp_path)
    specs = await sync_to_async(world.specs)()
    devices = [meter(world, spec, port, client_ctx) for spec in specs]
    tasks = await run_fleet(devices)
    clock = {"now": dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)}  # Berlin 13:00, New York 07:00
    try:
        await wait_for(lambda: online_count(world) == 4, within_s=30, what="fleet online")
        rollout = await sync_to_async(rollout_create)(
            access=world.access,
            spec=world.rollout_spec(window_start=dt.time(2), window_end=dt.time(4)),
            now=clock["now"],
        )
        tick = ticker(rollout.pk, now=lambda: clock["now"])
        await sync_to_async(tick)()
        assert await sync_to_async(FirmwareTransfer.objects.count)() == 0  # outside both windows
        clock["now"] = dt.datetime(2026, 12, 3, 1, 30, tzinfo=dt.UTC)  # Berlin 02:30, New York 20:30
        await sync_to_async(tick)()
        berlin = {s.serial for i, s in enumerate(specs) if i % 2 == 0}

        def berlin_updated() -> bool:
            versions = dict(Device.objects.filter(tenant=world.tenant).values_list("serial", "firmware_version"))
            return all(versions[s] == "1.1.0" for s in berlin)

        await wait_for(berlin_updated, within_s=30, what="Berlin updated", tick=tick)
        started = await sync_to_async(lambda: set(FirmwareTransfer.objects.values_list("device__serial", flat=True)))()
        assert started == berlin  # New York's devices still wait for their night
        clock["now"] = dt.datetime(2026, 12, 3, 7, 30, tzinfo=dt.UTC)  # New York 02:30
        await wait_for(
            lambda: rollout_state(rollout.pk) == Rollout.State.COMPLETED, within_s=30, what="completion", tick=tick
        )
    finally:
        await stop_fleet(devices, tasks)
        await shutdown(gateway)
    assert all(d.firmware_version == "1.1.0" for d in devices)


def device_offline(serial: str) -> bool:
    return Device.objects.filter(serial=serial, status=Device.Status.OFFLINE).exists()


def entries(rollout_id: int) -> dict[str, tuple[str, str]]:
    rows = RolloutDevice.objects.filter(rollout_id=rollout_id).values_list("device__serial", "status", "reason")
    return {serial: (status, reason) for serial, status, reason in rows}


async def test_a_device_offline_in_its_window_waits_for_the_next_and_one_that_never_answers_times_out(tmp_path):
    world = await sync_to_async(World)(4)  # Berlin, window 02:00-04:00 local
    gateway, port = await start_gateway(tmp_path)
    _, client_ctx = tls_contexts(tmp_path)
    specs = await sync_to_async(world.specs)()
    devices = [meter(world, spec, port, client_ctx, seed=i) for i, spec in enumerate(specs[:3])]
    punctual, away, mute = devices
    mute.firmware_silent = True  # takes the offer and never answers it, as a hung bootloader does
    never_on = specs[3].serial  # switched off throughout: the plan leaves it out as offline
    tasks = await run_fleet(devices)
    clock = {"now": dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)}  # Berlin 13:00
    spec = world.rollout_spec(
        window_start=dt.time(2),
        window_end=dt.time(4),
        device_timeout_s=600,
        max_attempts=1,
        success_threshold_percent=60,
    )
    try:
        await wait_for(lambda: online_count(world) == 3, within_s=30, what="three devices online")
        plan = await sync_to_async(rollout_plan)(tenant_id=world.tenant.pk, spec=spec)
        assert {e.serial: e.reason for e in plan.excluded} == {never_on: "offline"}
        rollout = await sync_to_async(rollout_create)(access=world.access, spec=spec, now=clock["now"])
        tick = ticker(rollout.pk, now=lambda: clock["now"])
        away.go_offline()  # out of coverage for the whole night
        await wait_for(lambda: device_offline(away.spec.serial), within_s=10, what="the device seen offline")
        clock["now"] = dt.datetime(2026, 12, 3, 1, 30, tzinfo=dt.UTC)  # Berlin 02:30
        await wait_for(
            lambda: entries(rollout.pk)[punctual.spec.serial][0] == "succeeded", within_s=30, what="update", tick=tick
        )
        assert (await sync_to_async(entries)(rollout.pk))[away.spec.serial][0] == "pending"  # not started while offline
        assert mute.firmware_results == []  # it was offered and said nothing
        clock["now"] = dt.datetime(2026, 12, 3, 4, 0, tzinfo=dt.UTC)  # Berlin 05:00, the window closed
        away.come_online()
        await wait_for(lambda: not device_offline(away.spec.serial), within_s=30, what="the device back")
        await wait_for(
            lambda: entries(rollout.pk)[mute.spec.serial][0] == "failed", within_s=30, what="time-out", tick=tick
        )
        assert "timed out after 600 s" in (await sync_to_async(entries)(rollout.pk))[mute.spec.serial][1]
        assert (await sync_to_async(entries)(rollout.pk))[away.spec.serial][
            0
        ] == "pending"  # back, but outside its window
        assert not await sync_to_async(FirmwareTransfer.objects.filter(device__serial=away.spec.serial).exists)()
        clock["now"] = dt.datetime(2026, 12, 4, 1, 30, tzinfo=dt.UTC)  # the next night
        await wait_for(
            lambda: rollout_state(rollout.pk) == Rollout.State.COMPLETED, within_s=30, what="completion", tick=tick
        )
    finally:
        await stop_fleet(devices, tasks)
        await shutdown(gateway)
    assert (punctual.firmware_version, away.firmware_version, mute.firmware_version) == ("1.1.0", "1.1.0", "1.0.0")
    final = await sync_to_async(entries)(rollout.pk)
    assert {serial: status for serial, (status, _) in final.items()} == {
        punctual.spec.serial: "succeeded",
        away.spec.serial: "succeeded",
        mute.spec.serial: "failed",
    }


def transfer_states(serial: str) -> list[str]:
    return list(FirmwareTransfer.objects.filter(device__serial=serial).order_by("id").values_list("state", flat=True))


async def test_a_device_that_took_its_offer_and_went_offline_does_not_resume_after_its_window(tmp_path):
    world = await sync_to_async(World)(1, image_size=100_000)  # Berlin, window 02:00-04:00 local
    gateway, port = await start_gateway(tmp_path)
    _, client_ctx = tls_contexts(tmp_path)
    (spec,) = await sync_to_async(world.specs)()
    device = meter(world, spec, port, client_ctx)
    device.stall_download_at = 40_000  # takes the offer, downloads part of the image, then loses coverage
    tasks = await run_fleet([device])
    clock = {"now": dt.datetime(2026, 12, 3, 1, 30, tzinfo=dt.UTC)}  # Berlin 02:30, inside the window
    try:
        await wait_for(lambda: online_count(world) == 1, within_s=30, what="the device online")
        rollout = await sync_to_async(rollout_create)(
            access=world.access,
            spec=world.rollout_spec(window_start=dt.time(2), window_end=dt.time(4), device_timeout_s=3 * 86_400),
            now=clock["now"],
        )
        tick = ticker(rollout.pk, now=lambda: clock["now"])
        await sync_to_async(tick)()
        async with asyncio.timeout(30):
            await device.download_stalled.wait()
        device.go_offline()
        await wait_for(lambda: device_offline(spec.serial), within_s=15, what="the device seen offline")
        clock["now"] = dt.datetime(2026, 12, 3, 4, 0, tzinfo=dt.UTC)  # Berlin 05:00: the window closed
        await wait_for(
            lambda: entries(rollout.pk)[spec.serial][0] == "pending", within_s=30, what="back to waiting", tick=tick
        )
        assert await sync_to_async(transfer_states)(spec.serial) == ["cancelled"]
        requests_before = list(device.firmware_requests)
        device.come_online()
        await wait_for(lambda: not device_offline(spec.serial), within_s=30, what="the device back")
        device_id = (await sync_to_async(Device.objects.get)(serial=spec.serial)).pk
        # The gateway asks about the device now; nothing is active, so nothing is offered or resumed.
        assert await gateway.firmware_check({device_id}) == 0
        assert gateway.connections[device_id].offer is None
        assert device.firmware_requests == requests_before and device.firmware_version == "1.0.0"
        await sync_to_async(tick)()
        assert (await sync_to_async(entries)(rollout.pk))[spec.serial][0] == "pending"  # outside its window
        clock["now"] = dt.datetime(2026, 12, 4, 1, 30, tzinfo=dt.UTC)  # the next night
        await wait_for(
            lambda: rollout_state(rollout.pk) == Rollout.State.COMPLETED, within_s=30, what="completion", tick=tick
        )
    finally:
        await stop_fleet([device], tasks)
        await shutdown(gateway)
    assert device.firmware_version == "1.1.0"
    assert device.firmware_requests.count(0) == 2  # the next window's transfer started from the beginning
    assert await sync_to_async(transfer_states)(spec.serial) == ["cancelled", "installed"]


async def test_a_gateway_restart_mid_rollout_resumes_the_transfers_where_they_stopped(tmp_path):
    world = await sync_to_async(World)(5, image_size=100_000)
    server_ctx, client_ctx = tls_contexts(tmp_path)
    gateway, port = await start_gateway(tmp_path, server_ctx=server_ctx)
    devices = [meter(world, spec, port, client_ctx) for spec in await sync_to_async(world.specs)()]
    for device in devices:
        device.stall_download_at = 40_000
    tasks = await run_fleet(devices)
    try:
        await wait_for(lambda: online_count(world) == 5, within_s=30, what="fleet online")
        rollout = await sync_to_async(rollout_create)(access=world.access, spec=world.rollout_spec())
        tick = ticker(rollout.pk)
        await sync_to_async(tick)()
        async with asyncio.timeout(30):
            await asyncio.gather(*(d.download_stalled.wait() for d in devices))
        await shutdown(gateway)
        gateway, _ = await start_gateway(tmp_path, port=port, server_ctx=server_ctx)
        await wait_for(
            lambda: rollout_state(rollout.pk) == Rollout.State.COMPLETED, within_s=60, what="completion", tick=tick
        )
    finally:
        await stop_fleet(devices, tasks)
        await shutdown(gateway)
    for device in devices:
        assert device.firmware_version == "1.1.0"
        assert device.firmware_requests.count(0) == 1  # never started over
        resumed = next(o for o in device.firmware_requests if o >= 40_000)
        chunk = device.firmware_requests[1] - device.firmware_requests[0]
        assert resumed == device.firmware_requests[device.firmware_requests.index(resumed) - 1] + chunk
    transfers = await sync_to_async(lambda: list(FirmwareTransfer.objects.values_list("state", "attempts")))()
    # One transfer per device, offered once by each gateway process.
    assert transfers == [(FirmwareTransfer.State.INSTALLED, 2)] * 5


@pytest.mark.services
async def test_a_rollout_reaches_devices_on_two_gateway_processes(tmp_path, postgresql_url):
    """Two `manage.py rungateway` processes share nothing but the database: each offers the transfers of
    the devices whose connections it holds."""
    world = await sync_to_async(World)(6)
    env = {**server_env(), "ENERGYBOX_FIRMWARE_SIGNING_KEY": "42" * 32}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    specs = await sync_to_async(world.specs)()
    with (
        gateway_process({**env, "ENERGYBOX_DATA_DIR": str(tmp_path / "a")}) as (port_a, ca_a),
        gateway_process({**env, "ENERGYBOX_DATA_DIR": str(tmp_path / "b")}) as (port_b, ca_b),
    ):
        devices = [
            meter(world, spec, port_a if i % 2 else port_b, client_context(cafile=ca_a if i % 2 else ca_b))
            for i, spec in enumerate(specs)
        ]
        tasks = await run_fleet(devices)
        try:
            await wait_for(lambda: online_count(world) == 6, within_s=30, what="fleet online")
            rollout = await sync_to_async(rollout_create)(access=world.access, spec=world.rollout_spec())
            await wait_for(
                lambda: rollout_state(rollout.pk) == Rollout.State.COMPLETED,
                within_s=60,
                what="completion",
                tick=ticker(rollout.pk),
            )
        finally:
            await stop_fleet(devices, tasks)
    assert all(d.firmware_version == "1.1.0" for d in devices)
    assert {d.port for d in devices} == {port_a, port_b} and all(d.reboots == 1 for d in devices)


async def test_a_delta_update_leaves_the_device_on_the_exact_new_image_and_a_failed_delta_falls_back(tmp_path):
    world = await sync_to_async(World)(4, image_size=64 * 1024)
    old = bytes(world.old.image)
    # The next build: mostly the same bytes, as real firmware releases are.
    new = bytearray(old)
    for offset in range(0, len(new), 4096):
        new[offset : offset + 16] = os.urandom(16)
    world.new = await sync_to_async(firmware_image_create)(firmware_line="eb-meter", version="1.2.0", image=bytes(new))
    gateway, port = await start_gateway(tmp_path)
    _, client_ctx = tls_contexts(tmp_path)
    specs = await sync_to_async(world.specs)()
    # Devices 0 and 1 keep their running image; 2 and 3 lost it, so the patch cannot be applied there.
    devices = [
        meter(world, spec, port, client_ctx, firmware_image=old if i < 2 else None) for i, spec in enumerate(specs)
    ]
    tasks = await run_fleet(devices)
    try:
        await wait_for(lambda: online_count(world) == 4, within_s=30, what="fleet online")
        rollout = await sync_to_async(rollout_create)(access=world.access, spec=world.rollout_spec(retry_backoff_s=1))
        await wait_for(
            lambda: rollout_state(rollout.pk) == Rollout.State.COMPLETED,
            within_s=60,
            what="completion",
            tick=ticker(rollout.pk),
        )
    finally:
        await stop_fleet(devices, tasks)
        await shutdown(gateway)
    assert all(d.firmware_image == bytes(new) and d.firmware_version == "1.2.0" for d in devices)
    transfers = await sync_to_async(
        lambda: list(FirmwareTransfer.objects.select_related("device", "delta").order_by("device__serial", "id"))
    )()
    by_device: dict[str, list[FirmwareTransfer]] = {}
    for transfer in transfers:
        by_device.setdefault(transfer.device.serial, []).append(transfer)
    delta_size = transfers[0].delta.size
    assert delta_size < len(new) // 4
    for i, spec in enumerate(specs):
        attempts = by_device[spec.serial]
        if i < 2:
            assert [(t.state, t.offset, t.delta_id is not None) for t in attempts] == [("installed", delta_size, True)]
            assert devices[i].firmware_bytes_received == delta_size
        else:
            assert [(t.state, t.delta_id is not None) for t in attempts] == [("failed", True), ("installed", False)]
            assert attempts[0].message == "delta could not be applied" and attempts[1].offset == len(new)
