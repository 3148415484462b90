"""Writes to the fleet. Each validates fully, so the admin and the API get the same errors."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache as cache_function
from typing import Any

from auditlog.models import LogEntry
from django.contrib.auth.hashers import check_password, make_password
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from accounts.models import Tenant
from devices.control import DISCONNECT, device_control_send
from devices.csvimport import BulkRow
from devices.errors import ClaimRateLimited
from devices.keys import key_pair_generate, private_key_pem
from devices.models import (
    Channel,
    ChannelAllocation,
    Device,
    DeviceGroup,
    DeviceType,
    Facility,
    FactoryDevice,
    Load,
)
from devices.selectors import device_type_available_list, facility_active_list
from devices.validators import validate_serial


def facility_create(
    *,
    tenant: Tenant,
    name: str,
    timezone: str,
    kind: str = Facility.Kind.OTHER,
    address: str = "",
    floor_area_m2: Decimal | float | None = None,
    tags: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    opening_hours: dict[str, Any] | None = None,
    peak_target_kw: Decimal | float | None = None,
    holiday_region: str = "",
) -> Facility:
    facility = Facility(
        tenant=tenant,
        name=name,
        timezone=timezone,
        kind=kind,
        address=address,
        floor_area_m2=None if floor_area_m2 is None else Decimal(str(floor_area_m2)),
        tags=[] if tags is None else tags,
        metadata=metadata or {},
        opening_hours=opening_hours or {},
        peak_target_kw=None if peak_target_kw is None else Decimal(str(peak_target_kw)),
        holiday_region=holiday_region,
    )
    facility.full_clean()
    facility.save()
    return facility


def load_create(*, facility: Facility, name: str, kind: str = Load.Kind.OTHER, cost_centre: str = "") -> Load:
    load = Load(tenant_id=facility.tenant_id, facility=facility, name=name, kind=kind, cost_centre=cost_centre)
    load.full_clean()
    load.save()
    return load


def device_group_create(*, tenant: Tenant, name: str, description: str = "") -> DeviceGroup:
    group = DeviceGroup(tenant=tenant, name=name, description=description)
    group.full_clean()
    group.save()
    return group


def device_type_create(
    *, model_name: str, channels: list[dict[str, Any]], firmware_line: str, manufacturer: str = ""
) -> DeviceType:
    device_type = DeviceType(
        model_name=model_name, channels=channels, firmware_line=firmware_line, manufacturer=manufacturer
    )
    device_type.full_clean()
    device_type.save()
    return device_type


# Serials are global, since devices authenticate by serial. Whether a serial is taken (by this tenant or
# another) is never said, or a tenant could enumerate other tenants' serials through this answer.
SERIAL_UNAVAILABLE = "serial_unavailable"
SERIAL_UNAVAILABLE_MESSAGE = _(
    "This serial cannot be registered. A device pre-provisioned at the factory is claimed with the code on its "
    "label instead."
)


def serial_refused(error: ValidationError) -> bool:
    return any(item.code == SERIAL_UNAVAILABLE for item in getattr(error, "error_dict", {}).get("serial", []))


def _check_groups(*, tenant_id: int, groups: Iterable[DeviceGroup]) -> list[DeviceGroup]:
    groups = list(groups)
    if any(group.tenant_id != tenant_id for group in groups):
        raise ValidationError({"groups": "A device can only join groups of its own tenant."})
    return groups


@transaction.atomic
def device_create(
    *,
    tenant: Tenant,
    serial: str,
    device_type: DeviceType,
    facility: Facility,
    name: str = "",
    groups: Iterable[DeviceGroup] = (),
    firmware_version: str = "",
    public_key: bytes | None = None,
) -> Device:
    """Create a device and its channels from the device type's template."""
    if Device.objects.filter(serial=serial).exists():
        raise ValidationError({"serial": ValidationError(SERIAL_UNAVAILABLE_MESSAGE, code=SERIAL_UNAVAILABLE)})
    device = Device(
        tenant=tenant,
        serial=serial,
        name=name,
        device_type=device_type,
        facility=facility,
        firmware_version=firmware_version,
        public_key=public_key,
    )
    device.full_clean()
    device.save()
    device.groups.set(_check_groups(tenant_id=tenant.pk, groups=groups))
    channels = channels_from_template(device=device, specs=device_type.channels)
    for channel in channels:
        channel.full_clean(validate_unique=False)
    Channel.objects.bulk_create(channels)
    return device


def channels_from_template(*, device: Device, specs: list[dict[str, Any]]) -> list[Channel]:
    """The unsaved channels a device gets from its type's template, in frame order."""
    return [
        Channel(
            tenant_id=device.tenant_id,
            device=device,
            index=index,
            name=spec["name"],
            quantity=spec["quantity"],
            unit=spec["unit"],
            scale=float(spec.get("scale", 1.0)),
            phase=spec.get("phase", ""),
            plausible_min=None if spec.get("min") is None else float(spec["min"]),
            plausible_max=None if spec.get("max") is None else float(spec["max"]),
        )
        for index, spec in enumerate(specs)
    ]


@transaction.atomic
def device_move(*, device: Device, facility: Facility) -> Device:
    """Move a device to another facility of the same tenant. Loads of the old facility are unassigned."""
    if facility.tenant_id != device.tenant_id:
        raise ValidationError({"facility": "A device cannot be moved to another tenant's facility."})
    device.facility = facility
    device.full_clean()
    device.save(update_fields=["facility"])
    device.channels.exclude(load__isnull=True).exclude(load__facility=facility).update(load=None)
    return device


def device_set_groups(*, device: Device, groups: Iterable[DeviceGroup]) -> None:
    device.groups.set(_check_groups(tenant_id=device.tenant_id, groups=groups))


def channel_assign_load(*, access: Access, channel: Channel, load: Load | None) -> Channel:
    """A facility manager re-allocates a channel to another load of the same facility."""
    if channel.tenant_id != access.tenant_id or not access.manages_facility(channel.device.facility_id):
        raise TenantAccessDenied("You may not change channels of this facility.")
    channel.load = load
    channel.full_clean()
    channel.save(update_fields=["load"])
    return channel


def channel_update(*, channel: Channel, name: str | None = None, tags: list[str] | None = None) -> Channel:
    """Edit what does not change the meaning of stored readings (quantity, unit and scale do)."""
    if name is not None:
        channel.name = name
    if tags is not None:
        channel.tags = tags
    channel.full_clean()
    channel.save(update_fields=["name", "tags"])
    return channel


@dataclass(frozen=True)
class IssuedKey:
    """A freshly issued key pair. `private_key_pem` exists only in this value: show it once, then drop it."""

    device: Device
    private_key_pem: str


def device_provision(
    *,
    tenant: Tenant,
    serial: str,
    device_type: DeviceType,
    facility: Facility,
    name: str = "",
    groups: Iterable[DeviceGroup] = (),
    firmware_version: str = "",
) -> IssuedKey:
    """Create a device with a new Ed25519 key pair; only the public half is stored."""
    private_key, public_key = key_pair_generate()
    device = _device_create_keyed(
        tenant=tenant,
        serial=serial,
        device_type=device_type,
        facility=facility,
        name=name,
        groups=groups,
        firmware_version=firmware_version,
        public_key=public_key,
    )
    return IssuedKey(device=device, private_key_pem=private_key_pem(private_key))


def _device_create_keyed(*, public_key: bytes, **fields: Any) -> Device:
    """`device_create` with its first key: key version 1, rotated now."""
    device = device_create(public_key=public_key, **fields)
    Device.objects.filter(pk=device.pk).update(key_version=1, key_rotated_at=timezone.now())
    device.refresh_from_db()
    return device


def device_key_rotate(*, device: Device) -> IssuedKey:
    """Issue a new key pair. The old key stops working at once; a revocation is lifted."""
    private_key, public_key = key_pair_generate()
    old_version = device.key_version
    Device.objects.filter(pk=device.pk).update(
        public_key=public_key, key_version=F("key_version") + 1, key_rotated_at=timezone.now(), key_revoked_at=None
    )
    device.refresh_from_db()
    _audit_key(device, {"key_version": [str(old_version), str(device.key_version)]})
    _disconnect_on_commit(device, reason="key", message="the device's key was replaced; connect with the new key")
    return IssuedKey(device=device, private_key_pem=private_key_pem(private_key))


def device_key_revoke(*, device: Device) -> Device:
    """Refuse the device's current key at its next handshake (rotate to let it back in)."""
    if device.key_revoked_at is None:
        Device.objects.filter(pk=device.pk).update(key_revoked_at=timezone.now())
        device.refresh_from_db()
        _audit_key(device, {"key_revoked_at": ["None", str(device.key_revoked_at)]})
        _disconnect_on_commit(device, reason="key", message="the device's key was revoked")
    return device


def _disconnect_on_commit(device: Device, *, reason: str, message: str) -> None:
    """Drop the device's live connection, on whichever gateway holds it, once the change is committed."""
    transaction.on_commit(
        lambda: device_control_send(device_id=device.pk, kind=DISCONNECT, reason=reason, message=message)
    )


def _audit_key(device: Device, changes: dict[str, list[str]]) -> None:
    """Key writes bypass save() (they must not race the gateway's presence updates), so they log themselves."""
    LogEntry.objects.log_create(device, force_log=True, action=LogEntry.Action.UPDATE, changes=changes)


# --- Managing the park (portal and API share these; each checks the caller's role) ---------------

FACILITY_FIELDS = (
    "name",
    "address",
    "timezone",
    "kind",
    "floor_area_m2",
    "tags",
    "metadata",
    "opening_hours",
    "peak_target_kw",
    "holiday_region",
)


def _require(allowed: bool, message: str) -> None:
    if not allowed:
        raise TenantAccessDenied(message)


def _require_manages(access: Access, facility: Facility) -> None:
    _require(
        facility.tenant_id == access.tenant_id and access.manages_facility(facility.pk),
        "You may not change this facility.",
    )


def facility_register(*, access: Access, **fields: Any) -> Facility:
    """A tenant admin adds a facility to the park."""
    _require(access.is_admin, "Only tenant admins add facilities.")
    unknown = set(fields) - set(FACILITY_FIELDS)
    if unknown:
        raise ValidationError({name: "Unknown field." for name in unknown})
    return facility_create(tenant=Tenant.objects.get(pk=access.tenant_id), **fields)


def facility_update(*, access: Access, facility: Facility, **fields: Any) -> Facility:
    _require_manages(access, facility)
    unknown = set(fields) - set(FACILITY_FIELDS)
    if unknown:
        raise ValidationError({name: "Unknown field." for name in unknown})
    for name, value in fields.items():
        if name in ("floor_area_m2", "peak_target_kw") and value is not None:
            value = Decimal(str(value))
        if name in ("tags", "opening_hours", "metadata") and value is None:
            value = {} if name != "tags" else []
        setattr(facility, name, value)
    facility.full_clean()
    facility.save()
    return facility


def facility_archive(*, access: Access, facility: Facility) -> Facility:
    """Take a facility out of the park. Its devices must be moved or disabled first, so none keeps streaming."""
    _require(access.is_admin and facility.tenant_id == access.tenant_id, "Only tenant admins archive facilities.")
    if facility.devices.exclude(status=Device.Status.DISABLED).exists():
        raise ValidationError(
            {"facility": "The facility still has active devices: move or disable them before archiving it."}
        )
    if facility.archived_at is None:
        facility.archived_at = timezone.now()
        facility.save(update_fields=["archived_at"])
    return facility


def load_add(
    *, access: Access, facility: Facility, name: str, kind: str = Load.Kind.OTHER, cost_centre: str = ""
) -> Load:
    _require_manages(access, facility)
    if facility.archived_at is not None:
        raise ValidationError({"facility": "The facility is archived."})
    return load_create(facility=facility, name=name, kind=kind, cost_centre=cost_centre)


def load_update(
    *, access: Access, load: Load, name: str | None = None, kind: str | None = None, cost_centre: str | None = None
) -> Load:
    _require_manages(access, load.facility)
    if name is not None:
        load.name = name
    if kind is not None:
        load.kind = kind
    if cost_centre is not None:
        load.cost_centre = cost_centre
    load.full_clean()
    load.save(update_fields=["name", "kind", "cost_centre"])
    return load


def load_archive(*, access: Access, load: Load) -> Load:
    """Stop offering a load for allocation. Past allocations (and so past bills) keep it."""
    _require_manages(access, load.facility)
    if load.channels.exists():
        raise ValidationError({"load": "Channels still feed this load: allocate them elsewhere first."})
    if load.archived_at is None:
        load.archived_at = timezone.now()
        load.save(update_fields=["archived_at"])
    return load


def device_group_add(*, access: Access, name: str, description: str = "") -> DeviceGroup:
    _require(access.is_admin, "Only tenant admins create device groups.")
    return device_group_create(tenant=Tenant.objects.get(pk=access.tenant_id), name=name, description=description)


def device_group_update(
    *, access: Access, group: DeviceGroup, name: str | None = None, description: str | None = None
) -> DeviceGroup:
    _require(access.is_admin and group.tenant_id == access.tenant_id, "Only tenant admins change device groups.")
    if name is not None:
        group.name = name
    if description is not None:
        group.description = description
    group.full_clean()
    group.save(update_fields=["name", "description"])
    return group


def device_group_delete(*, access: Access, group: DeviceGroup) -> None:
    _require(access.is_admin and group.tenant_id == access.tenant_id, "Only tenant admins delete device groups.")
    group.delete()


def device_group_set_members(
    *, access: Access, group: DeviceGroup, add: Iterable[Device] = (), remove: Iterable[Device] = ()
) -> DeviceGroup:
    """Add and remove devices; a facility manager may only move devices of granted facilities."""
    add, remove = list(add), list(remove)
    _require(group.tenant_id == access.tenant_id, "You may not change this group.")
    for device in (*add, *remove):
        _require(
            device.tenant_id == access.tenant_id and access.manages_facility(device.facility_id),
            "You may not change the groups of this device.",
        )
    group.devices.add(*add)
    group.devices.remove(*remove)
    return group


@transaction.atomic
def device_register(
    *,
    access: Access,
    serial: str,
    device_type: DeviceType,
    facility: Facility,
    name: str = "",
    groups: Iterable[DeviceGroup] = (),
    firmware_version: str = "",
    public_key: bytes | None = None,
) -> IssuedKey:
    """Add one device. Without `public_key` a key pair is issued (the private half is returned once);
    with one the device generated itself, that key is stored and `private_key_pem` is empty."""
    _require_manages(access, facility)
    if facility.archived_at is not None:
        raise ValidationError({"facility": "The facility is archived."})
    if device_type.tenant_id not in (None, access.tenant_id):
        raise ValidationError({"device_type": "Unknown device type."})
    pem = ""
    if public_key is None:
        private_key, public_key = key_pair_generate()
        pem = private_key_pem(private_key)
    elif len(public_key) != 32:
        raise ValidationError({"public_key": "An Ed25519 public key is 32 bytes."})
    device = _device_create_keyed(
        tenant=Tenant.objects.get(pk=access.tenant_id),
        serial=serial,
        device_type=device_type,
        facility=facility,
        name=name,
        groups=groups,
        firmware_version=firmware_version,
        public_key=public_key,
    )
    return IssuedKey(device=device, private_key_pem=pem)


def device_update(*, access: Access, device: Device, name: str) -> Device:
    _require_manages(access, device.facility)
    device.name = name
    device.full_clean()
    device.save(update_fields=["name"])
    return device


@transaction.atomic
def device_relocate(*, access: Access, device: Device, facility: Facility, user_id: int | None = None) -> Device:
    """Move a device to another facility; its channels' allocations end now (loads belong to a facility)."""
    _require_manages(access, device.facility)
    _require_manages(access, facility)
    if facility.archived_at is not None:
        raise ValidationError({"facility": "The facility is archived."})
    now = timezone.now()
    for channel in device.channels.exclude(load__isnull=True):
        _allocation_record(channel=channel, load=None, valid_from=now, user_id=user_id)
    return device_move(device=device, facility=facility)


def device_set_enabled(*, access: Access, device: Device, enabled: bool) -> Device:
    """Disable (the gateway refuses it, presence stops updating it) or enable a device."""
    _require_manages(access, device.facility)
    if not enabled:
        device.status = Device.Status.DISABLED
        _disconnect_on_commit(device, reason="disabled", message="the device was disabled")
    elif device.status == Device.Status.DISABLED:
        device.status = Device.Status.OFFLINE if device.last_seen else Device.Status.PROVISIONED
    device.save(update_fields=["status"])
    return device


def device_key_reissue(*, access: Access, device: Device) -> IssuedKey:
    _require_manages(access, device.facility)
    return device_key_rotate(device=device)


def device_key_withdraw(*, access: Access, device: Device) -> Device:
    _require_manages(access, device.facility)
    return device_key_revoke(device=device)


def _allocation_record(*, channel: Channel, load: Load | None, valid_from: Any, user_id: int | None) -> None:
    latest = channel.allocations.order_by("-valid_from").first()
    if latest is None and channel.load_id is not None:
        # Allocated before allocations had dates (the admin, older code): that allocation held until now.
        ChannelAllocation.objects.create(
            tenant_id=channel.tenant_id, channel=channel, load_id=channel.load_id, valid_from=SINCE_EVER
        )
    elif latest is not None and valid_from <= latest.valid_from:
        raise ValidationError(
            {"valid_from": "An allocation can only start after the channel's latest one; it never rewrites history."}
        )
    ChannelAllocation.objects.create(
        tenant_id=channel.tenant_id, channel=channel, load=load, valid_from=valid_from, created_by_id=user_id
    )


SINCE_EVER = datetime(1970, 1, 1, tzinfo=UTC)


@transaction.atomic
def channel_allocate(
    *,
    access: Access,
    channel: Channel,
    load: Load | None,
    valid_from: datetime | None = None,
    user_id: int | None = None,
) -> Channel:
    """From `valid_from` (default now, never in the future) the channel feeds `load` (None: nothing).

    Readings taken before keep their earlier load, so reallocating today does not rewrite last month.
    """
    _require(
        channel.tenant_id == access.tenant_id and access.manages_facility(channel.device.facility_id),
        "You may not change channels of this facility.",
    )
    now = timezone.now()
    valid_from = now if valid_from is None else valid_from
    if timezone.is_naive(valid_from):
        raise ValidationError({"valid_from": "Give a time with its UTC offset."})
    if valid_from > now:
        raise ValidationError({"valid_from": "An allocation cannot start in the future."})
    if load is not None:
        if load.facility_id != channel.device.facility_id:
            raise ValidationError({"load": "The load must belong to the device's facility."})
        if load.archived_at is not None:
            raise ValidationError({"load": "The load is archived."})
    Channel.objects.select_for_update().filter(pk=channel.pk).first()
    _allocation_record(channel=channel, load=load, valid_from=valid_from, user_id=user_id)
    channel.load = load
    channel.full_clean()
    channel.save(update_fields=["load"])
    return channel


# --- Bulk provisioning ----------------------------------------------------------------------------

BULK_BATCH = 500


@dataclass
class BulkResult:
    """What a bulk provisioning found (errors by file line) and, unless a dry run or refused, issued."""

    rows: list[BulkRow]
    errors: dict[int, list[str]]
    dry_run: bool
    issued: list[IssuedKey]

    @property
    def ok(self) -> bool:
        return not self.errors

    def body(self, *, preview_rows: int = 200) -> dict[str, Any]:
        """The JSON answer of the portal's import page and of the API."""
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "rows": len(self.rows),
            "errors": [{"line": line, "messages": messages} for line, messages in sorted(self.errors.items())],
            "preview": [
                {
                    "line": row.line,
                    "serial": row.serial,
                    "type": row.device_type,
                    "facility": row.facility,
                    "name": row.name,
                    "channels": [f"{channel}={load}" for channel, load in row.allocations],
                }
                for row in self.rows[:preview_rows]
            ],
            "devices": [
                {"id": item.device.pk, "serial": item.device.serial, "private_key_pem": item.private_key_pem}
                for item in self.issued
            ],
        }


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def device_bulk_provision(
    *,
    access: Access,
    rows: list[BulkRow],
    read_errors: dict[int, list[str]] | None = None,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> BulkResult:
    """Provision many devices from CSV rows, all or nothing: one bad row and nothing is stored.

    Every row is checked first, with a fixed number of queries for the whole file; the devices, their
    channels and allocations are then written in batches, and `progress(done, total)` follows them.
    """
    errors: dict[int, list[str]] = {line: list(msgs) for line, msgs in (read_errors or {}).items()}

    def error(line: int, message: str) -> None:
        errors.setdefault(line, []).append(message)

    type_refs = {row.device_type for row in rows}
    types = {t.model_name: t for t in device_type_available_list(access=access).filter(model_name__in=type_refs)}
    facility_refs = {row.facility for row in rows}
    facilities = {f.name: f for f in facility_active_list(access=access).filter(name__in=facility_refs)}
    loads = {
        (load.facility_id, load.name): load
        for load in Load.objects.filter(facility__in=list(facilities.values()), archived_at__isnull=True)
    }
    serials = [row.serial for row in rows]
    taken: set[str] = set()
    for chunk in _chunks(serials, 2000):
        taken.update(Device.objects.filter(serial__in=chunk).values_list("serial", flat=True))

    seen: dict[str, int] = {}
    plans: list[tuple[BulkRow, DeviceType, Facility, dict[int, Load]]] = []
    for row in rows:
        try:
            validate_serial(row.serial)
        except ValidationError as exc:
            error(row.line, f"{row.serial!r}: {' '.join(exc.messages)}")
        if row.serial in seen:
            error(row.line, f"Serial {row.serial} is also on line {seen[row.serial]}.")
        seen.setdefault(row.serial, row.line)
        if row.serial in taken:
            error(row.line, f"A device with serial {row.serial} already exists.")
        if len(row.name) > 200:
            error(row.line, "The name is longer than 200 characters.")
        device_type = types.get(row.device_type)
        if device_type is None:
            error(row.line, f"Unknown device type {row.device_type!r}.")
        facility = facilities.get(row.facility)
        if facility is None:
            error(row.line, f"No facility {row.facility!r} in your park.")
        elif not access.manages_facility(facility.pk):
            error(row.line, f"You may not add devices to {facility.name}.")
        if device_type is None or facility is None:
            continue
        by_name = {str(spec["name"]): index for index, spec in enumerate(device_type.channels)}
        allocation: dict[int, Load] = {}
        for channel_ref, load_name in row.allocations:
            index = int(channel_ref) if channel_ref.isdigit() else by_name.get(channel_ref)
            if index is None or not 0 <= index < len(device_type.channels):
                error(row.line, f"{device_type.model_name} has no channel {channel_ref!r}.")
                continue
            if not load_name:
                continue
            load = loads.get((facility.pk, load_name))
            if load is None:
                error(row.line, f"{facility.name} has no load {load_name!r}.")
                continue
            allocation[index] = load
        plans.append((row, device_type, facility, allocation))

    result = BulkResult(rows=rows, errors=errors, dry_run=dry_run, issued=[])
    if errors or dry_run:
        return result
    result.issued = _bulk_create(access=access, plans=plans, progress=progress)
    return result


@transaction.atomic
def _bulk_create(
    *,
    access: Access,
    plans: list[tuple[BulkRow, DeviceType, Facility, dict[int, Load]]],
    progress: Callable[[int, int], None] | None,
) -> list[IssuedKey]:
    now = timezone.now()
    total = len(plans)
    issued: list[IssuedKey] = []
    for batch in _chunks(plans, BULK_BATCH):
        devices, pems = [], []
        for row, device_type, facility, _allocation in batch:
            private_key, public_key = key_pair_generate()
            pems.append(private_key_pem(private_key))
            devices.append(
                Device(
                    tenant_id=access.tenant_id,
                    serial=row.serial,
                    name=row.name,
                    device_type=device_type,
                    facility=facility,
                    public_key=public_key,
                    key_version=1,
                    key_rotated_at=now,
                )
            )
        try:
            with transaction.atomic():
                Device.objects.bulk_create(devices)
        except IntegrityError as exc:
            # A device with one of these serials was added since the check: refuse the whole file.
            raise ValidationError({"serial": "A serial in the file was just taken; check the file again."}) from exc
        rows: list[tuple[Any, ...]] = []
        for device, (_row, device_type, _facility, allocation) in zip(devices, batch, strict=True):
            for index, spec in enumerate(device_type.channels):
                load = allocation.get(index)
                rows.append(
                    (
                        access.tenant_id,
                        device.pk,
                        index,
                        spec["name"],
                        spec["quantity"],
                        spec["unit"],
                        float(spec.get("scale", 1.0)),
                        spec.get("phase", ""),
                        load.pk if load is not None else None,
                    )
                )
        _channels_insert(rows)
        _allocations_insert(tenant_id=access.tenant_id, device_ids=[d.pk for d in devices], valid_from=now)
        _audit_bulk(access=access, devices=devices, channel_rows=rows)
        issued.extend(IssuedKey(device=d, private_key_pem=pem) for d, pem in zip(devices, pems, strict=True))
        if progress is not None:
            progress(len(issued), total)
    return issued


CHANNEL_COLUMNS = ("tenant_id", "device_id", "index", "name", "quantity", "unit", "scale", "phase", "load_id")


def _channels_insert(rows: list[tuple[Any, ...]]) -> None:
    """Channels of freshly imported devices. PostgreSQL takes them by COPY (an import writes 120,000 of
    them); other databases through the ORM."""
    if connection.vendor == "postgresql":
        columns = ", ".join(f'"{c}"' for c in (*CHANNEL_COLUMNS, "tags"))
        with connection.cursor() as cursor, cursor.cursor.copy(f"COPY devices_channel ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((*row, "[]"))
        return
    Channel.objects.bulk_create(
        [Channel(**dict(zip(CHANNEL_COLUMNS, row, strict=True)), tags=[]) for row in rows], batch_size=1000
    )


def _allocations_insert(*, tenant_id: int, device_ids: list[int], valid_from: datetime) -> None:
    """One allocation per allocated channel of these devices, from `valid_from`, in one statement."""
    placeholders = ", ".join(["%s"] * len(device_ids))
    with connection.cursor() as cursor:
        # Only placeholders are interpolated; every value travels as a parameter.
        cursor.execute(
            "INSERT INTO devices_channelallocation (tenant_id, channel_id, load_id, valid_from, created_at) "  # noqa: S608
            "SELECT tenant_id, id, load_id, %s, %s FROM devices_channel "
            f"WHERE tenant_id = %s AND load_id IS NOT NULL AND device_id IN ({placeholders})",
            [valid_from, timezone.now(), tenant_id, *device_ids],
        )


def _audit_bulk(*, access: Access, devices: list[Device], channel_rows: list[tuple[Any, ...]]) -> None:
    """bulk_create sends no signals: one audit-log entry per imported device, written in bulk too."""
    content_type = ContentType.objects.get_for_model(Device)
    allocated: dict[int, int] = {}
    for row in channel_rows:
        if row[-1] is not None:
            allocated[row[1]] = allocated.get(row[1], 0) + 1
    LogEntry.objects.bulk_create(
        [
            LogEntry(
                content_type=content_type,
                object_pk=str(device.pk),
                object_id=device.pk,
                object_repr=str(device),
                action=LogEntry.Action.CREATE,
                changes={
                    "serial": ["None", device.serial],
                    "facility": ["None", str(device.facility_id)],
                    "key_version": ["None", "1"],
                    "allocated_channels": ["0", str(allocated.get(device.pk, 0))],
                },
                changes_text="bulk import",
                actor_id=access.user_id,
                additional_data={"tenant_id": access.tenant_id},
            )
            for device in devices
        ]
    )


# --- Claiming factory devices ---------------------------------------------------------------------

CLAIM_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: it is read off a label
CLAIM_CODE_LENGTH = 12
# Failed claims allowed per window, per serial and per tenant (shared through the cache, i.e. Redis
# in production), so a code cannot be found by trying: 32**12 codes, 5 tries per serial per 15 minutes.
CLAIM_FAILURES_PER_SERIAL = 5
CLAIM_FAILURES_PER_TENANT = 20
CLAIM_WINDOW_S = 15 * 60
CLAIM_MISMATCH = "The serial and claim code do not match a device waiting to be claimed."


@dataclass(frozen=True)
class FactoryIssued:
    factory_device: FactoryDevice
    claim_code: str
    private_key_pem: str


@transaction.atomic
def factory_device_create(*, serial: str, device_type: DeviceType, firmware_version: str = "") -> FactoryIssued:
    """Pre-provision a device at the factory: its key pair and claim code are returned once, for the
    device's flash and its label."""
    if Device.objects.filter(serial=serial).exists():
        raise ValidationError({"serial": "A device with this serial already exists."})
    private_key, public_key = key_pair_generate()
    code = "".join(secrets.choice(CLAIM_CODE_ALPHABET) for _ in range(CLAIM_CODE_LENGTH))
    record = FactoryDevice(
        serial=serial,
        device_type=device_type,
        firmware_version=firmware_version,
        public_key=public_key,
        claim_code_hash=make_password(code),
    )
    record.full_clean()
    record.save()
    return FactoryIssued(factory_device=record, claim_code=code, private_key_pem=private_key_pem(private_key))


def _claim_counters(access: Access, serial: str) -> list[tuple[str, int]]:
    digest = hashlib.sha256(serial.encode()).hexdigest()[:32]
    return [
        (f"claim-failures:serial:{digest}", CLAIM_FAILURES_PER_SERIAL),
        (f"claim-failures:tenant:{access.tenant_id}", CLAIM_FAILURES_PER_TENANT),
    ]


def device_claim(*, access: Access, serial: str, claim_code: str, facility: Facility, name: str = "") -> Device:
    """A tenant claims a factory device with the serial and claim code on its label. The device keeps the
    key the factory installed, so no key is shown. Failed attempts are limited per serial and tenant."""
    _require_manages(access, facility)
    if facility.archived_at is not None:
        raise ValidationError({"facility": "The facility is archived."})
    counters = _claim_counters(access, serial)
    if any((cache.get(key) or 0) >= limit for key, limit in counters):
        raise ClaimRateLimited("Too many failed claims; try again in 15 minutes.")
    normalized = claim_code.strip().upper().replace("-", "").replace(" ", "")
    with transaction.atomic():
        record = FactoryDevice.objects.select_for_update().filter(serial=serial, claimed_at__isnull=True).first()
        # An unknown serial checks a dummy hash, so both answers take the same time.
        valid = check_password(normalized, record.claim_code_hash if record else _dummy_claim_hash())
        if record is not None and valid:
            device = device_create(
                tenant=Tenant.objects.get(pk=access.tenant_id),
                serial=record.serial,
                device_type=record.device_type,
                facility=facility,
                name=name,
                firmware_version=record.firmware_version,
                public_key=bytes(record.public_key),
            )
            Device.objects.filter(pk=device.pk).update(key_version=1, key_rotated_at=timezone.now())
            record.claimed_at = timezone.now()
            record.claimed_device = device
            record.save(update_fields=["claimed_at", "claimed_device"])
            device.refresh_from_db()
            return device
    for key, _limit in counters:
        cache.add(key, 0, CLAIM_WINDOW_S)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, CLAIM_WINDOW_S)
    raise ValidationError({"claim_code": CLAIM_MISMATCH})


@cache_function
def _dummy_claim_hash() -> str:
    return make_password("not-a-claim-code")


# --- Tenant-defined device types ------------------------------------------------------------------


def _require_own_type(access: Access, device_type: DeviceType) -> None:
    _require(
        access.is_admin and device_type.tenant_id == access.tenant_id,
        "Only tenant admins change their own device types; the platform catalogue is read-only.",
    )


def device_type_define(
    *, access: Access, model_name: str, channels: list[dict[str, Any]], firmware_line: str, manufacturer: str = ""
) -> DeviceType:
    """A tenant's own hardware model beside the platform catalogue; its channel template is validated."""
    _require(access.is_admin, "Only tenant admins define device types.")
    device_type = DeviceType(
        tenant_id=access.tenant_id,
        model_name=model_name,
        channels=channels,
        firmware_line=firmware_line,
        manufacturer=manufacturer,
    )
    device_type.full_clean()
    device_type.save()
    return device_type


def device_type_update(*, access: Access, device_type: DeviceType, **fields: Any) -> DeviceType:
    """Devices keep the channels they were made with; a changed template applies to devices added later."""
    _require_own_type(access, device_type)
    unknown = set(fields) - {"model_name", "channels", "firmware_line", "manufacturer"}
    if unknown:
        raise ValidationError({name: "Unknown field." for name in unknown})
    for name, value in fields.items():
        setattr(device_type, name, value)
    device_type.full_clean()
    device_type.save()
    return device_type


def device_type_delete(*, access: Access, device_type: DeviceType) -> None:
    _require_own_type(access, device_type)
    if device_type.devices.exists():
        raise ValidationError({"device_type": "Devices of this type exist; it cannot be deleted."})
    device_type.delete()
