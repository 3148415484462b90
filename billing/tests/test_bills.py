"""Facility bills against an independent computation from the raw readings (billing/tests/reference.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from accounts.selectors import access_for_tenant
from billing import services
from billing.models import Bill, FixedChargeKey
from billing.selectors import bill_compute, peaks_report
from billing.tests.factories import TariffFactory, ingest_counter, metered_facility, refresh_rollups, version_data
from billing.tests.reference import interval_kwh, month_bounds, reference_bill

pytestmark = pytest.mark.django_db
BERLIN = ZoneInfo("Europe/Berlin")
STEP_MS = 300_000
LATER = int(datetime(2027, 6, 1, tzinfo=UTC).timestamp() * 1000)


def simulate(mf, start_ms, end_ms, *, seed=1, spike_at_ms=None, spike_w=0.0):
    """Five-minute counter readings of the main meter and the submeters; returns {channel id: (ts, Wh)}."""
    rng = np.random.default_rng(seed)
    ts = np.arange(start_ms, end_ms, STEP_MS, dtype=np.int64)
    hours = (ts // 3_600_000) % 24
    refrigeration = 6000 + 1500 * rng.random(len(ts))
    hvac = 1000 + 4000 * ((hours >= 8) & (hours < 17)) * rng.random(len(ts))
    other = 2000 + 1000 * rng.random(len(ts))
    if spike_at_ms is not None:
        hvac = hvac + spike_w * ((ts > spike_at_ms) & (ts <= spike_at_ms + 900_000))
    main = refrigeration + hvac + other
    raw = {}
    for channel, watts in ((mf.main, main), (mf.loads["Refrigeration"][1], refrigeration), (mf.loads["HVAC"][1], hvac)):
        counter = 1_000_000 + np.cumsum(watts * STEP_MS / 3_600_000)
        ingest_counter(channel, ts, counter)
        raw[channel.pk] = (ts, counter)
    refresh_rollups()
    return raw


def _contract(mf, versions, valid_from=date(2026, 1, 1)):
    tariff = TariffFactory(tenant=mf.facility.tenant, versions=versions)
    services.contract_create(facility=mf.facility, tariff=tariff, valid_from=valid_from)
    return tariff


def _compute(mf, year, month):
    access = access_for_tenant(tenant=mf.facility.tenant)
    return bill_compute(access=access, facility_id=mf.facility.pk, year=year, month=month, now_ms=LATER)


def _total(result, *kinds):
    return float(sum(line.amount for line in result.lines if line.kind in kinds))


def _assert_matches(result, ref, *, vat=19.0):
    lines = len(result.lines)
    assert result.energy_kwh == pytest.approx(ref.kwh, rel=1e-9)
    assert result.peak_kw == pytest.approx(ref.peak_kw, rel=1e-9)
    assert result.peak_start_ms == ref.peak_start_ms
    for kinds, expected in (
        (("energy",), ref.energy),
        (("levy",), ref.levies),
        (("fixed",), ref.fixed),
        (("demand",), ref.demand),
        (("backbill",), ref.backbill),
    ):
        assert _total(result, *kinds) == pytest.approx(expected, abs=0.005 * lines + 1e-9), kinds
    # Every line is rounded to the cent, so the bill may differ from the unrounded reference by half a cent a line.
    assert float(result.gross) == pytest.approx(ref.gross(vat), abs=0.01 * lines)
    assert float(result.gross) == pytest.approx(ref.gross(vat), rel=0.001)


@pytest.mark.parametrize(
    ("year", "month", "intervals"),
    [(2026, 3, 31 * 96 - 4), (2026, 10, 31 * 96 + 4)],
    ids=["spring-forward-23h-day", "fall-back-25h-day"],
)
def test_a_month_across_a_dst_change_matches_the_independent_bill(year, month, intervals):
    mf = metered_facility()
    versions = [version_data()]
    _contract(mf, versions)
    lo, hi = month_bounds(year, month, BERLIN)
    raw = simulate(mf, lo, hi, seed=month)
    computed = _compute(mf, year, month)
    assert len(computed.usage.starts_ms) == intervals
    ref = reference_bill(
        kwh_by_interval=interval_kwh(*raw[mf.main.pk]),
        year=year,
        month=month,
        tz=BERLIN,
        region="DE-BY",
        versions=versions,
        meters=1,
    )
    assert ref.intervals == intervals
    _assert_matches(computed.result, ref)
    assert not computed.draft


def test_a_tariff_change_mid_month_splits_the_month_and_a_holiday_is_priced_as_one():
    mf = metered_facility()
    versions = [
        version_data(valid_to=date(2026, 1, 15)),
        version_data(
            valid_from=date(2026, 1, 16), energy_rates=[0.35, 0.25, 0.2, 0.12], demand_price=12.0, fixed_per_day=2.0
        ),
    ]
    _contract(mf, versions)
    lo, hi = month_bounds(2026, 1, BERLIN)
    raw = simulate(mf, lo, hi, seed=7)
    computed = _compute(mf, 2026, 1)
    ref = reference_bill(
        kwh_by_interval=interval_kwh(*raw[mf.main.pk]),
        year=2026,
        month=1,
        tz=BERLIN,
        region="DE-BY",
        versions=versions,
        meters=1,
    )
    _assert_matches(computed.result, ref)
    assert [s.days for s in computed.segments] == [15, 16]
    holiday_lines = [line for line in computed.result.lines if line.label.endswith("period 4")]
    # New Year (Thursday) and Epiphany (Tuesday, a holiday in Bavaria): 2 days of holiday energy in the first part.
    assert len(holiday_lines) == 1 and holiday_lines[0].segment == 0
    epiphany = [
        s
        for s, kwh in ref.per_interval.items()
        if datetime.fromtimestamp(s / 1000, tz=UTC).astimezone(BERLIN).date() in (date(2026, 1, 1), date(2026, 1, 6))
    ]
    assert holiday_lines[0].quantity == pytest.approx(sum(ref.per_interval[s] for s in epiphany), rel=1e-9)


def test_a_change_of_contract_mid_month_bills_each_part_at_its_own_tariff():
    mf = metered_facility()
    first = version_data(valid_to=date(2026, 8, 10))
    second = version_data(valid_from=date(2026, 8, 11), energy_rates=[0.4, 0.3, 0.25, 0.2], fixed_per_month=40.0)
    old = TariffFactory(
        tenant=mf.facility.tenant,
        versions=[version_data(valid_to=date(2026, 12, 31)), version_data(valid_from=date(2027, 1, 1))],
    )
    services.contract_create(facility=mf.facility, tariff=old, valid_from=date(2026, 1, 1), valid_to=date(2026, 8, 10))
    new = TariffFactory(tenant=mf.facility.tenant, versions=[{**second, "valid_from": date(2026, 6, 1)}])
    services.contract_create(facility=mf.facility, tariff=new, valid_from=date(2026, 8, 11))
    lo, hi = month_bounds(2026, 8, BERLIN)
    raw = simulate(mf, lo, hi, seed=13)
    computed = _compute(mf, 2026, 8)
    assert [(s.days, s.terms.tariff_name) for s in computed.segments] == [(10, old.name), (21, new.name)]
    ref = reference_bill(
        kwh_by_interval=interval_kwh(*raw[mf.main.pk]),
        year=2026,
        month=8,
        tz=BERLIN,
        region="DE-BY",
        versions=[first, second],
        meters=1,
    )
    _assert_matches(computed.result, ref)


def test_a_new_annual_peak_back_bills_the_earlier_months_of_the_year():
    mf = metered_facility()
    versions = [version_data(demand_mode="annual", demand_price=110.0)]
    _contract(mf, versions)
    feb_lo, _ = month_bounds(2026, 2, BERLIN)
    mar_lo, mar_hi = month_bounds(2026, 3, BERLIN)
    spike = int(datetime(2026, 3, 18, 10, 0, tzinfo=BERLIN).timestamp() * 1000)
    raw = simulate(mf, feb_lo, mar_hi, seed=3, spike_at_ms=spike, spike_w=20_000)
    kwh = interval_kwh(*raw[mf.main.pk])
    february = reference_bill(
        kwh_by_interval=kwh, year=2026, month=2, tz=BERLIN, region="DE-BY", versions=versions, meters=1
    )
    march = reference_bill(
        kwh_by_interval=kwh,
        year=2026,
        month=3,
        tz=BERLIN,
        region="DE-BY",
        versions=versions,
        meters=1,
        earlier_peaks=[(28, february.peak_kw)],
    )
    assert march.peak_kw > february.peak_kw + 8  # the spike set a new annual peak
    feb_bill, mar_bill = _compute(mf, 2026, 2).result, _compute(mf, 2026, 3).result
    _assert_matches(feb_bill, february)
    _assert_matches(mar_bill, march)
    back = [line for line in mar_bill.lines if line.kind == "backbill"]
    assert len(back) == 1
    assert back[0].quantity == pytest.approx(march.peak_kw - february.peak_kw, rel=1e-9)
    assert back[0].interval_start_ms == march.peak_start_ms
    assert spike <= march.peak_start_ms <= spike + 900_000
    assert float(back[0].amount) == pytest.approx(march.backbill, abs=0.005)


def test_the_allocation_to_loads_and_the_unmetered_rest_sums_to_the_bill():
    mf = metered_facility()
    _contract(mf, [version_data()])
    services.billing_profile_set(tenant=mf.facility.tenant, fixed_charge_key=FixedChargeKey.EQUAL)
    lo, hi = month_bounds(2026, 4, BERLIN)
    raw = simulate(mf, lo, hi, seed=11)
    result = _compute(mf, 2026, 4).result
    rows = {row.name: row for row in result.allocation}
    assert set(rows) == {"Refrigeration", "HVAC", "Unmetered (main meter minus submeters)"}
    assert sum(row.total for row in rows.values()) == result.gross
    assert sum(row.energy for row in rows.values()) == Decimal(str(_total(result, "energy", "levy"))).quantize(
        Decimal("0.01")
    )
    assert sum(row.vat for row in rows.values()) == result.vat
    # Energy follows each load's own kWh at the time-of-use price; the main meter's rest is "unmetered".
    sub = {name: interval_kwh(*raw[mf.loads[name][1].pk]) for name in ("Refrigeration", "HVAC")}
    main = interval_kwh(*raw[mf.main.pk])
    for name in sub:
        assert rows[name].kwh == pytest.approx(sum(sub[name].values()), rel=1e-9)
    unmetered = sum(main.values()) - sum(sum(s.values()) for s in sub.values())
    assert rows["Unmetered (main meter minus submeters)"].kwh == pytest.approx(unmetered, rel=1e-9)
    # Demand is shared by each load's kW in the peak interval.
    peak = result.peak_start_ms
    demand_total = float(_total(result, "demand"))
    for name in sub:
        share = sub[name][peak] * 4 / result.peak_kw
        assert float(rows[name].demand) == pytest.approx(demand_total * share, abs=0.01)
    # Equal key: the fixed charges split in three equal parts (to the cent).
    fixed = [row.fixed for row in rows.values()]
    assert max(fixed) - min(fixed) <= Decimal("0.01")


def test_a_submeter_moved_to_another_load_mid_month_is_split_at_the_move():
    from devices.services import channel_allocate

    mf = metered_facility()
    _contract(mf, [version_data()])
    lo, hi = month_bounds(2026, 4, BERLIN)
    raw = simulate(mf, lo, hi, seed=12)
    refrigeration, hvac_channel = mf.loads["Refrigeration"][0], mf.loads["HVAC"][1]
    moved = datetime(2026, 4, 14, 10, 7, tzinfo=BERLIN)
    channel_allocate(
        access=access_for_tenant(tenant=mf.facility.tenant), channel=hvac_channel, load=refrigeration, valid_from=moved
    )
    result = _compute(mf, 2026, 4).result
    rows = {row.name: row for row in result.allocation}

    # Independently: each quarter hour of the HVAC submeter goes to the load it fed at the quarter's start.
    moved_ms = int(moved.timestamp() * 1000)
    hvac = interval_kwh(*raw[hvac_channel.pk])
    fridge = interval_kwh(*raw[mf.loads["Refrigeration"][1].pk])
    hvac_before = sum(kwh for start, kwh in hvac.items() if start < moved_ms)
    hvac_after = sum(kwh for start, kwh in hvac.items() if start >= moved_ms)
    assert 0 < hvac_before and 0 < hvac_after
    assert rows["HVAC"].kwh == pytest.approx(hvac_before, rel=1e-9)
    assert rows["Refrigeration"].kwh == pytest.approx(sum(fridge.values()) + hvac_after, rel=1e-9)
    main = interval_kwh(*raw[mf.main.pk])
    unmetered = sum(main.values()) - sum(hvac.values()) - sum(fridge.values())
    assert rows["Unmetered (main meter minus submeters)"].kwh == pytest.approx(unmetered, rel=1e-9)
    assert sum(row.total for row in rows.values()) == result.gross


def test_a_peak_report_lists_the_top_intervals_with_the_loads_that_made_them():
    mf = metered_facility()
    _contract(mf, [version_data()])
    lo, hi = month_bounds(2026, 5, BERLIN)
    spike = int(datetime(2026, 5, 12, 11, 0, tzinfo=BERLIN).timestamp() * 1000)
    raw = simulate(mf, lo, hi, seed=5, spike_at_ms=spike, spike_w=15_000)
    report = peaks_report(
        access=access_for_tenant(tenant=mf.facility.tenant),
        facility_id=mf.facility.pk,
        year=2026,
        month=5,
        now_ms=LATER,
    )
    main = interval_kwh(*raw[mf.main.pk])
    expected = sorted(((kwh * 4, start) for start, kwh in main.items() if lo <= start < hi), reverse=True)[:10]
    assert [row.start_ms for row in report.top] == [start for _, start in expected]
    assert [row.kw for row in report.top] == pytest.approx([kw for kw, _ in expected], rel=1e-9)
    assert report.top[0].loads[0][0] == "HVAC"  # the spike was on the HVAC submeter
    assert report.year_peak == (report.top[0].start_ms, pytest.approx(report.top[0].kw))


def test_issuing_twice_keeps_one_bill_and_late_data_issues_a_new_version_with_the_difference():
    mf = metered_facility()
    _contract(mf, [version_data()])
    lo, hi = month_bounds(2026, 6, BERLIN)
    simulate(mf, lo, hi - 86_400_000, seed=2)  # the last day arrives late
    first = services.bill_issue(facility=mf.facility, year=2026, month=6, now_ms=LATER)
    again = services.bill_issue(facility=mf.facility, year=2026, month=6, now_ms=LATER)
    assert again.pk == first.pk and first.version == 1
    ts = np.arange(hi - 86_400_000, hi, STEP_MS, dtype=np.int64)
    # The main meter keeps counting through the late day: 10 kW for 24 h.
    main_counter = 1_000_000 + 10_000 * 30 * 24 + np.cumsum(np.full(len(ts), 10_000 * STEP_MS / 3_600_000))
    ingest_counter(mf.main, ts, main_counter)
    refresh_rollups()
    second = services.bill_issue(facility=mf.facility, year=2026, month=6, now_ms=LATER)
    assert second.version == 2 and second.previous_id == first.pk
    assert second.difference == second.gross - first.gross
    assert second.difference != 0
    first.refresh_from_db()
    assert first.version == 1 and Bill.objects.filter(facility=mf.facility, year=2026, month=6).count() == 2


def test_the_beat_task_issues_every_ended_month_and_the_client_bill_once():
    from billing.tasks import issue_bills_task

    mf = metered_facility()
    _contract(mf, [version_data()])
    lo, hi = month_bounds(2026, 9, BERLIN)
    simulate(mf, lo, hi, seed=21)
    october_2 = int(datetime(2026, 10, 2, tzinfo=UTC).timestamp() * 1000)
    assert services.bills_issue_ended_month(now_ms=october_2) == 1
    assert services.bills_issue_ended_month(now_ms=october_2) == 1  # unchanged: the same bill, no new version
    facility_bill = Bill.objects.get(facility=mf.facility, year=2026, month=9)
    client_bill = Bill.objects.get(tenant=mf.facility.tenant, facility__isnull=True, year=2026, month=9)
    assert client_bill.version == 1 and client_bill.gross == facility_bill.gross
    assert [line.label for line in client_bill.lines.all() if line.kind == "facility"] == [f"{mf.facility.name} (v1)"]
    issue_bills_task.apply().get()  # through Celery: today's ended month, which has no data here


def test_fixed_charges_shared_by_area_follow_the_cost_centres_areas():
    mf = metered_facility()
    _contract(mf, [version_data()])
    services.billing_profile_set(tenant=mf.facility.tenant, fixed_charge_key=FixedChargeKey.AREA)
    tenant = mf.facility.tenant
    services.cost_centre_create(tenant=tenant, name="Cold", area_m2=300, loads=[mf.loads["Refrigeration"][0]])
    services.cost_centre_create(tenant=tenant, name="Air", area_m2=100, loads=[mf.loads["HVAC"][0]])
    lo, hi = month_bounds(2026, 7, BERLIN)
    simulate(mf, lo, hi, seed=17)
    result = _compute(mf, 2026, 7).result
    rows = {row.name: row for row in result.allocation}
    fixed = Decimal(str(_total(result, "fixed"))).quantize(Decimal("0.01"))
    assert rows["Refrigeration"].cost_centre == "Cold" and rows["HVAC"].cost_centre == "Air"
    assert rows["Refrigeration"].fixed + rows["HVAC"].fixed == fixed
    assert abs(rows["Refrigeration"].fixed - 3 * rows["HVAC"].fixed) <= Decimal("0.03")
    assert sum(row.total for row in rows.values()) == result.gross


def test_the_client_month_computed_in_batch_equals_each_facilitys_own_bill():
    from accounts.selectors import access_for_tenant
    from billing.selectors import client_month

    first = metered_facility()
    tenant = first.facility.tenant
    sites = [
        first,
        metered_facility(tenant=tenant),  # the same zone: read from the store in one go with the first
        metered_facility(tenant=tenant, timezone="Europe/London", holiday_region="GB"),
        metered_facility(tenant=tenant, timezone="Europe/Lisbon", holiday_region="PT"),
    ]
    for seed, mf in enumerate(sites, start=31):
        _contract(mf, [version_data()])
        lo, hi = month_bounds(2026, 10, ZoneInfo(mf.facility.timezone))
        simulate(mf, lo, hi, seed=seed)
    rows = client_month(access=access_for_tenant(tenant=tenant), year=2026, month=10, now_ms=LATER)
    by_pk = {mf.facility.pk: mf for mf in sites}
    assert [r.facility.name for r in rows] == sorted(mf.facility.name for mf in sites)
    for row in rows:
        alone = _compute(by_pk[row.facility.pk], 2026, 10)
        assert row.result.gross == alone.result.gross
        assert row.result.peak_start_ms == alone.result.peak_start_ms
        assert [a.total for a in row.result.allocation] == [a.total for a in alone.result.allocation]
