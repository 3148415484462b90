"""/api/v1/readings/confirmations/ and /api/v1/readings/plausible-ranges/<id>/, and flags in the API."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from urllib.parse import quote

import numpy as np
import pytest

from devices.tests.factories import DeviceFactory
from integrations.scopes import FLEET_WRITE, READINGS_READ
from integrations.tests.factories import AccessTokenFactory, bearer
from readings.models import ConfirmedSpan, DirtyInterval
from readings.services import readings_ingest, rollups_refresh
from readings.tests.factories import batch_for, rated_power_meter

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_channel_metadata")]
START = datetime(2026, 6, 2, 10, 0, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)


@pytest.fixture
def spiky():
    """A 6 kW power channel rated up to 10 kW, with one 2-second reading of 500 kW at 10:07."""
    device, power = rated_power_meter()
    ts = START_MS + np.arange(0, 900_000, 2_000)
    watts = np.full(len(ts), 6_000.0)
    watts[210] = 500_000.0
    readings_ingest(batches=[batch_for(device, [power], ts, [watts])])
    rollups_refresh()
    token = AccessTokenFactory(application__tenant=device.tenant, scope=f"{READINGS_READ} {FLEET_WRITE}")
    return device, power, ts, watts, token


def _quarter(client, token, channel_id: int) -> dict:  # type: ignore[type-arg]
    window = f"start={quote(START.isoformat())}&end={quote('2026-06-02T10:15:00+00:00')}"
    page = client.get(
        f"/api/v1/readings/series/?channel={channel_id}&resolution=15m&aggregate=avg&aggregate=max&{window}",
        **bearer(token),
    )
    assert page.status_code == 200, page.content
    return page.json()["series"][0]["points"][0]


def test_an_implausible_reading_is_flagged_in_json_and_csv_and_counts_once_confirmed(client, spiky):
    _, power, ts, watts, token = spiky
    point = _quarter(client, token, power.pk)
    plausible = watts[watts <= 10_000]
    assert point["flags"] == ["implausible"]
    assert point["avg"] == pytest.approx(plausible.mean()) and point["max"] == 6_000.0
    window = f"start={quote(START.isoformat())}&end={quote('2026-06-02T10:15:00+00:00')}"
    export = client.get(f"/api/v1/readings/export.csv?channel={power.pk}&resolution=15m&{window}", **bearer(token))
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert rows[0][-1] == "flags" and rows[1][-1] == "implausible"

    body = {"channel": power.pk, "start": "2026-06-02T10:07:00+00:00", "end": "2026-06-02T10:07:01+00:00"}
    response = client.post("/api/v1/readings/confirmations/", body, content_type="application/json", **bearer(token))
    assert response.status_code == 201, response.content
    assert response.json()["channel"] == power.pk and response.json()["start"].startswith("2026-06-02T10:07:00")
    # Replayed: one confirmation is stored.
    again = client.post("/api/v1/readings/confirmations/", body, content_type="application/json", **bearer(token))
    assert again.status_code == 201 and again.json()["id"] == response.json()["id"]
    assert ConfirmedSpan.objects.count() == 1
    rollups_refresh()
    point = _quarter(client, token, power.pk)
    assert point["flags"] == [] and point["avg"] == pytest.approx(watts.mean()) and point["max"] == 500_000.0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"start": "2026-06-02T10:07:00+00:00", "end": "2026-06-02T10:08:00+00:00"}, "channel"),
        ({"channel": "x", "start": "2026-06-02T10:07:00+00:00", "end": "2026-06-02T10:08:00+00:00"}, "channel"),
        ({"channel": 1, "start": "yesterday", "end": "2026-06-02T10:08:00+00:00"}, "start"),
        (
            {"channel": 1, "start": "2026-06-02T10:07:00+00:00", "end": "2026-06-02T10:08:00+00:00", "note": "n" * 501},
            "note",
        ),
    ],
    ids=["no-channel", "bad-channel", "bad-start", "oversized-note"],
)
def test_a_malformed_confirmation_is_a_400_and_stores_nothing(client, spiky, body, field):
    token = spiky[-1]
    response = client.post("/api/v1/readings/confirmations/", body, content_type="application/json", **bearer(token))
    assert response.status_code == 400 and field in response.json()["error"]["fields"], response.content
    assert ConfirmedSpan.objects.count() == 0


def test_a_confirmation_longer_than_31_days_or_backwards_is_a_400(client, spiky):
    _, power, _, _, token = spiky
    for start, end in (
        ("2026-06-01T00:00:00Z", "2026-07-15T00:00:00Z"),
        ("2026-06-02T10:08:00Z", "2026-06-02T10:07:00Z"),
    ):
        body = {"channel": power.pk, "start": start, "end": end}
        response = client.post(
            "/api/v1/readings/confirmations/", body, content_type="application/json", **bearer(token)
        )
        assert response.status_code == 400, response.content
    assert ConfirmedSpan.objects.count() == 0


def test_another_tenants_channel_is_a_404_and_a_read_only_token_is_refused(client, spiky):
    _, power, _, _, _ = spiky
    stranger = AccessTokenFactory(application__tenant=DeviceFactory().tenant, scope=f"{READINGS_READ} {FLEET_WRITE}")
    body = {"channel": power.pk, "start": "2026-06-02T10:07:00+00:00", "end": "2026-06-02T10:07:01+00:00"}
    response = client.post("/api/v1/readings/confirmations/", body, content_type="application/json", **bearer(stranger))
    assert response.status_code == 404
    assert client.get(f"/api/v1/readings/plausible-ranges/{power.pk}/", **bearer(stranger)).status_code == 404
    reader = AccessTokenFactory(application__tenant=power.tenant, scope=READINGS_READ)
    response = client.post("/api/v1/readings/confirmations/", body, content_type="application/json", **bearer(reader))
    assert response.status_code == 403
    assert ConfirmedSpan.objects.count() == 0


def test_the_plausible_range_is_read_and_changed_and_the_past_recomputed(client, spiky):
    _, power, ts, watts, token = spiky
    url = f"/api/v1/readings/plausible-ranges/{power.pk}/"
    assert client.get(url, **bearer(token)).json() == {"channel": power.pk, "unit": "W", "min": None, "max": 10_000.0}
    bad = client.put(url, {"min": 5, "max": 1}, content_type="application/json", **bearer(token))
    assert bad.status_code == 400
    DirtyInterval.objects.all().delete()
    body = {
        "min": None,
        "max": 1_000_000,
        "recompute_start": "2026-06-02T10:00:00+00:00",
        "recompute_end": "2026-06-02T10:15:00+00:00",
    }
    response = client.put(url, body, content_type="application/json", **bearer(token))
    assert response.status_code == 200 and response.json()["max"] == 1_000_000.0
    rollups_refresh()
    assert _quarter(client, token, power.pk)["avg"] == pytest.approx(watts.mean())


def test_the_schema_documents_flags_and_the_quality_endpoints(client):
    schema = client.get("/api/schema/?format=json").json()
    assert "/api/v1/readings/confirmations/" in schema["paths"]
    assert "/api/v1/readings/plausible-ranges/{id}/" in schema["paths"]
    flags = schema["components"]["schemas"]["ReadingPoint"]["properties"]["flags"]
    enum = schema["components"]["schemas"][flags["items"]["$ref"].rsplit("/", 1)[1]]["enum"]
    assert enum == ["reset", "gap", "estimated", "implausible", "glitch"]
