"""One 15-minute rule for the bill, the dashboard and the alert rules (`readings.demand`), checked against a
NumPy computation from the raw readings written here.

The facility is the case where two rules parted: its mains load has two feeds, one measured by mean power
only (silent for 45 minutes, so two quarters are cut by the gap), the other by an energy counter. The
counter answers every quarter; the power feed must still count beside it, each of its quarters for the
time its readings cover. The dashboard's "today kWh", the alert rule's 15-minute projection, the draft
bill's energy and peak, and the dashboard's month peak are the same figures of the same intervals.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from accounts.selectors import access_for_tenant
from alerts import services as alert_services
from alerts.evaluation import alerts_sweep
from alerts.models import Alert
from billing import services
from billing.selectors import bill_compute, month_peak_stored
from billing.tests.factories import TariffFactory, ingest_counter, refresh_rollups
from billing.tests.test_demand import reference_counter
from devices.models import Load
from devices.tests.factories import DeviceFactory, DeviceTypeFactory, FacilityFactory, LoadFactory
from portal.history import energy_today

pytestmark = pytest.mark.django_db
BERLIN = ZoneInfo("Europe/Berlin")
Q = 900_000
STEP_MS = 60_000
DATA_FROM = int(datetime(2026, 9, 14, 22, tzinfo=BERLIN).timestamp() * 1000)
TODAY = int(datetime(2026, 9, 15, tzinfo=BERLIN).timestamp() * 1000)
NOW = datetime(2026, 9, 15, 10, 7, 30, tzinfo=BERLIN)
NOW_MS = int(NOW.timestamp() * 1000)
RUNNING = NOW_MS - NOW_MS % Q
SILENT = (int(datetime(2026, 9, 15, 8, 5, tzinfo=BERLIN).timestamp() * 1000), 45 * 60_000)


def _facility():  # type: ignore[no-untyped-def]
    facility = FacilityFactory(timezone="Europe/Berlin", holiday_region="DE-BY", peak_target_kw=Decimal("1"))
    mains = LoadFactory(facility=facility, name="Mains", kind=Load.Kind.MAINS)
    power = {"name": "P", "quantity": "active_power", "unit": "W", "phase": "total"}
    energy = {"name": "E", "quantity": "active_energy", "unit": "Wh", "phase": "total"}
    feed_a = DeviceFactory(facility=facility, device_type=DeviceTypeFactory(channels=[power]))
    feed_b = DeviceFactory(facility=facility, device_type=DeviceTypeFactory(channels=[energy]))
    feed_a.channels.update(load=mains)
    feed_b.channels.update(load=mains)
    services.contract_create(
        facility=facility, tariff=TariffFactory(tenant=facility.tenant), valid_from=date(2026, 1, 1)
    )
    return facility, feed_a.channels.get(), feed_b.channels.get()


def _readings() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Minute readings up to now: feed A's W (silent for 45 minutes), feed B's counter (Wh)."""
    ts = np.arange(DATA_FROM, NOW_MS, STEP_MS, dtype=np.int64)
    rng = np.random.default_rng(10)
    hours = (ts // 3_600_000) % 24
    a = 3000 + 4000 * ((hours >= 6) & (hours < 16)) + 800 * rng.random(len(ts))
    b = 2000 + 1500 * rng.random(len(ts))
    seen = (ts < SILENT[0]) | (ts >= SILENT[0] + SILENT[1])
    return {"a": (ts[seen], a[seen]), "b": (ts, 5_000_000 + np.cumsum(b * STEP_MS / 3_600_000))}


def reference_kwh() -> dict[int, float]:
    """kWh per quarter-hour start: feed A's readings each stand for the minute to the next (a quarter cut by
    the silence, or still running, counts only the minutes it has), plus feed B's counter steps."""
    raw = _readings()
    ts, watts = raw["a"]
    totals: dict[int, float] = {}
    for q, w in zip((ts // Q * Q).tolist(), watts.tolist(), strict=True):
        totals[q] = totals.get(q, 0.0) + w / 1000 * STEP_MS / 3_600_000
    for q, (kw, _estimated) in reference_counter(*raw["b"]).items():
        totals[q] = totals.get(q, 0.0) + kw / 4
    return totals


def test_the_dashboard_the_alert_rule_and_the_bill_count_a_power_only_feed_beside_a_counter_alike():
    facility, power, counter = _facility()
    for channel, (ts, values) in zip((power, counter), _readings().values(), strict=True):
        ingest_counter(channel, ts, values)
    refresh_rollups()
    access = access_for_tenant(tenant=facility.tenant)
    expected = reference_kwh()
    done = {q: kwh for q, kwh in expected.items() if q < RUNNING}
    peak_start = max(done, key=lambda q: (done[q], -q))

    # The draft bill: the completed quarters of the month so far.
    bill = bill_compute(access=access, facility_id=facility.pk, year=2026, month=9, now_ms=NOW_MS).result
    assert bill.energy_kwh == pytest.approx(sum(done.values()), rel=1e-9)
    assert (bill.peak_kw, bill.peak_start_ms) == (pytest.approx(done[peak_start] * 4, rel=1e-9), peak_start)

    # The dashboard: today's kWh, with and without the running quarter, and the month peak.
    today = sum(kwh for q, kwh in done.items() if q >= TODAY)
    stored = energy_today(access=access, facility=facility, now_ms=NOW_MS, running_quarter=False)
    assert stored.kwh == pytest.approx(today, rel=1e-9)
    with_running = energy_today(access=access, facility=facility, now_ms=NOW_MS)
    assert with_running.kwh == pytest.approx(today + expected[RUNNING], rel=1e-9)
    month_peak = month_peak_stored(access=access, facility=facility, now_ms=NOW_MS)
    assert month_peak is not None and (month_peak.kw, month_peak.start_ms) == (bill.peak_kw, peak_start)

    # The alert rule's projection: the running quarter's energy so far over the time gone.
    alert_services.alert_rule_create(
        access=access,
        spec=alert_services.RuleSpec(name="Peak", kind="demand_projection", facility_id=facility.pk),
    )
    alerts_sweep(now=NOW)
    projection = expected[RUNNING] / ((NOW_MS - RUNNING) / 3_600_000)
    assert Alert.objects.get(source=f"f:{facility.pk}").value == pytest.approx(projection, abs=0.006)
