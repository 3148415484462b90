from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from accounts.access import Access
from accounts.models import Role
from accounts.selectors import access_for_tenant
from readings import metadata
from readings.errors import ReadingsQueryError
from readings.selectors import readings_latest, readings_series
from readings.services import readings_ingest, rollups_refresh
from readings.tests.factories import batch_for, device_with_channels

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


@pytest.fixture(autouse=True)
def _fresh_caches():
    metadata.clear_caches()
    yield
    metadata.clear_caches()


def _seeded():
    device, power, energy = device_with_channels()
    ts = T0_MS + np.arange(10) * 2_000
    readings_ingest(batches=[batch_for(device, [power, energy], ts, [np.arange(10) * 1.0, 100 + np.arange(10) * 2.0])])
    rollups_refresh()
    return device, power, energy


def test_raw_series_are_arrays_of_the_readings_in_the_range():
    device, power, _ = _seeded()
    answer = readings_series(
        access=access_for_tenant(tenant=device.tenant),
        channel_ids=[power.pk],
        start=T0 + timedelta(seconds=4),
        end=T0 + timedelta(seconds=10),
    )[power.pk]
    assert answer.source == "raw"
    assert answer.timestamps_ms.dtype == np.int64
    assert answer.timestamps_ms.tolist() == [T0_MS + 4_000, T0_MS + 6_000, T0_MS + 8_000]
    assert answer.values["value"].tolist() == [2.0, 3.0, 4.0]


def test_rollup_series_default_to_avg_min_max_for_gauges_and_consumption_for_counters():
    device, power, energy = _seeded()
    answer = readings_series(
        access=access_for_tenant(tenant=device.tenant),
        channel_ids=[power.pk, energy.pk],
        start=T0,
        end=T0 + timedelta(hours=1),
        resolution="15m",
    )
    assert answer[power.pk].source == "rollup:15m"
    assert {k: v.tolist() for k, v in answer[power.pk].values.items()} == {"avg": [4.5], "min": [0.0], "max": [9.0]}
    assert answer[energy.pk].values == {"delta": answer[energy.pk].values["delta"]}
    assert answer[energy.pk].values["delta"].tolist() == [18.0]


def test_another_tenants_channel_is_unknown_exactly_like_a_missing_one():
    _, power, _ = _seeded()
    other, _, _ = device_with_channels()
    access = access_for_tenant(tenant=other.tenant)
    for ids in ([power.pk], [987654321]):
        with pytest.raises(ReadingsQueryError, match=r"unknown channel\(s\)"):
            readings_series(access=access, channel_ids=ids, start=T0, end=T0 + timedelta(hours=1))
        with pytest.raises(ReadingsQueryError, match=r"unknown channel\(s\)"):
            readings_latest(access=access, channel_ids=ids)


def test_a_facility_manager_reads_only_granted_facilities():
    device, power, _ = _seeded()
    outsider = Access(tenant_id=device.tenant_id, role=Role.FACILITY_MANAGER, facility_ids=frozenset({-1}))
    with pytest.raises(ReadingsQueryError):
        readings_latest(access=outsider, channel_ids=[power.pk])
    granted = Access(
        tenant_id=device.tenant_id, role=Role.FACILITY_MANAGER, facility_ids=frozenset({device.facility_id})
    )
    assert readings_latest(access=granted, channel_ids=[power.pk])[power.pk].value == 9.0


def test_latest_values_give_the_last_reading_and_omit_silent_channels():
    device, power, energy = _seeded()
    silent, silent_power, _ = device_with_channels(facility=device.facility)
    latest = readings_latest(
        access=access_for_tenant(tenant=device.tenant), channel_ids=[power.pk, energy.pk, silent_power.pk]
    )
    assert {c: (v.ts_ms, v.value) for c, v in latest.items()} == {
        power.pk: (T0_MS + 18_000, 9.0),
        energy.pk: (T0_MS + 18_000, 118.0),
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resolution": "5m"}, "unknown resolution"),
        ({"resolution": "15m", "aggregates": ["median"]}, "unknown aggregate"),
        ({"aggregates": ["avg"]}, "raw readings have no aggregates"),
        ({"end": T0 - timedelta(seconds=1)}, "end must be after start"),
        ({"end": T0 + timedelta(days=40)}, "at most 31 days"),
        ({"start": datetime(2026, 6, 1)}, "time-zone aware"),  # noqa: DTZ001
        ({"channel_ids": []}, "at least one channel"),
        ({"channel_ids": list(range(1, 200))}, "at most 100 channels"),
    ],
)
def test_bad_queries_get_a_clear_error(kwargs, message):
    device, power, _ = _seeded()
    query = {
        "access": access_for_tenant(tenant=device.tenant),
        "channel_ids": [power.pk],
        "start": T0,
        "end": T0 + timedelta(hours=1),
        **kwargs,
    }
    with pytest.raises(ReadingsQueryError, match=message):
        readings_series(**query)
