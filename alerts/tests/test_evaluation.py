"""Rules evaluated as readings arrive: delays, defrost suppression, doors, repeats, one alert per source, restarts."""

from __future__ import annotations

import numpy as np
import pytest

from alerts import evaluation_cache
from alerts.evaluation import readings_evaluate
from alerts.models import Alert, AlertHistory, RuleState
from alerts.tests.factories import AIR, DEFROST, DOOR, POWER, cold_room, rule
from readings.batch import ReadingsBatch

pytestmark = pytest.mark.django_db
T0 = 1_764_170_000_000
STEP = 2000


def batch(device, start_ms: int, **columns) -> ReadingsBatch:
    """One device batch: keyword columns (air=, door=, defrost=, power=) as value lists of equal length."""
    channels = list(device.channels.order_by("index"))
    index = {"air": AIR, "door": DOOR, "defrost": DEFROST, "power": POWER}
    n = len(next(iter(columns.values())))
    values = np.full((len(channels), n), np.nan)
    for name, column in columns.items():
        values[index[name]] = column
    return ReadingsBatch(
        tenant_id=device.tenant_id,
        device_id=device.pk,
        seq=start_ms // STEP,
        channel_ids=np.array([c.pk for c in channels], dtype=np.int64),
        timestamps_ms=start_ms + STEP * np.arange(n, dtype=np.int64),
        values=values,
    )


def feed(device, series: dict[str, list[float]], *, per_batch: int = 15) -> None:
    n = len(next(iter(series.values())))
    for first in range(0, n, per_batch):
        part = {k: v[first : first + per_batch] for k, v in series.items()}
        readings_evaluate(batches=[batch(device, T0 + first * STEP, **part)])


def test_a_cold_room_above_its_limit_alerts_only_after_the_delay():
    room = cold_room()
    watch = rule(room, condition="duration", duration_s=60)
    # 58 s above +5 °C (30 readings): not yet; the 31st reading reaches 60 s.
    feed(room, {"air": [7.0] * 30})
    assert not Alert.objects.exists()
    feed_more = batch(room, T0 + 30 * STEP, air=[7.5])
    readings_evaluate(batches=[feed_more])
    alert = Alert.objects.get()
    assert alert.rule == watch and alert.state == Alert.State.ACTIVE and alert.value == 7.5
    assert alert.source == f"c:{room.channels.get(index=AIR).pk}"


def test_a_defrost_holds_the_alarm_and_restarts_the_delay():
    room = cold_room()
    rule(room, condition="duration", duration_s=60)
    # Warm during a 2-minute defrost, then 40 s warm after it: 40 s < 60 s, so no alert.
    feed(room, {"air": [9.0] * 80, "defrost": [1.0] * 60 + [0.0] * 20})
    assert not Alert.objects.exists()
    assert RuleState.objects.get().streak == 20


def test_one_alert_per_source_and_rule_is_updated_then_cleared_with_history():
    room = cold_room()
    rule(room)
    feed(room, {"air": [6.0] * 15 + [6.5] * 15})
    alert = Alert.objects.get()
    assert alert.value == 6.5
    readings_evaluate(batches=[batch(room, T0 + 30 * STEP, air=[4.0] * 15)])
    alert.refresh_from_db()
    assert alert.state == Alert.State.CLEARED
    assert list(alert.history.values_list("action", flat=True)) == [AlertHistory.Action.RAISED, "cleared"]
    readings_evaluate(batches=[batch(room, T0 + 45 * STEP, air=[8.0] * 15)])
    assert Alert.objects.filter(state=Alert.State.ACTIVE).count() == 1 and Alert.objects.count() == 2


def test_a_door_left_open_alerts_after_its_minutes_and_a_short_opening_does_not():
    room = cold_room()
    rule(room, kind="door_open", name="Door", duration_s=120)
    feed(room, {"door": [1.0] * 30 + [0.0] * 15 + [1.0] * 45})  # 58 s open, closed, then 88 s open
    assert not Alert.objects.exists()
    readings_evaluate(batches=[batch(room, T0 + 90 * STEP, door=[1.0] * 15)])  # now 118 s
    assert not Alert.objects.exists()
    readings_evaluate(batches=[batch(room, T0 + 105 * STEP, door=[1.0])])  # 120 s
    assert Alert.objects.get().rule.kind == "door_open"


def test_a_repeat_condition_needs_that_many_readings_in_a_row():
    room = cold_room()
    rule(room, kind="demand_threshold", name="Peak", threshold=3, unit="kW", condition="repeat", repeat_count=5)
    feed(room, {"power": [3500, 3600, 3700, 3800, 2000, 3500, 3500, 3500, 3500]}, per_batch=3)
    assert not Alert.objects.exists()
    readings_evaluate(batches=[batch(room, T0 + 9 * STEP, power=[3100])])
    assert Alert.objects.get().value == pytest.approx(3.1)  # shown in the rule's unit, kW


def test_the_rule_state_is_in_the_database_so_a_restarted_worker_goes_on_where_it_stopped():
    room = cold_room()
    rule(room, condition="duration", duration_s=60)
    feed(room, {"air": [7.0] * 20})
    evaluation_cache.invalidate()  # what a new worker process starts with: nothing in memory
    readings_evaluate(batches=[batch(room, T0 + 20 * STEP, air=[7.0] * 11)])
    assert Alert.objects.count() == 1


def test_a_redelivered_batch_does_not_count_twice():
    room = cold_room()
    rule(room, kind="demand_threshold", name="Peak", threshold=3, unit="kW", condition="repeat", repeat_count=6)
    again = batch(room, T0, power=[4000.0] * 4)
    readings_evaluate(batches=[again])
    readings_evaluate(batches=[again])
    assert RuleState.objects.get().streak == 4 and not Alert.objects.exists()


def test_channels_no_rule_watches_cost_no_query(django_assert_num_queries):
    room = cold_room()
    other = cold_room()
    rule(other)
    readings_evaluate(batches=[batch(other, T0, air=[1.0])])  # the rule lookup is built and cached
    unwatched = batch(room, T0, air=[20.0] * 15)
    with django_assert_num_queries(0):
        assert readings_evaluate(batches=[unwatched]) == 0


def test_the_15_minute_projection_above_the_peak_target_alerts_and_clears_on_beat():
    import datetime as dt
    from decimal import Decimal
    from zoneinfo import ZoneInfo

    from accounts.selectors import access_for_tenant
    from alerts import services
    from alerts.evaluation import alerts_sweep
    from billing.tests.factories import ingest_counter, refresh_rollups
    from devices.tests.factories import DeviceFactory, FacilityFactory

    facility = FacilityFactory(peak_target_kw=Decimal("15"))
    meter = DeviceFactory(facility=facility)
    energy = meter.channels.get(quantity="active_energy")
    services.alert_rule_create(
        access=access_for_tenant(tenant=facility.tenant),
        spec=services.RuleSpec(name="Peak", kind="demand_projection", facility_id=facility.pk),
    )
    start = dt.datetime(2026, 11, 17, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    ts = int(start.timestamp() * 1000) + 2000 * np.arange(301, dtype=np.int64)  # 10:00:00 … 10:10:00
    kw = 20.0
    ingest_counter(energy, ts, 1_000_000 + kw * 1000 * (ts - ts[0]) / 3_600_000)
    refresh_rollups()
    alerts_sweep(now=start + dt.timedelta(minutes=10))
    alert = Alert.objects.get()
    # Independent: 20 kW for 10 minutes is 3.33 kWh, which held over the 10 minutes known is 20 kW.
    assert alert.source == f"f:{facility.pk}" and alert.value == pytest.approx(kw, rel=0.01)
    facility.peak_target_kw = Decimal("25")
    facility.save()
    alerts_sweep(now=start + dt.timedelta(minutes=10))
    assert Alert.objects.get().state == Alert.State.CLEARED


@pytest.mark.parametrize(("schedule", "alerts"), [("opening_hours", 1), ("out_of_hours", 0), ("always", 1)])
def test_a_scheduled_rule_only_counts_readings_inside_its_schedule(schedule, alerts):
    room = cold_room()
    room.facility.opening_hours = {day: [["07:00", "21:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat")}
    room.facility.save()
    rule(room, schedule=schedule)
    # T0 is Wednesday 2025-11-26 16:13 in Berlin: inside the opening hours.
    readings_evaluate(batches=[batch(room, T0, air=[9.0] * 15)])
    assert Alert.objects.count() == alerts
