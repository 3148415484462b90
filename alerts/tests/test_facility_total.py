"""Demand-threshold rules on a facility's total: the sum of its power channels (or its mains), as the live dashboard."""

from __future__ import annotations

import pytest

from accounts.selectors import access_for_tenant
from alerts import services
from alerts.evaluation import readings_evaluate
from alerts.models import Alert
from alerts.tests.factories import cold_room
from alerts.tests.test_evaluation import STEP, T0, batch
from devices.tests.factories import FacilityFactory, LoadFactory
from readings.services import readings_ingest

pytestmark = pytest.mark.django_db


def _arrive(device, start_ms: int, watts: list[float]) -> None:
    """Stored, then evaluated: the ingest task's order."""
    part = batch(device, start_ms, power=watts)
    readings_ingest(batches=[part], now_ms=start_ms + STEP * len(watts))
    readings_evaluate(batches=[part])


def _total_rule(facility, **fields):
    fields = {"threshold": 5.0, "unit": "kW", **fields}
    spec = services.RuleSpec(name="Total", kind="demand_threshold", facility_id=facility.pk, **fields)
    return services.alert_rule_create(access=access_for_tenant(tenant=facility.tenant), spec=spec)


def test_two_devices_below_the_threshold_each_alert_on_their_sum():
    facility = FacilityFactory()
    first, second = cold_room(facility), cold_room(facility)
    _total_rule(facility)
    _arrive(first, T0, [3000.0] * 5)
    assert Alert.objects.count() == 0  # 3 kW alone is below 5 kW
    _arrive(second, T0 + 2 * STEP, [3000.0] * 5)
    alert = Alert.objects.get()
    # Independent: 3,000 W + 3,000 W is 6 kW, above 5 kW; the alert is the facility's, not a channel's.
    assert alert.source == f"f:{facility.pk}" and alert.value == pytest.approx(6.0)
    assert alert.device_id is None and alert.facility_id == facility.pk
    _arrive(second, T0 + 10 * STEP, [1000.0] * 5)  # 3 kW + 1 kW
    assert Alert.objects.get().state == Alert.State.CLEARED


def test_the_total_is_the_mains_when_the_facility_has_one():
    facility = FacilityFactory()
    mains, sub = cold_room(facility), cold_room(facility)
    mains.channels.filter(quantity="active_power").update(load=LoadFactory(facility=facility, kind="mains"))
    sub.channels.filter(quantity="active_power").update(load=LoadFactory(facility=facility, kind="refrigeration"))
    _total_rule(facility)
    _arrive(mains, T0, [4000.0] * 5)
    _arrive(sub, T0 + 2 * STEP, [3000.0] * 5)  # measured by the mains too: not added again
    assert Alert.objects.count() == 0
    _arrive(mains, T0 + 10 * STEP, [5500.0] * 5)
    assert Alert.objects.get().value == pytest.approx(5.5)


def test_a_sustained_total_needs_its_minutes():
    facility = FacilityFactory()
    room = cold_room(facility)
    _total_rule(facility, condition="duration", duration_s=60)
    _arrive(room, T0, [6000.0] * 5)  # 8 s above
    assert Alert.objects.count() == 0
    _arrive(room, T0 + 40 * STEP, [6000.0] * 5)  # still above, 88 s after it began
    assert Alert.objects.count() == 1


def test_another_tenants_power_is_never_in_the_total():
    facility = FacilityFactory()
    own, stranger = cold_room(facility), cold_room()  # the stranger is another tenant's
    _total_rule(facility)
    _arrive(stranger, T0, [9000.0] * 5)
    _arrive(own, T0 + 2 * STEP, [3000.0] * 5)
    assert Alert.objects.count() == 0
    _arrive(own, T0 + 10 * STEP, [5100.0] * 5)
    assert Alert.objects.get().value == pytest.approx(5.1)


def test_one_call_over_many_devices_under_one_rule_judges_each_row_on_its_own():
    from alerts.tests.test_evaluation import T0 as START

    facility = FacilityFactory()
    warm, defrosting, cold = cold_room(facility), cold_room(facility), cold_room(facility)
    spec = services.RuleSpec(name="Cabinets", kind="temperature", facility_id=facility.pk, threshold=5.0, unit="°C")
    services.alert_rule_create(access=access_for_tenant(tenant=facility.tenant), spec=spec)
    batches = [
        batch(cold, START, air=[3.0, 4.0, 4.5]),
        batch(warm, START, air=[4.0, 6.0, 7.5]),
        batch(defrosting, START, air=[8.0, 9.0, 9.5], defrost=[1.0, 1.0, 1.0]),
    ]
    assert readings_evaluate(batches=batches) == 1
    alert = Alert.objects.get()
    assert alert.device_id == warm.pk and alert.value == pytest.approx(7.5)
