"""The analysis for integrators: /api/v1/facilities/<id>/analysis/ and /api/v1/benchmark/ (readings:read)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from devices.tests.factories import FacilityFactory
from integrations.scopes import FLEET_READ, READINGS_READ
from integrations.tests.factories import AccessTokenFactory, bearer
from portal.tests.test_analysis import _fresh_metadata, page_data, seed, signed_in  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

DAY = "range=custom&from=2026-11-20&to=2026-11-20"


def test_the_api_gives_the_same_analysis_as_the_portal_page(client):
    facility = FacilityFactory(timezone="Europe/Berlin")
    seed(facility, first=date(2026, 11, 19), days=2)
    token = AccessTokenFactory(application__tenant=facility.tenant, scope=READINGS_READ)
    api = client.get(f"/api/v1/facilities/{facility.pk}/analysis/?{DAY}&compare=previous", **bearer(token))
    assert api.status_code == 200
    answer = api.json()
    assert answer["resolution"] == "15m"
    assert answer["energy_kwh"] == pytest.approx(10 * 2.0 + 14 * 0.5)  # 10 h at 2 kW, 14 h at 0.5 kW
    assert answer["compare"]["diff_kwh"] == pytest.approx(0.0)
    assert len(answer["carpet"]["kw"]) == 96
    signed_in(client, facility)
    page = page_data(client.get(f"/facilities/{facility.pk}/?{DAY}&compare=previous"))
    assert page["total_kw"] == answer["total_kw"]
    assert page["energy_kwh"] == answer["energy_kwh"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("range=fortnight", "range"),
        ("range=custom&from=2026-02-02&to=2026-02-01", "range"),
        ("range=custom&from=yesterday&to=2026-01-01", "from"),
        ("range=today&compare=sideways", "compare"),
    ],
)
def test_a_bad_period_gets_the_apis_400_body_with_the_field(client, query, field):  # type: ignore[no-untyped-def]
    facility = FacilityFactory()
    token = AccessTokenFactory(application__tenant=facility.tenant, scope=READINGS_READ)
    response = client.get(f"/api/v1/facilities/{facility.pk}/analysis/?{query}", **bearer(token))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == 400 and field in error["fields"]


def test_another_tenants_facility_answers_404_and_a_token_without_the_scope_403(client):
    mine, theirs = FacilityFactory(), FacilityFactory()
    token = AccessTokenFactory(application__tenant=mine.tenant, scope=READINGS_READ)
    assert client.get(f"/api/v1/facilities/{theirs.pk}/analysis/", **bearer(token)).status_code == 404
    assert client.get(f"/api/v1/facilities/{2**63}/analysis/", **bearer(token)).status_code == 404
    fleet_only = AccessTokenFactory(application__tenant=mine.tenant, scope=FLEET_READ)
    assert client.get(f"/api/v1/facilities/{mine.pk}/analysis/", **bearer(fleet_only)).status_code == 403
    assert client.get("/api/v1/benchmark/", **bearer(fleet_only)).status_code == 403
    assert client.get(f"/api/v1/facilities/{mine.pk}/analysis/").status_code == 401


def test_the_benchmark_api_ranks_only_the_tokens_tenant(client):
    small = FacilityFactory(name="Small", floor_area_m2=Decimal("100"))
    FacilityFactory(name="Big", tenant=small.tenant, floor_area_m2=Decimal("1000"), kind="office")
    FacilityFactory(name="Foreign")
    token = AccessTokenFactory(application__tenant=small.tenant, scope=READINGS_READ)
    response = client.get("/api/v1/benchmark/?sort=name", **bearer(token))
    assert response.status_code == 200
    assert [r["name"] for r in response.json()["results"]] == ["Big", "Small"]
    office = client.get("/api/v1/benchmark/?kind=office", **bearer(token)).json()["results"]
    assert [r["name"] for r in office] == ["Big"]
    assert client.get("/api/v1/benchmark/?sort=password", **bearer(token)).status_code == 400


def test_the_analysis_operations_are_in_the_schema_under_readings_read(client):
    schema = client.get("/api/schema/?format=json").json()
    analysis = schema["paths"]["/api/v1/facilities/{id}/analysis/"]["get"]
    assert analysis["summary"] == "Analyse a facility over a period"
    assert {p["name"] for p in analysis["parameters"]} >= {"range", "from", "to", "compare"}
    assert "/api/v1/benchmark/" in schema["paths"]
