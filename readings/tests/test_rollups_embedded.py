"""The rollup refresh on SQLite, the embedded mode of `make run` (issue 18: acks stalled every ~10 s).

SQLite has one writer at a time, and the refresh used to read and aggregate inside its write
transaction, so every ingest waited behind it. Now only the writes take the lock; ingest that lands
while the refresh reads keeps its interval marked for the next refresh. (bench/ack_latency.py
measures the latency this buys.)
"""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from readings import metadata
from readings.models import DirtyInterval, Rollup
from readings.services import readings_ingest, rollups_refresh
from readings.store.sql import SqlStore
from readings.tests.factories import batch_for, device_with_channels

pytestmark = pytest.mark.django_db(transaction=True)
T0 = 1_764_000_000_000 - 1_764_000_000_000 % 86_400_000  # a UTC midnight


@pytest.fixture(autouse=True)
def _sqlite_only():
    if connection.vendor != "sqlite":
        pytest.skip("the embedded mode's store: PostgreSQL claims marks under row locks instead")
    metadata.clear_caches()
    yield
    metadata.clear_caches()


def _rollup_15m(channel, start_ms):
    return Rollup.objects.get(channel_id=channel.pk, resolution=1, start_ms=start_ms)


def test_the_refresh_reads_and_aggregates_outside_any_write_transaction(monkeypatch):
    device, power, _ = device_with_channels()
    readings_ingest(batches=[batch_for(device, [power], T0 + np.arange(10) * 2_000, [np.arange(10.0)])])
    in_transaction: list[bool] = []
    original = SqlStore.read

    def spying_read(self, **kwargs):
        in_transaction.append(connection.in_atomic_block)
        return original(self, **kwargs)

    monkeypatch.setattr(SqlStore, "read", spying_read)

    assert rollups_refresh() == 1

    assert in_transaction and not any(in_transaction)
    assert _rollup_15m(power, T0).count == 10


def test_readings_stored_while_the_refresh_reads_keep_their_interval_marked_for_the_next_refresh(monkeypatch):
    device, power, _ = device_with_channels()
    readings_ingest(batches=[batch_for(device, [power], T0 + np.arange(5) * 2_000, [[1.0, 2, 3, 4, 5]])])
    original = SqlStore.read
    late_batch = batch_for(device, [power], T0 + np.arange(5, 8) * 2_000, [[6.0, 7, 8]])
    sent: list[bool] = []

    def read_then_ingest(self, **kwargs):
        points = original(self, **kwargs)
        if not sent:  # a device's batch lands between the refresh's read and its write
            sent.append(True)
            readings_ingest(batches=[late_batch])
        return points

    monkeypatch.setattr(SqlStore, "read", read_then_ingest)

    assert rollups_refresh() == 0  # the interval got data meanwhile: its mark stays
    assert DirtyInterval.objects.filter(device_id=device.pk, start_ms=T0).exists()
    assert _rollup_15m(power, T0).count == 5  # what the refresh had read

    monkeypatch.setattr(SqlStore, "read", original)
    assert rollups_refresh() == 1
    assert not DirtyInterval.objects.exists()
    rollup = _rollup_15m(power, T0)
    assert (rollup.count, rollup.sum, rollup.max) == (8, 36.0, 8.0)


def test_coarse_levels_computed_outside_the_lock_equal_those_of_a_full_recompute():
    device, power, energy = device_with_channels()
    ts = T0 + np.arange(0, 3 * 3_600_000, 60_000)
    values = [np.sin(np.arange(len(ts)) / 7) * 100 + 500, np.arange(len(ts)) * 3.0]
    readings_ingest(
        batches=[batch_for(device, [power, energy], ts[: len(ts) // 2], [v[: len(ts) // 2] for v in values])]
    )
    rollups_refresh()
    readings_ingest(
        batches=[batch_for(device, [power, energy], ts[len(ts) // 2 :], [v[len(ts) // 2 :] for v in values])]
    )
    rollups_refresh()
    incremental = sorted(Rollup.objects.values_list("channel_id", "resolution", "start_ms", "count", "sum", "delta"))

    Rollup.objects.all().delete()
    for start in range(T0, T0 + 3 * 3_600_000, 900_000):
        DirtyInterval.objects.create(tenant_id=device.tenant_id, device_id=device.pk, start_ms=start)
    rollups_refresh()
    full = sorted(Rollup.objects.values_list("channel_id", "resolution", "start_ms", "count", "sum", "delta"))

    assert incremental == full
    assert {r[1] for r in full} == {1, 2, 3, 4}
