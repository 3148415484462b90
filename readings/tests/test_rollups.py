"""Rollups against an independent oracle: plain Python over the raw readings, local calendar by zoneinfo."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from accounts.selectors import access_for_tenant
from readings import metadata
from readings.models import DirtyInterval, Rollup
from readings.selectors import readings_series
from readings.services import readings_ingest, rollups_refresh
from readings.tests.factories import batch_for, device_with_channels

pytestmark = pytest.mark.django_db
BERLIN = ZoneInfo("Europe/Berlin")
STEP = 60_000


@pytest.fixture(autouse=True)
def _fresh_caches():
    metadata.clear_caches()
    yield
    metadata.clear_caches()


def _ms(*args: int, tz: ZoneInfo = BERLIN) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)


def _key(resolution: str, ts_ms: int, tz: ZoneInfo):
    local = datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(tz)
    if resolution == "15m":
        return ts_ms // 900_000
    if resolution == "1h":
        return int(local.replace(minute=0, second=0, microsecond=0).timestamp() * 1000)
    if resolution == "1d":
        return local.date()
    return (local.year, local.month)


def _oracle(ts: list[int], values: list[float], resolution: str, tz: ZoneInfo, *, counter: bool) -> dict:
    groups: dict = defaultdict(lambda: {"count": 0, "sum": 0.0, "min": None, "max": None, "delta": 0.0})
    previous: tuple[int, float] | None = None
    for t, v in zip(ts, values, strict=True):
        g = groups[_key(resolution, t, tz)]
        g["count"] += 1
        g["sum"] += v
        g["min"] = v if g["min"] is None else min(g["min"], v)
        g["max"] = v if g["max"] is None else max(g["max"], v)
        if counter and previous is not None:
            # A step back is a reset below 10 % of the reading before, else a glitch worth nothing.
            energy = v - previous[1] if v >= previous[1] else (v if v < 0.1 * previous[1] else 0.0)
            a, b = previous[0], t
            if b - a <= 900_000:
                g["delta"] += energy
            else:  # a gap: its energy is shared by the 15-minute cells it spans, by time
                cell = a - a % 900_000
                while cell < b:
                    overlap = min(cell + 900_000, b) - max(cell, a)
                    if overlap > 0:
                        groups[_key(resolution, max(cell, a), tz)]["delta"] += energy * overlap / (b - a)
                    cell += 900_000
        previous = (t, v)
    return dict(groups)


def _answer_keys(series, resolution: str, tz: ZoneInfo) -> list:
    return [_key(resolution, int(t), tz) for t in series.timestamps_ms]


def _profile(start_ms: int, end_ms: int, seed: int):
    rng = np.random.default_rng(seed)
    ts = np.arange(start_ms, end_ms, STEP, dtype=np.int64)
    keep = rng.random(len(ts)) > 0.02  # devices miss a few samples
    keep[len(ts) // 3 : len(ts) // 3 + 40] = False  # and one 40-minute outage
    ts = ts[keep]
    power = np.round(rng.normal(2_000, 400, len(ts)), 1)
    energy = np.cumsum(np.round(power * STEP / 3_600_000, 3)) + 50_000
    reset = len(ts) // 2
    energy[reset:] -= energy[reset] - 1.5  # the meter was replaced: its counter restarts near zero
    return ts, power, energy


@pytest.mark.parametrize(
    ("first_day", "hours", "limit"),
    [((2026, 3, 29), 23, 5000), ((2026, 10, 25), 25, 5000), ((2026, 10, 25), 25, 7)],
    ids=["spring-forward", "fall-back", "fall-back-in-small-claims"],
)
def test_rollups_equal_answers_computed_from_raw_across_a_dst_change(first_day, hours, limit):
    device, power, energy = device_with_channels(facility__timezone="Europe/Berlin")
    access = access_for_tenant(tenant=device.tenant)
    y, m, d = first_day
    start, end = _ms(y, m, d - 2), _ms(y, m, d + 2)
    ts, p, e = _profile(start, end, seed=d)
    # Out of order and late: the batches arrive shuffled, with refreshes in between.
    chunks = np.array_split(np.arange(len(ts)), 60)
    order = np.random.default_rng(7).permutation(len(chunks))
    for n, i in enumerate(order):
        idx = chunks[i]
        readings_ingest(batches=[batch_for(device, [power, energy], ts[idx], [p[idx], e[idx]])])
        if n % 9 == 0:
            while rollups_refresh(limit=limit):
                pass
    while rollups_refresh(limit=limit):
        pass
    assert DirtyInterval.objects.count() == 0

    for resolution in ("15m", "1h", "1d", "1mo"):
        answer = readings_series(
            access=access,
            channel_ids=[power.pk, energy.pk],
            start=datetime.fromtimestamp(start / 1000, tz=UTC),
            end=datetime.fromtimestamp(end / 1000, tz=UTC),
            resolution=resolution,
            aggregates=["count", "sum", "min", "max", "avg", "delta"],
        )
        for channel, values, counter in ((power, p, False), (energy, e, True)):
            series = answer[channel.pk]
            oracle = _oracle(ts.tolist(), values.tolist(), resolution, BERLIN, counter=counter)
            keys = _answer_keys(series, resolution, BERLIN)
            assert keys == sorted(oracle), resolution
            expected = [oracle[k] for k in keys]
            assert series.values["count"].tolist() == [g["count"] for g in expected]
            # Intervals with only a gap's estimated energy have no reading: no min or max.
            for name in ("min", "max"):
                got = [None if np.isnan(x) else x for x in series.values[name].tolist()]
                assert got == [g[name] for g in expected]
            np.testing.assert_allclose(series.values["sum"], [g["sum"] for g in expected], rtol=1e-12)
            np.testing.assert_allclose(series.values["delta"], [g["delta"] for g in expected], rtol=1e-9, atol=1e-9)
            assert (series.values["delta"] >= 0).all()

    days = readings_series(
        access=access,
        channel_ids=[energy.pk],
        start=datetime(y, m, d, tzinfo=BERLIN),
        end=datetime(y, m, d + 1, tzinfo=BERLIN),
        resolution="1d",
    )[energy.pk]
    assert (days.ends_ms - days.timestamps_ms).tolist() == [hours * 3_600_000]
    hourly = readings_series(
        access=access,
        channel_ids=[power.pk],
        start=datetime(y, m, d, tzinfo=BERLIN),
        end=datetime(y, m, d + 1, tzinfo=BERLIN),
        resolution="1h",
    )[power.pk]
    assert len(hourly.timestamps_ms) == hours


def test_a_counter_reset_is_consumption_since_the_reset_never_a_negative_spike():
    device, _, energy = device_with_channels()
    t = _ms(2026, 6, 1, 10, 0)
    readings_ingest(batches=[batch_for(device, [energy], t + np.arange(4) * 2_000, [[100.0, 110.0, 5.0, 15.0]])])
    rollups_refresh()
    row = Rollup.objects.get(channel_id=energy.pk, resolution=1)
    assert (row.delta, row.resets, row.gaps) == (25.0, 1, 0)


def test_energy_across_a_gap_is_spread_over_the_missing_time_and_flagged():
    device, _, energy = device_with_channels()
    t = _ms(2026, 6, 1, 10, 0)
    readings_ingest(batches=[batch_for(device, [energy], [t, t + 2_000], [[100.0, 101.0]])])
    rollups_refresh()
    readings_ingest(batches=[batch_for(device, [energy], [t + 3_600_000], [[131.0]])])
    rollups_refresh()
    rows = {r.start_ms: (r.delta, r.gaps, r.count) for r in Rollup.objects.filter(channel_id=energy.pk, resolution=1)}
    gap = 3_600_000 - 2_000
    quarter = 30.0 * 900_000 / gap
    assert rows.keys() == {t, t + 900_000, t + 1_800_000, t + 2_700_000, t + 3_600_000}
    assert rows[t][0] == pytest.approx(1.0 + 30.0 * 898_000 / gap)
    assert [rows[t + q * 900_000][0] for q in (1, 2, 3)] == pytest.approx([quarter] * 3)
    assert [rows[t + q * 900_000][2] for q in (1, 2, 3)] == [0, 0, 0]  # no reading of their own
    assert rows[t + 3_600_000] == (0.0, 1, 1)  # data resumed exactly at 11:00: nothing of the gap is after it


def test_late_data_recomputes_only_the_intervals_it_touches():
    device, power, energy = device_with_channels()
    t = _ms(2026, 6, 1, 0, 0)
    ts = t + np.arange(0, 86_400_000, 60_000)
    readings_ingest(batches=[batch_for(device, [power, energy], ts, [np.ones(len(ts)), np.arange(len(ts)) * 1.0])])
    assert rollups_refresh() == 96
    # One late power reading in the 10:15 interval, and one late energy reading at 10:15:30.
    late = t + 10 * 3_600_000 + 15 * 60_000 + 30_000
    readings_ingest(batches=[batch_for(device, [power, energy], [late], [[7.0], [615.5]])])
    assert list(DirtyInterval.objects.values_list("device_id", "start_ms")) == [(device.pk, late - 30_000)]
    assert rollups_refresh() == 1
    power_row = Rollup.objects.get(channel_id=power.pk, resolution=1, start_ms=late - 30_000)
    assert (power_row.count, power_row.max) == (16, 7.0)
    day = Rollup.objects.get(channel_id=energy.pk, resolution=3)
    assert day.delta == len(ts) - 1  # the late reading splits a delta, it does not add energy
