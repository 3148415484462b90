from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from accounts.access import Access
from firmware.models import FirmwareImage, FirmwareTransfer


def firmware_transfer_list(*, access: Access) -> QuerySet[FirmwareTransfer]:
    qs = FirmwareTransfer.objects.filter(tenant_id=access.tenant_id)
    if access.facility_ids is not None:
        qs = qs.filter(device__facility_id__in=access.facility_ids)
    return qs.select_related("device", "image")


def firmware_transfers_active_for(*, device_ids: Iterable[int]) -> QuerySet[FirmwareTransfer]:
    """For the gateway: active transfers of the devices connected to it (the gateway has no Access)."""
    return FirmwareTransfer.objects.filter(
        device_id__in=list(device_ids), state__in=FirmwareTransfer.ACTIVE_STATES
    ).select_related("image")


def firmware_image_list() -> QuerySet[FirmwareImage]:
    return FirmwareImage.objects.defer("image")
