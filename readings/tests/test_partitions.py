"""Month partitions of the bucket and rollup tables on PostgreSQL: where rows land, the beat task, retention."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from django.db import connection

from accounts.tests.factories import TenantFactory
from devices.tests.factories import FacilityFactory
from readings import metadata, partitions, tasks
from readings.services import readings_apply_retention, readings_ingest, readings_partitions_ensure, rollups_refresh
from readings.store import get_store
from readings.tests.factories import batch_for, device_with_channels

pytestmark = [pytest.mark.services, pytest.mark.django_db, pytest.mark.usefixtures("fresh_channel_metadata")]


def _ms(year: int, month: int, day: int = 1) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp() * 1000)


def _holders(table: str) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text, count(*) FROM {table} GROUP BY 1")  # noqa: S608
        return dict(cursor.fetchall())


def _exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return bool(cursor.fetchone()[0])


def _ingest(device, channel, start_ms: int, count: int = 30) -> None:
    stamps = start_ms + np.arange(count, dtype=np.int64) * 60_000
    readings_ingest(
        batches=[batch_for(device, [channel], stamps, [np.arange(count) * 1.0])], now_ms=start_ms + 86_400_000
    )


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("partitions are PostgreSQL's; SQLite keeps plain tables")
    metadata.clear_caches()


def test_rows_land_in_their_months_partition_and_read_back_unchanged():
    device, power, _ = device_with_channels(facility=FacilityFactory(tenant=TenantFactory(raw_retention_days=10_000)))
    readings_partitions_ensure(now_ms=_ms(2031, 3, 1), months_ahead=0)
    _ingest(device, power, _ms(2031, 3, 10))
    rollups_refresh(limit=1000)
    assert _holders("readings_bucket") == {"readings_bucket_p203103": 1}
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text, start_ms FROM readings_rollup")
        rollups = cursor.fetchall()
    # A month rollup starts at local midnight, in February UTC, where no partition was made.
    expected = [
        "readings_rollup_p203103" if _ms(2031, 3) <= start < _ms(2031, 4) else "readings_rollup_default"
        for _, start in rollups
    ]
    assert rollups and [holder for holder, _ in rollups] == expected
    points = get_store().read(
        tenant_id=device.tenant_id, channel_ids=[power.pk], start_ms=_ms(2031, 3, 10), end_ms=_ms(2031, 3, 11)
    )[power.pk]
    assert list(points.values) == [float(n) for n in range(30)]


def test_the_beat_task_creates_the_months_ahead_and_moves_in_rows_the_default_held():
    device, power, _ = device_with_channels(facility=FacilityFactory(tenant=TenantFactory(raw_retention_days=10_000)))
    # No partition for May 2032 yet: the rows wait in the default partition.
    _ingest(device, power, _ms(2032, 5, 20))
    assert _holders("readings_bucket") == {"readings_bucket_default": 1}

    created = readings_partitions_ensure(now_ms=_ms(2032, 4, 15), months_ahead=2)
    assert created == [
        *(f"readings_bucket_p2032{m:02}" for m in (4, 5, 6)),
        *(f"readings_rollup_p2032{m:02}" for m in (4, 5, 6)),
    ]
    assert _holders("readings_bucket") == {"readings_bucket_p203205": 1}
    assert readings_partitions_ensure(now_ms=_ms(2032, 4, 15), months_ahead=2) == [], "not idempotent"
    # The beat task makes the current month's and the configured months ahead of it.
    now = datetime.now(tz=UTC)
    tasks.readings_partitions_ensure_task.apply()
    assert _exists(partitions.partition_name("readings_rollup", partitions.month_start_ms(int(now.timestamp() * 1000))))


def test_retention_drops_a_month_only_when_every_tenants_retention_has_passed_it():
    short, short_power, _ = device_with_channels(facility=FacilityFactory(tenant=TenantFactory(raw_retention_days=30)))
    long, long_power, _ = device_with_channels(facility=FacilityFactory(tenant=TenantFactory(raw_retention_days=400)))
    readings_partitions_ensure(now_ms=_ms(2033, 1, 1), months_ahead=0)
    readings_partitions_ensure(now_ms=_ms(2034, 3, 1), months_ahead=0)
    for device, channel in ((short, short_power), (long, long_power)):
        _ingest(device, channel, _ms(2033, 1, 5))
        _ingest(device, channel, _ms(2034, 3, 5))

    readings_apply_retention(now_ms=_ms(2034, 6, 1))

    # January 2033 ended more than 400 days before: the whole partition is gone.
    assert not _exists("readings_bucket_p203301")
    # March 2034 is within the long tenant's retention: kept, with only the short tenant's rows deleted.
    assert _holders("readings_bucket") == {"readings_bucket_p203403": 1}
    store = get_store()
    window = {"start_ms": _ms(2034, 3, 5), "end_ms": _ms(2034, 3, 6)}
    assert store.read(tenant_id=long.tenant_id, channel_ids=[long_power.pk], **window)[long_power.pk].values.size == 30
    assert store.read(tenant_id=short.tenant_id, channel_ids=[short_power.pk], **window) == {}
