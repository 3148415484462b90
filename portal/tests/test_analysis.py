"""The portal's period views over the real store: ranges, resolutions, comparisons, the carpet plot,
the load breakdown, CSV export and the park benchmark, each checked against a computation of its own."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from accounts.selectors import access_for_user
from accounts.tests.factories import MembershipFactory
from devices.models import Load
from devices.tests.factories import FacilityFactory, LoadFactory
from integrations.scopes import READINGS_READ
from integrations.tests.factories import AccessTokenFactory, bearer
from portal import analysis
from portal.selectors import facility_live_layout
from readings import metadata
from readings.services import readings_ingest, rollups_refresh
from readings.tests.factories import batch_for, device_with_channels

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")
MINUTE_MS = 60_000


@pytest.fixture(autouse=True)
def _fresh_metadata():  # type: ignore[no-untyped-def]
    metadata.clear_caches()
    yield
    metadata.clear_caches()


def _watts(local: datetime, base: float) -> float:
    """Day (08:00–18:00 local) at 4 × base, night at base: a carpet shows the difference at a glance."""
    return base * 4 if 8 <= local.hour < 18 else base


def seed(facility, *, first: date, days: int, base: float = 500.0, load=None):  # type: ignore[no-untyped-def]
    """One device of the facility with minute readings over `days` local days from `first`; returns it and
    the readings as (timestamps ms, watts)."""
    device, power, energy = device_with_channels(facility=facility, tenant=facility.tenant)
    if load is not None:
        device.channels.update(load=load)
    start = int(datetime(first.year, first.month, first.day, tzinfo=BERLIN).timestamp() * 1000)
    end = int(datetime.combine(first + timedelta(days=days), datetime.min.time(), tzinfo=BERLIN).timestamp() * 1000)
    ts = np.arange(start, end, MINUTE_MS, dtype=np.int64)
    watts = np.array([_watts(datetime.fromtimestamp(t / 1000, tz=BERLIN), base) for t in ts.tolist()])
    wh = np.cumsum(watts / 60)
    readings_ingest(batches=[batch_for(device, [power, energy], ts, [watts, wh])])
    rollups_refresh()
    return device, power, ts, watts


def expected_kwh(ts: np.ndarray, watts: np.ndarray, start_ms: int, end_ms: int) -> float:
    """kWh from the raw minutes: the mean of each 15-minute interval times a quarter of an hour."""
    inside = (ts >= start_ms) & (ts < end_ms)
    quarters: dict[int, list[float]] = {}
    for t, w in zip(ts[inside].tolist(), watts[inside].tolist(), strict=True):
        quarters.setdefault(t - t % 900_000, []).append(w)
    return sum(sum(v) / len(v) / 1000 * 0.25 for v in quarters.values())


def signed_in(client, facility):  # type: ignore[no-untyped-def]
    membership = MembershipFactory(tenant=facility.tenant)
    client.force_login(membership.user)
    return membership


def page_data(response) -> dict:  # type: ignore[no-untyped-def]
    html = response.content.decode()
    marker = '<script id="period-data" type="application/json">'
    start = html.index(marker) + len(marker)
    return json.loads(html[start : html.index("</script>", start)])


# --- Periods ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("range_name", "first", "after", "resolution"),
    [
        ("today", date(2026, 3, 29), date(2026, 3, 30), "15m"),
        ("yesterday", date(2026, 3, 28), date(2026, 3, 29), "15m"),
        ("week", date(2026, 3, 23), date(2026, 3, 30), "15m"),
        ("month", date(2026, 3, 1), date(2026, 4, 1), "15m"),
        ("year", date(2026, 1, 1), date(2027, 1, 1), "1d"),
    ],
)
def test_each_named_range_is_a_calendar_period_in_the_facility_zone_at_its_resolution(
    range_name, first, after, resolution
):  # type: ignore[no-untyped-def]
    now = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)  # the day Berlin moves to summer time
    period = analysis.period_resolve(range_name=range_name, tz=BERLIN, now=now)
    assert period.start == datetime(first.year, first.month, first.day, tzinfo=BERLIN)
    assert period.end == datetime(after.year, after.month, after.day, tzinfo=BERLIN)
    assert period.resolution == resolution


@pytest.mark.parametrize(("days", "resolution"), [(1, "15m"), (31, "15m"), (60, "1h"), (400, "1d"), (1500, "1mo")])
def test_a_custom_range_picks_its_resolution_from_its_length(days, resolution):  # type: ignore[no-untyped-def]
    first = date(2025, 1, 1)
    period = analysis.period_resolve(
        range_name="custom", tz=BERLIN, now=datetime.now(tz=UTC), start=first, end=first + timedelta(days=days - 1)
    )
    assert period.resolution == resolution


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"range_name": "custom"}, "first and a last day"),
        ({"range_name": "custom", "start": date(2026, 2, 2), "end": date(2026, 2, 1)}, "must not be before"),
        ({"range_name": "custom", "start": date(2000, 1, 1), "end": date(2026, 1, 1)}, "ten years"),
        ({"range_name": "fortnight"}, "Unknown period"),
    ],
)
def test_a_period_that_cannot_be_answered_says_why(kwargs, message):  # type: ignore[no-untyped-def]
    with pytest.raises(analysis.AnalysisError, match=message):
        analysis.period_resolve(tz=BERLIN, now=datetime.now(tz=UTC), **kwargs)


def test_the_previous_month_and_the_same_month_last_year_are_calendar_months():
    period = analysis.period_resolve(range_name="month", tz=BERLIN, now=datetime(2026, 3, 10, tzinfo=UTC))
    previous = analysis.period_compared(period, compare="previous")
    assert (previous.start.date(), previous.end.date()) == (date(2026, 2, 1), date(2026, 3, 1))
    last_year = analysis.period_compared(period, compare="last_year")
    assert (last_year.start.date(), last_year.end.date()) == (date(2025, 3, 1), date(2025, 4, 1))


# --- Figures against the raw readings ---------------------------------------------------------


def test_a_days_total_and_kwh_equal_the_raw_readings_15_minute_means(client):
    facility = FacilityFactory(timezone="Europe/Berlin")
    day = date(2026, 11, 20)
    _, power, ts, watts = seed(facility, first=day, days=2)
    signed_in(client, facility)
    response = client.get(f"/facilities/{facility.pk}/?range=custom&from=2026-11-20&to=2026-11-20")
    assert response.status_code == 200
    data = page_data(response)
    start = int(datetime(2026, 11, 20, tzinfo=BERLIN).timestamp() * 1000)
    end = start + 86_400_000
    assert data["resolution"] == "15m"
    assert len(data["t"]) == 96
    assert data["energy_kwh"] == pytest.approx(expected_kwh(ts, watts, start, end))
    # 10 day hours at 2 kW and 14 night hours at 0.5 kW
    assert data["energy_kwh"] == pytest.approx(10 * 2.0 + 14 * 0.5)
    assert data["total_kw"][0] == pytest.approx(0.5)
    assert data["total_kw"][9 * 4] == pytest.approx(2.0)


def test_the_pages_channel_figures_equal_the_apis_series_for_the_same_period(client):
    facility = FacilityFactory(timezone="Europe/Berlin")
    _, power, _, _ = seed(facility, first=date(2026, 11, 20), days=1)
    signed_in(client, facility)
    data = page_data(client.get(f"/facilities/{facility.pk}/?range=custom&from=2026-11-20&to=2026-11-20"))
    token = AccessTokenFactory(application__tenant=facility.tenant, scope=READINGS_READ)
    api = client.get(
        f"/api/v1/readings/series/?channel={power.pk}&resolution=15m"
        "&start=2026-11-20T00:00:00%2B01:00&end=2026-11-21T00:00:00%2B01:00",
        **bearer(token),
    ).json()
    page_values = next(c["values"] for c in data["channels"] if c["id"] == power.pk)
    assert page_values == [p["avg"] for p in api["series"][0]["points"]]


def test_comparing_with_the_previous_day_gives_the_difference_in_kwh_and_percent(client):
    facility = FacilityFactory(timezone="Europe/Berlin")
    seed(facility, first=date(2026, 11, 19), days=1, base=400.0)
    seed(facility, first=date(2026, 11, 20), days=1, base=500.0)
    signed_in(client, facility)
    response = client.get(f"/facilities/{facility.pk}/?range=custom&from=2026-11-20&to=2026-11-20&compare=previous")
    data = page_data(response)
    before, now = 10 * 1.6 + 14 * 0.4, 10 * 2.0 + 14 * 0.5
    compare = data["compare"]
    assert compare["start"].startswith("2026-11-19T00:00:00+01:00")
    assert compare["energy_kwh"] == pytest.approx(before)
    assert compare["diff_kwh"] == pytest.approx(now - before)
    assert compare["diff_pct"] == pytest.approx((now - before) / before * 100)
    assert compare["shift_ms"] == 86_400_000
    assert "+25" in response.content.decode()  # the percentage shown


def test_the_carpet_has_one_row_per_local_day_and_the_demand_of_each_quarter_hour():
    facility = FacilityFactory(timezone="Europe/Berlin")
    seed(facility, first=date(2026, 3, 28), days=3)  # across the switch to summer time
    membership = MembershipFactory(tenant=facility.tenant)
    access = access_for_user(user=membership.user)
    layout = facility_live_layout(access=access, facility_id=facility.pk)
    period = analysis.period_resolve(
        range_name="custom", tz=BERLIN, now=datetime.now(tz=UTC), start=date(2026, 3, 28), end=date(2026, 3, 30)
    )
    carpet = analysis.layout_carpet(access=access, layout=layout, period=period)
    assert carpet.days == [date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30)]
    assert carpet.kw.shape == (3, 96)
    for row in range(3):
        assert carpet.kw[row, 7 * 4 + 3] == pytest.approx(0.5)  # 07:45 local, night
        assert carpet.kw[row, 8 * 4] == pytest.approx(2.0)  # 08:00 local, day
    # 02:00–03:00 does not exist on 29 March in Berlin.
    assert np.isnan(carpet.kw[1, 2 * 4 : 3 * 4]).all()


def test_the_load_breakdown_gives_each_loads_kwh_and_share_of_the_mains(client):
    facility = FacilityFactory(timezone="Europe/Berlin")
    mains = LoadFactory(facility=facility, tenant=facility.tenant, kind=Load.Kind.MAINS, name="Main meter")
    cold = LoadFactory(facility=facility, tenant=facility.tenant, kind=Load.Kind.REFRIGERATION, name="Cold")
    light = LoadFactory(facility=facility, tenant=facility.tenant, kind=Load.Kind.LIGHTING, name="Light")
    seed(facility, first=date(2026, 11, 20), days=1, base=1000.0, load=mains)
    seed(facility, first=date(2026, 11, 20), days=1, base=300.0, load=cold)
    seed(facility, first=date(2026, 11, 20), days=1, base=200.0, load=light)
    signed_in(client, facility)
    data = page_data(client.get(f"/facilities/{facility.pk}/?range=custom&from=2026-11-20&to=2026-11-20"))
    mains_kwh = 10 * 4.0 + 14 * 1.0
    assert data["energy_kwh"] == pytest.approx(mains_kwh)
    shares = {load["name"]: load for load in data["loads"]}
    assert set(shares) == {"Cold", "Light", "Not sub-metered"}
    assert shares["Cold"]["energy_kwh"] == pytest.approx(mains_kwh * 0.3)
    assert shares["Cold"]["share"] == pytest.approx(0.3)
    assert shares["Light"]["share"] == pytest.approx(0.2)
    assert shares["Not sub-metered"]["energy_kwh"] == pytest.approx(mains_kwh * 0.5)
    assert shares["Not sub-metered"]["share"] == pytest.approx(0.5)


# --- Pages, export and refusals ---------------------------------------------------------------


def test_the_csv_of_the_total_chart_holds_the_figures_the_chart_draws(client):
    facility = FacilityFactory(timezone="Europe/Berlin")
    seed(facility, first=date(2026, 11, 20), days=1)
    signed_in(client, facility)
    query = "range=custom&from=2026-11-20&to=2026-11-20"
    data = page_data(client.get(f"/facilities/{facility.pk}/?{query}"))
    response = client.get(f"/facilities/{facility.pk}/export.csv?{query}&chart=total")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["start", "end", "total_kw"]
    assert rows[1][0] == "2026-11-20T00:00:00+01:00"
    assert [float(r[2]) for r in rows[1:]] == data["total_kw"]
    carpet = list(
        csv.reader(
            io.StringIO(client.get(f"/facilities/{facility.pk}/export.csv?{query}&chart=carpet").content.decode())
        )
    )
    assert carpet[0][1] == "00:00" and len(carpet[0]) == 97
    assert carpet[1][0] == "2026-11-20" and float(carpet[1][1 + 8 * 4]) == pytest.approx(2.0)


@pytest.mark.parametrize(
    "query",
    [
        "range=fortnight",
        "range=custom&from=yesterday&to=2026-01-01",
        "range=custom&from=2026-02-02&to=2026-02-01",
        "range=today&compare=sideways",
    ],
)
def test_a_bad_period_gets_a_400_with_the_reason(client, query):  # type: ignore[no-untyped-def]
    facility = FacilityFactory()
    signed_in(client, facility)
    response = client.get(f"/facilities/{facility.pk}/?{query}")
    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()
    assert client.get(f"/facilities/{facility.pk}/export.csv?{query}").status_code == 400


def test_another_tenants_facility_and_device_answer_404_on_every_period_page(client):
    mine = FacilityFactory()
    theirs = FacilityFactory()
    device, _, _ = device_with_channels(facility=theirs, tenant=theirs.tenant)
    signed_in(client, mine)
    for path in (
        f"/facilities/{theirs.pk}/?range=today",
        f"/facilities/{theirs.pk}/export.csv?range=today",
        f"/devices/{device.pk}/",
        f"/devices/{device.pk}/?range=today",
        f"/devices/{device.pk}/export.csv?range=today",
    ):
        assert client.get(path).status_code == 404, path


def test_a_device_page_shows_its_channels_live_and_for_any_period(client):
    facility = FacilityFactory(timezone="Europe/Berlin")
    device, power, _, _ = seed(facility, first=date(2026, 11, 20), days=1)
    signed_in(client, facility)
    live = client.get(f"/devices/{device.pk}/")
    assert live.status_code == 200
    assert f"/ws/devices/{device.pk}/live" in live.content.decode()
    data = page_data(client.get(f"/devices/{device.pk}/?range=custom&from=2026-11-20&to=2026-11-20"))
    assert [c["id"] for c in data["channels"]] == [power.pk]
    assert data["energy_kwh"] == pytest.approx(10 * 2.0 + 14 * 0.5)


# --- Park benchmark ---------------------------------------------------------------------------


def test_the_benchmark_ranks_facilities_by_kwh_per_m2_with_the_out_of_hours_share(client):
    now = datetime.now(tz=UTC)
    today = now.astimezone(BERLIN).date()
    first = today.replace(day=1)
    hours = {day: [["08:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    small = FacilityFactory(name="Small", timezone="Europe/Berlin", floor_area_m2=Decimal("100"), opening_hours=hours)
    big = FacilityFactory(
        name="Big", tenant=small.tenant, timezone="Europe/Berlin", floor_area_m2=Decimal("1000"), opening_hours=hours
    )
    _, _, ts, watts = seed(small, first=first, days=(today - first).days + 1)
    seed(big, first=first, days=(today - first).days + 1)
    signed_in(client, small)
    response = client.get("/benchmark/?sort=kwh_per_m2")
    assert response.status_code == 200
    rows = response.context["rows"]
    assert [r.facility.name for r in rows] == ["Small", "Big"]
    start = int(datetime(first.year, first.month, 1, tzinfo=BERLIN).timestamp() * 1000)
    end = int(now.timestamp() * 1000)
    kwh = expected_kwh(ts, watts, start, end)
    assert rows[0].month_kwh == pytest.approx(kwh, rel=1e-3)
    assert rows[0].kwh_per_m2 == pytest.approx(kwh / 100, rel=1e-3)
    assert rows[1].kwh_per_m2 == pytest.approx(kwh / 1000, rel=1e-3)
    # Outside 08:00–18:00 every day: the night's kWh over the whole.
    night = [(t, w) for t, w in zip(ts.tolist(), watts.tolist(), strict=True) if start <= t < end and w < 1000]
    night_kwh = expected_kwh(np.array([t for t, _ in night]), np.array([w for _, w in night]), start, end)
    assert rows[0].out_of_hours_share == pytest.approx(night_kwh / kwh, rel=1e-3)


def test_the_benchmark_filters_by_kind_and_refuses_an_unknown_ranking(client):
    office = FacilityFactory(name="Office", kind="office")
    FacilityFactory(name="Shop", tenant=office.tenant, kind="supermarket")
    signed_in(client, office)
    response = client.get("/benchmark/?kind=office&sort=name")
    assert [r.facility.name for r in response.context["rows"]] == ["Office"]
    assert client.get("/benchmark/?sort=password").status_code == 400


def test_a_device_page_lists_when_the_device_reported_and_when_it_was_silent(client):
    facility = FacilityFactory(timezone="Europe/Berlin")
    device, power, energy = device_with_channels(facility=facility, tenant=facility.tenant)
    day = datetime(2026, 11, 20, tzinfo=BERLIN)
    start = int(day.timestamp() * 1000)
    # 00:00–06:00 and 12:00–24:00 local: a six-hour silence in between.
    ts = np.array([t for t in range(start, start + 86_400_000, MINUTE_MS) if not 6 <= (t - start) // 3_600_000 < 12])
    readings_ingest(
        batches=[batch_for(device, [power, energy], ts, [np.full(len(ts), 100.0), np.arange(len(ts)) * 1.0])]
    )
    rollups_refresh()
    signed_in(client, facility)
    response = client.get(f"/devices/{device.pk}/?range=custom&from=2026-11-20&to=2026-11-20")
    runs = response.context["status_runs"]
    assert [(r.start.hour, r.end.hour, r.reporting) for r in runs] == [(12, 0, True), (6, 12, False), (0, 6, True)]
    assert runs[1].start.tzinfo == BERLIN
    html = response.content.decode()
    assert html.count('data-status-run="silent"') == 1


def test_the_park_page_shows_each_facilitys_current_load_on_load_small_ones_in_w(client):
    now_ms = int(datetime.now(tz=UTC).timestamp() * 1000)
    shop = FacilityFactory(name="Shop")
    home = FacilityFactory(name="Home", tenant=shop.tenant)
    for facility, watts in ((shop, [700.0, 900.0]), (home, [20.0, 25.0])):
        for w in watts:  # two meters each: the page adds them up before the socket says anything
            device, power, energy = device_with_channels(facility=facility, tenant=facility.tenant)
            readings_ingest(batches=[batch_for(device, [power, energy], [now_ms - 5_000], [[w], [1.0]])])
    signed_in(client, shop)
    html = client.get("/").content.decode()
    assert f'<tr data-facility-id="{shop.pk}">' in html
    shop_row = html[html.index(f'data-facility-id="{shop.pk}"') :]
    home_row = html[html.index(f'data-facility-id="{home.pk}"') :]
    assert 'data-cell="power">1.6 kW<' in shop_row.replace("\n", "")
    assert 'data-cell="power">45 W<' in home_row.replace("\n", "")


def test_a_period_longer_than_a_year_has_no_carpet_but_its_other_charts(client):
    facility = FacilityFactory(timezone="Europe/Berlin")
    seed(facility, first=date(2026, 11, 20), days=1)
    signed_in(client, facility)
    query = "range=custom&from=2024-01-01&to=2026-12-31"
    response = client.get(f"/facilities/{facility.pk}/?{query}")
    assert response.status_code == 200
    assert page_data(response)["resolution"] == "1d"
    assert "at most a year" in response.content.decode()
    assert client.get(f"/facilities/{facility.pk}/export.csv?{query}&chart=carpet").status_code == 400


@pytest.mark.parametrize(("channels", "resolution"), [(1, "15m"), (67, "15m"), (68, "1h"), (268, "1h"), (269, "1d")])
def test_a_facility_with_many_channels_gets_a_month_at_a_coarser_resolution(channels, resolution):  # type: ignore[no-untyped-def]
    month = analysis.period_resolve(range_name="month", tz=BERLIN, now=datetime(2026, 1, 15, tzinfo=UTC))
    # January: 31 × 96 = 2,976 quarter-hours; 67 channels stay within 200,000 points, 68 do not.
    assert analysis.period_for_channels(month, channels=channels).resolution == resolution


def test_the_period_pages_json_reads_as_json_script_writes_it_and_cannot_close_its_script():
    import json
    import re

    from django.utils.html import json_script

    from portal.templatetags.portal_format import json_data

    value = {"name": "</script><b>Kühl & Co</b>", "kw": [1.25, None, 1e-7, 123456.789], "days": ["2026-03-29"], 7: "id"}
    ours, django = json_data(value, "period-data"), json_script(value, "period-data")
    inner = re.compile(r'^<script id="period-data" type="application/json">(.*)</script>$', re.S)
    assert json.loads(inner.match(ours).group(1)) == json.loads(inner.match(django).group(1))
    assert "</script>" not in inner.match(ours).group(1) and "&" not in inner.match(ours).group(1)
