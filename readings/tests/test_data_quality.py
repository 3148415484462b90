"""Figures a bill can stand on: gaps, glitches, resets, implausible readings and DST days.

Each test checks the store's answer against an independent NumPy computation over the raw readings
written in the test itself: consumption per reading pair, a gap's energy shared by time among the
15-minute cells it spans, local calendars from zoneinfo.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from accounts.selectors import access_for_tenant
from devices.models import Channel
from devices.tests.factories import DeviceFactory
from readings.errors import ReadingsQueryError
from readings.models import ConfirmedSpan, Rollup
from readings.rollups import flag_names
from readings.selectors import readings_demand_peak, readings_facility_demand, readings_series
from readings.services import (
    readings_confirm,
    readings_counter_reset_record,
    readings_ingest,
    rollups_refresh,
)
from readings.tests.factories import batch_for, device_with_channels, local_ms, rated_power_meter

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_channel_metadata")]
BERLIN = ZoneInfo("Europe/Berlin")
Q = 900_000


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _store(device, channels, ts, values) -> None:  # type: ignore[no-untyped-def]
    # In day-sized batches, as a gateway would deliver them, with a refresh after each.
    ts = np.asarray(ts, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64).reshape(len(channels), -1)
    for day in np.unique(ts // 86_400_000):
        keep = ts // 86_400_000 == day
        readings_ingest(batches=[batch_for(device, channels, ts[keep], values[:, keep])])
        while rollups_refresh():
            pass


def expected_energy(ts: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Independent: energy per interval between `edges` from a counter's raw readings.

    A step forward is consumption; a step back is a reset when below 10 % of the reading before
    (counting the new value) and nothing otherwise; a step longer than 15 minutes is a gap whose
    energy is shared by time among the intervals it spans.
    """
    steps = np.diff(values)
    back = steps < 0
    energy = np.where(back, np.where(values[1:] < 0.1 * values[:-1], values[1:], 0.0), steps)
    a, b = ts[:-1], ts[1:]
    gap = b - a > Q
    out = np.zeros(len(edges) - 1)
    plain = ~gap & (b >= edges[0]) & (b < edges[-1])
    np.add.at(out, np.searchsorted(edges, b[plain], side="right") - 1, energy[plain])
    if gap.any():
        lo = np.maximum(edges[None, :-1], a[gap][:, None])
        hi = np.minimum(edges[None, 1:], b[gap][:, None])
        share = np.clip(hi - lo, 0, None) / (b[gap] - a[gap])[:, None]
        out += (energy[gap][:, None] * share).sum(axis=0)
    return out


def _quarters(access, channel, start_ms: int, end_ms: int) -> tuple[dict[int, float], dict[int, list[str]]]:  # type: ignore[no-untyped-def]
    series = readings_series(
        access=access, channel_ids=[channel.pk], start=_dt(start_ms), end=_dt(end_ms), resolution="15m"
    )[channel.pk]
    delta = dict(zip(series.timestamps_ms.tolist(), series.values["delta"].tolist(), strict=True))
    flags = {
        t: flag_names(m) for t, m in zip(series.timestamps_ms.tolist(), series.extras["flags"].tolist(), strict=True)
    }
    return delta, flags


def test_a_three_hour_gap_is_spread_over_the_missing_quarters_not_put_where_data_resumes():
    device, power, energy = device_with_channels()
    access = access_for_tenant(tenant=device.tenant)
    start = local_ms(2026, 6, 2, 8, 0)
    ts = np.arange(start, start + 8 * 3_600_000, 10_000, dtype=np.int64)
    ts = ts[(ts < start + 2 * 3_600_000 + 7 * 60_000) | (ts >= start + 5 * 3_600_000 + 7 * 60_000)]
    rng = np.random.default_rng(3)
    watts = rng.uniform(4_000, 6_000, len(ts))
    counter = 52_000.0 + np.cumsum(watts * 10 / 3_600)  # Wh; it also counts during the outage
    counter[ts >= start + 5 * 3_600_000] += 15_650.0 - 1_420.0
    _store(device, [power, energy], ts, [watts, counter])

    delta, flags = _quarters(access, energy, start, start + 8 * 3_600_000)
    edges = np.arange(start, start + 8 * 3_600_000 + 1, Q, dtype=np.int64)
    expected = expected_energy(ts, counter, edges)
    assert sorted(delta) == edges[:-1][expected > 0].tolist()
    np.testing.assert_allclose([delta[t] for t in sorted(delta)], expected[expected > 0], rtol=1e-9)
    resumed = start + 5 * 3_600_000
    # The quarter where data resumes holds its own 8 minutes and its share of the gap, not the whole gap.
    gap_energy = counter[np.searchsorted(ts, resumed + 7 * 60_000)] - counter[np.searchsorted(ts, resumed) - 1]
    assert delta[resumed] < gap_energy / 5
    assert flags[resumed] == ["gap", "estimated"]
    assert flags[start + 3 * 3_600_000] == ["estimated"]
    assert flags[start] == []
    assert sum(delta.values()) == pytest.approx(counter[-1] - counter[0])


def test_a_gap_across_midnight_leaves_each_day_its_share():
    device, _, energy = device_with_channels()
    access = access_for_tenant(tenant=device.tenant)
    day = local_ms(2026, 6, 2)
    ts = np.concatenate(
        (
            np.arange(day + 20 * 3_600_000, day + 22 * 3_600_000, 60_000),
            np.arange(day + 26 * 3_600_000, day + 28 * 3_600_000, 60_000),
        )
    ).astype(np.int64)
    counter = 1_000.0 + np.arange(len(ts)) * 20.0
    counter[len(ts) // 2 :] += 5_000.0  # 5 kWh used while the device was offline, 22:00 to 02:00
    _store(device, [energy], ts, [counter])

    days = readings_series(
        access=access, channel_ids=[energy.pk], start=_dt(day), end=_dt(day + 48 * 3_600_000), resolution="1d"
    )[energy.pk]
    edges = np.array([local_ms(2026, 6, 2), local_ms(2026, 6, 3), local_ms(2026, 6, 4)], dtype=np.int64)
    expected = expected_energy(ts, counter, edges)
    assert days.timestamps_ms.tolist() == edges[:-1].tolist()
    np.testing.assert_allclose(days.values["delta"], expected, rtol=1e-9)
    # 21:59 to 02:00 is 241 minutes, 121 of them on the 2nd: that share of the gap's 5,020 Wh stays there.
    assert expected[0] == pytest.approx(119 * 20 + 5_020 * 121 / 241)
    assert set(flag_names(int(days.extras["flags"][0]))) == {"estimated"}
    assert set(flag_names(int(days.extras["flags"][1]))) == {"gap", "estimated"}


def test_a_device_silent_for_months_spreads_its_energy_over_the_silence():
    device, _, energy = device_with_channels()
    access = access_for_tenant(tenant=device.tenant)
    before = local_ms(2026, 1, 10, 12) + np.arange(0, 3_600_000, 60_000)
    after = local_ms(2026, 4, 20, 12) + np.arange(0, 3_600_000, 60_000)
    ts = np.concatenate((before, after)).astype(np.int64)
    counter = 5_000.0 + np.arange(len(ts)) * 10.0
    counter[len(before) :] += 20_000_000.0  # 20 MWh over 100 days
    _store(device, [energy], ts, [counter])

    months = readings_series(
        access=access,
        channel_ids=[energy.pk],
        start=_dt(local_ms(2026, 1, 1)),
        end=_dt(local_ms(2026, 5, 1)),
        resolution="1mo",
    )[energy.pk]
    edges = np.array([local_ms(2026, m, 1) for m in (1, 2, 3, 4, 5)], dtype=np.int64)
    expected = expected_energy(ts, counter, edges)
    np.testing.assert_allclose(months.values["delta"], expected, rtol=1e-9)
    delta, flags = _quarters(access, energy, after[0], after[0] + Q)
    first_back = delta[int(after[0])]
    edges_q = np.array([after[0], after[0] + Q], dtype=np.int64)
    assert first_back == pytest.approx(expected_energy(ts, counter, edges_q)[0])
    assert first_back < 10_000  # Wh: its own quarter's share, not 20 MWh
    # Data resumed exactly at 12:00: the gap's energy all lies before this quarter.
    assert flags[int(after[0])] == ["gap"]
    assert flag_names(int(months.extras["flags"][2])) == ["estimated"]  # March: silence only
    silent = Rollup.objects.filter(channel_id=energy.pk, resolution=1, count=0)
    first_silent = int(before[-1]) - int(before[-1]) % Q + Q
    assert silent.count() == (int(after[0]) - first_silent) // Q  # each silent quarter is there, estimated


def test_a_small_step_back_is_a_glitch_worth_nothing_not_a_reset_worth_the_whole_counter():
    device, _, energy = device_with_channels()
    access = access_for_tenant(tenant=device.tenant)
    start = local_ms(2026, 6, 2, 10)
    ts = start + np.arange(0, Q, 2_000, dtype=np.int64)
    counter = 52_000.0 + np.arange(len(ts)) * 0.5
    counter[200] = counter[199] - 0.1  # a 0.1 Wh glitch
    _store(device, [energy], ts, [counter])

    delta, flags = _quarters(access, energy, start, start + Q)
    expected = expected_energy(ts, counter, np.array([start, start + Q], dtype=np.int64))[0]
    assert delta[start] == pytest.approx(expected)
    assert delta[start] < 300  # Wh, not 52 kWh
    assert flags[start] == ["glitch"]


def test_a_reported_reset_counts_the_energy_since_the_reset_even_when_the_drop_is_small():
    device, _, energy = device_with_channels()
    access = access_for_tenant(tenant=device.tenant)
    start = local_ms(2026, 6, 2, 10)
    ts = start + np.arange(0, 10 * 60_000, 60_000, dtype=np.int64)
    # A small counter (500 Wh) restarts at minute 5 and has 60 Wh one minute later: not below 10 %.
    counter = np.array([300, 350, 400, 450, 500, 60, 110, 160, 210, 260], dtype=np.float64)
    _store(device, [energy], ts, [counter])
    delta, flags = _quarters(access, energy, start, start + Q)
    assert flags[start] == ["glitch"]  # unreported, the drop is too small to be a reset
    assert delta[start] == pytest.approx(200 + 200)

    readings_counter_reset_record(tenant_id=device.tenant_id, device_id=device.pk, at_ms=int(ts[5]) - 10_000)
    rollups_refresh()
    delta, flags = _quarters(access, energy, start, start + Q)
    steps = np.diff(counter)
    expected = steps[steps > 0].sum() + counter[5]  # the reset adds the energy since the reset
    assert delta[start] == pytest.approx(expected)
    assert flags[start] == ["reset"]


def _facility_with_rated_range():  # type: ignore[no-untyped-def]
    return rated_power_meter(low=-1_000, high=10_000)


def test_a_two_second_500_kw_spike_on_a_6_kw_facility_does_not_set_the_month_peak_until_confirmed():
    device, power = _facility_with_rated_range()
    assert (power.plausible_min, power.plausible_max) == (-1_000, 10_000)  # copied from the rated range
    access = access_for_tenant(tenant=device.tenant)
    start = local_ms(2026, 6, 2, 0)
    ts = start + np.arange(0, 86_400_000, 2_000, dtype=np.int64)
    rng = np.random.default_rng(5)
    watts = rng.uniform(3_000, 6_000, len(ts))
    spike = int(np.searchsorted(ts, local_ms(2026, 6, 2, 14, 7)))
    watts[spike] = 500_000.0
    _store(device, [power], ts, [watts])

    series = readings_facility_demand(
        access=access, facility_id=device.facility_id, start=_dt(start), end=_dt(start + 86_400_000)
    )
    quarter = (ts - start) // Q
    plausible = watts <= 10_000
    expected_kw = np.bincount(quarter[plausible], weights=watts[plausible]) / np.bincount(quarter[plausible]) / 1000
    np.testing.assert_allclose(series.demand_kw, expected_kw, rtol=1e-9)
    peak = readings_demand_peak(series)
    assert peak is not None and peak.kw == pytest.approx(expected_kw.max()) and peak.kw < 6.0
    spiked = local_ms(2026, 6, 2, 14, 0)
    assert flag_names(int(series.flags[series.timestamps_ms.tolist().index(spiked)])) == ["implausible"]
    # The raw reading is kept.
    raw = readings_series(access=access, channel_ids=[power.pk], start=_dt(spiked), end=_dt(spiked + Q))[power.pk]
    assert raw.values["value"].max() == 500_000.0

    readings_confirm(
        access=access, channel_id=power.pk, start=_dt(int(ts[spike])), end=_dt(int(ts[spike]) + 1), note="real"
    )
    while rollups_refresh():
        pass
    series = readings_facility_demand(
        access=access, facility_id=device.facility_id, start=_dt(start), end=_dt(start + 86_400_000)
    )
    in_quarter = quarter == quarter[spike]
    assert readings_demand_peak(series).kw == pytest.approx(watts[in_quarter].mean() / 1000)  # type: ignore[union-attr]


def test_confirming_readings_of_another_tenants_channel_fails_like_a_missing_one_and_stores_nothing():
    device, power = _facility_with_rated_range()
    stranger = access_for_tenant(tenant=DeviceFactory().tenant)
    moment = datetime(2026, 6, 2, 12, tzinfo=BERLIN)
    with pytest.raises(Channel.DoesNotExist):
        readings_confirm(access=stranger, channel_id=power.pk, start=moment, end=moment + timedelta(minutes=1))
    with pytest.raises(ReadingsQueryError, match="31 days"):
        readings_confirm(
            access=access_for_tenant(tenant=device.tenant),
            channel_id=power.pk,
            start=moment,
            end=moment + timedelta(days=40),
        )
    assert ConfirmedSpan.objects.count() == 0


@pytest.mark.parametrize(("day", "quarters"), [((2026, 3, 29), 92), ((2026, 10, 25), 100)], ids=["spring", "autumn"])
def test_the_demand_series_of_a_dst_day_has_every_local_quarter_and_the_days_energy(day, quarters):
    device, power, energy = device_with_channels(facility__timezone="Europe/Berlin")
    access = access_for_tenant(tenant=device.tenant)
    start, end = local_ms(*day), local_ms(*(datetime(*day) + timedelta(days=1)).timetuple()[:3])
    ts = np.arange(start - 3_600_000, end + 3_600_000, 30_000, dtype=np.int64)
    rng = np.random.default_rng(day[2])
    watts = rng.uniform(1_000, 9_000, len(ts))
    counter = 10_000.0 + np.cumsum(watts * 30 / 3_600)
    _store(device, [power, energy], ts, [watts, counter])

    series = readings_facility_demand(access=access, facility_id=device.facility_id, start=_dt(start), end=_dt(end))
    inside = (series.timestamps_ms >= start) & (series.timestamps_ms < end)
    assert inside.sum() == quarters and series.source == "counter"
    edges = np.arange(start, end + 1, Q, dtype=np.int64)
    expected_kwh = expected_energy(ts, counter, edges) / 1000
    np.testing.assert_allclose(series.energy_kwh[inside], expected_kwh, rtol=1e-9)
    np.testing.assert_allclose(series.demand_kw[inside], expected_kwh * 4, rtol=1e-9)
    local = [datetime.fromtimestamp(t / 1000, tz=BERLIN) for t in series.timestamps_ms[inside].tolist()]
    assert local[0].hour == 0 and local[0].minute == 0 and local[-1].hour == 23 and local[-1].minute == 45
