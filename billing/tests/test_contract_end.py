"""Ending a contract so another tariff can follow: the service, its API, and the bill split at the change."""

from __future__ import annotations

from datetime import date

import pytest
from django.core.exceptions import ValidationError

from accounts.errors import TenantAccessDenied
from accounts.models import Role
from accounts.selectors import access_for_tenant
from accounts.tests.factories import TenantFactory
from billing import services
from billing.models import Contract
from billing.tests.factories import TariffFactory, metered_facility, version_data
from billing.tests.reference import interval_kwh, month_bounds, reference_bill
from billing.tests.test_apis import token_for
from billing.tests.test_bills import BERLIN, LATER, _assert_matches, _compute, simulate
from billing.tests.test_views import signed_in
from devices.tests.factories import FacilityFactory
from integrations.scopes import BILLING_READ

pytestmark = pytest.mark.django_db


def _open_contract(facility, valid_from=date(2026, 1, 1)):
    tariff = TariffFactory(tenant=facility.tenant)
    return services.contract_create(facility=facility, tariff=tariff, valid_from=valid_from)


def test_an_ended_contract_is_followed_by_another_and_the_month_is_billed_pro_rata():
    mf = metered_facility()
    first = version_data()
    second = version_data(energy_rates=[0.4, 0.3, 0.25, 0.2], fixed_per_month=40.0)
    old = TariffFactory(tenant=mf.facility.tenant, versions=[first])
    contract = services.contract_create(facility=mf.facility, tariff=old, valid_from=date(2026, 1, 1))
    ended = services.contract_end(
        access=access_for_tenant(tenant=mf.facility.tenant), contract=contract, valid_to=date(2026, 8, 10)
    )
    assert ended.valid_to == date(2026, 8, 10) and Contract.objects.get(pk=contract.pk).valid_to == date(2026, 8, 10)
    new = TariffFactory(tenant=mf.facility.tenant, versions=[second])
    services.contract_create(facility=mf.facility, tariff=new, valid_from=date(2026, 8, 11))
    lo, hi = month_bounds(2026, 8, BERLIN)
    raw = simulate(mf, lo, hi, seed=5)
    computed = _compute(mf, 2026, 8)
    assert [(s.days, s.terms.tariff_name) for s in computed.segments] == [(10, old.name), (21, new.name)]
    ref = reference_bill(
        kwh_by_interval=interval_kwh(*raw[mf.main.pk]),
        year=2026,
        month=8,
        tz=BERLIN,
        region="DE-BY",
        versions=[{**first, "valid_to": date(2026, 8, 10)}, {**second, "valid_from": date(2026, 8, 11)}],
        meters=1,
    )
    _assert_matches(computed.result, ref)


@pytest.mark.parametrize("valid_to", [date(2025, 12, 31), date(2026, 2, 27)])
def test_ending_before_the_start_or_inside_an_issued_month_is_refused_and_changes_nothing(valid_to):
    mf = metered_facility()
    contract = _open_contract(mf.facility)
    lo, hi = month_bounds(2026, 2, BERLIN)
    simulate(mf, lo, hi, seed=2)
    services.bill_issue(facility=mf.facility, year=2026, month=2, now_ms=LATER)
    with pytest.raises(ValidationError) as error:
        services.contract_end(access=access_for_tenant(tenant=mf.facility.tenant), contract=contract, valid_to=valid_to)
    assert "valid_to" in error.value.message_dict
    assert Contract.objects.get(pk=contract.pk).valid_to is None
    # The issued month's last day is a clean end.
    services.contract_end(
        access=access_for_tenant(tenant=mf.facility.tenant), contract=contract, valid_to=date(2026, 2, 28)
    )
    assert Contract.objects.get(pk=contract.pk).valid_to == date(2026, 2, 28)


def test_only_the_tenants_admins_end_its_contracts():
    facility = FacilityFactory()
    contract = _open_contract(facility)
    for access in (
        access_for_tenant(tenant=facility.tenant, role=Role.VIEWER),
        access_for_tenant(tenant=TenantFactory()),
    ):
        with pytest.raises(TenantAccessDenied):
            services.contract_end(access=access, contract=contract, valid_to=date(2026, 3, 31))
    assert Contract.objects.get(pk=contract.pk).valid_to is None


def test_the_api_ends_a_contract_and_hides_another_tenants(client):
    facility = FacilityFactory()
    contract = _open_contract(facility)
    url = f"/api/v1/contracts/{contract.pk}/"
    body = {"valid_to": "2026-03-31"}
    stranger = token_for(TenantFactory())
    assert client.patch(url, body, content_type="application/json", **stranger).status_code == 404
    reader = token_for(facility.tenant, scopes=(BILLING_READ,))
    assert client.patch(url, body, content_type="application/json", **reader).status_code == 403
    mine = token_for(facility.tenant)
    bad = client.patch(url, {"valid_to": "2025-01-01"}, content_type="application/json", **mine)
    assert bad.status_code == 400 and Contract.objects.get(pk=contract.pk).valid_to is None
    response = client.patch(url, body, content_type="application/json", **mine)
    assert response.status_code == 200 and response.json()["valid_to"] == "2026-03-31"
    assert Contract.objects.get(pk=contract.pk).valid_to == date(2026, 3, 31)


def test_the_tariffs_page_ends_a_contract_on_a_day_through_the_same_service(client):
    facility = FacilityFactory()
    contract = _open_contract(facility)
    other = _open_contract(FacilityFactory())
    signed_in(client, facility.tenant)
    page = client.get("/billing/tariffs/").content.decode()
    assert f"/billing/contracts/{contract.pk}/end/" in page
    refused = client.post(f"/billing/contracts/{contract.pk}/end/", {"valid_to": "2025-06-30"}, follow=True)
    assert "cannot end before" in refused.content.decode()
    assert Contract.objects.get(pk=contract.pk).valid_to is None
    assert client.post(f"/billing/contracts/{other.pk}/end/", {"valid_to": "2026-06-30"}).status_code == 404
    assert client.post(f"/billing/contracts/{contract.pk}/end/", {"valid_to": "2026-06-30"}).status_code == 302
    assert Contract.objects.get(pk=contract.pk).valid_to == date(2026, 6, 30)
    assert Contract.objects.get(pk=other.pk).valid_to is None


def test_options_on_the_allocation_key_describes_its_put_body(client):
    response = client.options("/api/v1/billing/allocation-key/", **token_for(FacilityFactory().tenant))
    assert response.status_code == 200 and "fixed_charge_key" in response.json()["actions"]["PUT"]
