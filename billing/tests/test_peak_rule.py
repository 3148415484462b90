"""One peak rule: a bill's own month peak, /api/v1/peaks/, the Peaks page and the dashboard's month peak are
the same figure, checked against a NumPy computation from the raw readings written here.

The facility is built from the edge cases where two rules could part: two feeds on the mains load, one
measured by mean power only (with an implausible 500 kW reading), the other by a counter and a power
channel, whose counter starts two days late (its power answers until then) and misses three hours of
heavy use (spread over the gap, estimated: the month's peak); a submeter with a counter; and a draft
whose running quarter holds the month's highest power so far, which no figure may count yet.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from accounts.selectors import access_for_tenant
from billing import services, views
from billing.models import DemandInterval
from billing.selectors import bill_compute, month_peak_stored, peaks_report
from billing.tests.factories import TariffFactory, ingest_counter, refresh_rollups
from billing.tests.test_demand import reference_counter
from billing.tests.test_views import signed_in
from devices.models import Load
from devices.tests.factories import DeviceFactory, DeviceTypeFactory, FacilityFactory, LoadFactory
from integrations.scopes import BILLING_READ
from integrations.tests.factories import AccessTokenFactory, ApplicationFactory, bearer

pytestmark = pytest.mark.django_db
BERLIN = ZoneInfo("Europe/Berlin")
Q = 900_000
STEP_MS = 60_000
PLAUSIBLE_MAX_W = 60_000
MONTH_START = int(datetime(2026, 9, 1, tzinfo=BERLIN).timestamp() * 1000)
MONTH_END = int(datetime(2026, 10, 1, tzinfo=BERLIN).timestamp() * 1000)
COUNTER_FROM = int(datetime(2026, 9, 3, tzinfo=BERLIN).timestamp() * 1000)
GAP = (int(datetime(2026, 9, 10, 9, tzinfo=BERLIN).timestamp() * 1000), 3 * 3_600_000)
ODD_MS = int(datetime(2026, 9, 8, 12, 3, tzinfo=BERLIN).timestamp() * 1000)
# The draft: 7 minutes into a quarter whose first minutes are at 50 kW on feed A.
NOW_MS = int(datetime(2026, 9, 20, 10, 7, 30, tzinfo=BERLIN).timestamp() * 1000)
RUNNING = NOW_MS - NOW_MS % Q


def _facility():  # type: ignore[no-untyped-def]
    facility = FacilityFactory(timezone="Europe/Berlin", holiday_region="DE-BY")
    mains = LoadFactory(facility=facility, name="Mains", kind=Load.Kind.MAINS)
    fridges = LoadFactory(facility=facility, name="Refrigeration")
    power = {"name": "P", "quantity": "active_power", "unit": "W", "phase": "total", "max": PLAUSIBLE_MAX_W}
    energy = {"name": "E", "quantity": "active_energy", "unit": "Wh", "phase": "total"}
    feed_a = DeviceFactory(facility=facility, device_type=DeviceTypeFactory(channels=[power]))
    feed_b = DeviceFactory(facility=facility, device_type=DeviceTypeFactory(channels=[energy, power]))
    fridge = DeviceFactory(facility=facility, device_type=DeviceTypeFactory(channels=[energy]))
    feed_a.channels.update(load=mains)
    feed_b.channels.update(load=mains)
    fridge.channels.update(load=fridges)
    services.contract_create(
        facility=facility, tariff=TariffFactory(tenant=facility.tenant), valid_from=date(2026, 1, 1)
    )
    return (
        facility,
        feed_a.channels.get(),
        feed_b.channels.get(quantity="active_energy"),
        feed_b.channels.get(quantity="active_power"),
        fridge.channels.get(),
    )


def _readings(start_ms: int, end_ms: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Minute readings of [start_ms, end_ms) for each channel: (timestamps, W or Wh)."""
    ts_all = np.arange(MONTH_START, MONTH_END, STEP_MS, dtype=np.int64)
    rng = np.random.default_rng(4)
    hours = (ts_all // 3_600_000) % 24
    a = 4000 + 2500 * ((hours >= 6) & (hours < 16)) + 400 * rng.random(len(ts_all))
    a = np.where((ts_all >= RUNNING) & (ts_all < RUNNING + 7 * STEP_MS), 50_000.0, a)
    a = np.where(ts_all == ODD_MS, 500_000.0, a)  # outside the plausible range: left out everywhere
    b = 3000 + 1500 * rng.random(len(ts_all))
    in_gap = (ts_all > GAP[0]) & (ts_all < GAP[0] + GAP[1])
    b = np.where(in_gap, 30_000.0, b)  # the feed's device is silent while it draws 30 kW
    fridge = 1500 + 800 * rng.random(len(ts_all))
    b_wh = 2_000_000 + np.cumsum(b * STEP_MS / 3_600_000)
    fridge_wh = 700_000 + np.cumsum(fridge * STEP_MS / 3_600_000)
    window = (ts_all >= start_ms) & (ts_all < end_ms)
    b_seen = window & ~in_gap
    counted = b_seen & (ts_all >= COUNTER_FROM)
    return {
        "a": (ts_all[window], a[window]),
        "b_power": (ts_all[b_seen], b[b_seen]),
        "b_counter": (ts_all[counted], b_wh[counted]),
        "fridge": (ts_all[window], fridge_wh[window]),
    }


def _ingest(channels, start_ms: int, end_ms: int) -> None:  # type: ignore[no-untyped-def]
    for name, (ts, values) in _readings(start_ms, end_ms).items():
        if len(ts):
            ingest_counter(channels[name], ts, values)
    refresh_rollups()


def _quarter_means(ts: np.ndarray, watts: np.ndarray) -> dict[int, float]:
    plausible = watts <= PLAUSIBLE_MAX_W
    ts, watts = ts[plausible], watts[plausible]
    quarters = ts // Q * Q
    return {int(q): float(watts[quarters == q].mean()) / 1000 for q in np.unique(quarters)}


def reference_peak(until_ms: int) -> tuple[float, int, bool]:
    """The month's highest completed 15-minute demand from the raw readings before `until_ms`: both feeds,
    feed B's counter where it has data (a gap's energy spread over the gap, estimated), else its mean power;
    readings outside the plausible range left out. Ties: the earliest."""
    raw = _readings(MONTH_START, until_ms)
    a = _quarter_means(*raw["a"])
    b_power = _quarter_means(*raw["b_power"])
    b_counter = reference_counter(*raw["b_counter"])
    totals: dict[int, tuple[float, bool]] = {}
    for q in sorted(set(a) | set(b_power) | set(b_counter)):
        if not MONTH_START <= q < until_ms - until_ms % Q:
            continue
        b_kw, estimated = b_counter[q] if q in b_counter else (b_power.get(q, 0.0), False)
        totals[q] = (a.get(q, 0.0) + b_kw, estimated)
    start = max(totals, key=lambda q: (totals[q][0], -q))
    return totals[start][0], start, totals[start][1]


def _page_peak(html: str) -> tuple[float, int, bool]:
    shown = re.search(r'data-figure="month_peak_kw">([^<]+)<', html)
    chart = re.search(r'<script id="demand-data" type="application/json">(.+?)</script>', html)
    assert shown is not None and chart is not None, html
    return float(shown.group(1)), int(json.loads(chart.group(1))["peak"]) * 1000, "data-estimated" in html


def test_the_bill_the_api_the_peaks_page_and_the_dashboard_show_one_month_peak(client, monkeypatch):
    facility, *parts = _facility()
    channels = dict(zip(("a", "b_counter", "b_power", "fridge"), parts, strict=True))
    access = access_for_tenant(tenant=facility.tenant)
    signed_in(client, facility.tenant)

    # The running month, 7 minutes into a quarter at 50 kW: no figure counts that quarter yet.
    _ingest(channels, MONTH_START, NOW_MS)
    kw, start, estimated = reference_peak(NOW_MS)
    draft = bill_compute(access=access, facility_id=facility.pk, year=2026, month=9, now_ms=NOW_MS)
    assert draft.draft
    assert (draft.result.peak_kw, draft.result.peak_start_ms, draft.result.peak_estimated) == (
        pytest.approx(kw, rel=1e-9),
        start,
        estimated,
    )
    report = peaks_report(access=access, facility_id=facility.pk, year=2026, month=9, now_ms=NOW_MS)
    assert report.month_peak is not None
    assert (report.month_peak.kw, report.month_peak.start_ms, report.month_peak.estimated) == (
        draft.result.peak_kw,
        start,
        estimated,
    )
    # The running quarter's power so far is above the peak: counted as a mean power, it would set it. Its
    # stored row holds its energy so far × 4 (readings.demand), which no figure counts before it ends.
    assert _readings(RUNNING, NOW_MS)["a"][1].mean() / 1000 > kw
    assert DemandInterval.objects.filter(
        facility=facility, start=datetime.fromtimestamp(RUNNING / 1000, tz=UTC)
    ).exists()
    dashboard = month_peak_stored(access=access, facility=facility, now_ms=NOW_MS)
    assert dashboard is not None and (dashboard.kw, dashboard.start_ms) == (draft.result.peak_kw, start)
    monkeypatch.setattr(views, "_now_ms", lambda: NOW_MS)
    page = client.get(f"/billing/peaks/?facility={facility.pk}&month=2026-09").content.decode()
    assert _page_peak(page) == (pytest.approx(kw, abs=0.005), start, estimated)
    monkeypatch.undo()

    # The rest of the month arrives; the month is over (the API answers at the real time, long after).
    _ingest(channels, NOW_MS, MONTH_END)
    kw, start, estimated = reference_peak(MONTH_END)
    assert estimated  # the gap's spread share sets September's peak
    later = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp() * 1000)
    bill = bill_compute(access=access, facility_id=facility.pk, year=2026, month=9, now_ms=later).result
    assert (bill.peak_kw, bill.peak_start_ms, bill.peak_estimated) == (pytest.approx(kw, rel=1e-9), start, True)
    token = bearer(AccessTokenFactory(application=ApplicationFactory(tenant=facility.tenant), scope=BILLING_READ))
    answer = client.get("/api/v1/peaks/", {"facility": facility.pk, "month": "2026-09"}, **token)
    assert answer.status_code == 200, answer.content
    peak = answer.json()["month_peak"]
    assert peak["kw"] == bill.peak_kw
    assert datetime.fromisoformat(peak["start"]).timestamp() * 1000 == start
    assert peak["estimated"] is True
    page = client.get(f"/billing/peaks/?facility={facility.pk}&month=2026-09").content.decode()
    assert _page_peak(page) == (pytest.approx(kw, abs=0.005), start, True)
    # The bill page marks its estimated peak as the Peaks page does.
    bill_page = client.get(f"/billing/bills/?facility={facility.pk}&month=2026-09").content.decode()
    shown = re.search(r"data-bill-peak>([^<]+) kW<", bill_page)
    assert shown is not None and float(shown.group(1)) == pytest.approx(kw, abs=0.005)
    assert re.search(r"data-bill-peak-start>[^<]+</b> <abbr data-estimated", bill_page)
    pdf = client.get(f"/billing/bills/{facility.pk}/2026-09.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
