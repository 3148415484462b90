"""/api/v1/readings/: series, latest values and CSV export over the real store."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import numpy as np
import pytest

from accounts.models import Role
from accounts.tests.factories import MembershipFactory
from devices.services import channel_update
from devices.tests.factories import FacilityFactory
from integrations.scopes import READINGS_READ
from integrations.tests.factories import AccessTokenFactory, bearer
from readings import metadata
from readings.services import readings_ingest, rollups_refresh
from readings.tests.factories import batch_for, device_with_channels

pytestmark = pytest.mark.django_db

# 2026-11-25 in Berlin (UTC+01:00): midnight local is 23:00 UTC the day before.
DAY_START = datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
DAY_START_MS = int(DAY_START.timestamp() * 1000)
LOCAL_DAY = "start=2026-11-25T00:00:00%2B01:00&end=2026-11-26T00:00:00%2B01:00"


@pytest.fixture(autouse=True)
def _fresh_caches():
    metadata.clear_caches()
    yield
    metadata.clear_caches()


@pytest.fixture
def day():
    """One Berlin day of a power channel (value = minute of the day) and an energy counter, every 60 s."""
    device, power, energy = device_with_channels(facility=FacilityFactory(timezone="Europe/Berlin"))
    minutes = np.arange(1440)
    ts = DAY_START_MS + minutes * 60_000
    readings_ingest(batches=[batch_for(device, [power, energy], ts, [minutes * 1.0, 1000 + minutes * 2.0])])
    rollups_refresh()
    token = AccessTokenFactory(application__tenant=device.tenant, scope=READINGS_READ)
    return device, power, energy, token


def _get(client, token, url):
    return client.get(url, **bearer(token))


def test_a_day_of_15_minute_data_is_96_intervals_in_the_facilitys_local_time(client, day):
    _, power, energy, token = day
    page = _get(
        client, token, f"/api/v1/readings/series/?channel={power.pk}&channel={energy.pk}&resolution=15m&{LOCAL_DAY}"
    )
    assert page.status_code == 200, page.content
    body = page.json()
    power_series, energy_series = body["series"]
    assert power_series["channel"] == power.pk and power_series["timezone"] == "Europe/Berlin"
    points = power_series["points"]
    assert len(points) == 96
    assert points[0]["start"] == "2026-11-25T00:00:00+01:00" and points[0]["end"] == "2026-11-25T00:15:00+01:00"
    assert points[0] == {**points[0], "avg": 7.0, "min": 0.0, "max": 14.0}
    assert set(energy_series["points"][0]) == {"start", "end", "delta", "flags"}
    assert body["next"] is None


def test_aggregates_can_be_chosen(client, day):
    _, power, _, token = day
    body = _get(
        client, token, f"/api/v1/readings/series/?channel={power.pk}&resolution=1h&aggregate=count,max&{LOCAL_DAY}"
    )
    first = body.json()["series"][0]["points"][0]
    assert set(first) == {"start", "end", "count", "max", "flags"} and first["count"] == 60


def test_channels_are_selected_by_facility_quantity_or_tag(client, day):
    device, power, energy, token = day
    channel_update(channel=energy, tags=["main-meter"])
    by_facility = _get(client, token, f"/api/v1/readings/latest/?facility={device.facility_id}").json()["results"]
    assert [row["channel"] for row in by_facility] == [power.pk, energy.pk]
    by_quantity = _get(client, token, "/api/v1/readings/latest/?quantity=active_power").json()["results"]
    assert [row["channel"] for row in by_quantity] == [power.pk]
    by_tag = _get(client, token, "/api/v1/readings/latest/?tag=main-meter").json()["results"]
    assert [row["channel"] for row in by_tag] == [energy.pk]


def test_the_latest_values_carry_their_local_time(client, day):
    _, power, _, token = day
    (row,) = _get(client, token, f"/api/v1/readings/latest/?channel={power.pk}").json()["results"]
    assert row["value"] == 1439.0
    assert row["t"] == "2026-11-25T23:59:00+01:00"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("start=yesterday&end=2026-11-26T00:00:00Z", "start"),
        ("start=2026-11-25T00:00:00&end=2026-11-26T00:00:00Z", "start"),  # no offset
        ("start=2026-11-26T00:00:00Z&end=2026-11-25T00:00:00Z", "end"),  # end before start
        ("start=2026-11-25T00:00:00Z&end=2026-11-25T00:00:00Z", "end"),  # empty range
        (f"resolution=5m&{LOCAL_DAY}", "resolution"),
        (f"aggregate=median&{LOCAL_DAY}", "aggregate"),
        (f"resolution=raw&aggregate=avg&{LOCAL_DAY}", "aggregate"),
        (f"resolution=raw&cursor=bm90LWEtbnVtYmVy&{LOCAL_DAY}", "cursor"),
        (f"resolution=raw&cursor=MTAwMA&{LOCAL_DAY}", "cursor"),  # a cursor from another range
        (f"resolution=raw&limit=0&{LOCAL_DAY}", "limit"),
        ("start=2016-01-01T00:00:00Z&end=2026-01-01T00:00:00Z&resolution=15m", "end"),  # too many intervals
        ("end=2026-11-26T00:00:00Z", "start"),
    ],
)
def test_malformed_parameters_get_a_400_naming_the_field(client, day, query, field):
    _, power, _, token = day
    response = _get(client, token, f"/api/v1/readings/series/?channel={power.pk}&{query}")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"], response.json()


def test_a_query_string_with_broken_escapes_is_a_400_in_the_usual_shape(client, day):
    _, power, _, token = day
    response = _get(client, token, f"/api/v1/readings/series/?channel={power.pk}&cursor=%%%&{LOCAL_DAY}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_too_many_channels_is_a_400_on_the_channel_field(client, day):
    _, _, _, token = day
    ids = ",".join(str(n) for n in range(1, 102))
    response = _get(client, token, f"/api/v1/readings/series/?channel={ids}&{LOCAL_DAY}")
    assert response.status_code == 400
    assert "At most 100 channels" in response.json()["error"]["fields"]["channel"][0]


def test_a_query_naming_no_channels_is_a_400(client, day):
    _, _, _, token = day
    response = _get(client, token, f"/api/v1/readings/series/?{LOCAL_DAY}")
    assert response.status_code == 400 and "channel" in response.json()["error"]["fields"]


def test_raw_readings_come_in_cursor_pages_that_cover_every_reading_once(client, day):
    _, power, _, token = day
    url = f"/api/v1/readings/series/?channel={power.pk}&resolution=raw&limit=300&{LOCAL_DAY}"
    seen, pages = [], 0
    while url:
        body = _get(client, token, url).json()
        points = body["series"][0]["points"]
        assert len(points) <= 300
        seen += [p["value"] for p in points]
        url, pages = body["next"], pages + 1
    assert seen == [float(m) for m in range(1440)]
    assert pages >= 5


def test_an_oversized_raw_range_is_paginated_not_a_server_error(client, day):
    _, power, _, token = day
    response = _get(
        client,
        token,
        f"/api/v1/readings/series/?channel={power.pk}&resolution=raw&start=2020-01-01T00:00:00Z&end=2030-01-01T00:00:00Z",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["next"] is not None
    assert body["end"] < "2020-02-02"


def test_the_csv_export_streams_every_interval_with_offsets(client, day):
    _, power, energy, token = day
    response = _get(client, token, f"/api/v1/readings/export.csv?channel={power.pk}&channel={energy.pk}&{LOCAL_DAY}")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["channel", "quantity", "unit", "start", "end", "avg", "min", "max", "delta", "flags"]
    assert len(rows) == 1 + 2 * 96
    assert rows[1][3] == "2026-11-25T00:00:00+01:00" and rows[1][5] == "7.0"
    energy_row = next(r for r in rows[1:] if r[0] == str(energy.pk))
    assert energy_row[5:8] == ["", "", ""] and energy_row[8] != ""


def test_a_long_raw_export_walks_window_by_window_and_writes_each_reading_once(client, day):
    _, power, _, token = day
    response = _get(
        client,
        token,
        f"/api/v1/readings/export.csv?channel={power.pk}&resolution=raw&start=2026-10-01T00:00:00Z&end=2027-01-01T00:00:00Z",
    )
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["channel", "quantity", "unit", "timestamp", "value"]
    assert [float(r[4]) for r in rows[1:]] == [float(m) for m in range(1440)]


def test_a_monthly_export_over_years_writes_each_month_once(client, day):
    _, power, _, token = day
    response = _get(
        client,
        token,
        f"/api/v1/readings/export.csv?channel={power.pk}&resolution=1mo&start=2020-01-01T00:00:00Z&end=2030-01-01T00:00:00Z",
    )
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 2 and rows[1][3] == "2026-11-01T00:00:00+01:00"


def test_another_tenants_channel_reads_exactly_like_a_missing_one(client, day):
    _, power, _, _ = day
    other = AccessTokenFactory(scope=READINGS_READ)
    for path in ("series/?", "latest/?", "export.csv?"):
        theirs = _get(client, other, f"/api/v1/readings/{path}channel={power.pk}&{LOCAL_DAY}")
        missing = _get(client, other, f"/api/v1/readings/{path}channel=987654321&{LOCAL_DAY}")
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json() == missing.json()


def test_a_facility_manager_token_reads_only_granted_facilities(client, day):
    device, power, _, _ = day
    FacilityFactory(tenant=device.tenant)
    manager = MembershipFactory(tenant=device.tenant, role=Role.FACILITY_MANAGER, facilities=[])
    token = AccessTokenFactory(application__tenant=device.tenant, user=manager.user, scope=READINGS_READ)
    assert _get(client, token, f"/api/v1/readings/latest/?channel={power.pk}").status_code == 404
    assert _get(client, token, "/api/v1/readings/latest/?quantity=active_power").json()["results"] == []


def test_timestamps_in_queries_may_use_any_offset(client, day):
    _, power, _, token = day
    start = quote("2026-11-24T23:00:00Z")
    end = quote("2026-11-25T05:00:00+05:00")  # = 00:00 UTC, one hour later
    body = _get(client, token, f"/api/v1/readings/series/?channel={power.pk}&resolution=15m&start={start}&end={end}")
    assert len(body.json()["series"][0]["points"]) == 4


def test_a_channel_in_a_day_with_no_data_gives_an_empty_series(client, day):
    _, power, _, token = day
    later = DAY_START + timedelta(days=10)
    start, end = quote(later.isoformat()), quote((later + timedelta(days=1)).isoformat())
    url = f"/api/v1/readings/series/?channel={power.pk}&start={start}&end={end}"
    assert _get(client, token, url).json()["series"][0]["points"] == []


@pytest.mark.django_db(transaction=True)
async def test_under_asgi_the_export_streams_chunk_by_chunk_instead_of_buffering(async_client, monkeypatch):
    import warnings

    from asgiref.sync import sync_to_async

    from readings import apis

    monkeypatch.setattr(apis, "CHUNK_ROWS", 10)

    @sync_to_async
    def seed():
        device, power, energy = device_with_channels(facility=FacilityFactory(timezone="Europe/Berlin"))
        minutes = np.arange(1440)
        ts = DAY_START_MS + minutes * 60_000
        readings_ingest(batches=[batch_for(device, [power, energy], ts, [minutes * 1.0, 1000 + minutes * 2.0])])
        rollups_refresh()
        return power, AccessTokenFactory(application__tenant=device.tenant, scope=READINGS_READ)

    power, token = await seed()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Django warns when it has to buffer a synchronous iterator
        response = await async_client.get(
            f"/api/v1/readings/export.csv?channel={power.pk}&{LOCAL_DAY}",
            headers={"Authorization": f"Bearer {token.token}"},
        )
        chunks = [chunk async for chunk in response.streaming_content]
    assert response.status_code == 200
    assert len(chunks) == 10  # 97 lines in chunks of 10 rows
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode())))
    assert len(rows) == 97
