"""What a rollout would do: its checked settings, its target resolved to the tenant's devices, its waves.

The portal's preview and `rollout_create` both call `rollout_plan`, so what the preview shows is what
starts. Every device query starts from `Device.objects.filter(tenant_id=...)`: a group, facility or
device id of another tenant selects nothing and is reported as unknown.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _

from devices.models import Device, DeviceGroup, DeviceType, Facility
from firmware.errors import FirmwareError
from firmware.models import FirmwareImage, FirmwareTransfer, Rollout, RolloutDevice

MAX_WAVES = 20
MAX_RATE_PER_MINUTE = 100_000
MAX_ATTEMPTS = 10
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 10, 7 * 86_400
MAX_BACKOFF_S = 86_400
MAX_RAMP_FACTOR = 10.0


@dataclass(frozen=True)
class RolloutSpec:
    name: str
    image: FirmwareImage
    device_type: DeviceType
    target_kind: str
    from_versions: Sequence[str] = ()
    target_groups: Sequence[int] = ()
    target_device_ids: Sequence[int] = ()
    target_facility: int | None = None
    target_tag: str = ""
    include_joining: bool = False
    wave_kind: str = Rollout.WaveKind.PERCENT
    wave_values: Sequence[int] = (100,)
    success_threshold_percent: int = 100
    auto_advance: bool = True
    error_threshold_count: int | None = None
    error_threshold_percent: float | None = None
    rate_per_minute: int | None = None
    rate_ramp_factor: float = 1.0
    rate_ramp_step: int = 0
    window_start: dt.time | None = None
    window_end: dt.time | None = None
    device_timeout_s: int = 3600
    max_attempts: int = 3
    retry_backoff_s: int = 60
    requires_approval: bool = False
    delta_updates: bool = True


def spec_from_values(values: Mapping[str, Any]) -> RolloutSpec:
    """A spec from flat, already parsed values named as RolloutSpec's fields (the API and the form)."""
    names = {f.name for f in fields(RolloutSpec)}
    kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
    return RolloutSpec(**kwargs)


@dataclass(frozen=True)
class Excluded:
    device_id: int
    serial: str
    reason: str  # "incompatible", "offline" or "busy"
    detail: str


@dataclass
class RolloutPlan:
    waves: list[list[Device]]
    excluded: list[Excluded] = field(default_factory=list)

    @property
    def device_count(self) -> int:
        return sum(len(wave) for wave in self.waves)

    @property
    def excluded_counts(self) -> dict[str, int]:
        counts = {"incompatible": 0, "offline": 0, "busy": 0}
        for item in self.excluded:
            counts[item.reason] += 1
        return counts


def _range(value: float | None, low: float, high: float, what: str) -> None:
    if value is not None and not low <= value <= high:
        raise FirmwareError(
            _("%(what)s must be between %(low)s and %(high)s.") % {"what": what, "low": low, "high": high}
        )


def spec_validate(spec: RolloutSpec) -> None:
    """Refuse settings out of range before anything is resolved or stored."""
    if not spec.name.strip():
        raise FirmwareError(_("The rollout needs a name."))
    if spec.image.firmware_line != spec.device_type.firmware_line:
        raise FirmwareError(
            _("Image %(image)s is of line %(line)s, but device type %(type)s runs line %(type_line)s.")
            % {
                "image": spec.image,
                "line": spec.image.firmware_line,
                "type": spec.device_type,
                "type_line": spec.device_type.firmware_line,
            }
        )
    if spec.image.version in spec.from_versions:
        raise FirmwareError(_("A rollout cannot upgrade from the version it installs."))
    if spec.target_kind not in Rollout.TargetKind.values:
        raise FirmwareError(_("Unknown target kind %(kind)r.") % {"kind": spec.target_kind})
    if spec.target_kind == Rollout.TargetKind.GROUPS and not spec.target_groups:
        raise FirmwareError(_("Name at least one device group."))
    if spec.target_kind == Rollout.TargetKind.DEVICES and not spec.target_device_ids:
        raise FirmwareError(_("Name at least one device."))
    if spec.target_kind == Rollout.TargetKind.FILTER and spec.target_facility is None and not spec.target_tag:
        raise FirmwareError(_("A filter target needs a facility or a tag."))
    _waves_validate(spec.wave_kind, list(spec.wave_values))
    _range(spec.success_threshold_percent, 1, 100, _("The success threshold (%)"))
    if spec.error_threshold_count is not None and spec.error_threshold_percent is not None:
        raise FirmwareError(_("Give the error threshold as a count or as a percentage, not both."))
    _range(spec.error_threshold_count, 1, 1_000_000, _("The error threshold"))
    if spec.error_threshold_percent is not None and not 0 < spec.error_threshold_percent <= 100:
        raise FirmwareError(_("The error threshold (%) must be above 0 and at most 100."))
    _range(spec.rate_per_minute, 1, MAX_RATE_PER_MINUTE, _("The rate (devices per minute)"))
    _range(spec.rate_ramp_factor, 1.0, MAX_RAMP_FACTOR, _("The ramp factor"))
    _range(spec.rate_ramp_step, 0, 1_000_000, _("The ramp step"))
    if spec.rate_ramp_factor > 1.0 and (spec.rate_per_minute is None or spec.rate_ramp_step < 1):
        raise FirmwareError(_("A ramp needs a base rate and a step of at least one success."))
    if (spec.window_start is None) != (spec.window_end is None):
        raise FirmwareError(_("A maintenance window needs both a start and an end."))
    if spec.window_start is not None and spec.window_start == spec.window_end:
        raise FirmwareError(_("A maintenance window cannot start and end at the same time."))
    _range(spec.device_timeout_s, MIN_TIMEOUT_S, MAX_TIMEOUT_S, _("The device timeout (s)"))
    _range(spec.max_attempts, 1, MAX_ATTEMPTS, _("The number of attempts"))
    _range(spec.retry_backoff_s, 1, MAX_BACKOFF_S, _("The retry backoff (s)"))


def _waves_validate(kind: str, values: list[int]) -> None:
    if kind not in Rollout.WaveKind.values:
        raise FirmwareError(_("Unknown wave kind %(kind)r.") % {"kind": kind})
    if not values or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise FirmwareError(_("Wave sizes must be whole numbers."))
    if kind == Rollout.WaveKind.EQUAL:
        if len(values) != 1:
            raise FirmwareError(_("Equal waves take one number: how many groups."))
        _range(values[0], 1, MAX_WAVES, _("The number of waves"))
        return
    if len(values) > MAX_WAVES:
        raise FirmwareError(_("At most %(n)d waves.") % {"n": MAX_WAVES})
    if kind == Rollout.WaveKind.PERCENT:
        if any(not 0 < v <= 100 for v in values) or any(b <= a for a, b in zip(values, values[1:], strict=False)):
            raise FirmwareError(_("Wave percentages must rise strictly, each between 1 and 100."))
        if values[-1] != 100:
            raise FirmwareError(_("The last wave must reach 100 %."))
    elif any(v < 1 for v in values):
        raise FirmwareError(_("Wave counts must be at least 1."))


def wave_sizes(kind: str, values: Sequence[int], total: int) -> list[int]:
    """Devices per wave. Percentages are cumulative (1, 10, 100: 1 % first, then up to 10 %, then the
    rest), each wave holding at least one device; counts are per wave and the last wave takes the
    rest; equal groups differ by at most one device. Empty waves are dropped."""
    sizes: list[int]
    if kind == Rollout.WaveKind.EQUAL:
        n = min(values[0], total)
        sizes = [total // n + (1 if i < total % n else 0) for i in range(n)] if n else []
    elif kind == Rollout.WaveKind.PERCENT:
        sizes, reached = [], 0
        for percent in values:
            upto = total if percent == 100 else min(total, max(reached + 1, math.ceil(total * percent / 100)))
            sizes.append(upto - reached)
            reached = upto
    else:
        sizes, left = [], total
        for count in values:
            take = min(count, left)
            sizes.append(take)
            left -= take
        if left and sizes:
            sizes[-1] += left
    return [size for size in sizes if size > 0]


def target_devices(*, tenant_id: int, spec: RolloutSpec) -> QuerySet[Device]:
    """The tenant's devices the target names, before compatibility. Foreign ids are refused."""
    devices = Device.objects.filter(tenant_id=tenant_id)
    kind = spec.target_kind
    if kind == Rollout.TargetKind.DEVICE_TYPE:
        devices = devices.filter(device_type_id=spec.device_type.pk)
    elif kind == Rollout.TargetKind.GROUPS:
        wanted = set(spec.target_groups)
        found = set(DeviceGroup.objects.filter(tenant_id=tenant_id, pk__in=wanted).values_list("pk", flat=True))
        if found != wanted:
            raise FirmwareError(_("Unknown device groups: %(ids)s.") % {"ids": _ids(wanted - found)})
        devices = devices.filter(groups__in=wanted).distinct()
    elif kind == Rollout.TargetKind.DEVICES:
        wanted = set(spec.target_device_ids)
        found = set(devices.filter(pk__in=wanted).values_list("pk", flat=True))
        if found != wanted:
            raise FirmwareError(_("Unknown devices: %(ids)s.") % {"ids": _ids(wanted - found)})
        devices = devices.filter(pk__in=wanted)
    else:
        if spec.target_facility is not None:
            if not Facility.objects.filter(tenant_id=tenant_id, pk=spec.target_facility).exists():
                raise FirmwareError(_("Unknown facility: %(ids)s.") % {"ids": spec.target_facility})
            devices = devices.filter(facility_id=spec.target_facility)
        if spec.target_tag:
            tagged = [
                pk
                for pk, tags in Facility.objects.filter(tenant_id=tenant_id).values_list("pk", "tags")
                if isinstance(tags, list) and spec.target_tag in tags
            ]
            devices = devices.filter(facility_id__in=tagged)
    return devices.select_related("facility", "device_type").order_by("pk")


def _ids(ids: set[int]) -> str:
    return ", ".join(str(i) for i in sorted(ids))


def busy_device_ids(device_ids: Sequence[int]) -> set[int]:
    """Devices held by an active rollout or with a transfer in progress."""
    held = set(
        RolloutDevice.objects.filter(device_id__in=device_ids, holds_device=True).values_list("device_id", flat=True)
    )
    transferring = set(
        FirmwareTransfer.objects.filter(device_id__in=device_ids, state__in=FirmwareTransfer.ACTIVE_STATES).values_list(
            "device_id", flat=True
        )
    )
    return held | transferring


def eligible(*, devices: Sequence[Device], spec: RolloutSpec, strict_busy: bool) -> tuple[list[Device], list[Excluded]]:
    """Split target devices into those the rollout takes and those it leaves out, with the reason."""
    busy = busy_device_ids([d.pk for d in devices])
    taken: list[Device] = []
    excluded: list[Excluded] = []
    for device in devices:
        if device.device_type_id != spec.device_type.pk:
            excluded.append(Excluded(device.pk, device.serial, "incompatible", _("another device type")))
        elif device.firmware_version == spec.image.version:
            excluded.append(Excluded(device.pk, device.serial, "incompatible", _("already runs this version")))
        elif spec.from_versions and device.firmware_version not in spec.from_versions:
            excluded.append(
                Excluded(
                    device.pk,
                    device.serial,
                    "incompatible",
                    _("runs %(v)s, not a version this rollout upgrades from") % {"v": device.firmware_version or "?"},
                )
            )
        elif device.pk in busy:
            if strict_busy:
                raise FirmwareError(
                    _("Device %(serial)s is already in a running rollout or transfer.") % {"serial": device.serial}
                )
            excluded.append(Excluded(device.pk, device.serial, "busy", _("in another rollout or transfer")))
        elif device.status != Device.Status.ONLINE:
            excluded.append(Excluded(device.pk, device.serial, "offline", _("not connected")))
        else:
            taken.append(device)
    return taken, excluded


def rollout_device_types(*, tenant_id: int) -> QuerySet[DeviceType]:
    """The device types a tenant may roll out to: its own, and the platform's types it has devices of.
    Another tenant's type is never among them, even when the tenant (wrongly) holds a device of it."""
    used = Device.objects.filter(tenant_id=tenant_id).values("device_type_id")
    return DeviceType.objects.filter(Q(tenant_id=tenant_id) | Q(tenant__isnull=True, pk__in=used))


def rollout_plan(*, tenant_id: int, spec: RolloutSpec) -> RolloutPlan:
    spec_validate(spec)
    if spec.image.tenant_id not in (None, tenant_id):  # another tenant's upload for its own device type
        raise FirmwareError(_("There is no such image."))
    if not rollout_device_types(tenant_id=tenant_id).filter(pk=spec.device_type.pk).exists():
        # The same answer for another tenant's type and an unused platform type: ids cannot be probed.
        raise FirmwareError(
            _("Device type %(id)d is not one of your organisation's types or a type its devices use.")
            % {"id": spec.device_type.pk}
        )
    devices = list(target_devices(tenant_id=tenant_id, spec=spec))
    taken, excluded = eligible(devices=devices, spec=spec, strict_busy=spec.target_kind == Rollout.TargetKind.DEVICES)
    sizes = wave_sizes(spec.wave_kind, spec.wave_values, len(taken))
    waves, start = [], 0
    for size in sizes:
        waves.append(taken[start : start + size])
        start += size
    return RolloutPlan(waves=waves, excluded=excluded)
