"""End to end: the real simulator over TLS through the real gateway, ingest in-process, rules evaluated on ingest.

A scripted freezer (limit −18 °C, alarm delay 10 minutes) defrosts warm, later warms for 15
minutes, and has its door left open for 8 minutes; a killed simulator goes offline.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import replace
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from asgiref.sync import sync_to_async

from accounts.selectors import access_for_tenant
from alerts import haccp, services
from alerts.evaluation import alerts_sweep
from alerts.models import Alert, Event, RuleKind
from alerts.tests.factories import COLD_ROOM, rule
from gateway.loads import LoadModel
from gateway.simulator import Meter
from gateway.tests.conftest import provision
from gateway.tests.helpers import FAST, running_gateway, simulated, spec_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
MIN = 60_000


class ScriptedFreezer(LoadModel):
    """Minutes from `start_ms`: defrost 10–20 (warm to 0 °C), warm −10 °C 25–40, door open 42–50, −15 °C 52–58."""

    def __init__(self, rng: np.random.Generator, start_ms: int) -> None:
        super().__init__(rng)
        self.start_ms = start_ms

    def _minute(self, t_ms):
        return (t_ms - self.start_ms) / MIN

    def temperature(self, t_ms):
        m = self._minute(t_ms)
        spells = [(m >= 10) & (m < 20), (m >= 25) & (m < 40), (m >= 52) & (m < 58)]
        return np.select(spells, [0.0, -10.0, -15.0], default=-20.0)

    def state(self, quantity, t_ms):
        m = self._minute(t_ms)
        if quantity == "defrost":
            return ((m >= 10) & (m < 20)).astype(float)
        if quantity == "door":
            return ((m >= 42) & (m < 50)).astype(float)
        return super().state(quantity, t_ms)


async def test_a_freezer_alerts_after_its_delay_but_not_during_defrost_and_a_door_left_open_alerts(
    embedded, tmp_path, close_thread_connections
):
    issued = await sync_to_async(provision)(serial="SN-FREEZER-1", channels=COLD_ROOM)
    device = issued.device
    access = await sync_to_async(lambda: access_for_tenant(tenant=device.tenant))()
    tz = await sync_to_async(lambda: ZoneInfo(device.facility.timezone))()
    unit = await sync_to_async(services.cold_unit_create)(
        access=access, device_id=device.pk, name="Freezer", preset="frozen", alarm_delay_s=600
    )
    await sync_to_async(rule)(device, name="Door", kind="door_open", duration_s=300)
    spec = await sync_to_async(spec_for)(issued)
    step = 15 * 2000
    start_ms = ((time.time_ns() // 1_000_000 - 2 * 3_600_000) // step) * step
    meter = Meter(spec, np.random.default_rng(1), model=ScriptedFreezer(np.random.default_rng(1), start_ms))
    async with running_gateway(tmp_path) as (_, port, ctx):
        sim = simulated(spec, port, ctx, max_batches=120, start_ms=start_ms, meter=meter, record=True)  # one hour
        await sim.run(duration_s=60)
    assert len(sim.acked) == 120
    alerts = await sync_to_async(lambda: list(Alert.objects.select_related("rule").order_by("raised_at")))()
    by_kind = {a.rule.kind: a for a in alerts}
    assert len(alerts) == 2 and set(by_kind) == {RuleKind.TEMPERATURE, RuleKind.DOOR_OPEN}
    start = dt.datetime.fromtimestamp(start_ms / 1000, tz=dt.UTC)
    warm = by_kind[RuleKind.TEMPERATURE]
    # Raised once the warm spell from minute 25 lasted 10 minutes (within one 30-s batch), not in the defrost.
    assert dt.timedelta(minutes=35) <= warm.raised_at - start <= dt.timedelta(minutes=35, seconds=30)
    assert warm.state == Alert.State.CLEARED and warm.cleared_at - start <= dt.timedelta(minutes=40, seconds=30)
    door = by_kind[RuleKind.DOOR_OPEN]
    assert dt.timedelta(minutes=47) <= door.raised_at - start <= dt.timedelta(minutes=47, seconds=30)
    assert door.state == Alert.State.CLEARED

    # The HACCP report lists exactly the one excursion (the defrost and the 6-minute spell are none).
    day = start.astimezone(tz)
    report = await sync_to_async(haccp.haccp_report)(
        access=access, facility_id=device.facility_id, year=day.year, month=day.month
    )
    (month,) = report.units
    assert month.unit.pk == unit.pk
    (excursion,) = month.excursions
    assert excursion.started_at - start == dt.timedelta(minutes=25) and excursion.worst_c == -10.0
    assert dt.timedelta(minutes=40) <= excursion.ended_at - start <= dt.timedelta(minutes=40, seconds=30)
    minutes = sum(d.minutes_above for d in month.days)
    assert minutes == pytest.approx((excursion.ended_at - excursion.started_at).total_seconds() / 60, abs=0.2)
    assert [d.compliant for d in month.days if d.minutes_above] == [False] * len(
        [d for d in month.days if d.minutes_above]
    )
    rows = [r for r in haccp.haccp_csv(report).splitlines() if r.startswith("excursion,")]
    assert len(rows) == 1 and excursion.started_at.isoformat() in rows[0]
    assert (await sync_to_async(haccp.haccp_pdf)(report)).startswith(b"%PDF")


async def test_a_device_whose_simulator_is_killed_is_reported_offline(embedded, tmp_path, close_thread_connections):
    issued = await sync_to_async(provision)(serial="SN-FREEZER-2", channels=COLD_ROOM)
    await sync_to_async(rule)(issued.device, name="Offline", kind="device_offline", duration_s=2)
    spec = await sync_to_async(spec_for)(issued)
    async with running_gateway(tmp_path) as (_, port, ctx):
        sim = simulated(spec, port, ctx, max_batches=None, realtime=True)
        task = asyncio.create_task(sim.run(duration_s=30))
        await sim.connected.wait()
        await asyncio.sleep(0.5)  # the gateway flushes presence every 0.2 s
        assert await sync_to_async(alerts_sweep)() == 0
        assert not await sync_to_async(Alert.objects.exists)()
        task.cancel()  # the device dies without a goodbye
        sim.drop_connection()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            await sync_to_async(alerts_sweep)()
            if await sync_to_async(Alert.objects.filter(state=Alert.State.ACTIVE).exists)():
                break
            await asyncio.sleep(0.5)
    alert = await sync_to_async(Alert.objects.get)()
    assert alert.source == f"d:{issued.device.pk}" and alert.state == Alert.State.ACTIVE


async def test_the_simulators_door_events_arrive_over_the_protocol_and_drive_the_door_rule(
    embedded, tmp_path, close_thread_connections
):
    issued = await sync_to_async(provision)(serial="SN-DOOR-1", channels=COLD_ROOM)
    device = issued.device
    await sync_to_async(rule)(device, name="Door", kind="door_open", duration_s=300)
    spec = await sync_to_async(spec_for)(issued)
    step = 15 * 2000
    start_ms = ((time.time_ns() // 1_000_000 - 3 * 3_600_000) // step) * step
    # One enqueue at a time: the batches reach the rules in order (the door events, handled as they
    # arrive, run ahead of them; that order is the one this test pins down).
    async with running_gateway(tmp_path, config=replace(FAST, max_inflight_enqueues=1)) as (_, port, ctx):
        # Two hours back-filled; the door opens about 8 times an hour for 1 to 10 minutes.
        sim = simulated(
            spec,
            port,
            ctx,
            max_batches=240,
            start_ms=start_ms,
            record=True,
            door_opens_per_hour=8,
            door_open_s=(60, 600),
        )
        await sim.run(duration_s=90)
    assert len(sim.acked) == 240
    # The events the gateway stored are exactly the door's changes in the readings the device sent.
    row = next(i for i, c in enumerate(spec.channels) if c.quantity == "door")
    sent = sorted({b.start_ms: b for b in sim.acked}.values(), key=lambda b: b.start_ms)  # acks come in any order
    times = np.concatenate([b.start_ms + b.interval_ms * np.arange(b.raw.shape[1]) for b in sent])
    door = np.concatenate([b.raw[row] for b in sent]) > 0
    changes = np.flatnonzero(door != np.concatenate([[False], door[:-1]]))
    expected_events = [(int(times[i]), bool(door[i])) for i in changes]
    assert len(expected_events) >= 6  # the rate produced openings, or the test proves little
    stored = await sync_to_async(
        lambda: list(Event.objects.filter(device=device).order_by("occurred_at").values_list("occurred_at", "kind"))
    )()
    assert [(int(at.timestamp() * 1000), kind == "door_open") for at, kind in stored] == expected_events
    # Every opening of 5 minutes or more raised one alert at its fifth minute; the closing cleared it.
    last_ms = int(times[-1])
    openings = [
        (opened, closed)
        for (opened, _), (closed, _) in zip(
            expected_events[0::2], [*expected_events[1::2], (None, False)], strict=False
        )
    ]
    alerts = await sync_to_async(
        lambda: list(Alert.objects.filter(rule__kind=RuleKind.DOOR_OPEN).order_by("raised_at"))
    )()
    long_ones = [(o, c) for o, c in openings if (c if c is not None else last_ms) - o >= 300_000]
    assert len(alerts) == len(long_ones)
    for alert, (opened, closed) in zip(alerts, long_ones, strict=True):
        assert int(alert.raised_at.timestamp() * 1000) - opened - 300_000 in range(0, 30_001)
        if closed is not None:
            # Cleared by the closing event, or by the batch that holds the closing reading if it came first.
            assert alert.state == Alert.State.CLEARED
            assert int(alert.cleared_at.timestamp() * 1000) - closed in range(0, 30_001)
    # A door still open when the device fell silent is raised by the beat from the door's open event.
    opened, closed = openings[-1]
    if closed is None and last_ms - opened < 300_000:
        await sync_to_async(alerts_sweep)(now=dt.datetime.fromtimestamp((opened + 300_000) / 1000, tz=dt.UTC))
        assert await sync_to_async(Alert.objects.filter(state=Alert.State.ACTIVE).count)() == 1
