from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, F, Q, QuerySet

from accounts.access import Access
from devices.models import Device
from devices.selectors import device_type_available_list
from firmware.models import FirmwareImage, FirmwareTransfer, Rollout, RolloutDevice
from firmware.sql import IdIn

# The live page lists at most this many devices; the counts always cover all of them.
PROGRESS_DEVICES = 2000


def firmware_transfer_list(*, access: Access) -> QuerySet[FirmwareTransfer]:
    qs = FirmwareTransfer.objects.filter(tenant_id=access.tenant_id)
    if access.facility_ids is not None:
        qs = qs.filter(device__facility_id__in=access.facility_ids)
    return qs.select_related("device", "image")


def firmware_transfers_active_for(*, device_ids: Iterable[int]) -> QuerySet[FirmwareTransfer]:
    """For the gateway: active transfers of the devices connected to it (the gateway has no Access)."""
    return FirmwareTransfer.objects.filter(
        IdIn(F("device_id"), device_ids), state__in=FirmwareTransfer.ACTIVE_STATES
    ).select_related("image")


def firmware_image_list(*, access: Access) -> QuerySet[FirmwareImage]:
    """The images this tenant may roll out: those of the lines of the device types it may use (the
    platform's and its own), uploaded by a platform admin or by this tenant, never by another."""
    lines = device_type_available_list(access=access).values("firmware_line")
    return (
        FirmwareImage.objects.defer("image")
        .filter(firmware_line__in=lines)
        .filter(Q(tenant__isnull=True) | Q(tenant_id=access.tenant_id))
    )


def rollout_list(*, access: Access) -> QuerySet[Rollout]:
    return Rollout.objects.filter(tenant_id=access.tenant_id).select_related("image", "device_type")


def rollout_get(*, access: Access, rollout_id: int) -> Rollout:
    return rollout_list(access=access).get(pk=rollout_id)


def rollout_device_list(*, access: Access, rollout: Rollout) -> QuerySet[RolloutDevice]:
    """The rollout's devices this access may see (a facility manager sees those of their facilities)."""
    qs = RolloutDevice.objects.filter(tenant_id=access.tenant_id, rollout_id=rollout.pk)
    if access.facility_ids is not None:
        qs = qs.filter(device__facility_id__in=access.facility_ids)
    return (
        qs.select_related("device", "wave", "transfer", "transfer__image", "transfer__delta")
        .defer("transfer__image__image", "transfer__delta__patch")
        .order_by("wave__index", "id")
    )


@dataclass(frozen=True)
class WaveSummary:
    index: int
    size: int
    state: str
    counts: dict[str, int]


@dataclass(frozen=True)
class RolloutSummary:
    counts: dict[str, int]
    waves: list[WaveSummary]


def _zero_counts() -> dict[str, int]:
    return dict.fromkeys(RolloutDevice.Status.values, 0)


def rollout_summary(*, access: Access, rollout: Rollout) -> RolloutSummary:
    """Devices per status, overall and per wave, over the devices this access sees."""
    rows = (
        rollout_device_list(access=access, rollout=rollout)
        .order_by()
        .values_list("wave__index", "status")
        .annotate(n=Count("id"))
    )
    overall = _zero_counts()
    per_wave: dict[int, dict[str, int]] = {}
    for index, status, n in rows:
        overall[status] += n
        per_wave.setdefault(index, _zero_counts())[status] += n
    waves = [
        WaveSummary(index=w.index, size=w.size, state=w.state, counts=per_wave.get(w.index, _zero_counts()))
        for w in rollout.waves.order_by("index")
    ]
    return RolloutSummary(counts=overall, waves=waves)


@dataclass(frozen=True)
class VersionShare:
    device_type_id: int
    device_type: str
    version: str
    devices: int


def firmware_version_distribution(*, access: Access) -> list[VersionShare]:
    """The fleet's running versions, as the devices last reported them in HELLO."""
    qs = Device.objects.filter(tenant_id=access.tenant_id)
    if access.facility_ids is not None:
        qs = qs.filter(facility_id__in=access.facility_ids)
    rows = (
        qs.order_by()
        .values_list("device_type_id", "device_type__model_name", "firmware_version")
        .annotate(n=Count("id"))
        .order_by("device_type__model_name", "firmware_version")
    )
    return [VersionShare(device_type_id=t, device_type=name, version=v, devices=n) for t, name, v, n in rows]


def rollout_progress(*, access: Access, rollout_id: int) -> dict[str, Any]:
    """What the live rollout page shows, JSON-ready: the same counts as the API's detail."""
    rollout = rollout_get(access=access, rollout_id=rollout_id)
    summary = rollout_summary(access=access, rollout=rollout)
    devices = [
        {
            "id": entry.device_id,
            "serial": entry.device.serial,
            "wave": entry.wave.index,
            "status": entry.status,
            "reason": entry.reason,
            "attempts": entry.attempts,
            "percent": (
                min(100, entry.transfer.offset * 100 // max(1, entry.transfer.sent_size)) if entry.transfer else None
            ),
            "delta": entry.transfer.delta_id is not None if entry.transfer else None,
            "bytes_sent": entry.transfer.offset if entry.transfer else None,
        }
        for entry in rollout_device_list(access=access, rollout=rollout)[:PROGRESS_DEVICES]
    ]
    return {
        "state": rollout.state,
        "pause_reason": rollout.pause_reason,
        "errors_since_resume": rollout.errors_since_resume,
        "counts": summary.counts,
        "waves": [{"index": w.index, "size": w.size, "state": w.state, "counts": w.counts} for w in summary.waves],
        "devices": devices,
    }
