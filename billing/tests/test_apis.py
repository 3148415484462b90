"""/api/v1/ tariffs, contracts, bills and peaks: scopes, tenant isolation, bad input that stores nothing."""

from __future__ import annotations

import copy
import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from billing import services
from billing.models import Bill, Contract, Tariff, TariffVersion
from billing.tests.factories import TariffFactory, metered_facility, version_data
from billing.tests.reference import month_bounds
from billing.tests.test_bills import BERLIN, LATER, simulate
from devices.tests.factories import FacilityFactory
from integrations.scopes import BILLING_READ, BILLING_WRITE, FLEET_READ
from integrations.tests.factories import AccessTokenFactory, ApplicationFactory, bearer

pytestmark = pytest.mark.django_db


def token_for(tenant, scopes=(BILLING_READ, BILLING_WRITE)):
    app = ApplicationFactory(tenant=tenant)
    return bearer(AccessTokenFactory(application=app, scope=" ".join(scopes)))


def _json_version(**overrides):
    data = version_data(**overrides)
    for key in ("valid_from", "valid_to"):
        if isinstance(data[key], date):
            data[key] = data[key].isoformat()
    return data


def test_a_tenant_admin_creates_a_tariff_with_versions_and_reads_it_back(client):
    facility = FacilityFactory()
    headers = token_for(facility.tenant)
    body = {
        "name": "Gewerbe 2026",
        "versions": [_json_version(valid_to="2026-06-30"), _json_version(valid_from="2026-07-01", demand_price=11)],
    }
    response = client.post("/api/v1/tariffs/", body, content_type="application/json", **headers)
    assert response.status_code == 201, response.json()
    tariff = response.json()
    assert tariff["currency"] == "EUR"
    assert [v["valid_from"] for v in tariff["versions"]] == ["2026-01-01", "2026-07-01"]
    assert Decimal(tariff["versions"][1]["demand_price"]) == Decimal(11)
    listed = client.get("/api/v1/tariffs/", **headers).json()["results"]
    assert [t["id"] for t in listed] == [tariff["id"]]
    patched = client.patch(
        f"/api/v1/tariffs/{tariff['id']}/", {"name": "Gewerbe"}, content_type="application/json", **headers
    )
    assert patched.status_code == 200 and patched.json()["name"] == "Gewerbe"


def _bad_versions():
    uncovered = _json_version()
    uncovered["weekday_schedule"] = copy.deepcopy(uncovered["weekday_schedule"])
    uncovered["weekday_schedule"][2][5] = 7  # period 8 does not exist: 03:00-ish of March is uncovered
    short = _json_version()
    short["weekend_schedule"] = short["weekend_schedule"][:11]
    return {
        "overlapping versions": ({"versions": [_json_version(), _json_version(valid_from="2026-03-01")]}, "versions"),
        "uncovered hour": ({"versions": [uncovered]}, "weekday_schedule"),
        "eleven months": ({"versions": [short]}, "weekend_schedule"),
        "unknown currency": ({"currency": "XYZ", "versions": [_json_version()]}, "currency"),
        "no versions": ({"versions": []}, "versions"),
        "bad levy": ({"versions": [_json_version(levies=[{"name": "x"}])]}, "levies"),
        "ends before it begins": ({"versions": [_json_version(valid_to="2025-01-01")]}, "valid_to"),
    }


@pytest.mark.parametrize("case", list(_bad_versions()))
def test_bad_tariff_input_is_a_400_naming_the_field_and_stores_nothing(client, case):
    facility = FacilityFactory()
    body, field = _bad_versions()[case]
    response = client.post(
        "/api/v1/tariffs/", {"name": "Bad", **body}, content_type="application/json", **token_for(facility.tenant)
    )
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "invalid" and field in str(error), error
    assert not Tariff.objects.exists() and not TariffVersion.objects.exists()


def test_negative_energy_prices_are_allowed(client):
    facility = FacilityFactory()
    body = {"name": "Dynamic", "versions": [_json_version(energy_rates=[-0.05, 0.1, 0.2, 0.3])]}
    response = client.post("/api/v1/tariffs/", body, content_type="application/json", **token_for(facility.tenant))
    assert response.status_code == 201
    assert response.json()["versions"][0]["energy_rates"][0] == -0.05


def test_writing_tariffs_needs_billing_write_and_reading_needs_billing_read(client):
    facility = FacilityFactory()
    read_only = token_for(facility.tenant, scopes=(BILLING_READ,))
    body = {"name": "T", "versions": [_json_version()]}
    assert client.post("/api/v1/tariffs/", body, content_type="application/json", **read_only).status_code == 403
    assert client.get("/api/v1/tariffs/", **read_only).status_code == 200
    fleet_only = token_for(facility.tenant, scopes=(FLEET_READ,))
    for path in ("/api/v1/tariffs/", "/api/v1/bills/", f"/api/v1/peaks/?facility={facility.pk}&month=2026-01"):
        assert client.get(path, **fleet_only).status_code == 403, path
    assert not Tariff.objects.exists()


def test_an_overlapping_contract_is_refused_and_stores_nothing(client):
    facility = FacilityFactory()
    tariff = TariffFactory(tenant=facility.tenant)
    headers = token_for(facility.tenant)
    first = {"facility": facility.pk, "tariff": tariff.pk, "valid_from": "2026-01-01", "valid_to": "2026-06-30"}
    assert client.post("/api/v1/contracts/", first, content_type="application/json", **headers).status_code == 201
    overlapping = {"facility": facility.pk, "tariff": tariff.pk, "valid_from": "2026-06-01"}
    response = client.post("/api/v1/contracts/", overlapping, content_type="application/json", **headers)
    assert response.status_code == 400 and "valid_from" in response.json()["error"]["fields"]
    assert Contract.objects.count() == 1
    after = {"facility": facility.pk, "tariff": tariff.pk, "valid_from": "2026-07-01"}
    assert client.post("/api/v1/contracts/", after, content_type="application/json", **headers).status_code == 201


def test_another_tenants_facility_tariff_and_bill_are_unknown_exactly_like_missing_ones(client):
    mf = metered_facility()
    tariff = TariffFactory(tenant=mf.facility.tenant)
    services.contract_create(facility=mf.facility, tariff=tariff, valid_from=date(2026, 1, 1))
    lo, hi = month_bounds(2026, 2, BERLIN)
    simulate(mf, lo, hi)
    bill = services.bill_issue(facility=mf.facility, year=2026, month=2, now_ms=LATER)
    intruder = FacilityFactory()
    headers = token_for(intruder.tenant)
    for path in (
        f"/api/v1/tariffs/{tariff.pk}/",
        f"/api/v1/bills/{bill.pk}/",
        f"/api/v1/bills/{bill.pk}/export.csv",
        f"/api/v1/bills/{bill.pk}/export.pdf",
        f"/api/v1/bills/draft/?facility={mf.facility.pk}&month=2026-02",
        f"/api/v1/peaks/?facility={mf.facility.pk}&month=2026-02",
        "/api/v1/tariffs/987654321/",
    ):
        response = client.get(path, **headers)
        assert response.status_code == 404, path
        assert response.json()["error"]["status"] == 404
    assert client.get("/api/v1/bills/", **headers).json()["results"] == []
    body = {"facility": intruder.pk, "tariff": tariff.pk, "valid_from": "2026-01-01"}
    response = client.post("/api/v1/contracts/", body, content_type="application/json", **headers)
    assert response.status_code == 400 and "tariff" in response.json()["error"]["fields"]
    body = {"facility": mf.facility.pk, "tariff": TariffFactory(tenant=intruder.tenant).pk, "valid_from": "2026-01-01"}
    response = client.post("/api/v1/contracts/", body, content_type="application/json", **headers)
    assert response.status_code == 400 and "facility" in response.json()["error"]["fields"]
    assert Contract.objects.filter(tenant=intruder.tenant).count() == 0
    patch = client.patch(f"/api/v1/tariffs/{tariff.pk}/", {"name": "Mine"}, content_type="application/json", **headers)
    assert patch.status_code == 404
    assert Tariff.objects.get(pk=tariff.pk).name == tariff.name


def test_a_bill_for_a_future_month_is_a_400(client):
    mf = metered_facility()
    services.contract_create(
        facility=mf.facility, tariff=TariffFactory(tenant=mf.facility.tenant), valid_from=date(2026, 1, 1)
    )
    response = client.get(
        f"/api/v1/bills/draft/?facility={mf.facility.pk}&month=2099-01", **token_for(mf.facility.tenant)
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "billing_error"
    assert "has not begun" in response.json()["error"]["message"]
    for month in ("2026-13", "26-1", "x"):
        response = client.get(
            f"/api/v1/bills/draft/?facility={mf.facility.pk}&month={month}", **token_for(mf.facility.tenant)
        )
        assert response.status_code == 400 and "month" in response.json()["error"]["fields"]
    assert not Bill.objects.exists()


def test_an_issued_bill_is_served_with_its_lines_the_peak_interval_and_as_csv_and_pdf(client):
    mf = metered_facility()
    services.contract_create(
        facility=mf.facility, tariff=TariffFactory(tenant=mf.facility.tenant), valid_from=date(2026, 1, 1)
    )
    lo, hi = month_bounds(2026, 2, BERLIN)
    simulate(mf, lo, hi, seed=9)
    bill = services.bill_issue(facility=mf.facility, year=2026, month=2, now_ms=LATER)
    headers = token_for(mf.facility.tenant)
    listed = client.get(f"/api/v1/bills/?facility={mf.facility.pk}&month=2026-02", **headers).json()["results"]
    assert [b["id"] for b in listed] == [bill.pk]
    detail = client.get(f"/api/v1/bills/{bill.pk}/", **headers).json()
    assert Decimal(detail["gross"]) == bill.gross
    assert sum(Decimal(line["amount"]) for line in detail["lines"] if line["kind"] != "vat") == bill.net
    demand = next(line for line in detail["lines"] if line["kind"] == "demand")
    assert datetime.fromisoformat(demand["interval_start"]) == bill.peak_start
    assert detail["peak_start"] == demand["interval_start"]
    text = client.get(f"/api/v1/bills/{bill.pk}/export.csv", **headers).content.decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert Decimal(next(r for r in rows if r["label"] == "gross")["amount"]) == bill.gross
    assert len([r for r in rows if r["kind"] != "total"]) == len(detail["lines"])
    pdf = client.get(f"/api/v1/bills/{bill.pk}/export.pdf", **headers)
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    assert client.get(f"/api/v1/bills/{bill.pk}/export.xls", **headers).status_code == 404
    # The client CSV has a row per facility, with the facility bill's figures.
    other = FacilityFactory(tenant=mf.facility.tenant)
    del other
    text = client.get("/api/v1/bills/client.csv?month=2026-02", **headers).content.decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["facility"], Decimal(r["gross"])) for r in rows] == [(mf.facility.name, bill.gross)]


def test_the_running_month_has_a_draft_with_a_projection(client):
    mf = metered_facility()
    services.contract_create(
        facility=mf.facility, tariff=TariffFactory(tenant=mf.facility.tenant), valid_from=date(2026, 1, 1)
    )
    now = datetime.now(tz=UTC).astimezone(BERLIN)
    lo, _ = month_bounds(now.year, now.month, BERLIN)
    now_ms = int(now.timestamp() * 1000)
    if now_ms - lo < 3_600_000:
        pytest.skip("the month has just begun")
    simulate(mf, lo, now_ms - now_ms % 900_000)
    response = client.get(
        f"/api/v1/bills/draft/?facility={mf.facility.pk}&month={now:%Y-%m}", **token_for(mf.facility.tenant)
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "draft" and body["id"] is None
    assert Decimal(body["projected_gross"]) > Decimal(body["gross"])
    assert not Bill.objects.exists()


def test_peaks_match_the_bills_peak(client):
    mf = metered_facility()
    mf.facility.peak_target_kw = Decimal("12.5")
    mf.facility.save()
    services.contract_create(
        facility=mf.facility, tariff=TariffFactory(tenant=mf.facility.tenant), valid_from=date(2026, 1, 1)
    )
    lo, hi = month_bounds(2026, 2, BERLIN)
    simulate(mf, lo, hi, seed=4)
    bill = services.bill_issue(facility=mf.facility, year=2026, month=2, now_ms=LATER)
    body = client.get(f"/api/v1/peaks/?facility={mf.facility.pk}&month=2026-02", **token_for(mf.facility.tenant)).json()
    assert body["target_kw"] == 12.5
    assert datetime.fromisoformat(body["month_peak"]["start"]) == bill.peak_start
    assert body["month_peak"]["kw"] == pytest.approx(bill.peak_kw, rel=1e-12)
    assert len(body["top"]) == 10 and len(body["curve"]) == 28 * 96
    assert {load["load"] for load in body["top"][0]["loads"]} == {"Refrigeration", "HVAC"}


def test_the_schema_lists_the_billing_paths_under_their_scopes(client):
    import yaml

    schema = yaml.safe_load(client.get("/api/schema/").content)
    for path in (
        "/api/v1/tariffs/",
        "/api/v1/tariffs/{id}/",
        "/api/v1/contracts/",
        "/api/v1/bills/",
        "/api/v1/bills/{id}/",
        "/api/v1/bills/draft/",
        "/api/v1/bills/client.csv",
        "/api/v1/peaks/",
    ):
        assert path in schema["paths"], path
    scopes = schema["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]["scopes"]
    assert "billing:write" in scopes and "billing:read" in scopes


def test_a_replayed_tariff_or_contract_and_an_oversized_tariff_are_refused_and_store_nothing_more(client):
    facility = FacilityFactory()
    headers = token_for(facility.tenant)
    body = {"name": "Replayed", "versions": [_json_version()]}
    assert client.post("/api/v1/tariffs/", body, content_type="application/json", **headers).status_code == 201
    again = client.post("/api/v1/tariffs/", body, content_type="application/json", **headers)
    assert again.status_code == 400 and again.json()["error"]["code"] == "invalid"
    tariff = Tariff.objects.get()
    contract = {"facility": facility.pk, "tariff": tariff.pk, "valid_from": "2026-01-01"}
    assert client.post("/api/v1/contracts/", contract, content_type="application/json", **headers).status_code == 201
    assert client.post("/api/v1/contracts/", contract, content_type="application/json", **headers).status_code == 400
    versions = [_json_version(valid_from=f"{2000 + i}-01-01", valid_to=f"{2000 + i}-12-31") for i in range(51)]
    big = client.post(
        "/api/v1/tariffs/", {"name": "Big", "versions": versions}, content_type="application/json", **headers
    )
    assert big.status_code == 400 and "versions" in big.json()["error"]["fields"]
    assert (Tariff.objects.count(), TariffVersion.objects.count(), Contract.objects.count()) == (1, 1, 1)
    garbage = client.post("/api/v1/tariffs/", "not json", content_type="application/json", **headers)
    assert garbage.status_code == 400
