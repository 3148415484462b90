"""The dashboard's history comes from the real readings store: ingested batches, refreshed rollups."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from accounts.access import Access
from accounts.models import Role
from accounts.selectors import access_for_tenant
from devices.models import Load
from devices.tests.factories import DeviceFactory, FacilityFactory, LoadFactory
from portal.selectors import facility_live_layout, facility_totals, live_history
from readings import metadata
from readings.services import readings_ingest, rollups_refresh
from readings.tests.factories import batch_for

pytestmark = pytest.mark.django_db
BERLIN = ZoneInfo("Europe/Berlin")
MINUTE = 60_000


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp() * 1000)


@pytest.fixture(autouse=True)
def _fresh_caches():
    metadata.clear_caches()
    yield
    metadata.clear_caches()


def store(device, channels, timestamps, values) -> None:  # type: ignore[no-untyped-def]
    readings_ingest(batches=[batch_for(device, channels, timestamps, values)])


def supermarket():  # type: ignore[no-untyped-def]
    facility = FacilityFactory(timezone="Europe/Berlin")
    mains = LoadFactory(facility=facility, name="Mains", kind=Load.Kind.MAINS)
    fridges = LoadFactory(facility=facility, name="Fridges", kind=Load.Kind.REFRIGERATION)
    main = DeviceFactory(facility=facility)
    fridge = DeviceFactory(facility=facility)
    main.channels.update(load=mains)
    fridge.channels.update(load=fridges)
    return facility, main, fridge


def test_today_and_the_month_peak_come_from_the_mains_in_the_facilitys_time_zone():
    facility, main, fridge = supermarket()
    main_power, main_energy = main.channels.order_by("index")
    fridge_power, fridge_energy = fridge.channels.order_by("index")
    # Yesterday evening (local): a big interval that belongs to this month but not to today.
    evening = at("2026-11-25T20:00") + np.arange(0, 15 * MINUTE, MINUTE)
    store(main, [main_power], evening, [np.full(len(evening), 30_000.0)])
    # This morning: 10 kW, with one 15-minute interval at 20 kW, and a counter gaining 21 kWh.
    morning = at("2026-11-26T08:00") + np.arange(0, 127 * MINUTE, MINUTE)
    power = np.where((morning >= at("2026-11-26T09:30")) & (morning < at("2026-11-26T09:45")), 20_000.0, 10_000.0)
    energy = 1_000_000.0 + np.linspace(0, 21_000, len(morning))
    store(main, [main_power, main_energy], morning, [power, energy])
    # The fridges are measured by the main meter too: they must not be added on top.
    store(fridge, [fridge_power, fridge_energy], morning, [np.full(len(morning), 5_000.0), np.zeros(len(morning))])
    # The running interval (10:00-10:15) is the projection's business, not the month's peak yet.
    store(main, [main_power], [at("2026-11-26T10:06:30")], [[90_000.0]])
    rollups_refresh()
    access = access_for_tenant(tenant=facility.tenant)

    (energy_today, peak) = facility_totals(access=access, facility_ids=[facility.pk], now_ms=at("2026-11-26T10:07"))[
        facility.pk
    ]

    assert energy_today == pytest.approx(21.0)
    assert peak is not None
    assert peak.kw == pytest.approx(30.0) and peak.interval_start_ms == at("2026-11-25T20:00")
    # A day later, yesterday evening is still this month's peak, and today's energy starts from zero.
    energy_next_day, peak_next_day = facility_totals(
        access=access, facility_ids=[facility.pk], now_ms=at("2026-11-27T00:30")
    )[facility.pk]
    assert energy_next_day is None
    assert peak_next_day is not None and peak_next_day.kw == pytest.approx(30.0)
    # In December the November peak no longer counts.
    assert facility_totals(access=access, facility_ids=[facility.pk], now_ms=at("2026-12-01T00:30"))[facility.pk] == (
        None,
        None,
    )


def test_a_facility_without_counters_gets_todays_energy_from_its_power():
    facility = FacilityFactory(timezone="Europe/Berlin")
    device = DeviceFactory(facility=facility)
    power, _ = device.channels.order_by("index")
    times = at("2026-11-26T08:00") + np.arange(0, 60 * MINUTE, MINUTE)
    store(device, [power], times, [np.full(len(times), 4_000.0)])
    rollups_refresh()
    energy, peak = facility_totals(
        access=access_for_tenant(tenant=facility.tenant), facility_ids=[facility.pk], now_ms=at("2026-11-26T09:00")
    )[facility.pk]
    assert energy == pytest.approx(4.0)  # an hour at 4 kW
    assert peak is not None and peak.kw == pytest.approx(4.0)


def test_the_snapshot_holds_the_last_15_minutes_of_raw_readings():
    facility, main, _ = supermarket()
    main_power, main_energy = main.channels.order_by("index")
    now = at("2026-11-26T10:07")
    times = now - 20 * MINUTE + np.arange(0, 20 * MINUTE, 2_000)
    store(main, [main_power, main_energy], times, [np.arange(len(times), dtype=float), np.arange(len(times)) * 1.0])
    access = access_for_tenant(tenant=facility.tenant)
    layout = facility_live_layout(access=access, facility_id=facility.pk)

    history = live_history(access=access, layout=layout, now_ms=now)

    ts, values = history.series[main_power.pk]
    assert ts[0] >= now - 15 * MINUTE and ts[-1] == times[-1]
    assert len(ts) == 15 * 30 and values[-1] == float(len(times) - 1)
    assert main_energy.pk not in history.series  # a counter is not charted


def test_a_facility_manager_gets_no_totals_for_a_facility_outside_the_grant():
    facility, _, _ = supermarket()
    manager = Access(tenant_id=facility.tenant_id, role=Role.FACILITY_MANAGER, facility_ids=frozenset())
    assert facility_totals(access=manager, facility_ids=[facility.pk], now_ms=at("2026-11-26T10:07")) == {}
