"""The stored 15-minute demand and monthly/annual peaks against an independent computation from the raw
readings (NumPy here, no billing or readings code): a counter with a 3-hour gap across a DST change, a
mean-power meter, late data, a time-zone change and a device moved to a facility in another zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from accounts.selectors import access_for_tenant
from billing import services
from billing.models import DemandInterval, DemandMark, FacilityPeak
from billing.selectors import peaks_report
from billing.tasks import demand_settle_task
from billing.tests.factories import POWER_METER, ingest_counter, metered_facility, refresh_rollups
from devices.tests.factories import FacilityFactory
from integrations.scopes import BILLING_READ
from integrations.tests.factories import AccessTokenFactory, ApplicationFactory, bearer
from readings.services import device_relocate_rezoned, facility_update_rezoned

pytestmark = pytest.mark.django_db
Q = 900_000
STEP_MS = 300_000
GAP_LIMIT_MS = 15 * 60_000  # readings further apart than this are a gap (docs/architecture.md)
BERLIN = ZoneInfo("Europe/Berlin")
START_MS = int(datetime(2026, 3, 27, tzinfo=BERLIN).timestamp() * 1000)  # before the spring DST change
END_MS = int(datetime(2026, 4, 4, tzinfo=BERLIN).timestamp() * 1000)
# Half past midnight UTC on 1 April: April in Berlin, still March in New York and in London.
SPIKE_MS = int(datetime(2026, 4, 1, 0, 30, tzinfo=UTC).timestamp() * 1000)
GAP = (int(datetime(2026, 4, 2, 9, tzinfo=BERLIN).timestamp() * 1000), 3 * 3_600_000)


def _watts(ts: np.ndarray, seed: int, base: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hours = (ts // 3_600_000) % 24
    watts = base + 3000 * ((hours >= 7) & (hours < 18)) * rng.random(len(ts)) + 500 * rng.random(len(ts))
    return watts + 9000 * ((ts > SPIKE_MS) & (ts <= SPIKE_MS + Q))


def _counter_facility(**kwargs):  # type: ignore[no-untyped-def]
    """A counter-metered facility; the main meter's readings skip 3 hours of heavy use (30 kW)."""
    mf = metered_facility(timezone="Europe/Berlin", **kwargs)
    ts = np.arange(START_MS, END_MS, STEP_MS, dtype=np.int64)
    raw = {}
    for seed, channel in enumerate(mf.channels):
        watts = _watts(ts, seed, 6000 if channel == mf.main else 2000)
        gap_start, gap_length = GAP
        in_gap = (ts > gap_start) & (ts < gap_start + gap_length)
        if channel == mf.main:
            watts = np.where(in_gap, 30_000.0, watts)
        counter = 5_000_000 + np.cumsum(watts * STEP_MS / 3_600_000)
        keep = ~in_gap if channel == mf.main else np.ones(len(ts), dtype=bool)
        ingest_counter(channel, ts[keep], counter[keep])
        raw[channel.pk] = (ts[keep], counter[keep])
    refresh_rollups()
    return mf, raw


def reference_counter(ts: np.ndarray, wh: np.ndarray) -> dict[int, tuple[float, bool]]:
    """kW per quarter-hour start and whether it is estimated: each step goes to the quarter holding its
    later reading; a step across a gap is shared by time among the quarters of the gap, estimated."""
    out: dict[int, list] = {}
    if len(ts):
        out[int(ts[0]) // Q * Q] = [0.0, False]
    for a, b, step in zip(ts[:-1].tolist(), ts[1:].tolist(), (np.diff(wh) / 1000).tolist(), strict=True):
        if b - a <= GAP_LIMIT_MS:
            cell = out.setdefault(b // Q * Q, [0.0, False])
            cell[0] += step
            continue
        for q in range(a // Q * Q, b + 1, Q):
            overlap = min(q + Q, b) - max(q, a)
            if overlap > 0:
                cell = out.setdefault(q, [0.0, False])
                cell[0] += step * overlap / (b - a)
                cell[1] = True
    return {q: (kwh * 4, est) for q, (kwh, est) in out.items()}


def reference_power(ts: np.ndarray, watts: np.ndarray) -> dict[int, tuple[float, bool]]:
    quarters = ts // Q * Q
    return {int(q): (float(watts[quarters == q].mean()) / 1000, False) for q in np.unique(quarters)}


def reference_peaks(demand: dict[int, tuple[float, bool]], zone: str) -> dict[tuple[int, int], tuple]:
    """(year, month) -> (kW, start ms, estimated, kWh) in `zone`; month 0 is the year. Ties: the earliest."""
    tz = ZoneInfo(zone)
    out: dict[tuple[int, int], tuple] = {}
    for q in sorted(demand):
        local = datetime.fromtimestamp(q / 1000, tz=tz)
        kw, est = demand[q]
        for key in ((local.year, local.month), (local.year, 0)):
            best = out.get(key)
            energy = (best[3] if best else 0.0) + kw / 4
            if best is None or kw > best[0]:
                out[key] = (kw, q, est, energy)
            else:
                out[key] = (*best[:3], energy)
    return out


def _stored(facility) -> dict[int, tuple[float, bool]]:  # type: ignore[no-untyped-def]
    return {
        int(r.start.timestamp() * 1000): (r.kw, r.estimated)
        for r in DemandInterval.objects.filter(facility=facility).order_by("start")
    }


def _stored_peaks(facility) -> dict[tuple[int, int], tuple]:  # type: ignore[no-untyped-def]
    return {
        (p.year, p.month): (p.kw, int(p.interval_start.timestamp() * 1000), p.estimated, p.energy_kwh)
        for p in FacilityPeak.objects.filter(facility=facility)
    }


def _assert_demand(facility, expected: dict[int, tuple[float, bool]]) -> None:  # type: ignore[no-untyped-def]
    stored = _stored(facility)
    assert sorted(stored) == sorted(expected)
    assert [stored[q][0] for q in sorted(stored)] == pytest.approx([expected[q][0] for q in sorted(expected)], rel=1e-9)
    assert [q for q in sorted(stored) if stored[q][1]] == [q for q in sorted(expected) if expected[q][1]]


def _assert_peaks(facility, expected: dict[tuple[int, int], tuple]) -> None:  # type: ignore[no-untyped-def]
    stored = _stored_peaks(facility)
    assert sorted(stored) == sorted(expected)
    for key, (kw, start, est, kwh) in expected.items():
        assert stored[key][0] == pytest.approx(kw, rel=1e-9), key
        assert stored[key][1:3] == (start, est), key
        assert stored[key][3] == pytest.approx(kwh, rel=1e-9), key


def _main_reference(raw, mf) -> dict[int, tuple[float, bool]]:  # type: ignore[no-untyped-def]
    return reference_counter(*raw[mf.main.pk])


def test_stored_demand_and_peaks_equal_an_independent_computation_from_the_raw_readings(client):
    mf, raw = _counter_facility()
    assert DemandMark.objects.filter(facility=mf.facility).exists()  # the rollup refresh marked it

    assert demand_settle_task.apply().get() == 1  # the beat task; nothing else has read the facility yet
    expected = _main_reference(raw, mf)
    _assert_demand(mf.facility, expected)
    peaks = reference_peaks(expected, "Europe/Berlin")
    _assert_peaks(mf.facility, peaks)
    assert not DemandMark.objects.filter(facility=mf.facility).exists()
    # The 3 hours of 30 kW spread over the gap set April's peak, flagged estimated; the spike sets none.
    april = peaks[(2026, 4)]
    assert 29.0 < april[0] < 33.0  # ~30 kW spread, plus a plain 5 minutes in the gap's first quarter
    assert april[2] is True
    assert GAP[0] <= april[1] < GAP[0] + GAP[1]
    assert _stored_peaks(mf.facility)[(2026, 4)][2] is True

    # The Peaks page's figures and /api/v1/peaks/ read the same stored peaks.
    access = access_for_tenant(tenant=mf.facility.tenant)
    report = peaks_report(access=access, facility_id=mf.facility.pk, year=2026, month=4, now_ms=END_MS + 86_400_000)
    assert report.month_peak is not None
    assert (report.month_peak.start_ms, report.month_peak.estimated) == (april[1], True)
    assert report.month_peak.kw == pytest.approx(april[0], rel=1e-9)
    assert report.year_peak == (peaks[(2026, 0)][1], pytest.approx(peaks[(2026, 0)][0], rel=1e-9))
    token = bearer(AccessTokenFactory(application=ApplicationFactory(tenant=mf.facility.tenant), scope=BILLING_READ))
    answer = client.get("/api/v1/peaks/", {"facility": mf.facility.pk, "month": "2026-04"}, **token)
    assert answer.status_code == 200, answer.content
    assert answer.json()["month_peak"]["kw"] == pytest.approx(april[0], rel=1e-9)
    assert answer.json()["month_peak"]["estimated"] is True


def test_late_data_updates_the_stored_demand_and_peaks_of_its_intervals_only():
    mf, raw = _counter_facility()
    services.demand_settle()
    before = _stored(mf.facility)
    # Late data: two more days at the end, with 50 kW for 10 minutes on 5 April.
    ts = np.arange(END_MS, END_MS + 2 * 86_400_000, STEP_MS, dtype=np.int64)
    late_spike = END_MS + 86_400_000 + 10 * 3_600_000
    watts = 6000 + 44_000 * ((ts > late_spike) & (ts <= late_spike + Q))
    last_ts, last_wh = raw[mf.main.pk]
    counter = last_wh[-1] + np.cumsum(watts * STEP_MS / 3_600_000)
    ingest_counter(mf.main, ts, counter)
    refresh_rollups()
    marks = list(DemandMark.objects.filter(facility=mf.facility))
    assert marks and min(m.start_ms for m in marks) >= END_MS - Q  # only the new span is due

    services.demand_settle(facility_ids=[mf.facility.pk])
    expected = reference_counter(np.concatenate((last_ts, ts)), np.concatenate((last_wh, counter)))
    _assert_demand(mf.facility, expected)
    _assert_peaks(mf.facility, reference_peaks(expected, "Europe/Berlin"))
    # 5 minutes at 6 kW and 10 at 50 kW in the quarter from late_spike: 8.83 kWh, 35.3 kW, over the gap's ~32.
    assert _stored_peaks(mf.facility)[(2026, 4)][:3] == (pytest.approx(106 / 3, rel=1e-6), late_spike, False)
    assert {q: v for q, v in _stored(mf.facility).items() if q < END_MS - Q} == {
        q: v for q, v in before.items() if q < END_MS - Q
    }


def test_a_mean_power_meter_stores_mean_kw_per_quarter():
    mf = metered_facility(timezone="Europe/Berlin", meter=POWER_METER, load_names=())
    ts = np.arange(START_MS, START_MS + 3 * 86_400_000, 60_000, dtype=np.int64)
    watts = _watts(ts, 7, 4000)
    ingest_counter(mf.main, ts, watts)
    refresh_rollups()
    services.demand_settle()
    expected = reference_power(ts, watts)
    _assert_demand(mf.facility, expected)
    _assert_peaks(mf.facility, reference_peaks(expected, "Europe/Berlin"))


def test_a_new_time_zone_regroups_the_stored_peaks_into_its_months():
    mf, raw = _counter_facility()
    services.demand_settle()
    expected = _main_reference(raw, mf)
    berlin = reference_peaks(expected, "Europe/Berlin")
    new_york = reference_peaks(expected, "America/New_York")
    assert berlin[(2026, 3)] != new_york[(2026, 3)]  # the spike moves from April into March

    access = access_for_tenant(tenant=mf.facility.tenant)
    facility_update_rezoned(access=access, facility=mf.facility, timezone="America/New_York")
    services.demand_settle()
    _assert_demand(mf.facility, expected)  # the quarter hours are UTC's in every zone
    _assert_peaks(mf.facility, new_york)


def test_a_device_moved_to_a_facility_in_another_zone_moves_its_demand_and_peaks():
    mf, raw = _counter_facility()
    london = FacilityFactory(tenant=mf.facility.tenant, timezone="Europe/London")
    services.demand_settle()
    access = access_for_tenant(tenant=mf.facility.tenant)

    device_relocate_rezoned(access=access, device=mf.main.device, facility=london)
    services.demand_settle()
    # London now has the main meter's history; the store, left without its mains meter, is the sum of its
    # submeters (the bills' rule: with no mains meter, the loads together).
    moved = _main_reference(raw, mf)
    _assert_demand(london, moved)
    _assert_peaks(london, reference_peaks(moved, "Europe/London"))
    parts = [reference_counter(*raw[channel.pk]) for _, channel in mf.loads.values()]
    rest = {
        q: (sum(p[q][0] for p in parts if q in p), any(p[q][1] for p in parts if q in p))
        for q in sorted(set().union(*parts))
    }
    _assert_demand(mf.facility, rest)
    _assert_peaks(mf.facility, reference_peaks(rest, "Europe/Berlin"))


def test_the_beat_task_stops_at_its_budget_and_the_next_run_goes_on():
    first, _ = _counter_facility()
    second, _ = _counter_facility()
    assert demand_settle_task.apply(kwargs={"budget_s": 0}).get() == 1  # one facility, then out of time
    stored = {mf.facility.pk for mf in (first, second) if DemandInterval.objects.filter(facility=mf.facility).exists()}
    assert len(stored) == 1
    assert demand_settle_task.apply(kwargs={"budget_s": 0}).get() == 1
    assert all(DemandInterval.objects.filter(facility=mf.facility).exists() for mf in (first, second))
    assert demand_settle_task.apply().get() == 0  # nothing left
