"""The period views as a user meets them: headless Chromium (Playwright) against Daphne, over data in
the real store. What the page drew is read back from the page (`window.energyboxPeriod`, the canvas)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command

from accounts.tests.factories import USER_PASSWORD, MembershipFactory
from devices.models import Load
from devices.tests.factories import FacilityFactory, LoadFactory
from portal.tests.test_analysis import seed
from portal.tests.test_browser import ARTIFACTS
from readings import metadata

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]

BERLIN = ZoneInfo("Europe/Berlin")
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def park(postgresql_url: str) -> dict:  # type: ignore[no-untyped-def]
    """A facility with a main meter and a sub-load, three days of minute readings up to the end of today."""
    call_command("compilecatalogs")
    metadata.clear_caches()
    facility = FacilityFactory(name="Markt Mitte", timezone="Europe/Berlin", floor_area_m2=800)
    mains = LoadFactory(facility=facility, tenant=facility.tenant, kind=Load.Kind.MAINS, name="Main meter")
    cold = LoadFactory(facility=facility, tenant=facility.tenant, kind=Load.Kind.REFRIGERATION, name="Cold")
    today = datetime.now(tz=UTC).astimezone(BERLIN).date()
    first = today - timedelta(days=2)
    # Night 600 kW, day 2,400 kW: figures above a thousand show the locale's grouping.
    device, _, _, _ = seed(facility, first=first, days=3, base=600_000.0, load=mains)
    seed(facility, first=first, days=3, base=100_000.0, load=cold)
    membership = MembershipFactory(tenant=facility.tenant)
    return {"facility": facility, "device": device, "user": membership.user, "days": 3}


def sign_in(page, base_url: str, username: str, next_path: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base_url}/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", USER_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}{next_path}")


def test_switching_time_ranges_loads_each_ranges_resolution(park, portal, browser):  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    facility = park["facility"]
    sign_in(page, portal, park["user"].username, f"/facilities/{facility.pk}/")
    # At 15 minutes the day's 2,400 kW shows; a day's average is (10 h × 2,400 + 14 h × 600) / 24 = 1,350 kW.
    for link, resolution, points, highest in (
        ("today", "15m", 96, 2400.0),
        ("year", "1d", None, 1350.0),
        ("week", "15m", None, 2400.0),
    ):
        page.click(f'a[data-range="{link}"]')
        page.wait_for_url(f"**/facilities/{facility.pk}/?range={link}")
        page.wait_for_function("() => window.energyboxPeriod !== undefined")
        assert page.evaluate("window.energyboxPeriod.resolution") == resolution
        if points is not None:
            assert page.evaluate("window.energyboxPeriod.points") == points
        drawn = page.evaluate("window.energyboxPeriod.total")
        assert max(v for v in drawn[1] if v is not None) == pytest.approx(highest)
    assert errors == []


def test_comparing_with_the_previous_period_draws_both_periods_and_the_difference(park, portal, browser):  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    facility = park["facility"]
    sign_in(page, portal, park["user"].username, f"/facilities/{facility.pk}/?range=today")
    page.click('a[data-compare="previous"]')
    page.wait_for_url("**compare=previous")
    page.wait_for_function("() => window.energyboxPeriod !== undefined")
    assert page.evaluate("window.energyboxPeriod.compareDrawn") is True
    drawn = page.evaluate("window.energyboxPeriod.total")
    today = [v for v in drawn[1] if v is not None]
    yesterday = [v for v in drawn[2] if v is not None]
    assert len(today) == 96 and len(yesterday) == 96  # yesterday moved onto today's axis, quarter by quarter
    diff = page.text_content('[data-figure="diff_kwh"]')
    assert diff is not None and abs(float(diff.replace(",", ""))) < 0.05  # the same load on both days
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "period-compare.png"), full_page=True)


def test_the_carpet_plot_is_painted_from_the_stored_demand(park, portal, browser):  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    facility = park["facility"]
    sign_in(page, portal, park["user"].username, f"/facilities/{facility.pk}/?range=week")
    page.wait_for_function("() => window.energyboxPeriod !== undefined")
    today = datetime.now(tz=UTC).astimezone(BERLIN).date()
    day = today.weekday()  # today's column in the week
    night, noon = 3 * 4, 12 * 4
    colors = page.evaluate(
        """([day, night, noon]) => {
            const p = window.energyboxPeriod;
            return {night: p.carpetPixel(day, night), noon: p.carpetPixel(day, noon),
                    lowest: p.colorFor(600), highest: p.colorFor(2400), range: p.carpetRange};
        }""",
        [day, night, noon],
    )
    assert colors["range"] == pytest.approx([600.0, 2400.0])
    assert colors["night"] == colors["lowest"]
    assert colors["noon"] == colors["highest"]
    assert colors["night"] != colors["noon"]


def test_the_language_switch_changes_how_numbers_are_written(park, portal, browser):  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    facility = park["facility"]
    path = f"/facilities/{facility.pk}/?range=today"
    sign_in(page, portal, park["user"].username, path)
    assert page.text_content("[data-carpet-max]") == "2,400.0"  # Intl, in the browser
    assert page.text_content('[data-figure="energy_kwh"]') == "32,400.0"  # 10 h × 2,400 kW + 14 h × 600 kW
    page.select_option('select[name="language"]', "de")
    page.wait_for_function("() => document.documentElement.lang === 'de'")
    page.wait_for_function("() => window.energyboxPeriod !== undefined")
    assert page.text_content("[data-carpet-max]") == "2.400,0"
    assert page.text_content('[data-figure="energy_kwh"]') == "32.400,0"  # Django's localization, on the server
    assert "Gesamtleistung" in page.content()


def test_every_portal_page_fits_a_390_px_phone_without_horizontal_scrolling(park, portal, browser):  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport=PHONE)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
    facility, device = park["facility"], park["device"]
    page.goto(f"{portal}/login/")
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), "/login/"
    sign_in(page, portal, park["user"].username, "/")
    pages = [
        "/",
        "/benchmark/",
        f"/facilities/{facility.pk}/",
        f"/facilities/{facility.pk}/?range=today&compare=previous",
        f"/facilities/{facility.pk}/?range=year&compare=last_year",
        f"/devices/{device.pk}/",
        f"/devices/{device.pk}/?range=month",
        "/integrations/",
        "/no/such/page/",
    ]
    ARTIFACTS.mkdir(exist_ok=True)
    too_wide = {}
    for path in pages:
        page.goto(f"{portal}{path}")
        page.wait_for_load_state("load")
        page.wait_for_timeout(300)  # charts size themselves after load
        width = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        if width[0] > width[1]:
            too_wide[path] = width
    page.goto(f"{portal}/facilities/{facility.pk}/?range=today")
    page.screenshot(path=str(ARTIFACTS / "period-phone.png"), full_page=True)
    assert too_wide == {}
    assert errors == []


def test_a_missing_page_shows_the_projects_404_page(park, portal, browser):  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    sign_in(page, portal, park["user"].username, "/")
    response = page.goto(f"{portal}/facilities/999999999/")
    assert response is not None and response.status == 404
    assert page.is_visible("#error-404")
    assert "URLconf" not in page.content()
