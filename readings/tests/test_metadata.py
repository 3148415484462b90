"""The per-process channel metadata cache: refreshed as a whole once a period, not one query per device."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from devices.models import Channel
from devices.tests.factories import DeviceFactory, FacilityFactory
from readings import metadata

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_channel_metadata")]


def age_the_cache(seconds: float) -> None:
    """As if the last refresh was this much earlier (the cache's clock is time.monotonic, left alone)."""
    metadata._refreshed -= seconds


def queries(call):  # type: ignore[no-untyped-def]
    with CaptureQueriesContext(connection) as captured:
        result = call()
    return result, len(captured)


def test_after_the_period_the_lookups_of_many_devices_cost_one_refresh_not_a_query_each():
    facility = FacilityFactory(timezone="Europe/Berlin")
    devices = [DeviceFactory(facility=facility) for _ in range(20)]
    ids = [list(d.channels.values_list("pk", flat=True)) for d in devices]
    for channel_ids in ids:
        metadata.channel_meta(channel_ids)
    _, cached = queries(lambda: [metadata.channel_meta(c) for c in ids])
    assert cached == 0

    facility.timezone = "Asia/Tokyo"
    facility.save()
    gone = ids[0].pop()
    Channel.objects.filter(pk=gone).delete()
    age_the_cache(metadata.CACHE_SECONDS + 1)
    found, spent = queries(lambda: [metadata.channel_meta(c) for c in ids])
    assert spent == 1  # one refresh of every cached channel (20 queries when entries expired one by one)
    assert all(meta.tz == ZoneInfo("Asia/Tokyo") for f in found for meta in f.values())  # the change is seen
    assert gone not in metadata._channels
    assert metadata.channel_meta([gone]) == {}


def test_within_the_period_a_new_channel_is_loaded_and_a_cached_one_costs_nothing():
    first, second = DeviceFactory(), DeviceFactory()
    a = list(first.channels.values_list("pk", flat=True))
    b = list(second.channels.values_list("pk", flat=True))
    _, spent = queries(lambda: metadata.channel_meta(a))
    assert spent == 1
    age_the_cache(metadata.CACHE_SECONDS / 2)
    found, spent = queries(lambda: metadata.channel_meta(a + b))
    assert spent == 1 and set(found) == set(a + b)  # only b's channels were asked for
    assert {m.device_id for m in found.values()} == {first.pk, second.pk}


def test_the_refresh_goes_in_chunks(monkeypatch):
    monkeypatch.setattr(metadata, "REFRESH_CHUNK", 2)
    ids = [c for _ in range(3) for c in DeviceFactory().channels.values_list("pk", flat=True)]
    assert len(ids) >= 3
    metadata.channel_meta(ids)
    age_the_cache(metadata.CACHE_SECONDS + 1)
    found, spent = queries(lambda: metadata.channel_meta(ids))
    assert spent == -(-len(ids) // 2) and set(found) == set(ids)
