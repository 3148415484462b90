"""/api/v1/ cost allocation: the fixed-charge key and cost centres, tenant-scoped, through the portal's services."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import BillingProfile, CostCentre, FixedChargeKey
from billing.tests.factories import metered_facility, version_data
from billing.tests.reference import month_bounds
from billing.tests.test_apis import token_for
from billing.tests.test_bills import BERLIN, _contract, simulate
from devices.tests.factories import FacilityFactory, LoadFactory
from integrations.scopes import BILLING_READ

pytestmark = pytest.mark.django_db
KEY = "/api/v1/billing/allocation-key/"
CENTRES = "/api/v1/cost-centres/"


def test_the_allocation_key_is_read_and_set_and_a_bad_key_stores_nothing(client):
    facility = FacilityFactory()
    headers = token_for(facility.tenant)
    assert client.get(KEY, **headers).json() == {"fixed_charge_key": FixedChargeKey.KWH}
    response = client.put(KEY, {"fixed_charge_key": "area"}, content_type="application/json", **headers)
    assert response.status_code == 200 and response.json() == {"fixed_charge_key": "area"}
    assert BillingProfile.objects.get(tenant=facility.tenant).fixed_charge_key == FixedChargeKey.AREA
    bad = client.put(KEY, {"fixed_charge_key": "by-mood"}, content_type="application/json", **headers)
    assert bad.status_code == 400 and "fixed_charge_key" in bad.json()["error"]["fields"]
    read_only = token_for(facility.tenant, scopes=(BILLING_READ,))
    denied = client.put(KEY, {"fixed_charge_key": "equal"}, content_type="application/json", **read_only)
    assert denied.status_code == 403
    assert client.get(KEY, **headers).json() == {"fixed_charge_key": "area"}
    # Another tenant has its own key, untouched.
    assert client.get(KEY, **token_for(FacilityFactory().tenant)).json() == {"fixed_charge_key": "kwh"}


def test_cost_centres_group_the_tenants_own_loads_and_another_tenants_are_unknown(client):
    mf = metered_facility()
    headers = token_for(mf.facility.tenant)
    cold, air = mf.loads["Refrigeration"][0], mf.loads["HVAC"][0]
    body = {"name": "Cold", "area_m2": "300.0", "loads": [cold.pk, air.pk]}
    created = client.post(CENTRES, body, content_type="application/json", **headers)
    assert created.status_code == 201
    centre = created.json()
    assert (
        centre["name"] == "Cold"
        and centre["area_m2"] == "300.0"
        and sorted(centre["loads"]) == sorted([cold.pk, air.pk])
    )
    listed = client.get(CENTRES, **headers).json()["results"]
    assert [c["id"] for c in listed] == [centre["id"]]

    intruder = FacilityFactory()
    foreign_load = LoadFactory(facility=intruder)
    for bad in (
        {"name": "Theirs", "loads": [foreign_load.pk]},  # another tenant's load
        {"name": "Cold", "loads": []},  # the name is taken
        {"name": "Negative", "area_m2": "-1", "loads": []},
        {"name": "", "loads": []},
    ):
        response = client.post(CENTRES, bad, content_type="application/json", **headers)
        assert response.status_code == 400, bad
    assert CostCentre.objects.filter(tenant=mf.facility.tenant).count() == 1

    theirs = token_for(intruder.tenant)
    assert client.get(f"{CENTRES}{centre['id']}/", **theirs).status_code == 404
    assert client.delete(f"{CENTRES}{centre['id']}/", **theirs).status_code == 404
    assert client.get(CENTRES, **theirs).json()["results"] == []
    assert client.delete(f"{CENTRES}{centre['id']}/", **headers).status_code == 204
    assert not CostCentre.objects.exists()


def test_a_bill_shares_fixed_charges_by_the_areas_set_through_the_api(client):
    mf = metered_facility()
    _contract(mf, [version_data()])
    headers = token_for(mf.facility.tenant)
    client.put(KEY, {"fixed_charge_key": "area"}, content_type="application/json", **headers)
    for name, area, load in (("Cold", "300", mf.loads["Refrigeration"][0]), ("Air", "100", mf.loads["HVAC"][0])):
        body = {"name": name, "area_m2": area, "loads": [load.pk]}
        assert client.post(CENTRES, body, content_type="application/json", **headers).status_code == 201
    lo, hi = month_bounds(2026, 7, BERLIN)
    simulate(mf, lo, hi, seed=17)
    response = client.get(f"/api/v1/bills/draft/?facility={mf.facility.pk}&month=2026-07", **headers)
    assert response.status_code == 200, response.content
    rows = {row["name"]: row for row in response.json()["detail"]["allocation"]}
    cold, air = Decimal(rows["Refrigeration"]["fixed"]), Decimal(rows["HVAC"]["fixed"])
    assert rows["Refrigeration"]["cost_centre"] == "Cold" and rows["HVAC"]["cost_centre"] == "Air"
    assert air > 0 and abs(cold - 3 * air) <= Decimal("0.03")  # 300 m² against 100 m²


def test_the_schema_lists_the_cost_allocation_paths(client):
    import yaml

    schema = yaml.safe_load(client.get("/api/schema/").content)
    for path in ("/api/v1/billing/allocation-key/", "/api/v1/cost-centres/", "/api/v1/cost-centres/{id}/"):
        assert path in schema["paths"], path
