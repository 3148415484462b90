"""Rollout writes: create (resolving the target once), approve, pause, resume, cancel, next wave, rollback,
and `rollout_advance`, the state machine the beat task runs.

Every write locks the rollout's row first (`select_for_update`), so two workers ticking at once, or a
tick racing a pause from the portal, apply one after the other; the second sees the first's result.
The clock is a parameter (`now`), so tests move time instead of sleeping.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from dataclasses import replace

from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from devices.models import Device
from firmware.errors import FirmwareError
from firmware.models import FirmwareDelta, FirmwareImage, FirmwareTransfer, Rollout, RolloutDevice, RolloutWave
from firmware.planning import MAX_RATE_PER_MINUTE, RolloutSpec, eligible, rollout_plan, target_devices
from firmware.services import firmware_delta_get, firmware_transfer_cancel, firmware_transfer_start

Status = RolloutDevice.Status
_FAILED_TRANSFER = {
    FirmwareTransfer.State.FAILED,
    FirmwareTransfer.State.REJECTED,
    FirmwareTransfer.State.CANCELLED,
}


# The transfer states in which a closing window sends a device back to wait (see _missed_window).
_WINDOW_MISSABLE = (FirmwareTransfer.State.PENDING, FirmwareTransfer.State.OFFERED, FirmwareTransfer.State.DOWNLOADING)


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else timezone.now()


def _require_admin(access: Access) -> None:
    if not access.is_admin:
        raise TenantAccessDenied(_("Only tenant admins manage firmware rollouts."))


def _locked(rollout: Rollout, tenant_id: int | None = None) -> Rollout:
    qs = Rollout.objects.select_for_update().select_related("image")
    if tenant_id is not None:
        qs = qs.filter(tenant_id=tenant_id)
    return qs.get(pk=rollout.pk)


def _locked_for(access: Access, rollout: Rollout, *, states: tuple[str, ...], refusal: str) -> Rollout:
    """The rollout, row-locked, for a tenant admin's control; another tenant's reads as missing."""
    _require_admin(access)
    rollout = _locked(rollout, access.tenant_id)
    if rollout.state not in states:
        raise FirmwareError(refusal)
    return rollout


def spec_of(rollout: Rollout) -> RolloutSpec:
    return RolloutSpec(
        name=rollout.name,
        image=rollout.image,
        device_type=rollout.device_type,
        target_kind=rollout.target_kind,
        from_versions=tuple(rollout.from_versions),
        target_groups=tuple(rollout.target_groups.values_list("pk", flat=True)),
        target_device_ids=tuple(rollout.target_device_ids),
        target_facility=rollout.target_facility_id,
        target_tag=rollout.target_tag,
        include_joining=rollout.include_joining,
        wave_kind=rollout.wave_kind,
        wave_values=tuple(rollout.wave_values),
    )


@transaction.atomic
def rollout_create(*, access: Access, spec: RolloutSpec, now: dt.datetime | None = None) -> Rollout:
    """Check the settings, resolve the target to the tenant's devices now, and store the waves.

    Nothing is stored when anything is wrong: out-of-range settings, an image of another line, a
    foreign or unknown id, a target of zero devices, or an explicit device already in a rollout.
    """
    _require_admin(access)
    now = _now(now)
    plan = rollout_plan(tenant_id=access.tenant_id, spec=spec)
    if plan.device_count == 0:
        counts = plan.excluded_counts
        raise FirmwareError(
            _(
                "The target holds no device this rollout can update "
                "(%(incompatible)d incompatible, %(offline)d offline, %(busy)d busy)."
            )
            % counts
        )
    state = Rollout.State.AWAITING_APPROVAL if spec.requires_approval else Rollout.State.RUNNING
    rollout = Rollout.objects.create(
        tenant_id=access.tenant_id,
        name=spec.name.strip(),
        image=spec.image,
        device_type=spec.device_type,
        from_versions=list(spec.from_versions),
        state=state,
        target_kind=spec.target_kind,
        target_device_ids=sorted(set(spec.target_device_ids)),
        target_facility_id=spec.target_facility,
        target_tag=spec.target_tag,
        include_joining=spec.include_joining,
        delta_updates=spec.delta_updates,
        wave_kind=spec.wave_kind,
        wave_values=list(spec.wave_values),
        success_threshold_percent=spec.success_threshold_percent,
        auto_advance=spec.auto_advance,
        error_threshold_count=spec.error_threshold_count,
        error_threshold_percent=spec.error_threshold_percent,
        rate_per_minute=spec.rate_per_minute,
        rate_ramp_factor=spec.rate_ramp_factor,
        rate_ramp_step=spec.rate_ramp_step,
        window_start=spec.window_start,
        window_end=spec.window_end,
        device_timeout_s=spec.device_timeout_s,
        max_attempts=spec.max_attempts,
        retry_backoff_s=spec.retry_backoff_s,
        requires_approval=spec.requires_approval,
        created_by_id=access.user_id,
        started_at=None if spec.requires_approval else now,
    )
    if spec.target_groups:
        rollout.target_groups.set(spec.target_groups)
    for index, wave_devices in enumerate(plan.waves):
        wave = RolloutWave.objects.create(rollout=rollout, index=index, size=len(wave_devices))
        _entries_add(rollout, wave, wave_devices)
    if state == Rollout.State.RUNNING:
        _wave_start(rollout.waves.get(index=0), now)
    return rollout


def _entries_add(rollout: Rollout, wave: RolloutWave, devices: list[Device]) -> None:
    try:
        with transaction.atomic():
            RolloutDevice.objects.bulk_create(
                RolloutDevice(
                    tenant_id=rollout.tenant_id,
                    rollout=rollout,
                    wave=wave,
                    device=device,
                    from_version=device.firmware_version,
                )
                for device in devices
            )
    except IntegrityError as exc:
        # The planner saw these devices free; another rollout took one in between.
        raise FirmwareError(_("A device of the target was just taken by another rollout; try again.")) from exc


def _wave_start(wave: RolloutWave, now: dt.datetime) -> None:
    wave.state = RolloutWave.State.RUNNING
    wave.started_at = now
    wave.save(update_fields=["state", "started_at"])


@transaction.atomic
def rollout_approve(*, access: Access, rollout: Rollout, now: dt.datetime | None = None) -> Rollout:
    rollout = _locked_for(
        access, rollout, states=(Rollout.State.AWAITING_APPROVAL,), refusal=_("This rollout is not awaiting approval.")
    )
    if access.user_id is None or access.user_id == rollout.created_by_id:
        raise FirmwareError(_("A second tenant admin, not the one who created the rollout, must approve it."))
    now = _now(now)
    rollout.state = Rollout.State.RUNNING
    rollout.approved_by_id = access.user_id
    rollout.started_at = now
    rollout.save(update_fields=["state", "approved_by", "started_at"])
    _wave_start(rollout.waves.get(index=0), now)
    return rollout


@transaction.atomic
def rollout_pause(*, access: Access, rollout: Rollout) -> Rollout:
    rollout = _locked_for(
        access, rollout, states=(Rollout.State.RUNNING,), refusal=_("Only a running rollout can be paused.")
    )
    _pause(rollout, _("paused by an admin"))
    return rollout


def _pause(rollout: Rollout, reason: str) -> None:
    rollout.state = Rollout.State.PAUSED
    rollout.pause_reason = reason[:255]
    rollout.save(update_fields=["state", "pause_reason"])


@transaction.atomic
def rollout_resume(*, access: Access, rollout: Rollout, now: dt.datetime | None = None) -> Rollout:
    """Run again after a pause. The error count starts afresh, devices waiting to retry retry now, and a
    wave that stopped below its success threshold counts as accepted by the admin."""
    rollout = _locked_for(
        access, rollout, states=(Rollout.State.PAUSED,), refusal=_("Only a paused rollout can be resumed.")
    )
    now = _now(now)
    # Outcomes reported since the last tick count as before the resume, so their retries start now too.
    _record_outcomes(rollout, now)
    rollout.state = Rollout.State.RUNNING
    rollout.pause_reason = ""
    rollout.errors_since_resume = 0
    rollout.save(update_fields=["state", "pause_reason", "errors_since_resume"])
    rollout.devices.filter(status=Status.RETRY_WAIT).update(next_attempt_at=now)
    for wave in rollout.waves.filter(state=RolloutWave.State.RUNNING):
        if not wave.devices.filter(status__in=RolloutDevice.OPEN_STATUSES).exists():
            _wave_finish(wave, now)
    return rollout


@transaction.atomic
def rollout_cancel(*, access: Access, rollout: Rollout, now: dt.datetime | None = None) -> Rollout:
    rollout = _locked_for(access, rollout, states=Rollout.ACTIVE_STATES, refusal=_("This rollout has already ended."))
    _cancel(rollout, _now(now))
    return rollout


def _cancel(rollout: Rollout, now: dt.datetime) -> None:
    for entry in rollout.devices.filter(status=Status.IN_PROGRESS).select_related("transfer"):
        if entry.transfer is not None:
            firmware_transfer_cancel(transfer=entry.transfer)
    rollout.devices.filter(status__in=RolloutDevice.OPEN_STATUSES).update(
        status=Status.CANCELLED, finished_at=now, reason=_("rollout cancelled")
    )
    rollout.devices.update(holds_device=False)
    rollout.state = Rollout.State.CANCELLED
    rollout.finished_at = now
    rollout.save(update_fields=["state", "finished_at"])


@transaction.atomic
def rollout_wave_start_next(*, access: Access, rollout: Rollout, now: dt.datetime | None = None) -> Rollout:
    """The manual "start next wave" of a rollout without automatic advance."""
    rollout = _locked_for(
        access, rollout, states=(Rollout.State.RUNNING,), refusal=_("Only a running rollout can start its next wave.")
    )
    if rollout.waves.filter(state=RolloutWave.State.RUNNING).exists():
        raise FirmwareError(_("The current wave has not reached its success threshold yet."))
    wave = rollout.waves.filter(state=RolloutWave.State.PENDING).order_by("index").first()
    if wave is None:
        raise FirmwareError(_("Every wave has started."))
    _wave_start(wave, _now(now))
    return rollout


@transaction.atomic
def rollout_rollback(*, access: Access, rollout: Rollout, now: dt.datetime | None = None) -> Rollout:
    """Stop the rollout and send each device that took its image the image it ran before."""
    _require_admin(access)
    rollout = _locked(rollout, access.tenant_id)
    if rollout.rollback_of_id is not None:
        raise FirmwareError(_("A rollback cannot be rolled back; start a new rollout instead."))
    now = _now(now)
    if rollout.state in Rollout.ACTIVE_STATES:
        _cancel(rollout, now)
    took = list(
        rollout.devices.filter(status=Status.SUCCEEDED, device__firmware_version=rollout.image.version)
        .select_related("device", "device__device_type")
        .order_by("id")
    )
    by_version: dict[str, list[int]] = {}
    for entry in took:
        if entry.from_version:
            by_version.setdefault(entry.from_version, []).append(entry.device_id)
    if not by_version:
        raise FirmwareError(_("No device of this rollout took the new image, so there is nothing to roll back."))
    if len(by_version) > 1:
        raise FirmwareError(
            _("The devices ran several versions before (%(versions)s); roll back one version at a time.")
            % {"versions": ", ".join(sorted(by_version))}
        )
    ((version, device_ids),) = by_version.items()
    previous = FirmwareImage.objects.filter(firmware_line=rollout.image.firmware_line, version=version).first()
    if previous is None:
        raise FirmwareError(_("The platform does not hold the image of version %(v)s.") % {"v": version})
    spec = replace(
        spec_of(rollout),
        name=_("Rollback of %(name)s") % {"name": rollout.name},
        image=previous,
        target_kind=Rollout.TargetKind.DEVICES,
        target_device_ids=tuple(device_ids),
        target_groups=(),
        target_facility=None,
        target_tag="",
        include_joining=False,
        from_versions=(rollout.image.version,),
        wave_kind=Rollout.WaveKind.PERCENT,
        wave_values=(100,),
        success_threshold_percent=1,
        rate_per_minute=rollout.rate_per_minute,
        window_start=rollout.window_start,
        window_end=rollout.window_end,
        device_timeout_s=rollout.device_timeout_s,
        max_attempts=rollout.max_attempts,
        retry_backoff_s=rollout.retry_backoff_s,
    )
    back = rollout_create(access=access, spec=spec, now=now)
    back.rollback_of = rollout
    back.save(update_fields=["rollback_of"])
    return back


# --- The state machine -------------------------------------------------------------------------------


def rollout_tick(*, now: dt.datetime | None = None) -> int:
    """Advance every running or paused rollout once; returns how many devices were started."""
    now = _now(now)
    started = 0
    ids = list(
        Rollout.objects.filter(state__in=[Rollout.State.RUNNING, Rollout.State.PAUSED]).values_list("pk", flat=True)
    )
    for rollout_id in ids:
        started += rollout_advance(rollout_id=rollout_id, now=now)
    return started


@transaction.atomic
def rollout_advance(*, rollout_id: int, now: dt.datetime | None = None) -> int:
    """One step of one rollout: record outcomes, pause at the error threshold, move waves, start devices.

    A worker that finds the row locked skips it: the worker holding the lock is advancing it, and
    the next tick comes soon. Returns how many devices this step started.
    """
    now = _now(now)
    rollout = (
        Rollout.objects.select_for_update(skip_locked=True)
        .select_related("image", "device_type")
        .filter(pk=rollout_id, state__in=[Rollout.State.RUNNING, Rollout.State.PAUSED])
        .first()
    )
    if rollout is None:
        return 0
    _record_outcomes(rollout, now)
    if rollout.state == Rollout.State.RUNNING and _error_threshold_reached(rollout):
        _pause(
            rollout,
            _("error threshold reached: %(n)d failed attempts") % {"n": rollout.errors_since_resume},
        )
    if rollout.state != Rollout.State.RUNNING:
        return 0
    if not _waves_advance(rollout, now):
        return 0
    if rollout.include_joining:
        _joiners_add(rollout)
    started = _devices_start(rollout, now)
    _complete_if_done(rollout, now)
    return started


def _record_outcomes(rollout: Rollout, now: dt.datetime) -> None:
    timeout = dt.timedelta(seconds=rollout.device_timeout_s)
    target = rollout.image.version
    # Only the devices with news, found by the database: of a wave of thousands in progress, a
    # tick reads the few that came back, failed or ran out of time, not all of them every time.
    news = (
        Q(device__firmware_version=target)
        | Q(transfer__isnull=True)
        | Q(transfer__state__in=_FAILED_TRANSFER)
        | Q(last_started_at__lte=now - timeout)
    )
    if rollout.window_start is not None:  # whether a window closed is for the facility's clock to say
        news |= Q(transfer__state__in=_WINDOW_MISSABLE)
    entries = (
        rollout.devices.filter(status=Status.IN_PROGRESS)
        .filter(news)
        .select_related("transfer", "device", "device__facility")
    )
    for entry in entries:
        transfer = entry.transfer
        if _missed_window(rollout, entry, transfer, now):
            # The device went offline in its window, before the gateway could offer the image or
            # after it took the offer: it missed the window, not failed. Its transfer is cancelled so
            # that it cannot start or resume when it comes back outside the window; it waits, with
            # the attempt given back, for its next window.
            assert transfer is not None
            firmware_transfer_cancel(transfer=transfer)
            entry.status = Status.PENDING
            entry.transfer = None
            entry.attempts = max(0, entry.attempts - 1)
            entry.reason = _("offline during its maintenance window; waits for the next one")
            entry.save(update_fields=["status", "transfer", "attempts", "reason"])
            continue
        if entry.device.firmware_version == target:
            # Success only once the device came back and reported the new version in HELLO.
            entry.status = Status.SUCCEEDED
            entry.finished_at = now
            entry.holds_device = False
            entry.reason = ""
            entry.save(update_fields=["status", "finished_at", "holds_device", "reason"])
        elif transfer is None:
            _failure(rollout, entry, now, _("the transfer was deleted"))
        elif transfer.state in _FAILED_TRANSFER:
            _failure(rollout, entry, now, transfer.message or transfer.get_state_display())
        elif entry.last_started_at is not None and now - entry.last_started_at >= timeout:
            firmware_transfer_cancel(transfer=transfer)
            reason = (
                _("installed but not back with the new version within %(s)d s")
                if transfer.state == FirmwareTransfer.State.INSTALLED
                else _("timed out after %(s)d s")
            )
            _failure(rollout, entry, now, reason % {"s": rollout.device_timeout_s})


def _missed_window(rollout: Rollout, entry: RolloutDevice, transfer: FirmwareTransfer | None, now: dt.datetime) -> bool:
    """Whether the window closed on a transfer the device has not got going: never offered, or
    offered (and maybe partly downloaded) to a device that is no longer connected. A device that is
    connected and downloading when the window closes finishes what it started."""
    if transfer is None or in_window(rollout, timezone_name=entry.device.facility.timezone, now=now):
        return False
    if transfer.state == FirmwareTransfer.State.PENDING:
        return True
    return transfer.state in _WINDOW_MISSABLE and entry.device.status != Device.Status.ONLINE


def _failure(rollout: Rollout, entry: RolloutDevice, now: dt.datetime, reason: str) -> None:
    rollout.errors_since_resume += 1
    rollout.save(update_fields=["errors_since_resume"])
    entry.reason = reason[:255]
    if entry.attempts < rollout.max_attempts:
        entry.status = Status.RETRY_WAIT
        entry.next_attempt_at = now + dt.timedelta(seconds=rollout.retry_backoff_s * 2 ** (entry.attempts - 1))
    else:
        entry.status = Status.FAILED
        entry.finished_at = now
        entry.holds_device = False
    entry.save(update_fields=["status", "reason", "next_attempt_at", "finished_at", "holds_device"])


def _error_threshold_reached(rollout: Rollout) -> bool:
    if rollout.error_threshold_count is not None:
        limit = rollout.error_threshold_count
    elif rollout.error_threshold_percent is not None:
        limit = max(1, math.ceil(rollout.devices.count() * rollout.error_threshold_percent / 100))
    else:
        return False
    return rollout.errors_since_resume >= limit


def _wave_finish(wave: RolloutWave, now: dt.datetime) -> None:
    wave.state = RolloutWave.State.DONE
    wave.finished_at = now
    wave.save(update_fields=["state", "finished_at"])


def _waves_advance(rollout: Rollout, now: dt.datetime) -> bool:
    """Close waves that reached their success threshold and open the next; False if the rollout paused."""
    waves = list(
        rollout.waves.annotate(
            succeeded=Count("devices", filter=Q(devices__status=Status.SUCCEEDED)),
            open=Count("devices", filter=Q(devices__status__in=RolloutDevice.OPEN_STATUSES)),
        ).order_by("index")
    )
    for wave in waves:
        if wave.state != RolloutWave.State.RUNNING:
            continue
        if wave.succeeded * 100 >= rollout.success_threshold_percent * wave.size:
            _wave_finish(wave, now)
        elif wave.open == 0:
            _pause(
                rollout,
                _("wave %(n)d ended with %(ok)d of %(size)d devices updated, below the %(t)d %% threshold")
                % {
                    "n": wave.index + 1,
                    "ok": wave.succeeded,
                    "size": wave.size,
                    "t": rollout.success_threshold_percent,
                },
            )
            return False
    if rollout.auto_advance and not any(w.state == RolloutWave.State.RUNNING for w in waves):
        following = next((w for w in waves if w.state == RolloutWave.State.PENDING), None)
        if following is not None:
            _wave_start(following, now)
    return True


def _joiners_add(rollout: Rollout) -> None:
    """Devices that joined the target since the start go into the newest started wave."""
    wave = rollout.waves.exclude(state=RolloutWave.State.PENDING).order_by("-index").first()
    if wave is None:
        return
    known = rollout.devices.values_list("device_id", flat=True)
    spec = spec_of(rollout)
    candidates = list(target_devices(tenant_id=rollout.tenant_id, spec=spec).exclude(pk__in=known))
    joiners, _excluded = eligible(devices=candidates, spec=spec, strict_busy=False)
    if not joiners:
        return
    try:
        _entries_add(rollout, wave, joiners)
    except FirmwareError:
        return  # taken by another rollout meanwhile: the next tick looks again
    wave.size += len(joiners)
    if wave.state == RolloutWave.State.DONE:
        wave.state = RolloutWave.State.RUNNING
    wave.save(update_fields=["size", "state"])


def current_rate(rollout: Rollout, succeeded: int) -> int | None:
    """Devices per minute: the base rate, times the ramp factor once per `rate_ramp_step` successes."""
    if rollout.rate_per_minute is None:
        return None
    if rollout.rate_ramp_step < 1 or rollout.rate_ramp_factor <= 1.0:
        return rollout.rate_per_minute
    steps = min(succeeded // rollout.rate_ramp_step, 64)
    return int(min(MAX_RATE_PER_MINUTE, rollout.rate_per_minute * rollout.rate_ramp_factor**steps))


def in_window(rollout: Rollout, *, timezone_name: str, now: dt.datetime) -> bool:
    """Whether `now` falls in the rollout's maintenance window, in the facility's local time."""
    if rollout.window_start is None or rollout.window_end is None:
        return True
    local = now.astimezone(zoneinfo.ZoneInfo(timezone_name)).time()
    start, end = rollout.window_start, rollout.window_end
    if start < end:
        return start <= local < end
    return local >= start or local < end  # the window crosses midnight


def _devices_start(rollout: Rollout, now: dt.datetime) -> int:
    succeeded = rollout.devices.filter(status=Status.SUCCEEDED).count()
    rate = current_rate(rollout, succeeded)
    budget: int | None = None
    if rate is not None:
        recent = rollout.devices.filter(last_started_at__gt=now - dt.timedelta(minutes=1)).count()
        budget = rate - recent
        if budget <= 0:
            return 0
    due = (
        rollout.devices.filter(wave__state__in=[RolloutWave.State.RUNNING, RolloutWave.State.DONE])
        .filter(Q(status=Status.PENDING) | Q(status=Status.RETRY_WAIT, next_attempt_at__lte=now))
        .select_related("device", "device__device_type", "device__facility")
        .order_by("wave__index", "id")
    )
    started = 0
    deltas: dict[str, FirmwareDelta | None] = {}
    for entry in due.iterator(chunk_size=500):
        if budget is not None and started >= budget:
            break
        if not in_window(rollout, timezone_name=entry.device.facility.timezone, now=now):
            continue
        if rollout.window_start is not None and entry.device.status != Device.Status.ONLINE:
            continue  # a transfer started now would wait for the device and could reach it after the window
        delta = None
        if rollout.delta_updates and entry.attempts == 0:
            # Retries always send the whole image: a failed delta falls back to it.
            if entry.from_version not in deltas:
                deltas[entry.from_version] = _delta_from(rollout, entry.from_version)
            delta = deltas[entry.from_version]
        try:
            transfer = firmware_transfer_start(device=entry.device, image=rollout.image, delta=delta)
        except FirmwareError:
            continue  # a transfer from outside this rollout is in progress: try again next tick
        entry.transfer = transfer
        entry.status = Status.IN_PROGRESS
        entry.attempts += 1
        entry.last_started_at = now
        entry.next_attempt_at = None
        entry.save(update_fields=["transfer", "status", "attempts", "last_started_at", "next_attempt_at"])
        started += 1
    return started


def _delta_from(rollout: Rollout, version: str) -> FirmwareDelta | None:
    base = (
        FirmwareImage.objects.defer("image").filter(firmware_line=rollout.image.firmware_line, version=version).first()
    )
    return firmware_delta_get(base=base, target=rollout.image) if base is not None and version else None


def _complete_if_done(rollout: Rollout, now: dt.datetime) -> None:
    if rollout.waves.exclude(state=RolloutWave.State.DONE).exists():
        return
    if rollout.devices.filter(status__in=RolloutDevice.OPEN_STATUSES).exists():
        return
    rollout.devices.update(holds_device=False)
    rollout.state = Rollout.State.COMPLETED
    rollout.finished_at = now
    rollout.save(update_fields=["state", "finished_at"])
