"""The rollout state machine, driven by an injected clock and by what devices report (no sleeps)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from accounts.errors import TenantAccessDenied
from accounts.models import Role
from accounts.tests.factories import MembershipFactory
from devices.models import Device
from devices.tests.factories import DeviceGroupFactory, DeviceTypeFactory, FacilityFactory
from firmware.errors import FirmwareError
from firmware.models import FirmwareTransfer, Rollout, RolloutDevice, RolloutWave
from firmware.planning import rollout_plan, wave_sizes
from firmware.services import firmware_transfer_record, firmware_transfer_start, firmware_version_reported
from firmware.services.rollouts import (
    rollout_advance,
    rollout_approve,
    rollout_cancel,
    rollout_create,
    rollout_pause,
    rollout_resume,
    rollout_rollback,
    rollout_tick,
    rollout_wave_start_next,
)
from firmware.tests.factories import FirmwareImageFactory
from firmware.tests.helpers import T0, Fleet

pytestmark = pytest.mark.django_db
Status = RolloutDevice.Status


@pytest.fixture(autouse=True)
def _signing_key(settings):
    settings.FIRMWARE_SIGNING_KEY = "42" * 32


def report(entry: RolloutDevice, state: str, message: str = "") -> None:
    """What the gateway records when the device sends a FIRMWARE_STATUS."""
    firmware_transfer_record(
        transfer_id=entry.transfer_id, device_id=entry.device_id, state=state, offset=0, message=message
    )


def comes_back(entry: RolloutDevice, version: str) -> None:
    """What the gateway records when the device reconnects and says HELLO."""
    firmware_version_reported(device_id=entry.device_id, version=version)


def in_progress(rollout: Rollout) -> list[RolloutDevice]:
    return list(rollout.devices.filter(status=Status.IN_PROGRESS).order_by("id"))


def statuses(rollout: Rollout) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in rollout.devices.values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


def succeed(entries: list[RolloutDevice], version: str = "1.1.0") -> None:
    for entry in entries:
        report(entry, FirmwareTransfer.State.INSTALLED)
        comes_back(entry, version)


# --- waves and targets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "values", "total", "expected"),
    [
        ("percent", [1, 10, 100], 200, [2, 18, 180]),
        ("percent", [1, 10, 50, 100], 10, [1, 1, 3, 5]),
        ("percent", [100], 7, [7]),
        ("equal", [3], 200, [67, 67, 66]),
        ("equal", [5], 3, [1, 1, 1]),
        ("count", [5, 10], 40, [5, 35]),
        ("count", [5, 10], 8, [5, 3]),
    ],
)
def test_wave_sizes_cover_every_device_once(kind, values, total, expected):
    sizes = wave_sizes(kind, values, total)
    assert sizes == expected and sum(sizes) == total


def test_the_target_is_resolved_at_start_into_waves():
    fleet = Fleet(10)
    rollout = fleet.create(wave_kind="equal", wave_values=[3])
    waves = list(rollout.waves.order_by("index").values_list("size", "state"))
    assert waves == [(4, "running"), (3, "pending"), (3, "pending")]
    assert rollout.devices.count() == 10 and rollout.state == Rollout.State.RUNNING
    assert set(rollout.devices.values_list("from_version", flat=True)) == {"1.0.0"}


def test_each_target_kind_selects_only_its_devices():
    fleet = Fleet(4)
    group = DeviceGroupFactory(tenant=fleet.tenant)
    fleet.devices[0].groups.add(group)
    other_facility = FacilityFactory(tenant=fleet.tenant, tags=["north"])
    tagged = fleet.device(facility=other_facility)
    plan = rollout_plan(tenant_id=fleet.tenant.pk, spec=fleet.spec(target_kind="groups", target_groups=[group.pk]))
    assert [d.pk for d in plan.waves[0]] == [fleet.devices[0].pk]
    plan = rollout_plan(tenant_id=fleet.tenant.pk, spec=fleet.spec(target_kind="filter", target_tag="north"))
    assert [d.pk for d in plan.waves[0]] == [tagged.pk]
    plan = rollout_plan(
        tenant_id=fleet.tenant.pk, spec=fleet.spec(target_kind="filter", target_facility=fleet.facility.pk)
    )
    assert sorted(d.pk for d in plan.waves[0]) == sorted(d.pk for d in fleet.devices)
    chosen = [fleet.devices[1].pk, fleet.devices[2].pk]
    plan = rollout_plan(tenant_id=fleet.tenant.pk, spec=fleet.spec(target_kind="devices", target_device_ids=chosen))
    assert sorted(d.pk for d in plan.waves[0]) == sorted(chosen)
    plan = rollout_plan(tenant_id=fleet.tenant.pk, spec=fleet.spec())
    assert plan.device_count == 5


def test_the_plan_says_what_it_leaves_out_and_why():
    fleet = Fleet(3)
    old = fleet.devices[0]
    Device.objects.filter(pk=old.pk).update(firmware_version="0.9.0")
    offline = fleet.devices[1]
    Device.objects.filter(pk=offline.pk).update(status=Device.Status.OFFLINE)
    busy = fleet.device()
    firmware_transfer_start(device=busy, image=fleet.old)
    plan = rollout_plan(tenant_id=fleet.tenant.pk, spec=fleet.spec(from_versions=["1.0.0"]))
    assert plan.excluded_counts == {"incompatible": 1, "offline": 1, "busy": 1}
    assert {e.device_id: e.reason for e in plan.excluded} == {
        old.pk: "incompatible",
        offline.pk: "offline",
        busy.pk: "busy",
    }
    assert [d.pk for d in plan.waves[0]] == [fleet.devices[2].pk]


def test_a_target_can_never_reach_another_tenants_devices():
    fleet = Fleet(2)
    stranger = Fleet(2)
    # Even a group of this tenant that somehow holds a foreign device selects only this tenant's devices.
    group = DeviceGroupFactory(tenant=fleet.tenant)
    group.devices.add(fleet.devices[0], stranger.devices[0])
    plan = rollout_plan(tenant_id=fleet.tenant.pk, spec=fleet.spec(target_kind="groups", target_groups=[group.pk]))
    assert [d.pk for d in plan.waves[0]] == [fleet.devices[0].pk]
    # The same image, the same device type: the fleet-wide target stays inside the tenant.
    stranger.device_type = fleet.device_type
    foreign = stranger.device(device_type=fleet.device_type)
    plan = rollout_plan(tenant_id=fleet.tenant.pk, spec=fleet.spec())
    assert foreign.pk not in {d.pk for wave in plan.waves for d in wave}
    for spec in (
        fleet.spec(target_kind="devices", target_device_ids=[fleet.devices[0].pk, foreign.pk]),
        fleet.spec(target_kind="groups", target_groups=[DeviceGroupFactory(tenant=stranger.tenant).pk]),
        fleet.spec(target_kind="filter", target_facility=stranger.facility.pk),
    ):
        with pytest.raises(FirmwareError, match="Unknown"):
            rollout_create(access=fleet.access, spec=spec, now=T0)
    assert Rollout.objects.count() == 0 and RolloutDevice.objects.count() == 0


def test_a_device_type_of_another_tenant_or_one_the_tenant_does_not_use_is_refused():
    fleet = Fleet(2)
    stranger = Fleet(1)
    theirs = DeviceTypeFactory(tenant=stranger.tenant, firmware_line="eb-meter")
    stranger.device(device_type=theirs)
    unused_platform_type = DeviceTypeFactory(firmware_line="eb-meter")
    for device_type in (theirs, unused_platform_type):
        spec = replace(fleet.spec(), device_type=device_type)
        with pytest.raises(FirmwareError, match=f"Device type {device_type.pk} is not one of your organisation"):
            rollout_plan(tenant_id=fleet.tenant.pk, spec=spec)
        with pytest.raises(FirmwareError, match="is not one of your organisation"):
            rollout_create(access=fleet.access, spec=spec, now=T0)
    assert Rollout.objects.count() == 0 and RolloutDevice.objects.count() == 0
    # The tenant's own type and a platform type its devices use are accepted.
    own = DeviceTypeFactory(tenant=fleet.tenant, firmware_line="eb-meter")
    fleet.device(device_type=own)
    assert rollout_plan(tenant_id=fleet.tenant.pk, spec=replace(fleet.spec(), device_type=own)).device_count == 1
    assert rollout_plan(tenant_id=fleet.tenant.pk, spec=fleet.spec()).device_count == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"success_threshold_percent": 0}, "success threshold"),
        ({"success_threshold_percent": 101}, "success threshold"),
        ({"error_threshold_percent": 0.0}, "error threshold"),
        ({"error_threshold_percent": 150.0}, "error threshold"),
        ({"error_threshold_count": 0}, "error threshold"),
        ({"error_threshold_count": 3, "error_threshold_percent": 5.0}, "not both"),
        ({"rate_per_minute": 0}, "rate"),
        ({"rate_per_minute": 10, "rate_ramp_factor": 0.5}, "ramp factor"),
        ({"rate_ramp_factor": 2.0, "rate_ramp_step": 5}, "base rate"),
        ({"window_start": dt.time(2)}, "both a start and an end"),
        ({"window_start": dt.time(2), "window_end": dt.time(2)}, "same time"),
        ({"device_timeout_s": 1}, "device timeout"),
        ({"max_attempts": 0}, "attempts"),
        ({"max_attempts": 11}, "attempts"),
        ({"retry_backoff_s": 0}, "backoff"),
        ({"wave_kind": "percent", "wave_values": [10, 5, 100]}, "rise strictly"),
        ({"wave_kind": "percent", "wave_values": [10, 50]}, "100"),
        ({"wave_kind": "equal", "wave_values": [0]}, "number of waves"),
        ({"wave_kind": "count", "wave_values": [0, 5]}, "at least 1"),
        ({"wave_kind": "count", "wave_values": list(range(1, 30))}, "At most"),
        ({"wave_kind": "bogus"}, "Unknown wave kind"),
        ({"from_versions": ["1.1.0"]}, "upgrade from the version it installs"),
    ],
)
def test_settings_out_of_range_are_refused_and_nothing_is_stored(change, message):
    fleet = Fleet(2)
    with pytest.raises(FirmwareError, match=message):
        fleet.create(**change)
    assert Rollout.objects.count() == 0 and FirmwareTransfer.objects.count() == 0


def test_an_image_for_another_device_type_is_refused():
    fleet = Fleet(2)
    climate = FirmwareImageFactory(firmware_line="eb-climate", version="9.0.0")
    with pytest.raises(FirmwareError, match="line eb-climate"):
        rollout_create(access=fleet.access, spec=replace(fleet.spec(), image=climate), now=T0)
    assert Rollout.objects.count() == 0


def test_a_target_of_zero_devices_is_refused():
    fleet = Fleet(1)
    Device.objects.update(firmware_version="1.1.0")
    with pytest.raises(FirmwareError, match="no device"):
        fleet.create()
    assert Rollout.objects.count() == 0


def test_a_device_is_never_in_two_running_rollouts():
    fleet = Fleet(3)
    first = fleet.create(target_kind="devices", target_device_ids=[fleet.devices[0].pk])
    with pytest.raises(FirmwareError, match="already in a running rollout"):
        fleet.create(target_kind="devices", target_device_ids=[fleet.devices[0].pk, fleet.devices[1].pk])
    fleet_wide = fleet.create()  # a wider target leaves the busy device out
    assert fleet.devices[0].pk not in set(fleet_wide.devices.values_list("device_id", flat=True))
    assert fleet_wide.devices.count() == 2 and Rollout.objects.count() == 2
    rollout_cancel(access=fleet.access, rollout=first, now=T0)
    assert fleet.create(target_kind="devices", target_device_ids=[fleet.devices[0].pk]).devices.count() == 1


def test_the_database_refuses_a_device_in_two_active_rollouts_even_if_a_check_is_skipped():
    from django.db import IntegrityError, transaction

    fleet = Fleet(1)
    entry = fleet.create().devices.get()
    second = Rollout.objects.create(
        tenant=fleet.tenant,
        name="raced",
        image=fleet.new,
        device_type=fleet.device_type,
        target_kind="devices",
        wave_kind="percent",
        wave_values=[100],
    )
    wave = RolloutWave.objects.create(rollout=second, index=0, size=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        RolloutDevice.objects.create(tenant=fleet.tenant, rollout=second, wave=wave, device=entry.device)


def test_only_tenant_admins_manage_rollouts():
    fleet = Fleet(1)
    viewer = replace(fleet.access, role=Role.VIEWER)
    with pytest.raises(TenantAccessDenied):
        rollout_create(access=viewer, spec=fleet.spec(), now=T0)
    rollout = fleet.create()
    with pytest.raises(TenantAccessDenied):
        rollout_pause(access=viewer, rollout=rollout)


def test_another_tenants_admin_cannot_touch_the_rollout():
    fleet = Fleet(1)
    stranger = Fleet(1)
    rollout = fleet.create()
    with pytest.raises(Rollout.DoesNotExist):
        rollout_pause(access=stranger.access, rollout=rollout)
    with pytest.raises(Rollout.DoesNotExist):
        rollout_cancel(access=stranger.access, rollout=rollout)
    assert Rollout.objects.get(pk=rollout.pk).state == Rollout.State.RUNNING


# --- the state machine ---------------------------------------------------------------------------------


def test_success_means_the_device_came_back_reporting_the_new_version():
    fleet = Fleet(1)
    rollout = fleet.create()
    assert rollout_advance(rollout_id=rollout.pk, now=T0) == 1
    (entry,) = in_progress(rollout)
    report(entry, FirmwareTransfer.State.INSTALLED)
    rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(seconds=5))
    assert statuses(rollout) == {"in_progress": 1}  # installed, but not yet back with the version
    comes_back(entry, "1.1.0")
    rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(seconds=10))
    assert statuses(rollout) == {"succeeded": 1}
    rollout.refresh_from_db()
    assert rollout.state == Rollout.State.COMPLETED and rollout.finished_at == T0 + dt.timedelta(seconds=10)
    assert not RolloutDevice.objects.filter(holds_device=True).exists()


def test_waves_advance_automatically_at_the_success_threshold():
    fleet = Fleet(10)
    rollout = fleet.create(wave_kind="percent", wave_values=[20, 100], success_threshold_percent=50)
    rollout_advance(rollout_id=rollout.pk, now=T0)
    first = in_progress(rollout)
    assert len(first) == 2
    succeed(first[:1])  # 1 of 2 = 50 %: enough
    rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(seconds=1))
    assert [w.state for w in rollout.waves.order_by("index")] == ["done", "running"]
    assert len(in_progress(rollout)) == 9  # the second wave, and the first wave's straggler


def test_without_automatic_advance_an_admin_starts_the_next_wave():
    fleet = Fleet(4)
    rollout = fleet.create(wave_kind="equal", wave_values=[2], auto_advance=False)
    rollout_advance(rollout_id=rollout.pk, now=T0)
    with pytest.raises(FirmwareError, match="not reached its success threshold"):
        rollout_wave_start_next(access=fleet.access, rollout=rollout, now=T0)
    succeed(in_progress(rollout))
    rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(seconds=1))
    assert statuses(rollout) == {"succeeded": 2, "pending": 2}
    rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(seconds=2))
    assert statuses(rollout) == {"succeeded": 2, "pending": 2}  # it waits for the admin
    rollout_wave_start_next(access=fleet.access, rollout=rollout, now=T0 + dt.timedelta(seconds=3))
    rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(seconds=3))
    assert statuses(rollout) == {"succeeded": 2, "in_progress": 2}


def test_the_error_threshold_pauses_and_resume_retries_the_failed_devices():
    fleet = Fleet(10)
    rollout = fleet.create(error_threshold_percent=20.0, retry_backoff_s=600)
    rollout_advance(rollout_id=rollout.pk, now=T0)
    entries = in_progress(rollout)
    report(entries[0], FirmwareTransfer.State.FAILED, "flash write error")
    rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(seconds=1))
    rollout.refresh_from_db()
    assert rollout.state == Rollout.State.RUNNING  # 1 of 10 < 20 %
    report(entries[1], FirmwareTransfer.State.FAILED, "flash write error")
    rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(seconds=2))
    rollout.refresh_from_db()
    assert rollout.state == Rollout.State.PAUSED and "error threshold" in rollout.pause_reason
    failed = RolloutDevice.objects.get(pk=entries[0].pk)
    assert (failed.status, failed.reason) == (Status.RETRY_WAIT, "flash write error")
    # Paused: outcomes are still recorded, but nothing starts.
    succeed(entries[2:])
    rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(seconds=3))
    assert statuses(rollout) == {"succeeded": 8, "retry_wait": 2}
    rollout_resume(access=fleet.access, rollout=rollout, now=T0 + dt.timedelta(seconds=4))
    assert rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(seconds=4)) == 2
    retried = in_progress(rollout)
    assert [e.attempts for e in retried] == [2, 2]
    succeed(retried)
    rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(seconds=5))
    rollout.refresh_from_db()
    assert rollout.state == Rollout.State.COMPLETED and statuses(rollout) == {"succeeded": 10}


def test_failed_devices_retry_with_exponential_backoff_up_to_the_attempt_limit():
    fleet = Fleet(1)
    rollout = fleet.create(max_attempts=3, retry_backoff_s=60)
    now = T0
    rollout_advance(rollout_id=rollout.pk, now=now)
    for attempt, backoff in ((1, 60), (2, 120)):
        (entry,) = in_progress(rollout)
        assert entry.attempts == attempt
        report(entry, FirmwareTransfer.State.FAILED, "boom")
        rollout_advance(rollout_id=rollout.pk, now=now)
        entry.refresh_from_db()
        assert entry.next_attempt_at == now + dt.timedelta(seconds=backoff)
        assert rollout_advance(rollout_id=rollout.pk, now=now + dt.timedelta(seconds=backoff - 1)) == 0
        now += dt.timedelta(seconds=backoff)
        assert rollout_advance(rollout_id=rollout.pk, now=now) == 1
    (entry,) = in_progress(rollout)
    report(entry, FirmwareTransfer.State.FAILED, "boom")
    rollout_advance(rollout_id=rollout.pk, now=now)
    entry.refresh_from_db()
    assert (entry.status, entry.attempts) == (Status.FAILED, 3)
    rollout.refresh_from_db()
    # The only wave ended with no success: below its threshold, the rollout pauses for an admin.
    assert rollout.state == Rollout.State.PAUSED and "below the 100 % threshold" in rollout.pause_reason
    assert FirmwareTransfer.objects.filter(device=entry.device).count() == 3


def test_a_device_in_progress_too_long_times_out_and_is_retried():
    fleet = Fleet(1)
    rollout = fleet.create(device_timeout_s=300, retry_backoff_s=10)
    rollout_advance(rollout_id=rollout.pk, now=T0)
    (entry,) = in_progress(rollout)
    rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(seconds=299))
    assert statuses(rollout) == {"in_progress": 1}
    rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(seconds=300))
    entry.refresh_from_db()
    assert entry.status == Status.RETRY_WAIT and entry.reason == "timed out after 300 s"
    assert FirmwareTransfer.objects.get(pk=entry.transfer_id).state == FirmwareTransfer.State.CANCELLED
    assert rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(seconds=310)) == 1
    entry.refresh_from_db()
    assert entry.attempts == 2 and entry.transfer_id != FirmwareTransfer.objects.order_by("id").first().pk


def test_transfers_start_only_inside_the_facilitys_local_maintenance_window():
    fleet = Fleet(1, timezone="Europe/Berlin")
    tokyo = fleet.device(facility=FacilityFactory(tenant=fleet.tenant, timezone="Asia/Tokyo"))
    # 01:00-04:00 local; on 2026-12-01 Berlin is UTC+1 and Tokyo UTC+9.
    rollout = fleet.create(window_start=dt.time(1), window_end=dt.time(4))
    berlin_entry = rollout.devices.get(device=fleet.devices[0])
    tokyo_entry = rollout.devices.get(device=tokyo)
    at = dt.datetime(2026, 12, 1, 23, 30, tzinfo=dt.UTC)  # Berlin 00:30, Tokyo 08:30
    assert rollout_advance(rollout_id=rollout.pk, now=at) == 0
    at = dt.datetime(2026, 12, 2, 0, 0, tzinfo=dt.UTC)  # Berlin 01:00, Tokyo 09:00
    assert rollout_advance(rollout_id=rollout.pk, now=at) == 1
    assert RolloutDevice.objects.get(pk=berlin_entry.pk).status == Status.IN_PROGRESS
    assert RolloutDevice.objects.get(pk=tokyo_entry.pk).status == Status.PENDING
    at = dt.datetime(2026, 12, 2, 17, 0, tzinfo=dt.UTC)  # Tokyo 02:00 the next night
    assert rollout_advance(rollout_id=rollout.pk, now=at) == 1
    assert RolloutDevice.objects.get(pk=tokyo_entry.pk).status == Status.IN_PROGRESS


def test_a_device_offline_in_its_window_is_not_started_and_one_never_offered_waits_for_the_next_window():
    fleet = Fleet(2, timezone="UTC")
    online, flaky = fleet.devices
    rollout = fleet.create(window_start=dt.time(2), window_end=dt.time(4))
    Device.objects.filter(pk=flaky.pk).update(status=Device.Status.OFFLINE)
    night = dt.datetime(2026, 12, 2, 2, 30, tzinfo=dt.UTC)
    assert rollout_advance(rollout_id=rollout.pk, now=night) == 1  # the offline device is not started
    assert rollout.devices.get(device=flaky).status == Status.PENDING
    # The online one went out of coverage before the gateway could offer it: its window closes.
    entry = rollout.devices.get(device=online)
    assert (entry.status, entry.transfer.state) == (Status.IN_PROGRESS, FirmwareTransfer.State.PENDING)
    Device.objects.filter(pk=flaky.pk).update(status=Device.Status.ONLINE)
    assert rollout_advance(rollout_id=rollout.pk, now=night + dt.timedelta(hours=2)) == 0
    entry.refresh_from_db()
    assert (entry.status, entry.attempts, entry.transfer) == (Status.PENDING, 0, None)
    assert "next one" in entry.reason
    assert FirmwareTransfer.objects.get(device=online).state == FirmwareTransfer.State.CANCELLED
    rollout.refresh_from_db()
    assert rollout.errors_since_resume == 0  # missing a window is not a failure
    assert rollout_advance(rollout_id=rollout.pk, now=night + dt.timedelta(days=1)) == 2  # both, the next night


def test_a_device_that_went_offline_after_its_offer_does_not_resume_after_its_window_closed():
    fleet = Fleet(2, timezone="UTC")
    gone, steady = fleet.devices
    rollout = fleet.create(window_start=dt.time(2), window_end=dt.time(4), device_timeout_s=3 * 86_400)
    night = dt.datetime(2026, 12, 2, 2, 30, tzinfo=dt.UTC)
    assert rollout_advance(rollout_id=rollout.pk, now=night) == 2
    for device in (gone, steady):  # both were offered the image and started downloading
        entry = rollout.devices.get(device=device)
        firmware_transfer_record(
            transfer_id=entry.transfer_id, device_id=device.pk, state=FirmwareTransfer.State.DOWNLOADING, offset=4096
        )
    Device.objects.filter(pk=gone.pk).update(status=Device.Status.OFFLINE)  # out of coverage mid-download
    # Still inside the window: the offline device keeps its transfer, it may come back and resume.
    rollout_advance(rollout_id=rollout.pk, now=night + dt.timedelta(minutes=30))
    assert rollout.devices.get(device=gone).transfer.state == FirmwareTransfer.State.DOWNLOADING
    # The window closed: its transfer is cancelled, so coming back now starts nothing; the attempt is
    # given back and it waits for the next window. The connected one finishes what it started.
    after = night + dt.timedelta(hours=2)
    assert rollout_advance(rollout_id=rollout.pk, now=after) == 0
    entry = rollout.devices.get(device=gone)
    assert (entry.status, entry.attempts, entry.transfer) == (Status.PENDING, 0, None)
    assert "next one" in entry.reason
    assert FirmwareTransfer.objects.get(device=gone).state == FirmwareTransfer.State.CANCELLED
    assert not FirmwareTransfer.objects.filter(device=gone, state__in=FirmwareTransfer.ACTIVE_STATES).exists()
    kept = rollout.devices.get(device=steady)
    assert (kept.status, kept.transfer.state) == (Status.IN_PROGRESS, FirmwareTransfer.State.DOWNLOADING)
    Device.objects.filter(pk=gone.pk).update(status=Device.Status.ONLINE)  # back, outside the window
    assert rollout_advance(rollout_id=rollout.pk, now=after + dt.timedelta(minutes=1)) == 0
    assert rollout.devices.get(device=gone).status == Status.PENDING
    rollout.refresh_from_db()
    assert rollout.errors_since_resume == 0  # missing a window is not a failure
    assert rollout_advance(rollout_id=rollout.pk, now=night + dt.timedelta(days=1)) == 1  # the next night
    assert rollout.devices.get(device=gone).status == Status.IN_PROGRESS


def test_a_window_across_midnight():
    fleet = Fleet(1, timezone="UTC")
    rollout = fleet.create(window_start=dt.time(22), window_end=dt.time(2))
    assert rollout_advance(rollout_id=rollout.pk, now=dt.datetime(2026, 12, 1, 21, 59, tzinfo=dt.UTC)) == 0
    assert rollout_advance(rollout_id=rollout.pk, now=dt.datetime(2026, 12, 2, 1, 0, tzinfo=dt.UTC)) == 1


def test_the_rate_limits_starts_per_minute_and_ramps_up_with_successes():
    fleet = Fleet(30)
    rollout = fleet.create(rate_per_minute=2, rate_ramp_factor=2.0, rate_ramp_step=2)
    assert rollout_advance(rollout_id=rollout.pk, now=T0) == 2
    assert rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(seconds=30)) == 0
    succeed(in_progress(rollout))  # 2 successes: one ramp step, 4 per minute
    assert rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(seconds=61)) == 4
    succeed(in_progress(rollout))  # 6 successes: three steps, 16 per minute
    assert rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(seconds=122)) == 16


def test_approval_needs_a_second_tenant_admin():
    fleet = Fleet(2)
    rollout = fleet.create(requires_approval=True)
    assert rollout.state == Rollout.State.AWAITING_APPROVAL
    assert rollout_tick(now=T0) == 0 and FirmwareTransfer.objects.count() == 0
    with pytest.raises(FirmwareError, match="second tenant admin"):
        rollout_approve(access=fleet.access, rollout=rollout, now=T0)
    second = MembershipFactory(tenant=fleet.tenant, role=Role.ADMIN).user
    approver = replace(fleet.access, user_id=second.pk)
    rollout_approve(access=approver, rollout=rollout, now=T0)
    rollout.refresh_from_db()
    assert (rollout.state, rollout.approved_by_id) == (Rollout.State.RUNNING, second.pk)
    assert rollout_tick(now=T0) == 2
    with pytest.raises(FirmwareError, match="not awaiting approval"):
        rollout_approve(access=approver, rollout=rollout, now=T0)


def test_pause_stops_new_starts_and_cancel_cancels_the_transfers():
    fleet = Fleet(4)
    rollout = fleet.create(rate_per_minute=2)
    rollout_advance(rollout_id=rollout.pk, now=T0)
    rollout_pause(access=fleet.access, rollout=rollout)
    assert rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(minutes=5)) == 0
    with pytest.raises(FirmwareError, match="Only a running"):
        rollout_pause(access=fleet.access, rollout=rollout)
    rollout_resume(access=fleet.access, rollout=rollout, now=T0 + dt.timedelta(minutes=5))
    assert rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(minutes=5)) == 2
    rollout_cancel(access=fleet.access, rollout=rollout, now=T0 + dt.timedelta(minutes=6))
    assert statuses(rollout) == {"cancelled": 4}
    assert set(FirmwareTransfer.objects.values_list("state", flat=True)) == {FirmwareTransfer.State.CANCELLED}
    assert not RolloutDevice.objects.filter(holds_device=True).exists()
    with pytest.raises(FirmwareError, match="already ended"):
        rollout_cancel(access=fleet.access, rollout=rollout)


def test_rollback_sends_the_previous_image_to_the_devices_that_took_the_new_one():
    fleet = Fleet(3)
    rollout = fleet.create()
    rollout_advance(rollout_id=rollout.pk, now=T0)
    entries = in_progress(rollout)
    succeed(entries[:2])
    rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(seconds=1))
    back = rollout_rollback(access=fleet.access, rollout=rollout, now=T0 + dt.timedelta(seconds=2))
    rollout.refresh_from_db()
    assert rollout.state == Rollout.State.CANCELLED
    assert back.rollback_of_id == rollout.pk and back.image_id == fleet.old.pk
    assert sorted(back.devices.values_list("device_id", flat=True)) == sorted(e.device_id for e in entries[:2])
    assert rollout_advance(rollout_id=back.pk, now=T0 + dt.timedelta(seconds=2)) == 2
    succeed(in_progress(back), version="1.0.0")
    rollout_advance(rollout_id=back.pk, now=T0 + dt.timedelta(seconds=3))
    back.refresh_from_db()
    assert back.state == Rollout.State.COMPLETED
    assert set(Device.objects.values_list("firmware_version", flat=True)) == {"1.0.0"}


def test_rollback_without_a_device_that_took_the_image_is_refused():
    fleet = Fleet(1)
    rollout = fleet.create()
    with pytest.raises(FirmwareError, match="nothing to roll back"):
        rollout_rollback(access=fleet.access, rollout=rollout, now=T0)
    assert Rollout.objects.get(pk=rollout.pk).state == Rollout.State.RUNNING  # nothing changed


def test_devices_joining_the_target_while_it_runs_are_included_when_asked():
    fleet = Fleet(2)
    group = DeviceGroupFactory(tenant=fleet.tenant)
    for device in fleet.devices:
        device.groups.add(group)
    joining = fleet.create(target_kind="groups", target_groups=[group.pk], include_joining=True)
    rollout_advance(rollout_id=joining.pk, now=T0)
    newcomer = fleet.device()
    newcomer.groups.add(group)
    assert rollout_advance(rollout_id=joining.pk, now=T0 + dt.timedelta(seconds=1)) == 1
    assert joining.devices.filter(device=newcomer).exists()
    assert RolloutWave.objects.get(rollout=joining).size == 3


def test_a_tick_on_a_finished_rollout_changes_nothing_and_ticks_are_idempotent():
    fleet = Fleet(3)
    rollout = fleet.create()
    assert rollout_tick(now=T0) == 3
    assert rollout_tick(now=T0) == 0
    assert FirmwareTransfer.objects.count() == 3
    succeed(in_progress(rollout))
    rollout_tick(now=T0 + dt.timedelta(seconds=1))
    rollout_tick(now=T0 + dt.timedelta(seconds=2))
    rollout.refresh_from_db()
    assert rollout.state == Rollout.State.COMPLETED and FirmwareTransfer.objects.count() == 3


# --- delta updates -------------------------------------------------------------------------------------


def test_first_attempts_send_a_delta_from_the_running_image_and_retries_the_whole_image():
    fleet = Fleet(1)
    rollout = fleet.create(retry_backoff_s=10)
    rollout_advance(rollout_id=rollout.pk, now=T0)
    (entry,) = in_progress(rollout)
    first = FirmwareTransfer.objects.select_related("delta").get(pk=entry.transfer_id)
    assert first.delta is not None and first.delta.base_id == fleet.old.pk and first.delta.target_id == fleet.new.pk
    assert first.delta.size < fleet.new.size
    report(entry, FirmwareTransfer.State.FAILED, "delta could not be applied")
    rollout_advance(rollout_id=rollout.pk, now=T0)
    assert rollout_advance(rollout_id=rollout.pk, now=T0 + dt.timedelta(seconds=10)) == 1
    (entry,) = in_progress(rollout)
    assert FirmwareTransfer.objects.get(pk=entry.transfer_id).delta is None


def test_the_delta_is_made_once_per_pair_and_skipped_where_it_cannot_help():
    import os

    from firmware.models import FirmwareDelta
    from firmware.services import firmware_delta_get

    fleet = Fleet(3)
    Device.objects.filter(pk=fleet.devices[0].pk).update(firmware_version="0.1.0")  # no image held for 0.1.0
    rollout = fleet.create()
    rollout_advance(rollout_id=rollout.pk, now=T0)
    deltas = dict(rollout.devices.values_list("device_id", "transfer__delta_id"))
    assert deltas[fleet.devices[0].pk] is None
    assert deltas[fleet.devices[1].pk] == deltas[fleet.devices[2].pk] is not None
    assert FirmwareDelta.objects.count() == 1
    noise_a = FirmwareImageFactory(version="7.0.0", image=os.urandom(2000))
    noise_b = FirmwareImageFactory(version="7.1.0", image=os.urandom(2000))
    assert firmware_delta_get(base=noise_a, target=noise_b) is None  # random bytes: a patch saves nothing
    climate = FirmwareImageFactory(firmware_line="eb-climate", version="7.2.0")
    assert firmware_delta_get(base=noise_a, target=climate) is None


def test_the_beat_task_advances_the_rollouts_every_few_seconds(settings):
    from firmware.tasks import rollouts_advance

    schedule = settings.CELERY_BEAT_SCHEDULE["firmware-rollouts-advance"]
    assert schedule["task"] == rollouts_advance.name == "firmware.rollouts_advance" and schedule["schedule"] <= 10
    fleet = Fleet(2)
    fleet.create()
    assert rollouts_advance() == 2 and FirmwareTransfer.objects.count() == 2
    assert rollouts_advance() == 0
