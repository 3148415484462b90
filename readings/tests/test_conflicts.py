"""Conflicting duplicates (issue 18): two batches with the same channel and timestamp but different
values keep the first value (docs/protocol.md, "Duplicates"); the conflict is counted and logged, and a
plain redelivery of the same values is not a conflict."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from readings.services import readings_compact, readings_ingest
from readings.store import get_store
from readings.store.sql import conflicting_values
from readings.tests.factories import batch_for, device_with_channels

pytestmark = pytest.mark.django_db
T0 = 1_764_000_000_000 - 1_764_000_000_000 % 86_400_000  # a UTC midnight


def _stored(channel):
    points = (
        get_store()
        .read(tenant_id=channel.tenant_id, channel_ids=[channel.pk], start_ms=T0 - 86_400_000, end_ms=T0 + 86_400_000)
        .get(channel.pk)
    )
    return list(zip(points.timestamps_ms.tolist(), points.values.tolist(), strict=True))


def _conflict_logs(caplog):
    return [r for r in caplog.records if r.levelno == logging.WARNING and "conflicting duplicate" in r.getMessage()]


def test_a_second_value_for_the_same_channel_and_timestamp_is_counted_logged_and_the_first_kept(caplog):
    device, power, _ = device_with_channels()
    first = readings_ingest(batches=[batch_for(device, [power], [T0], [[111]])])
    with caplog.at_level(logging.WARNING):
        second = readings_ingest(batches=[batch_for(device, [power], [T0], [[222]])])

    assert first.conflicting == 0
    assert second.conflicting == 1
    assert _stored(power) == [(T0, 111.0)]
    (record,) = _conflict_logs(caplog)
    assert f"channel {power.pk}" in record.getMessage() and "first value written was kept" in record.getMessage()


def test_a_redelivery_of_the_same_values_is_no_conflict(caplog):
    device, power, energy = device_with_channels()
    batch = batch_for(device, [power, energy], T0 + np.arange(3) * 2_000, [[1, 2, 3], [4, 5, 6]])
    readings_ingest(batches=[batch])
    with caplog.at_level(logging.WARNING):
        again = readings_ingest(batches=[batch])
    assert again.conflicting == 0
    assert not _conflict_logs(caplog)


def test_conflicts_inside_one_batch_group_are_counted_too():
    device, power, _ = device_with_channels()
    ts = T0 + np.arange(3) * 2_000
    result = readings_ingest(
        batches=[batch_for(device, [power], ts, [[1, 2, 3]]), batch_for(device, [power], ts, [[1, 20, 30]])]
    )
    assert _stored(power) == [(T0, 1.0), (T0 + 2_000, 2.0), (T0 + 4_000, 3.0)]
    assert result.conflicting == 2


def test_an_overlapping_batch_with_other_values_keeps_the_first_and_compaction_reports_the_conflict(caplog):
    device, power, _ = device_with_channels()
    readings_ingest(batches=[batch_for(device, [power], T0 + np.arange(4) * 2_000, [[1, 2, 3, 4]])])
    # Overlaps the first batch at two timestamps (its span differs, so both buckets are stored).
    readings_ingest(batches=[batch_for(device, [power], T0 + np.arange(2, 6) * 2_000, [[3, 40, 5, 6]])])

    assert [v for _, v in _stored(power)] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    with caplog.at_level(logging.WARNING):
        readings_compact()
    (record,) = _conflict_logs(caplog)
    assert record.getMessage().startswith("readings: 1 conflicting")
    assert [v for _, v in _stored(power)] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_conflicting_values_counts_later_values_that_differ_from_the_first():
    ts = np.array([1, 2, 3], dtype=np.int64)
    nan = float("nan")
    assert conflicting_values([(ts, np.array([1.0, 2.0, nan])), (ts, np.array([1.0, 9.0, nan]))]) == 1
    assert (
        conflicting_values([(ts, np.array([1.0, 2.0, 3.0])), (ts[:1], np.array([5.0])), (ts[:1], np.array([6.0]))]) == 2
    )
    assert conflicting_values([(ts, np.array([1.0, 2.0, 3.0]))]) == 0


def _unpacked(channel):
    from readings.models import Bucket

    return Bucket.objects.filter(channel_id=channel.pk, packed=False).count()


def test_compaction_of_named_channels_merges_only_those_of_that_tenant():
    """The scale bench counts copies after a fault by compacting just the channels with overlapping batches."""
    ours, power, energy = device_with_channels()
    theirs, their_power, _ = device_with_channels()  # another tenant
    assert theirs.tenant_id != ours.tenant_id
    for device, channel in ((ours, power), (ours, energy), (theirs, their_power)):
        readings_ingest(batches=[batch_for(device, [channel], T0 + np.arange(4) * 2_000, [[1, 2, 3, 4]])])
        readings_ingest(batches=[batch_for(device, [channel], T0 + np.arange(2, 6) * 2_000, [[3, 4, 5, 6]])])
    assert [_unpacked(c) for c in (power, energy, their_power)] == [2, 2, 2]

    # Another tenant's channel named under our tenant is not touched.
    assert readings_compact(max_windows=100, tenant_id=ours.tenant_id, channel_ids=[their_power.pk]) == 0
    assert readings_compact(max_windows=100, tenant_id=ours.tenant_id, channel_ids=[]) == 0
    assert readings_compact(max_windows=100, tenant_id=ours.tenant_id, channel_ids=[power.pk]) == 1

    assert [_unpacked(c) for c in (power, energy, their_power)] == [0, 2, 2]
    assert [v for _, v in _stored(power)] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert [v for _, v in _stored(their_power)] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
