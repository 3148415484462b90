"""The billing pages in Debian's headless Chromium (Playwright) against Daphne, on the demo fleet.

A month of five-minute counter readings for the Berlin supermarket is stored and billed; the page
must show the API's figures, mark the peak interval on the 15-minute chart, and a tenant admin
creates and assigns a tariff through the tariffs page.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from billing import services
from billing.demo import seed_billing_demo
from billing.tests.factories import ingest_counter, refresh_rollups
from billing.tests.reference import month_bounds
from devices.demo import seed_demo
from devices.models import Channel, Facility
from integrations.scopes import BILLING_READ
from integrations.tests.factories import AccessTokenFactory, ApplicationFactory
from portal.tests.test_browser import ARTIFACTS, off_loop, publish, sign_in
from readings import metadata

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]
BERLIN = ZoneInfo("Europe/Berlin")
YEAR, MONTH = 2026, 11


@pytest.fixture
def billed_demo() -> dict:
    seed_demo()
    seed_billing_demo(today=date(YEAR, 1, 1))
    metadata.clear_caches()
    market = Facility.objects.get(name="Supermarket Berlin Mitte")
    market.peak_target_kw = Decimal("30")
    market.save()
    lo, hi = month_bounds(YEAR, MONTH, BERLIN)
    ts = np.arange(lo, hi, 300_000, dtype=np.int64)
    rng = np.random.default_rng(3)
    fridges = 8000 + 2000 * rng.random(len(ts))
    spike = int(datetime(YEAR, MONTH, 17, 11, 0, tzinfo=BERLIN).timestamp() * 1000)
    fridges[(ts > spike) & (ts <= spike + 600_000)] += 25_000
    main = fridges + 12_000 + 3000 * rng.random(len(ts))
    for device_name, watts in (("Main distribution", main), ("Cold room compressors", fridges)):
        channel = Channel.objects.get(device__facility=market, device__name=device_name, name="E import")
        ingest_counter(channel, ts, 5_000_000 + np.cumsum(watts * 300 / 3600))
    refresh_rollups()
    bill = services.bill_issue(facility=market, year=YEAR, month=MONTH, now_ms=hi + 3_600_000)
    token = AccessTokenFactory(application=ApplicationFactory(tenant=market.tenant), scope=BILLING_READ)
    main_total = Channel.objects.get(device__facility=market, device__name="Main distribution", name="P total")
    return {"market": market, "bill": bill, "token": token.token, "main_total": main_total}


def test_a_facility_manager_reads_the_bill_with_its_peak_marked_and_the_apis_figures(billed_demo, portal, browser):
    market, bill = billed_demo["market"], billed_demo["bill"]
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, portal, "/billing/bills/")
    page.select_option('select[name="facility"]', str(market.pk))
    page.fill('input[name="month"]', f"{YEAR}-{MONTH:02d}")
    page.click("[data-picker] button[type=submit]")
    page.wait_for_selector("#bill[data-status=final]")
    api = page.request.get(
        f"{portal}/api/v1/bills/{bill.pk}/", headers={"Authorization": f"Bearer {billed_demo['token']}"}
    ).json()
    shown = page.text_content("[data-bill-gross]")
    assert Decimal(shown.replace(",", "")) == Decimal(api["gross"])
    assert len(page.query_selector_all("#bill [data-line-kind]")) == len(api["lines"])
    peak_start = datetime.fromisoformat(api["peak_start"]).astimezone(BERLIN)
    assert page.text_content("[data-bill-peak-start]").startswith(peak_start.strftime("%Y-%m-%d %H:%M"))
    page.wait_for_function("() => window.energyboxDemandChart && window.energyboxDemandChart.peakIndex >= 0")
    chart = page.evaluate(
        "() => { const c = window.energyboxDemandChart;"
        " return [c.points, c.plot.data[0][c.peakIndex], c.plot.data[2][c.peakIndex]]; }"
    )
    assert chart[0] == 30 * 96 and chart[1] * 1000 == int(peak_start.timestamp() * 1000)
    assert chart[2] == pytest.approx(api["peak_kw"], rel=1e-9)
    assert page.query_selector("#demand-chart canvas") is not None
    pdf = page.request.get(f"{portal}/billing/bills/{market.pk}/{YEAR}-{MONTH:02d}.pdf")
    assert pdf.ok and pdf.body().startswith(b"%PDF")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "billing-bill.png"), full_page=True)

    page.click("text=Peaks of this month")
    page.wait_for_selector("[data-top-peaks]")
    assert len(page.query_selector_all("[data-peak-row]")) == 10
    first_kw = page.text_content("[data-peak-row] [data-peak-kw]")
    assert float(first_kw.replace(",", "")) == pytest.approx(api["peak_kw"], abs=0.005)
    assert "Cold room compressors" not in page.text_content("[data-top-peaks]")  # loads, not devices, are named
    assert "Refrigeration" in page.text_content("[data-peak-row]")
    assert page.evaluate("() => window.energyboxDemandChart.target") == 30
    page.screenshot(path=str(ARTIFACTS / "billing-peaks.png"), full_page=True)
    assert errors == []


def test_a_tenant_admin_creates_and_assigns_a_tariff_in_the_browser(billed_demo, portal, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 2400})
    sign_in(page, portal, "/billing/tariffs/")
    form = "#create form"
    for field, value in {
        "name": "Spot-nah 2027",
        "currency": "EUR",
        "valid_from": "2027-01-01",
        "peak_price": "0.29",
        "offpeak_price": "-0.01",
        "weekend_price": "0.17",
        "holiday_price": "0.16",
        "demand_price": "8",
        "fixed_per_day": "0.9",
        "vat_percent": "19",
    }.items():
        page.fill(f"{form} [name=tariff-{field}]", value)
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector('[data-tariff="Spot-nah 2027"]')
    assert "2027-01-01 – open" in page.text_content('[data-tariff="Spot-nah 2027"] [data-validity]')
    # The demo facilities run on the demo tariff with an open end: an overlapping assignment is refused.
    page.select_option("#assign [name=contract-tariff]", label="Spot-nah 2027")
    page.fill("#assign [name=contract-valid_from]", "2027-01-01")
    page.click("#assign button[type=submit]")
    page.wait_for_selector(".message.error")
    assert "already has the contract" in page.text_content(".message.error")
    contracts = off_loop(
        lambda: list(
            services.selectors.contract_list(access=_access(billed_demo)).values_list("tariff__name", flat=True)
        )
    )
    assert "Spot-nah 2027" not in contracts


def _access(billed_demo):
    from accounts.selectors import access_for_tenant

    return access_for_tenant(tenant=billed_demo["market"].tenant)


def test_the_dashboard_warns_live_when_the_projected_demand_crosses_the_peak_target(billed_demo, portal, browser):
    market = billed_demo["market"]
    main_total = billed_demo["main_total"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, portal, f"/facilities/{market.pk}/")
    page.wait_for_selector('.live-state[data-state="live"]', timeout=10_000)
    assert page.is_hidden("[data-peak-warning]")
    # The main meter draws 45 kW through the channel layer, as the gateway publishes it: above the 30 kW target.
    publish(device_id=main_total.device_id, facility_id=market.pk, values={main_total.pk: 45_000.0})
    page.wait_for_function("() => document.querySelector('[data-figure=total_kw]').textContent.startsWith('45')")
    publish(device_id=main_total.device_id, facility_id=market.pk, values={main_total.pk: 45_000.0})
    page.wait_for_selector("[data-peak-warning]", state="visible", timeout=5_000)
    assert "30.0 kW" in page.text_content("[data-peak-warning]")
    page.screenshot(path=str(ARTIFACTS / "billing-peak-warning.png"))


def test_a_tenant_admin_deletes_a_cost_centre_after_confirming_in_the_browser(billed_demo, portal, browser):
    from billing.models import CostCentre
    from devices.models import Load

    market = billed_demo["market"]

    def make():
        load = Load.objects.filter(facility=market).exclude(kind=Load.Kind.MAINS).first()
        return services.cost_centre_create(tenant=market.tenant, name="Backshop", area_m2=80, loads=[load]).pk

    centre_id = off_loop(make)
    page = browser.new_page(viewport={"width": 1280, "height": 2400})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, portal, "/billing/tariffs/")
    page.click('[data-cost-centre="Backshop"] [data-cost-centre-delete]')
    page.wait_for_selector("[data-confirm-delete]")
    assert "Backshop" in page.text_content("[data-confirm-delete]")
    # Cancelling keeps it.
    page.click("[data-confirm-delete] a")
    page.wait_for_selector('[data-cost-centre="Backshop"]')
    page.click('[data-cost-centre="Backshop"] [data-cost-centre-delete]')
    page.click("[data-confirm]")
    page.wait_for_selector(".message")
    assert "Backshop" in page.text_content(".message")
    assert page.query_selector('[data-cost-centre="Backshop"]') is None
    assert not off_loop(lambda: CostCentre.objects.filter(pk=centre_id).exists())
    # The API, which shares the service, no longer lists it.
    token = off_loop(
        lambda: AccessTokenFactory(application=ApplicationFactory(tenant=market.tenant), scope=BILLING_READ).token
    )
    listed = page.request.get(f"{portal}/api/v1/cost-centres/", headers={"Authorization": f"Bearer {token}"}).json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [c["name"] for c in rows] == []
    assert errors == []
