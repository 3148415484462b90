"""Writes to the fleet. Each validates fully, so the admin and the API get the same errors."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from accounts.models import Tenant
from devices.keys import key_pair_generate, private_key_pem
from devices.models import Channel, Device, DeviceGroup, DeviceType, Facility, Load


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
    )
    facility.full_clean()
    facility.save()
    return facility


def load_create(*, facility: Facility, name: str, kind: str = Load.Kind.OTHER) -> Load:
    load = Load(tenant_id=facility.tenant_id, facility=facility, name=name, kind=kind)
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
    device = device_create(
        tenant=tenant,
        serial=serial,
        device_type=device_type,
        facility=facility,
        name=name,
        groups=groups,
        firmware_version=firmware_version,
        public_key=public_key,
    )
    Device.objects.filter(pk=device.pk).update(key_version=1, key_rotated_at=timezone.now())
    device.refresh_from_db()
    return IssuedKey(device=device, private_key_pem=private_key_pem(private_key))


def device_key_rotate(*, device: Device) -> IssuedKey:
    """Issue a new key pair. The old key stops working at once; a revocation is lifted."""
    private_key, public_key = key_pair_generate()
    Device.objects.filter(pk=device.pk).update(
        public_key=public_key, key_version=F("key_version") + 1, key_rotated_at=timezone.now(), key_revoked_at=None
    )
    device.refresh_from_db()
    return IssuedKey(device=device, private_key_pem=private_key_pem(private_key))


def device_key_revoke(*, device: Device) -> Device:
    """Refuse the device's current key at its next handshake (rotate to let it back in)."""
    if device.key_revoked_at is None:
        Device.objects.filter(pk=device.pk).update(key_revoked_at=timezone.now())
        device.refresh_from_db()
    return device
