from __future__ import annotations

import numpy as np
import pytest

from readings import metadata
from readings.models import Bucket, Rollup
from readings.services import readings_apply_retention, readings_compact, readings_ingest, rollups_refresh
from readings.store import get_store
from readings.tests.factories import batch_for, device_with_channels

pytestmark = pytest.mark.django_db
DAY = 86_400_000
T0 = 1_780_000_000_000 - 1_780_000_000_000 % DAY


@pytest.fixture(autouse=True)
def _fresh_caches():
    metadata.clear_caches()
    yield
    metadata.clear_caches()


def _read(channel, start=T0 - 30 * DAY, end=T0 + 30 * DAY):
    return get_store().read(tenant_id=channel.tenant_id, channel_ids=[channel.pk], start_ms=start, end_ms=end)[
        channel.pk
    ]


def test_compaction_merges_small_buckets_into_one_packed_bucket_per_day_without_changing_the_data():
    device, power, _ = device_with_channels()
    rng = np.random.default_rng(3)
    ts = T0 + np.arange(3_000) * 2_000
    values = np.round(rng.normal(1_000, 50, len(ts)), 1)
    for idx in rng.permutation(np.array_split(np.arange(len(ts)), 300)):
        readings_ingest(batches=[batch_for(device, [power], ts[idx], [values[idx]])])
    readings_ingest(batches=[batch_for(device, [power], ts[:50], [values[:50]])])  # a resend
    before = _read(power)
    small = Bucket.objects.filter(channel_id=power.pk)
    small_bytes = sum(len(b.data) for b in small)
    assert small.count() == 301

    assert readings_compact() == 1
    packed = Bucket.objects.get(channel_id=power.pk)
    assert packed.packed and packed.count == 3_000
    after = _read(power)
    np.testing.assert_array_equal(after.timestamps_ms, before.timestamps_ms)
    assert after.values.tobytes() == before.values.tobytes()
    assert len(packed.data) < small_bytes / 8
    assert readings_compact() == 0  # nothing left to merge


def test_late_data_after_compaction_is_merged_by_the_next_compaction():
    device, power, _ = device_with_channels()
    readings_ingest(batches=[batch_for(device, [power], T0 + np.array([0, 4_000]), [[1.0, 3.0]])])
    readings_compact()
    readings_ingest(batches=[batch_for(device, [power], T0 + np.array([0, 2_000]), [[9.0, 2.0]])])
    assert _read(power).values.tolist() == [1.0, 2.0, 3.0]  # the first value written for T0 stays
    readings_compact()
    assert Bucket.objects.filter(channel_id=power.pk).count() == 1
    assert _read(power).values.tolist() == [1.0, 2.0, 3.0]
    # A resend after compaction does not override the first value, before or after the next compaction.
    readings_ingest(batches=[batch_for(device, [power], T0 + np.array([0]), [[7.0]])])
    assert _read(power).values.tolist() == [1.0, 2.0, 3.0]
    readings_compact()
    assert _read(power).values.tolist() == [1.0, 2.0, 3.0]


def test_retention_deletes_old_raw_days_of_that_tenant_only_and_keeps_rollups():
    short, short_power, _ = device_with_channels()
    long, long_power, _ = device_with_channels()
    short.tenant.raw_retention_days = 3
    short.tenant.save()
    now = T0 + 10 * DAY
    for device, channel in ((short, short_power), (long, long_power)):
        ts = T0 + np.arange(10) * DAY
        readings_ingest(batches=[batch_for(device, [channel], ts, [np.arange(10.0)])], now_ms=T0)
    rollups_refresh()
    rollups_before = Rollup.objects.filter(channel_id=short_power.pk).count()

    readings_apply_retention(now_ms=now)
    # Days wholly older than 3 days before `now` are gone; the window that straddles the cut stays.
    assert _read(short_power).timestamps_ms.tolist() == (T0 + np.arange(7, 10) * DAY).tolist()
    assert len(_read(long_power)) == 10
    assert Rollup.objects.filter(channel_id=short_power.pk).count() == rollups_before


def test_the_raw_read_path_answers_with_arrays_not_objects():
    device, power, _ = device_with_channels()
    readings_ingest(batches=[batch_for(device, [power], T0 + np.arange(5) * 2_000, [np.arange(5.0)])])
    points = _read(power, T0 + 2_000, T0 + 8_000)
    assert isinstance(points.timestamps_ms, np.ndarray) and isinstance(points.values, np.ndarray)
    assert points.values.tolist() == [1.0, 2.0, 3.0]


def test_a_neighbour_is_found_across_empty_days():
    device, power, _ = device_with_channels()
    readings_ingest(batches=[batch_for(device, [power], [T0 - 5 * DAY, T0 + 5 * DAY], [[1.0, 2.0]])])
    store = get_store()
    before = store.neighbour(tenant_id=device.tenant_id, channel_id=power.pk, at_ms=T0, before=True)
    after = store.neighbour(tenant_id=device.tenant_id, channel_id=power.pk, at_ms=T0, before=False)
    assert before.values.tolist() == [1.0] and after.values.tolist() == [2.0]
    assert len(store.neighbour(tenant_id=device.tenant_id, channel_id=power.pk, at_ms=T0 - 5 * DAY, before=True)) == 0
