"""Rollup packs: a packed window answers exactly what its rows answer, and a later rollup write is never hidden."""

from __future__ import annotations

import importlib
import time
from datetime import datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from django.db import connection

from readings import metadata
from readings.models import RollupPack
from readings.services import readings_ingest, rollups_pack, rollups_refresh
from readings.store import get_store
from readings.store.base import DAY_MS, PACK_SPAN_MS, ROLLUP_FIELDS
from readings.tests.factories import batch_for, device_with_channels

pytestmark = pytest.mark.django_db
BERLIN = ZoneInfo("Europe/Berlin")
FAR_FUTURE_MS = 4_000_000_000_000  # every window has settled


@pytest.fixture(autouse=True)
def _fresh_caches():
    metadata.clear_caches()
    yield
    metadata.clear_caches()


def _ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=BERLIN).timestamp() * 1000)


def _ingest(device, power, energy, start_ms: int, end_ms: int, *, seed: int, step: int = 120_000) -> None:
    rng = np.random.default_rng(seed)
    ts = np.arange(start_ms, end_ms, step, dtype=np.int64)
    ts = ts[rng.random(len(ts)) > 0.03]
    watts = np.round(rng.normal(1_500, 300, len(ts)), 1)
    wh = np.cumsum(np.round(watts * step / 3_600_000, 3)) + 10_000
    for part in np.array_split(np.arange(len(ts)), 8):
        readings_ingest(batches=[batch_for(device, [power, energy], ts[part], [watts[part], wh[part]])])
    while rollups_refresh(limit=5000):
        pass


def _rows_only(tenant_id, channel_ids, resolution, start_ms, end_ms):
    """The answer straight from readings_rollup, by the ORM: what every pack must reproduce."""
    from readings.models import Rollup

    result = {}
    for channel_id in channel_ids:
        rows = list(
            Rollup.objects.filter(
                tenant_id=tenant_id,
                channel_id=channel_id,
                resolution=resolution,
                start_ms__gte=start_ms,
                start_ms__lt=end_ms,
            )
            .order_by("start_ms")
            .values_list(*ROLLUP_FIELDS)
        )
        if rows:
            result[channel_id] = {name: [row[i] for row in rows] for i, name in enumerate(ROLLUP_FIELDS)}
    return result


def _assert_same(tenant_id, channel_ids, start_ms, end_ms, fields=ROLLUP_FIELDS):
    for resolution in (1, 2, 3, 4):
        got = get_store().read_rollups(
            tenant_id=tenant_id,
            channel_ids=channel_ids,
            resolution=resolution,
            start_ms=start_ms,
            end_ms=end_ms,
            fields=fields,
        )
        expected = _rows_only(tenant_id, channel_ids, resolution, start_ms, end_ms)
        assert sorted(got) == sorted(expected), resolution
        for channel_id, columns in expected.items():
            for name in ["start_ms", *fields]:
                assert got[channel_id].columns[name].tolist() == columns[name], (resolution, name)


def test_packed_windows_answer_exactly_what_the_rows_answer_on_any_range():
    device, power, energy = device_with_channels(facility__timezone="Europe/Berlin")
    start, end = _ms(2026, 3, 20), _ms(2026, 4, 12)  # three weeks and a DST change
    _ingest(device, power, energy, start, end, seed=1)
    ids = [power.pk, energy.pk]
    before = {
        level: get_store().read_rollups(
            tenant_id=device.tenant_id, channel_ids=ids, resolution=level, start_ms=start, end_ms=end
        )
        for level in (1, 2, 3, 4)
    }

    assert rollups_pack(max_windows=10_000, now_ms=FAR_FUTURE_MS) > 0
    assert not RollupPack.objects.filter(stale=True).exists()
    for level, answer in before.items():
        again = get_store().read_rollups(
            tenant_id=device.tenant_id, channel_ids=ids, resolution=level, start_ms=start, end_ms=end
        )
        for channel_id, block in answer.items():
            for name in ROLLUP_FIELDS:
                assert again[channel_id].columns[name].tolist() == block.columns[name].tolist(), (level, name)
    # Ranges that cut windows anywhere, with a field subset in an unusual order.
    week = PACK_SPAN_MS[1]
    for lo, hi in ((start, end), (start + 3 * 900_000, start + week + 7 * 900_000), (end - week, end + DAY_MS)):
        _assert_same(device.tenant_id, ids, lo, hi)
        _assert_same(device.tenant_id, ids, lo, hi, fields=("flags", "delta", "count"))


def test_a_late_reading_into_a_packed_window_is_read_at_once_and_packed_again():
    device, power, energy = device_with_channels(facility__timezone="Europe/Berlin")
    start, end = _ms(2026, 5, 4), _ms(2026, 5, 20)
    _ingest(device, power, energy, start, end, seed=2)
    rollups_pack(max_windows=10_000, now_ms=FAR_FUTURE_MS)
    late = _ms(2026, 5, 10, 3, 7)
    readings_ingest(batches=[batch_for(device, [power], [late], [[90_000.0]])])
    rollups_refresh()

    stale = RollupPack.objects.filter(channel_id=power.pk, stale=True)
    assert set(stale.values_list("resolution", flat=True)) == {1, 2, 3, 4}
    marked = RollupPack.objects.filter(stale=True).count()
    _assert_same(device.tenant_id, [power.pk, energy.pk], start, end)
    got = get_store().read_rollups(
        tenant_id=device.tenant_id, channel_ids=[power.pk], resolution=1, start_ms=start, end_ms=end, fields=("max",)
    )[power.pk]
    assert got.columns["max"].max() == 90_000.0

    # A window that has not settled stays in the rows; the packer takes it once it has.
    assert rollups_pack(max_windows=10_000, now_ms=_ms(2026, 5, 12)) == 0
    assert rollups_pack(max_windows=10_000, now_ms=FAR_FUTURE_MS) == marked
    _assert_same(device.tenant_id, [power.pk, energy.pk], start, end)


def test_deleted_rollups_take_their_packs_with_them():
    device, power, energy = device_with_channels()
    start = _ms(2026, 7, 1)
    _ingest(device, power, energy, start, start + 9 * DAY_MS, seed=3)
    rollups_pack(max_windows=10_000, now_ms=FAR_FUTURE_MS)
    get_store().delete_rollups(tenant_id=device.tenant_id, channel_ids=[power.pk], resolutions=[1, 2, 3, 4])
    assert not RollupPack.objects.filter(channel_id=power.pk).exists()
    answer = get_store().read_rollups(
        tenant_id=device.tenant_id,
        channel_ids=[power.pk, energy.pk],
        resolution=1,
        start_ms=start,
        end_ms=FAR_FUTURE_MS,
    )
    assert list(answer) == [energy.pk]


def test_another_tenants_packs_are_never_read():
    device, power, energy = device_with_channels()
    start = _ms(2026, 8, 3)
    _ingest(device, power, energy, start, start + 8 * DAY_MS, seed=4)
    rollups_pack(max_windows=10_000, now_ms=FAR_FUTURE_MS)
    other = device_with_channels()[0]
    answer = get_store().read_rollups(
        tenant_id=other.tenant_id, channel_ids=[power.pk, energy.pk], resolution=1, start_ms=start, end_ms=FAR_FUTURE_MS
    )
    assert answer == {}


def test_the_migrations_pack_the_rollups_already_stored():
    device, power, energy = device_with_channels(facility__timezone="Europe/Berlin")
    start = _ms(2026, 2, 2)
    _ingest(device, power, energy, start, start + 10 * DAY_MS, seed=5)
    RollupPack.objects.all().delete()  # as before the migrations: rollup rows and no pack
    editor = SimpleNamespace(connection=connection)
    importlib.import_module("readings.migrations.0005_rollup_packs").pack_existing(None, editor)
    importlib.import_module("readings.migrations.0008_rollup_pack_layout").layout_existing(None, editor)
    windows = RollupPack.objects.filter(channel_id=energy.pk)
    assert set(windows.values_list("resolution", flat=True)) == {1, 2, 3, 4}
    # Settled windows are packed at once; the month's decade-long window waits for the beat task.
    assert windows.filter(resolution=1, stale=False).count() == 2
    assert not windows.filter(stale=True, window_end_ms__lte=time.time() * 1000 - DAY_MS).exists()
    _assert_same(device.tenant_id, [power.pk, energy.pk], start, start + 10 * DAY_MS)


def test_the_uncovered_ranges_follow_the_packs_even_over_centuries():
    from readings.store.sql import _uncovered

    week = PACK_SPAN_MS[1]
    packs = {10 * week, 11 * week, 13 * week}
    assert _uncovered(packs, week, 0, 4_000_000_000_000) == (
        (0, 10 * week),
        (12 * week, 13 * week),
        (14 * week, 4_000_000_000_000),
    )
    assert _uncovered(packs, week, 10 * week + 5, 12 * week) == ()
    assert _uncovered(set(), week, 5, 9) == ((5, 9),)


def test_the_beat_task_packs_the_settled_windows(settings):
    from readings.tasks import rollups_pack_task

    schedule = settings.CELERY_BEAT_SCHEDULE["readings-rollups-pack"]
    assert schedule["task"] == rollups_pack_task.name == "readings.rollups_pack"
    device, power, energy = device_with_channels()
    start = _ms(2026, 6, 1)
    _ingest(device, power, energy, start, start + 8 * DAY_MS, seed=6)
    assert RollupPack.objects.filter(resolution=1, stale=True).exists()
    assert rollups_pack_task.apply().get() > 0
    assert not RollupPack.objects.filter(resolution=1, stale=True, window_end_ms__lte=start + 8 * DAY_MS).exists()


def test_packs_read_in_part_answer_what_the_rows_answer():
    """A pack without holes is read for its intervals in range only, and without its flags when it has
    none; a pack with a hole, or with flags, in full. Every one answers what its rows answer."""
    device, power, energy = device_with_channels(facility__timezone="Europe/Berlin")
    week = PACK_SPAN_MS[1]
    first = _ms(2026, 9, 1) - _ms(2026, 9, 1) % week + week  # a window's start, in Berlin's night
    _ingest(device, power, energy, first, first + 2 * DAY_MS, seed=6)
    _ingest(device, power, energy, first + 2 * DAY_MS + 5 * 3_600_000, first + 3 * week, seed=7)  # a 5-hour gap
    rollups_pack(max_windows=10_000, now_ms=FAR_FUTURE_MS)

    packs = RollupPack.objects.filter(resolution=1, channel_id__in=[power.pk, energy.pk])
    plain = packs.filter(grid_start_ms__isnull=False, flags_or=0)
    assert plain.count() == 4  # both channels' second and third weeks
    assert set(plain.values_list("grid_start_ms", flat=True)) == {first + week, first + 2 * week}
    assert packs.exclude(pk__in=plain).filter(window_ms=first).count() == 2  # the gap's week: a hole or flags
    for lo, hi in (
        (first, first + 3 * week),
        (first + week + 5 * 900_000, first + 2 * week - 3 * 900_000),  # inside one window, cut at both ends
        (first + week + 1, first + week + 900_000 + 1),  # bounds off the quarter-hour grid
        (first + 2 * DAY_MS, first + 2 * week + 17),
        (first - DAY_MS, first + week + 96 * 900_000),
    ):
        _assert_same(device.tenant_id, [power.pk, energy.pk], lo, hi)
        _assert_same(device.tenant_id, [power.pk, energy.pk], lo, hi, fields=("flags", "delta", "count"))
        _assert_same(device.tenant_id, [power.pk, energy.pk], lo, hi, fields=("delta",))
