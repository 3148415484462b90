"""What the store needs to know about channels and tenants, cached briefly per process.

Ingest looks channels up for every batch; the facts used here (owner, counter or not, time zone,
retention) change rarely, so a short cache saves a query per message without serving stale
answers for long.

The cache is refreshed as a whole, every `CACHE_SECONDS`, in one query per `REFRESH_CHUNK`
channels, not entry by entry: with entries expiring one by one, every device's batch after its
channels' minute was a query of its own, one per device-minute (5,000 devices: 83 queries a
second in every store process). A lookup that finds the refresh due does it first, so an answer
is never older than `CACHE_SECONDS`, as before; a channel deleted meanwhile leaves the cache then.
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


REFRESH_CHUNK = 5_000

_FIELDS = (
    "id",
    "tenant_id",
    "device_id",
    "device__facility_id",
    "quantity",
    "device__facility__timezone",
    "plausible_min",
    "plausible_max",
)

_channels: dict[int, ChannelMeta] = {}
_retention: dict[int, int] = {}
_refreshed = float("-inf")  # time.monotonic() of the last refresh of both caches


def _load(channel_ids: Iterable[int]) -> dict[int, ChannelMeta]:
    found = {}
    for channel_id, tenant_id, device_id, facility_id, quantity, tz, low, high in Channel.objects.filter(
        id__in=channel_ids
    ).values_list(*_FIELDS):
        found[channel_id] = ChannelMeta(
            channel_id, tenant_id, device_id, facility_id, is_counter(quantity), ZoneInfo(tz), low, high
        )
    return found


def _refresh_if_due(now: float) -> None:
    global _refreshed
    if now - _refreshed < CACHE_SECONDS:
        return
    _refreshed = now
    cached = list(_channels)
    fresh: dict[int, ChannelMeta] = {}
    for k in range(0, len(cached), REFRESH_CHUNK):
        fresh.update(_load(cached[k : k + REFRESH_CHUNK]))
    _channels.clear()
    _channels.update(fresh)
    if _retention:
        days = dict(Tenant.objects.filter(pk__in=list(_retention)).values_list("pk", "raw_retention_days"))
        _retention.clear()
        _retention.update(days)


def channel_meta(channel_ids: Iterable[int]) -> dict[int, ChannelMeta]:
    _refresh_if_due(time.monotonic())
    wanted = {int(c) for c in channel_ids}
    found = {c: meta for c in wanted if (meta := _channels.get(c)) is not None}
    if missing := wanted - found.keys():
        loaded = _load(missing)
        _channels.update(loaded)
        found.update(loaded)
    return found


def raw_retention_days(tenant_id: int) -> int | None:
    _refresh_if_due(time.monotonic())
    days = _retention.get(tenant_id)
    if days is not None:
        return days
    days = Tenant.objects.filter(pk=tenant_id).values_list("raw_retention_days", flat=True).first()
    if days is None:
        return None
    _retention[tenant_id] = days
    return days


def clear_caches() -> None:
    global _refreshed
    _channels.clear()
    _retention.clear()
    _refreshed = float("-inf")
