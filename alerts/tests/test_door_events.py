"""Door EVENT frames drive the door rule, and the vectorised ingest evaluation matches a row-by-row reckoning."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from alerts import evaluation, services
from alerts.evaluation import alerts_sweep, readings_evaluate
from alerts.models import Alert, AlertRule, Event, RuleState
from alerts.tests.factories import AIR, DEFROST, DOOR, cold_room, rule
from readings.batch import ReadingsBatch

pytestmark = pytest.mark.django_db
T0 = 1_764_170_000_000
DOOR_OPEN, DOOR_CLOSED = 0x020, 0x021


def event(device, code: int, at_ms: int) -> None:
    services.event_record(
        tenant_id=device.tenant_id,
        device_id=device.pk,
        facility_id=device.facility_id,
        code=code,
        severity=1,
        time_ms=at_ms,
        message="",
    )


def at(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def test_a_door_open_event_alone_raises_the_door_rule_on_beat_after_its_minutes_and_the_close_clears_it():
    room = cold_room()
    rule(room, kind="door_open", name="Door", duration_s=300)
    event(room, DOOR_OPEN, T0)
    assert Event.objects.get().kind == "door_open"
    assert RuleState.objects.get().breach_since == at(T0)
    alerts_sweep(now=at(T0 + 299_000))
    assert not Alert.objects.exists()
    alerts_sweep(now=at(T0 + 300_000))
    alert = Alert.objects.get()
    assert alert.state == Alert.State.ACTIVE and alert.device_id == room.pk and alert.raised_at == at(T0 + 300_000)
    alerts_sweep(now=at(T0 + 400_000))
    assert Alert.objects.count() == 1  # updated, not raised again
    event(room, DOOR_CLOSED, T0 + 420_000)
    assert Alert.objects.get().state == Alert.State.CLEARED
    assert RuleState.objects.get().breach_since is None


def test_a_door_closed_within_its_minutes_raises_nothing():
    room = cold_room()
    rule(room, kind="door_open", name="Door", duration_s=300)
    event(room, DOOR_OPEN, T0)
    event(room, DOOR_CLOSED, T0 + 120_000)
    alerts_sweep(now=at(T0 + 600_000))
    assert not Alert.objects.exists()
    assert Event.objects.count() == 2


def test_a_stray_open_event_is_undone_by_the_next_door_reading_before_its_minutes_pass():
    room = cold_room()
    rule(room, kind="door_open", name="Door", duration_s=300)
    door = room.channels.get(quantity="door").pk

    def closed(at_ms: int) -> ReadingsBatch:
        return ReadingsBatch(
            tenant_id=room.tenant_id,
            device_id=room.pk,
            seq=at_ms,
            channel_ids=np.array([door], dtype=np.int64),
            timestamps_ms=np.array([at_ms], dtype=np.int64),
            values=np.array([[0.0]]),
        )

    readings_evaluate(batches=[closed(T0 + 60_000)])
    event(room, DOOR_OPEN, T0 + 61_000)  # an open the readings never saw (a bouncing contact)
    assert RuleState.objects.get().breach_since is not None
    readings_evaluate(batches=[closed(T0 + 90_000)])
    assert RuleState.objects.get().breach_since is None
    alerts_sweep(now=at(T0 + 900_000))
    assert not Alert.objects.exists()


def test_the_vectorised_evaluation_finds_exactly_the_breaking_sources_a_row_by_row_reckoning_finds():
    rng = np.random.default_rng(7)
    rooms = [cold_room() for _ in range(6)]
    facility_rooms = [cold_room(facility=rooms[0].facility) for _ in range(3)]
    for room in rooms:
        rule(room, name="Chilled", threshold=5.0)
        rule(room, name="Too cold", threshold=-25.0, above=False)  # two rules on the same channel
        rule(room, kind="door_open", name="Door", duration_s=60)
    batches, expected = [], set()
    for i, room in enumerate(rooms + facility_rooms):
        ids = list(room.channels.order_by("index").values_list("id", flat=True))
        n = 5 + i % 3  # calls mix batches of different lengths
        values = np.full((len(ids), n), np.nan)
        values[AIR] = rng.uniform(-30, 10, n)
        values[AIR][rng.random(n) < 0.3] = np.nan  # gaps
        values[DOOR] = (rng.random(n) < 0.4).astype(float)
        values[DEFROST] = (rng.random(n) < 0.5).astype(float)
        batches.append(
            ReadingsBatch(
                tenant_id=room.tenant_id,
                device_id=room.pk,
                seq=i,
                channel_ids=np.array(ids, dtype=np.int64),
                timestamps_ms=T0 + 2000 * np.arange(n, dtype=np.int64),
                values=values,
            )
        )
        if room not in rooms:
            continue  # no rule watches these devices
        # The reckoning, row by row: NaN breaks nothing, a defrost reading of 1 holds the temperature rules.
        air, door, defrost = values[AIR], values[DOOR], values[DEFROST] >= 0.5
        for r in AlertRule.objects.filter(device=room):
            threshold = float(r.threshold or 0)
            if r.kind == "door_open":
                breaks, source = door > 0.5, ids[DOOR]
            elif r.above:
                breaks, source = (air > threshold) & ~defrost, ids[AIR]
            else:
                breaks, source = (air < threshold) & ~defrost, ids[AIR]
            if breaks.any():
                expected.add((r.pk, f"c:{source}"))
    assert len(expected) >= 6  # the data breaks rules, or the comparison proves little
    index = evaluation.rule_index()
    assert index.vectors is not None
    keyed = evaluation._channel_watches(index, index.vectors, batches)
    assert {key for key, _, _ in keyed} == expected
    for _, watch, mask in keyed:
        assert len(mask) == len(watch.values) == len(watch.ts)
        assert not np.isnan(watch.values).any()
