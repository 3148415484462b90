"""Reads of the fleet. Each takes an `Access`, so reaching another tenant is impossible by construction."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.access import Access
from devices.models import Channel, Device, DeviceGroup, DeviceType, Facility, Load


def facility_list(*, access: Access) -> QuerySet[Facility]:
    qs = Facility.objects.filter(tenant_id=access.tenant_id)
    if access.facility_ids is not None:
        qs = qs.filter(id__in=access.facility_ids)
    return qs


def facility_get(*, access: Access, facility_id: int) -> Facility:
    """Raises Facility.DoesNotExist for a facility out of reach, exactly as for a missing one."""
    return facility_list(access=access).get(pk=facility_id)


def load_list(*, access: Access) -> QuerySet[Load]:
    qs = Load.objects.filter(tenant_id=access.tenant_id)
    if access.facility_ids is not None:
        qs = qs.filter(facility_id__in=access.facility_ids)
    return qs.select_related("facility")


def device_list(*, access: Access) -> QuerySet[Device]:
    qs = Device.objects.filter(tenant_id=access.tenant_id)
    if access.facility_ids is not None:
        qs = qs.filter(facility_id__in=access.facility_ids)
    return qs.select_related("facility", "device_type")


def device_get(*, access: Access, device_id: int) -> Device:
    return device_list(access=access).get(pk=device_id)


def device_group_list(*, access: Access) -> QuerySet[DeviceGroup]:
    return DeviceGroup.objects.filter(tenant_id=access.tenant_id)


def channel_list(*, access: Access) -> QuerySet[Channel]:
    qs = Channel.objects.filter(tenant_id=access.tenant_id)
    if access.facility_ids is not None:
        qs = qs.filter(device__facility_id__in=access.facility_ids)
    return qs.select_related("device", "load")


def channel_get(*, access: Access, channel_id: int) -> Channel:
    return channel_list(access=access).get(pk=channel_id)


def device_type_list() -> QuerySet[DeviceType]:
    """The hardware catalogue is shared by every tenant."""
    return DeviceType.objects.all()
