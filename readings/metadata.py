"""What the store needs to know about channels and tenants, cached briefly per process.

Ingest looks channels up for every batch; the facts used here (owner, counter or not, time zone,
retention) change rarely, so a short cache saves a query per message without serving stale
answers for long.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from accounts.models import Tenant
from devices.models import Channel
from devices.quantities import is_counter

CACHE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class ChannelMeta:
    channel_id: int
    tenant_id: int
    device_id: int
    facility_id: int
    is_counter: bool
    tz: ZoneInfo
    plausible_min: float | None = None
    plausible_max: float | None = None


_channels: dict[int, tuple[float, ChannelMeta]] = {}
_retention: dict[int, tuple[float, int]] = {}


def channel_meta(channel_ids: Iterable[int]) -> dict[int, ChannelMeta]:
    now = time.monotonic()
    wanted = {int(c) for c in channel_ids}
    found: dict[int, ChannelMeta] = {}
    for channel_id in wanted:
        hit = _channels.get(channel_id)
        if hit and now - hit[0] < CACHE_SECONDS:
            found[channel_id] = hit[1]
    missing = wanted - found.keys()
    if missing:
        rows = Channel.objects.filter(id__in=missing).values_list(
            "id",
            "tenant_id",
            "device_id",
            "device__facility_id",
            "quantity",
            "device__facility__timezone",
            "plausible_min",
            "plausible_max",
        )
        for channel_id, tenant_id, device_id, facility_id, quantity, tz, low, high in rows:
            meta = ChannelMeta(
                channel_id, tenant_id, device_id, facility_id, is_counter(quantity), ZoneInfo(tz), low, high
            )
            _channels[channel_id] = (now, meta)
            found[channel_id] = meta
    return found


def raw_retention_days(tenant_id: int) -> int | None:
    now = time.monotonic()
    hit = _retention.get(tenant_id)
    if hit and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    days = Tenant.objects.filter(pk=tenant_id).values_list("raw_retention_days", flat=True).first()
    if days is None:
        return None
    _retention[tenant_id] = (now, days)
    return days


def clear_caches() -> None:
    _channels.clear()
    _retention.clear()
