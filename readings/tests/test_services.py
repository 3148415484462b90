from __future__ import annotations

import time

import numpy as np
import pytest
from django.db import connection

from readings import metadata
from readings.errors import IngestUnavailable
from readings.models import Bucket, DirtyInterval
from readings.services import readings_enqueue, readings_ingest
from readings.store import get_store
from readings.tests.factories import batch_for, device_with_channels

pytestmark = pytest.mark.django_db
T0 = 1_764_000_000_000 - 1_764_000_000_000 % 86_400_000  # a UTC midnight


@pytest.fixture(autouse=True)
def _embedded():
    """These tests cover the embedded mode: tasks run in-process even when a broker is configured."""
    from energybox.celery import app

    metadata.clear_caches()
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = eager
    metadata.clear_caches()


def _stored(channel, start=T0 - 10 * 86_400_000, end=T0 + 10 * 86_400_000):
    points = get_store().read(tenant_id=channel.tenant_id, channel_ids=[channel.pk], start_ms=start, end_ms=end)
    return points.get(channel.pk)


def test_enqueue_in_the_embedded_mode_stores_before_returning():
    device, power, energy = device_with_channels()
    ts = T0 + np.arange(5) * 2_000
    readings_enqueue(batches=[batch_for(device, [power, energy], ts, [[1, 2, 3, 4, 5], [10, 11, np.nan, 13, 14]])])
    assert _stored(power).values.tolist() == [1, 2, 3, 4, 5]
    got = _stored(energy)
    assert got.timestamps_ms.tolist() == [T0, T0 + 2_000, T0 + 6_000, T0 + 8_000]
    assert got.values.tolist() == [10, 11, 13, 14]


def test_a_redelivered_batch_is_stored_once():
    device, power, energy = device_with_channels()
    batch = batch_for(device, [power, energy], T0 + np.arange(3) * 2_000, [[1, 2, 3], [4, 5, 6]])
    readings_ingest(batches=[batch])
    readings_ingest(batches=[batch])
    readings_enqueue(batches=[batch, batch])
    assert Bucket.objects.filter(channel_id=power.pk).count() == 1
    assert len(_stored(power)) == 3


def test_an_overlapping_resend_keeps_one_value_per_timestamp():
    device, power, energy = device_with_channels()
    readings_ingest(batches=[batch_for(device, [power], T0 + np.arange(4) * 2_000, [[1, 2, 3, 4]])])
    readings_ingest(batches=[batch_for(device, [power], T0 + np.arange(2, 6) * 2_000, [[3, 4, 5, 6]])])
    got = _stored(power)
    assert got.timestamps_ms.tolist() == (T0 + np.arange(6) * 2_000).tolist()
    assert got.values.tolist() == [1, 2, 3, 4, 5, 6]


def test_late_and_out_of_order_batches_read_back_in_order():
    device, power, _ = device_with_channels()
    later = batch_for(device, [power], T0 + np.array([10_000, 12_000]), [[5, 6]])
    earlier = batch_for(device, [power], T0 + np.array([0, 2_000]), [[1, 2]])
    yesterday = batch_for(device, [power], T0 - np.array([4_000, 2_000]), [[-2, -1]])
    readings_ingest(batches=[later])
    readings_ingest(batches=[earlier, yesterday])
    assert _stored(power).values.tolist() == [-2, -1, 1, 2, 5, 6]


def test_a_batch_spanning_midnight_is_split_into_day_buckets():
    device, power, _ = device_with_channels()
    readings_ingest(batches=[batch_for(device, [power], T0 + np.array([-2_000, 0, 2_000]), [[1, 2, 3]])])
    assert sorted(Bucket.objects.filter(channel_id=power.pk).values_list("window_ms", flat=True)) == [
        T0 - 86_400_000,
        T0,
    ]


def test_it_drops_channels_of_another_tenant_or_device():
    device, power, _ = device_with_channels()
    intruder, foreign_power, _ = device_with_channels()
    # The intruder's batch names the victim's channel: nothing of it may land on the victim.
    forged = batch_for(intruder, [power, foreign_power], [T0], [[666.0], [1.0]])
    result = readings_ingest(batches=[forged])
    assert result.dropped_foreign == 1 and result.stored == 1
    assert _stored(power) is None
    assert _stored(foreign_power).values.tolist() == [1.0]


def test_it_drops_readings_older_than_the_tenant_retention():
    device, power, _ = device_with_channels()
    device.tenant.raw_retention_days = 2
    device.tenant.save()
    now = T0 + 5 * 86_400_000
    old_and_new = batch_for(device, [power], [T0, now - 1_000], [[1.0, 2.0]])
    result = readings_ingest(batches=[old_and_new], now_ms=now)
    assert result.dropped_expired == 1
    assert _stored(power).values.tolist() == [2.0]


def test_it_marks_the_touched_15_minute_intervals_dirty():
    device, power, _ = device_with_channels()
    readings_ingest(batches=[batch_for(device, [power], T0 + np.array([0, 900_000, 901_000]), [[1, 2, 3]])])
    assert sorted(DirtyInterval.objects.values_list("start_ms", flat=True)) == [T0, T0 + 900_000]


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_enqueue_raises_ingest_unavailable_when_the_embedded_store_refuses_connections(postgresql_url):
    import psycopg

    from readings.tests.processes import child_database_url

    device, power, _ = device_with_channels()
    now = int(time.time() * 1000)
    batch = batch_for(device, [power], [now], [[1.0]])
    name = connection.settings_dict["NAME"]
    connection.close()
    with psycopg.connect(child_database_url().rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        try:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            with pytest.raises(IngestUnavailable, match="not currently accepting connections"):
                readings_enqueue(batches=[batch])
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    connection.close()
    assert _stored(power, now - 1_000, now + 1_000) is None
    readings_enqueue(batches=[batch])  # the device resends once the database is back
    assert _stored(power, now - 1_000, now + 1_000).values.tolist() == [1.0]


def test_enqueue_of_nothing_does_nothing():
    readings_enqueue(batches=[])
    assert Bucket.objects.count() == 0
