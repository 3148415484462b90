"""Daily energy rules on beat: out-of-hours energy as a share of the day, and a day off its 4-week baseline."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from accounts.selectors import access_for_tenant
from alerts import services
from alerts.errors import AlertsError
from alerts.evaluation import alerts_sweep
from alerts.models import Alert
from billing.tests.factories import ingest_counter, refresh_rollups
from devices.tests.factories import DeviceFactory, FacilityFactory

pytestmark = pytest.mark.django_db
BERLIN = ZoneInfo("Europe/Berlin")
TUESDAY = dt.datetime(2026, 11, 17, tzinfo=BERLIN)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat")


def _facility(**fields):
    return FacilityFactory(
        timezone="Europe/Berlin", opening_hours={d: [["07:00", "21:00"]] for d in WEEKDAYS}, **fields
    )


def _feed(meter, days: list[tuple[dt.datetime, list[float]]]) -> None:
    """Each day at one sample a minute, with its kW per local hour; the counter carries over the gaps."""
    energy = meter.channels.get(quantity="active_energy")
    ts_all, wh_all, wh = [], [], 1_000_000.0
    for day, kw_by_hour in days:
        ts = int(day.timestamp() * 1000) + 60_000 * np.arange(24 * 60 + 1, dtype=np.int64)
        kw = np.array([kw_by_hour[min(i // 60, 23)] for i in range(len(ts))])
        steps = np.concatenate([[0.0], kw[:-1] * 1000 / 60])  # Wh per minute, from each minute's power
        ts_all.append(ts)
        wh_all.append(wh + np.cumsum(steps))
        wh = float(wh_all[-1][-1])
    ingest_counter(energy, np.concatenate(ts_all), np.concatenate(wh_all))
    refresh_rollups()


def _rule(facility, **fields):
    spec = services.RuleSpec(name="Energy", facility_id=facility.pk, unit="%", **fields)
    return services.alert_rule_create(access=access_for_tenant(tenant=facility.tenant), spec=spec)


@pytest.mark.parametrize(("threshold", "alerts"), [(20.0, 1), (30.0, 0)])
def test_out_of_hours_energy_above_its_share_of_the_day_alerts_after_the_day_ends(threshold, alerts):
    facility = _facility()
    meter = DeviceFactory(facility=facility)
    hours = [5.0] * 7 + [10.0] * 14 + [5.0] * 3  # 5 kW closed, 10 kW open (07:00–21:00)
    _feed(meter, [(TUESDAY, hours)])
    _rule(facility, kind="out_of_hours_energy", threshold=threshold)
    alerts_sweep(now=TUESDAY + dt.timedelta(hours=20))  # the day has not ended: nothing judged
    assert Alert.objects.count() == 0
    alerts_sweep(now=TUESDAY + dt.timedelta(hours=25))
    assert Alert.objects.count() == alerts
    if alerts:
        # Independent: 10 h × 5 kW outside, 14 h × 10 kW inside: 50 of 190 kWh.
        assert Alert.objects.get().value == pytest.approx(100 * 50 / 190, abs=0.5)
    alerts_sweep(now=TUESDAY + dt.timedelta(hours=26))  # judged once a day: no second alert, no clearing
    assert Alert.objects.exclude(state="cleared").count() == alerts


@pytest.mark.parametrize(("today_kw", "alerts", "deviation"), [(6.0, 1, 50.0), (2.0, 1, -50.0), (4.4, 0, 10.0)])
def test_a_day_off_the_same_weekday_of_the_last_4_weeks_alerts(today_kw, alerts, deviation):
    facility = _facility()
    meter = DeviceFactory(facility=facility)
    weeks = [(TUESDAY - dt.timedelta(weeks=w), [4.0] * 24) for w in (4, 3, 2, 1)]
    _feed(meter, [*weeks, (TUESDAY, [today_kw] * 24)])
    _rule(facility, kind="baseline_deviation", threshold=25.0)
    alerts_sweep(now=TUESDAY + dt.timedelta(hours=25))
    assert Alert.objects.count() == alerts
    if alerts:
        # Independent: the baseline is 4 kW × 24 h = 96 kWh; the day is today_kw × 24 h.
        assert Alert.objects.get().value == pytest.approx(deviation, abs=1.0)


def test_a_day_without_a_baseline_is_not_judged():
    facility = _facility()
    _feed(DeviceFactory(facility=facility), [(TUESDAY, [9.0] * 24)])
    _rule(facility, kind="baseline_deviation", threshold=10.0)
    alerts_sweep(now=TUESDAY + dt.timedelta(hours=25))
    assert Alert.objects.count() == 0


def test_another_tenants_energy_never_counts():
    facility = _facility()
    DeviceFactory(facility=facility)
    _feed(DeviceFactory(facility=_facility()), [(TUESDAY, [5.0] * 24)])  # another tenant's busy night
    _rule(facility, kind="out_of_hours_energy", threshold=1.0)
    alerts_sweep(now=TUESDAY + dt.timedelta(hours=25))
    assert Alert.objects.count() == 0


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"kind": "out_of_hours_energy", "threshold": 20.0, "unit": "kW"}, "in %"),
        ({"kind": "out_of_hours_energy", "threshold": 120.0}, "percentage"),
        ({"kind": "baseline_deviation", "threshold": 0.0}, "percentage"),
        ({"kind": "baseline_deviation"}, "finite threshold"),
    ],
)
def test_malformed_daily_rules_are_refused_and_nothing_is_stored(fields, error):
    facility = _facility()
    fields.setdefault("unit", "%")
    spec = services.RuleSpec(name="Energy", facility_id=facility.pk, **fields)
    with pytest.raises(AlertsError, match=error):
        services.alert_rule_create(access=access_for_tenant(tenant=facility.tenant), spec=spec)
    from alerts.models import AlertRule

    assert AlertRule.objects.count() == 0


def test_daily_rules_watch_a_facility_with_opening_hours_of_ones_own_tenant():
    facility = _facility()
    device = DeviceFactory(facility=facility)
    access = access_for_tenant(tenant=facility.tenant)
    cases = [
        (
            services.RuleSpec(name="E", kind="baseline_deviation", device_id=device.pk, threshold=10, unit="%"),
            "facility",
        ),
        (
            services.RuleSpec(
                name="E", kind="out_of_hours_energy", facility_id=FacilityFactory().pk, threshold=10, unit="%"
            ),
            "does not exist",
        ),
        (
            services.RuleSpec(
                name="E",
                kind="out_of_hours_energy",
                facility_id=FacilityFactory(tenant=facility.tenant, opening_hours={}).pk,
                threshold=10,
                unit="%",
            ),
            "opening hours",
        ),
    ]
    for spec, error in cases:
        with pytest.raises(AlertsError, match=error):
            services.alert_rule_create(access=access, spec=spec)
    from alerts.models import AlertRule

    assert AlertRule.objects.count() == 0
