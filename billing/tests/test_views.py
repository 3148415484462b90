"""The portal's billing pages: the figures are the API's, another tenant's ids are 404, only admins write."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest
from django.utils.formats import number_format

from accounts.models import Role
from accounts.tests.factories import USER_PASSWORD, MembershipFactory
from billing import services
from billing.models import Contract, Tariff
from billing.tests.factories import TariffFactory, metered_facility
from billing.tests.reference import month_bounds
from billing.tests.test_bills import BERLIN, LATER, simulate
from devices.tests.factories import FacilityFactory

pytestmark = pytest.mark.django_db


def signed_in(client, tenant, role=Role.ADMIN):
    membership = MembershipFactory(tenant=tenant, role=role)
    client.login(username=membership.user.username, password=USER_PASSWORD)
    return membership


@pytest.fixture
def billed():
    mf = metered_facility()
    services.contract_create(
        facility=mf.facility, tariff=TariffFactory(tenant=mf.facility.tenant), valid_from=date(2026, 1, 1)
    )
    lo, hi = month_bounds(2026, 2, BERLIN)
    simulate(mf, lo, hi, seed=8)
    bill = services.bill_issue(facility=mf.facility, year=2026, month=2, now_ms=LATER)
    return mf, bill


def test_the_bill_page_shows_the_issued_bills_lines_and_total(client, billed):
    mf, bill = billed
    signed_in(client, mf.facility.tenant)
    html = client.get(f"/billing/bills/?facility={mf.facility.pk}&month=2026-02").content.decode()
    assert f"data-bill-gross>{number_format(bill.gross, 2)}<" in html
    for line in bill.lines.all():
        assert line.label in html
    assert 'id="demand-chart"' in html and 'id="demand-data"' in html
    pdf = client.get(f"/billing/bills/{mf.facility.pk}/2026-02.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    rows = list(
        csv.DictReader(io.StringIO(client.get(f"/billing/bills/{mf.facility.pk}/2026-02.csv").content.decode()))
    )
    assert next(r for r in rows if r["label"] == "gross")["amount"] == str(bill.gross)


def test_the_client_page_and_csv_have_a_row_per_facility(client, billed):
    mf, bill = billed
    signed_in(client, mf.facility.tenant)
    html = client.get("/billing/client/?month=2026-02").content.decode()
    assert f'data-client-row="{mf.facility.pk}"' in html and number_format(bill.gross, 2) in html
    rows = list(csv.DictReader(io.StringIO(client.get("/billing/client/2026-02.csv").content.decode())))
    assert [(r["facility"], r["gross"]) for r in rows] == [(mf.facility.name, str(bill.gross))]


def test_another_tenants_facility_is_a_404_on_every_page(client, billed):
    mf, _ = billed
    signed_in(client, FacilityFactory().tenant)
    for path in (
        f"/billing/bills/?facility={mf.facility.pk}",
        f"/billing/peaks/?facility={mf.facility.pk}",
        f"/billing/bills/{mf.facility.pk}/2026-02.pdf",
        f"/billing/bills/{mf.facility.pk}/2026-02.csv",
    ):
        assert client.get(path).status_code == 404, path


def test_a_tenant_admin_creates_and_assigns_a_tariff_from_the_tariffs_page(client):
    facility = FacilityFactory()
    signed_in(client, facility.tenant)
    form = {
        "action": "create",
        "tariff-name": "Gewerbe",
        "tariff-currency": "EUR",
        "tariff-valid_from": "2026-01-01",
        "tariff-peak_price": "0.31",
        "tariff-offpeak_price": "0.22",
        "tariff-weekend_price": "0.18",
        "tariff-holiday_price": "0.15",
        "tariff-peak_from": "8",
        "tariff-peak_to": "20",
        "tariff-demand_mode": "monthly",
        "tariff-demand_price": "9.5",
        "tariff-high_use_demand_price": "0",
        "tariff-high_use_energy_price": "0",
        "tariff-low_use_demand_price": "0",
        "tariff-low_use_energy_price": "0",
        "tariff-fixed_per_day": "1",
        "tariff-fixed_per_month": "0",
        "tariff-fixed_per_meter_month": "8",
        "tariff-levies": "Stromsteuer = 0.0205",
        "tariff-vat_percent": "19",
    }
    assert client.post("/billing/tariffs/", form).status_code == 302
    tariff = Tariff.objects.get(tenant=facility.tenant)
    version = tariff.versions.get()
    assert version.levies == [{"name": "Stromsteuer", "per_kwh": 0.0205}] and version.weekday_schedule[0][8] == 0
    bad = {**form, "tariff-name": "Other", "tariff-currency": "ZZZ"}
    response = client.post("/billing/tariffs/", bad)
    assert response.status_code == 400 and Tariff.objects.count() == 1
    assign = {
        "action": "assign",
        "contract-facility": facility.pk,
        "contract-tariff": tariff.pk,
        "contract-valid_from": "2026-01-01",
    }
    assert client.post("/billing/tariffs/", assign).status_code == 302
    response = client.post("/billing/tariffs/", {**assign, "contract-valid_from": "2026-05-01"})
    assert response.status_code == 400 and Contract.objects.count() == 1
    page = client.get("/billing/tariffs/").content.decode()
    assert "2026-01-01 – open" in page


def test_a_viewer_sees_tariffs_but_cannot_change_them(client):
    facility = FacilityFactory()
    signed_in(client, facility.tenant, role=Role.VIEWER)
    assert client.get("/billing/tariffs/").status_code == 200
    assert client.post("/billing/tariffs/", {"action": "create", "tariff-name": "X"}).status_code == 403
    assert not Tariff.objects.exists()


def test_the_peaks_page_lists_the_top_10_and_the_target(client, billed):
    mf, bill = billed
    signed_in(client, mf.facility.tenant)
    html = client.get(f"/billing/peaks/?facility={mf.facility.pk}&month=2026-02").content.decode()
    assert html.count("data-peak-row") == 10
    assert f'data-figure="month_peak_kw">{number_format(bill.peak_kw, 2)}<' in html


def test_a_tenant_admin_sets_the_allocation_key_and_creates_a_cost_centre_of_own_loads_only(client):
    from billing.models import BillingProfile, CostCentre
    from devices.tests.factories import LoadFactory

    load = LoadFactory()
    foreign = LoadFactory()
    signed_in(client, load.tenant)
    form = {"action": "allocation", "allocation-fixed_charge_key": "area"}
    assert client.post("/billing/tariffs/", form).status_code == 302
    assert BillingProfile.objects.get(tenant=load.tenant).fixed_charge_key == "area"
    centre = {"action": "cost_centre", "centre-name": "Store", "centre-area_m2": "120", "centre-loads": [load.pk]}
    assert client.post("/billing/tariffs/", centre).status_code == 302
    assert list(CostCentre.objects.get(tenant=load.tenant).loads.all()) == [load]
    stolen = {**centre, "centre-name": "Other", "centre-loads": [foreign.pk]}
    assert client.post("/billing/tariffs/", stolen).status_code == 400
    assert CostCentre.objects.count() == 1
    assert 'data-cost-centre="Store"' in client.get("/billing/tariffs/").content.decode()


def test_a_tenant_admin_deletes_a_cost_centre_after_confirming_and_no_one_else_can(client):
    from billing.models import CostCentre
    from devices.tests.factories import LoadFactory

    facility = FacilityFactory()
    load = LoadFactory(facility=facility, name="Bakery")
    centre = services.cost_centre_create(tenant=facility.tenant, name="Bakery", area_m2=120, loads=[load])
    other = services.cost_centre_create(tenant=FacilityFactory().tenant, name="Elsewhere")
    url = f"/billing/cost-centres/{centre.pk}/delete/"

    signed_in(client, facility.tenant, role=Role.VIEWER)
    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404
    assert "data-cost-centre-delete" not in client.get("/billing/tariffs/").content.decode()
    client.logout()

    signed_in(client, facility.tenant)
    assert f'href="{url}"' in client.get("/billing/tariffs/").content.decode()
    confirm = client.get(url)
    assert confirm.status_code == 200
    assert "Bakery" in confirm.content.decode() and "data-confirm" in confirm.content.decode()
    assert CostCentre.objects.filter(pk=centre.pk).exists()  # asking deletes nothing
    assert client.post(f"/billing/cost-centres/{other.pk}/delete/").status_code == 404
    assert CostCentre.objects.filter(pk=other.pk).exists()

    answer = client.post(url, follow=True)
    assert answer.redirect_chain[-1][0] == "/billing/tariffs/"
    assert "Cost centre Bakery deleted." in answer.content.decode()
    assert not CostCentre.objects.filter(pk=centre.pk).exists()
    assert load.__class__.objects.filter(pk=load.pk).exists()  # its loads stay
    assert client.post(url).status_code == 404  # gone: a second post stores nothing and says so


def test_the_cost_centre_confirmation_speaks_german(client):
    from django.core.management import call_command

    from devices.tests.factories import LoadFactory

    call_command("compilecatalogs")
    facility = FacilityFactory()
    loads = [LoadFactory(facility=facility, name=n) for n in ("Bakery", "Deli")]
    centre = services.cost_centre_create(tenant=facility.tenant, name="Frische", loads=loads)
    membership = signed_in(client, facility.tenant)
    membership.user.language = "de"
    membership.user.save()
    html = client.get(f"/billing/cost-centres/{centre.pk}/delete/").content.decode()
    assert "Die Kostenstelle „Frische“ löschen?" in html
    assert "Ihre 2 Lasten bleiben" in html
    answer = client.post(f"/billing/cost-centres/{centre.pk}/delete/", follow=True)
    assert "Kostenstelle Frische gelöscht." in answer.content.decode()
