"""The live dashboard's figures: every sample counts, partial quarters count their covered time,
the running quarter is counted once, and the month peak follows the stream.

Each figure is checked against a NumPy computation over the same samples, written here.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from accounts.selectors import access_for_tenant
from devices.models import Load
from devices.tests.factories import DeviceFactory, FacilityFactory, LoadFactory
from portal import consumers
from portal.consumers import FacilityLive
from portal.history import Peak
from portal.selectors import (
    ChannelView,
    DeviceView,
    LiveLayout,
    LoadView,
    facility_live_layout,
    facility_totals,
    live_history,
)
from readings import metadata
from readings.services import readings_ingest, rollups_refresh
from readings.tests.factories import batch_for

BERLIN = ZoneInfo("Europe/Berlin")
Q = 900_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp() * 1000)


def _layout() -> LiveLayout:
    return LiveLayout(
        facility_id=1,
        facility_name="Shop",
        timezone="Europe/Berlin",
        loads=(LoadView(id=7, name="Mains", kind="mains"),),
        channels=(ChannelView(1, 10, 7, "P", "active_power", "Active power", "W", "total"),),
        devices=(DeviceView(10, 1, "Meter", "SN-1", True, None),),
        mains_load_ids=frozenset({7}),
    )


@pytest.fixture
def frozen_now(monkeypatch):
    def freeze(at: int) -> None:
        monkeypatch.setattr(consumers, "now_ms", lambda: at)

    return freeze


def _batches(ts: np.ndarray, watts: np.ndarray, size: int = 15):  # type: ignore[no-untyped-def]
    for first in range(0, len(ts), size):
        yield ts[first : first + size].tolist(), {"1": watts[first : first + size].tolist()}


def test_every_sample_of_a_15_sample_batch_counts_in_the_live_kwh_and_the_projection(frozen_now):
    start = ms("2026-11-26T10:00:00")
    frozen_now(start)
    live = FacilityLive(layout=_layout(), history=None)
    ts = start + np.arange(0, 10 * 60_000, 2_000, dtype=np.int64)  # 10 minutes, 300 samples
    rng = np.random.default_rng(11)
    watts = rng.uniform(2_000, 9_000, len(ts))
    for batch_ts, values in _batches(ts, watts):
        live.apply(device_id=10, ts=batch_ts, values=values)

    at = int(ts[-1])
    kw = watts / 1000
    # Left Riemann sum: each sample's level holds until the next one.
    energy = float(np.sum(kw[:-1] * np.diff(ts)) / 3_600_000)
    assert live.energy_today_kwh(at) == pytest.approx(energy, abs=1e-4)
    projection = (energy + kw[-1] * (start + Q - at) / 3_600_000) * 3_600_000 / (start + Q - int(ts[0]))
    figures = live.figures(at)
    assert figures["demand"]["projection_kw"] == pytest.approx(projection, abs=1e-3)
    assert figures["demand"]["energy_kwh"] == pytest.approx(energy, abs=1e-4)


def test_a_reading_outside_the_plausible_range_moves_neither_the_live_kw_nor_the_projection(frozen_now):
    start = ms("2026-11-26T10:00:00")
    frozen_now(start)
    channel = ChannelView(1, 10, 7, "P", "active_power", "Active power", "W", "total", plausible_max=20_000.0)
    live = FacilityLive(layout=dataclasses.replace(_layout(), channels=(channel,)), history=None)
    ts = start + np.arange(0, 6 * 60_000, 2_000, dtype=np.int64)
    watts = np.random.default_rng(5).uniform(2_000, 6_000, len(ts))
    watts[100] = 500_000.0  # one glitch of 500 kW on a 6 kW shop, inside a batch
    watts[-1] = 480_000.0  # and one as the newest sample
    for batch_ts, values in _batches(ts, watts):
        live.apply(device_id=10, ts=batch_ts, values=values)

    at = int(ts[-1])
    keep = watts <= 20_000
    kept_ts, kw = ts[keep], watts[keep] / 1000
    # Without the glitches: each plausible sample's level holds until the next plausible one.
    energy = float(np.sum(kw[:-1] * np.diff(kept_ts)) / 3_600_000)
    projection = (energy + kw[-1] * (start + Q - int(kept_ts[-1])) / 3_600_000) * 3_600_000 / (start + Q - int(ts[0]))
    figures = live.figures(at)
    assert figures["power"]["total_kw"] == pytest.approx(kw[-1], abs=1e-3)
    assert figures["demand"]["energy_kwh"] == pytest.approx(energy, abs=1e-4)
    assert figures["demand"]["projection_kw"] == pytest.approx(projection, abs=1e-3)
    assert figures["demand"]["projection_kw"] < 7


def test_a_completed_quarter_above_the_month_peak_becomes_the_peak_and_a_new_month_starts_without_one(frozen_now):
    start = ms("2026-11-30T23:15:00")
    frozen_now(start)
    layout = _layout()
    live = FacilityLive(layout=layout, history=None)
    live.month_peak = Peak(kw=5.0, interval_start_ms=ms("2026-11-03T12:00:00"))
    ts = start + np.arange(0, 2 * Q + 4_000, 2_000, dtype=np.int64)  # 23:15 to 23:45 and into December
    watts = np.where(ts < start + Q, 8_000.0, 3_000.0)
    for batch_ts, values in _batches(ts, watts):
        live.apply(device_id=10, ts=batch_ts, values=values)
        if batch_ts[-1] < start + 2 * Q:
            assert live.figures(batch_ts[-1])["month_peak"]["kw"] in (5.0, pytest.approx(8.0))
    assert live.month_peak is not None
    december = ms("2026-12-01T00:00:02")
    # 23:15-23:30 at 8 kW set November's peak; 23:30-23:45 at 3 kW did not.
    assert live.figures(ms("2026-11-30T23:59:00"))["month_peak"] == {"kw": 8.0, "interval_start": start}
    assert live.figures(december)["month_peak"] is None


@pytest.mark.django_db
def test_todays_kwh_without_a_counter_counts_covered_time_and_the_running_quarter_once(frozen_now):
    metadata.clear_caches()
    facility = FacilityFactory(timezone="Europe/Berlin")
    mains = LoadFactory(facility=facility, name="Mains", kind=Load.Kind.MAINS)
    device = DeviceFactory(
        facility=facility,
        device_type__channels=[{"name": "P", "quantity": "active_power", "unit": "W", "phase": "total"}],
    )
    device.channels.update(load=mains)
    power = device.channels.get()
    now = ms("2026-11-26T10:07:31")
    day = ms("2026-11-26T00:00:00")
    ts = np.arange(ms("2026-11-26T08:00:00"), now, 2_000, dtype=np.int64)
    # Silent from 09:05 to 09:52: the 09:00 and 09:45 quarters are cut by the gap.
    ts = ts[(ts < ms("2026-11-26T09:05:00")) | (ts >= ms("2026-11-26T09:52:00"))]
    rng = np.random.default_rng(2)
    watts = rng.uniform(3_000, 7_000, len(ts))
    readings_ingest(batches=[batch_for(device, [power], ts, [watts])])
    rollups_refresh()
    access = access_for_tenant(tenant=facility.tenant)

    # Independent: each 2-second sample stands for 2 seconds of its level.
    expected = float(np.sum(watts / 1000) * 2_000 / 3_600_000)
    (stored, _peak) = facility_totals(access=access, facility_ids=[facility.pk], now_ms=now)[facility.pk]
    assert stored == pytest.approx(expected, rel=1e-3)
    old_rule = sum(np.mean(watts[(ts - day) // Q == q]) / 1000 / 4 for q in np.unique((ts - day) // Q))
    assert old_rule > expected * 1.02  # what counting every partial quarter as 15 minutes gave

    frozen_now(now)
    layout = facility_live_layout(access=access, facility_id=facility.pk)
    live = FacilityLive(layout=layout, history=live_history(access=access, layout=layout, now_ms=now))
    # The dashboard: stored quarters up to 10:00, then the replayed running quarter, each counted once.
    assert live.energy_today_kwh(now) == pytest.approx(expected, rel=1e-3)
    later = now + np.arange(2_000, 62_000, 2_000, dtype=np.int64)
    more = rng.uniform(3_000, 7_000, len(later))
    for batch_ts, values in _batches(later, more):
        live.apply(device_id=device.pk, ts=batch_ts, values={str(power.pk): values["1"]})
    grown = expected + float(np.sum(more[:-1] / 1000) * 2_000 / 3_600_000) + watts[-1] / 1000 * 2_000 / 3_600_000
    assert live.energy_today_kwh(int(later[-1])) == pytest.approx(grown, rel=1e-3)
