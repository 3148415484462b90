"""Reads of the fleet. Each takes an `Access`, so reaching another tenant is impossible by construction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db.models import OuterRef, Q, QuerySet, Subquery

from accounts.access import Access
from devices.models import Channel, ChannelAllocation, Device, DeviceGroup, DeviceType, Facility, Load


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
    """The platform's hardware catalogue, shared by every tenant (tenant-defined types are not in it)."""
    return DeviceType.objects.filter(tenant__isnull=True)


def device_type_available_list(*, access: Access) -> QuerySet[DeviceType]:
    """The types a tenant may use: the platform catalogue and the tenant's own."""
    return DeviceType.objects.filter(Q(tenant__isnull=True) | Q(tenant_id=access.tenant_id))


def device_type_own_list(*, access: Access) -> QuerySet[DeviceType]:
    return DeviceType.objects.filter(tenant_id=access.tenant_id)


def facility_active_list(*, access: Access) -> QuerySet[Facility]:
    """The park without archived facilities: what pickers and the management pages offer."""
    return facility_list(access=access).filter(archived_at__isnull=True)


def load_active_list(*, access: Access) -> QuerySet[Load]:
    return load_list(access=access).filter(archived_at__isnull=True)


def channel_allocation_list(*, access: Access, channel_id: int) -> QuerySet[ChannelAllocation]:
    """A channel's allocations, oldest first. Empty for a channel out of reach."""
    return (
        ChannelAllocation.objects.filter(tenant_id=access.tenant_id, channel__in=channel_list(access=access))
        .filter(channel_id=channel_id)
        .select_related("load", "created_by")
        .order_by("valid_from")
    )


def channel_loads_at(*, access: Access, channel_ids: list[int], at: datetime) -> dict[int, int | None]:
    """{channel id: id of the load it fed at `at`, or None}, for the channels within reach.

    Reports and bills ask this for a reading's time, so a reallocation never rewrites the past. A
    channel that was never allocated through `channel_allocate` reports its current `Channel.load`.
    """
    latest = ChannelAllocation.objects.filter(channel_id=OuterRef("pk"), valid_from__lte=at).order_by("-valid_from")
    rows = (
        channel_list(access=access)
        .filter(pk__in=channel_ids)
        .annotate(load_then=Subquery(latest.values("load_id")[:1]), any_then=Subquery(latest.values("pk")[:1]))
        .values_list("pk", "load_id", "load_then", "any_then")
    )
    allocated = set(
        ChannelAllocation.objects.filter(channel_id__in=channel_ids).values_list("channel_id", flat=True).distinct()
    )
    result: dict[int, int | None] = {}
    for pk, current, then, any_then in rows:
        if pk not in allocated:
            result[pk] = current
        else:
            result[pk] = then if any_then is not None else None
    return result


def channel_allocation_changes(
    *, access: Access, channels: Sequence[Channel], start: datetime, end: datetime
) -> dict[int, list[tuple[datetime, int | None]]]:
    """Per channel of the tenant: [(from, load id or None)], the load it fed at `start` and then each
    reallocation in (start, end), oldest first. Bills split a channel's consumption at these times.

    The rule of `channel_loads_at`, in one query for a bill's channels: a channel never allocated
    through `channel_allocate` feeds its current `Channel.load`; one allocated only later fed nothing.
    """
    mine = [c for c in channels if c.tenant_id == access.tenant_id]
    history: dict[int, list[tuple[datetime, int | None]]] = {c.pk: [] for c in mine}
    rows = (
        ChannelAllocation.objects.filter(tenant_id=access.tenant_id, channel_id__in=list(history))
        .order_by("channel_id", "valid_from")
        .values_list("channel_id", "valid_from", "load_id")
    )
    for channel_id, valid_from, load_id in rows:
        history[channel_id].append((valid_from, load_id))
    result: dict[int, list[tuple[datetime, int | None]]] = {}
    for channel in mine:
        steps = history[channel.pk]
        if not steps:
            result[channel.pk] = [(start, channel.load_id)]
            continue
        before = [load for valid_from, load in steps if valid_from <= start]
        result[channel.pk] = [(start, before[-1] if before else None)] + [
            (valid_from, load) for valid_from, load in steps if start < valid_from < end
        ]
    return result


def channel_load_at(*, access: Access, channel_id: int, at: datetime) -> Load | None:
    """The load channel `channel_id` fed at time `at` (aware), or None. Raises Channel.DoesNotExist out of reach."""
    channel_get(access=access, channel_id=channel_id)
    load_id = channel_loads_at(access=access, channel_ids=[channel_id], at=at).get(channel_id)
    return None if load_id is None else Load.objects.get(pk=load_id)
