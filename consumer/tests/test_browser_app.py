"""The households' app in Debian's Chromium at a phone's and a laptop's size, against Daphne and the simulator.

Signed in through the platform's OIDC provider (authorization code + PKCE), the app shows the smart
meter's live power as the simulator streams it over TLS to the gateway, the history from the rollups,
and the bill's projection exactly as the billing service computes it; offline, a reload shows the
shell and the last figures with their age. No screen scrolls sideways.
"""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from oauth2_provider.models import AccessToken, RefreshToken

from accounts.models import User
from accounts.selectors import access_for_user
from billing.demo import seed_billing_demo
from billing.selectors import bill_compute
from consumer.selectors import HouseholdTariff, household_tariff_get
from devices.demo import DEMO_PASSWORD, seed_demo
from devices.models import Facility
from devices.services import device_key_rotate
from portal.tests.history import seed_history
from portal.tests.servers import SimulatorThread
from portal.tests.test_browser import ARTIFACTS, device_spec, off_loop, simulated
from readings import metadata

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]

SCREENS = ("now", "today", "history", "breakdown", "bill", "devices", "settings")


@pytest.fixture
def home() -> dict:
    """The demo household with stored history and its tariff; requested before `browser` (the ORM)."""
    seed_demo()
    seed_billing_demo(today=datetime.now(tz=ZoneInfo("Europe/Stockholm")).date())
    metadata.clear_caches()
    facility = Facility.objects.get(tenant__slug="demo-home", name="Home")
    seed_history(facility, now_ms=int(time.time() * 1000) - 4_000)
    meter = facility.devices.get(name="Smart meter")
    return {
        "facility": facility,
        "user": User.objects.get(username="household"),
        "spec": device_spec(device_key_rotate(device=meter), load_kind="appliances"),
    }


def _projected(*, user: User, facility: Facility) -> str:
    tz = ZoneInfo(facility.timezone)
    today = datetime.now(tz=tz)
    computed = bill_compute(
        access=access_for_user(user=user), facility_id=facility.pk, year=today.year, month=today.month
    )
    assert computed.result.projected_gross is not None
    return str(computed.result.projected_gross)


def _tariff_of(*, user: User, facility: Facility) -> HouseholdTariff | None:
    return household_tariff_get(access=access_for_user(user=user), facility_id=facility.pk)


def _revoke_tokens(*, user: User) -> None:
    RefreshToken.objects.filter(user=user).delete()
    AccessToken.objects.filter(user=user).delete()


def _portal_sign_in(page, base_url: str) -> None:  # type: ignore[no-untyped-def]
    page.fill("#id_username", "household")
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("button[type=submit]")


def _settings_of(*, user: User) -> tuple[str, bool, str]:
    user.refresh_from_db()
    return user.email, user.email_verified, user.language


def _no_sideways_scroll(page) -> None:  # type: ignore[no-untyped-def]
    wide = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert wide <= 0, f"{page.url} scrolls sideways by {wide} px"


@pytest.mark.parametrize(("width", "height", "portal_first"), [(390, 844, False), (1366, 900, True)])
def test_the_household_signs_in_sees_live_power_history_and_the_bill_and_reloads_offline(
    home, portal, gateway_port, browser, width, height, portal_first
):
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-GB")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    if portal_first:
        # Single sign-on: signed in to the portal, the app needs one click and no password.
        page.goto(f"{portal}/login/?next=/")
        _portal_sign_in(page, portal)
        page.wait_for_url(f"{portal}/")
        page.goto(f"{portal}/app/#now")
        page.click("[data-testid=sign-in]")
    else:
        # Signing in to the app signs in to the portal too.
        page.goto(f"{portal}/app/#history")
        assert page.get_attribute("[data-testid=sign-up]", "href") == "/signup/"
        page.click("[data-testid=sign-in]")
        page.wait_for_selector("#id_username")
        _portal_sign_in(page, portal)
    page.wait_for_selector("nav a[aria-current=page]", timeout=15_000)
    assert "code=" not in page.url
    if not portal_first:
        assert page.url.endswith("#history")  # the place the user was on survives the sign-in
        page.goto(f"{portal}/app/#now")

    meter = simulated(home["spec"], port_and_ca=gateway_port)
    with SimulatorThread([meter]):
        page.wait_for_function("() => document.querySelector('[data-testid=live-kw]')?.dataset.at > 0", timeout=20_000)
        first = page.get_attribute("[data-testid=live-kw]", "data-at")
        page.wait_for_function(
            "(first) => document.querySelector('[data-testid=live-kw]').dataset.at !== first",
            arg=first,
            timeout=15_000,
        )
        shown = page.text_content("[data-testid=live-kw]")
        assert shown is not None and shown.endswith("kW")
        page.wait_for_function("() => document.querySelector('.spark')?.dataset.points >= 2", timeout=10_000)
        # The 2-s samples come over the websocket (the token as its subprotocol), not by polling.
        page.wait_for_function(
            "() => document.querySelector('[data-testid=live-kw]')?.dataset.via === 'socket'", timeout=10_000
        )
        _no_sideways_scroll(page)

    page.goto(f"{portal}/app/#history")
    page.wait_for_function("() => document.querySelector('.bars')?.dataset.bars > 0", timeout=15_000)
    _no_sideways_scroll(page)

    before = off_loop(_projected, user=home["user"], facility=home["facility"])
    page.goto(f"{portal}/app/#bill")
    page.wait_for_selector("[data-testid=bill-projected]", timeout=20_000)
    shown_bill = page.get_attribute("[data-testid=bill-projected]", "data-value")
    after = off_loop(_projected, user=home["user"], facility=home["facility"])
    # The draft moves only when a quarter hour completes; the app's figure is the service's then or now.
    assert shown_bill in {before, after}

    # Revoked tokens: the next call is a 401, the refresh is refused, and the app asks to sign in again;
    # one click (the portal session) brings the user back to the same screen.
    off_loop(_revoke_tokens, user=home["user"])
    page.goto(f"{portal}/app/#devices")
    page.wait_for_selector("[data-testid=sign-in]", timeout=15_000)
    page.click("[data-testid=sign-in]")
    page.wait_for_selector("nav a[aria-current=page]", timeout=15_000)
    assert page.url.endswith("#devices")

    for screen in SCREENS:
        page.goto(f"{portal}/app/#{screen}")
        page.wait_for_selector("nav a[aria-current=page]")
        page.wait_for_timeout(300)
        _no_sideways_scroll(page)
    ARTIFACTS.mkdir(exist_ok=True)

    # Settings: the language and the notification address are saved on the user through /api/v1/me/.
    page.goto(f"{portal}/app/#settings")
    new_address = f"home-{width}@example.com"
    page.fill("#email", new_address)
    page.click("[data-testid=email-form] button[type=submit]")
    page.wait_for_selector("[data-testid=email-note]", timeout=10_000)
    assert new_address in (page.text_content("[data-testid=email-note]") or "")
    assert off_loop(_settings_of, user=home["user"])[:2] == (new_address, False)
    for chosen, settings_word in (("de", "Einstellungen"), ("en", "Settings")):
        with page.expect_response(lambda r: r.url.endswith("/api/v1/me/") and r.request.method == "PATCH") as saved:
            page.select_option("section select", chosen)
        assert saved.value.ok
        assert page.text_content("nav a[aria-current=page]") == settings_word
        assert off_loop(_settings_of, user=home["user"])[2] == chosen

    # The household's own tariff: the Settings screen shows the API's figures, and after saving a price
    # of its own the Bill screen's projection is the billing service's for the new tariff.
    page.goto(f"{portal}/app/#bill")
    page.wait_for_selector("[data-testid=bill-projected]", timeout=20_000)
    old_bill = page.get_attribute("[data-testid=bill-projected]", "data-value")
    page.goto(f"{portal}/app/#settings")
    page.wait_for_selector("[data-testid=tariff-current]", timeout=15_000)
    tariff = off_loop(_tariff_of, user=home["user"], facility=home["facility"])
    assert tariff is not None
    assert page.get_attribute("[data-testid=tariff-price]", "data-value") == str(tariff.price_per_kwh)
    assert page.get_attribute("[data-testid=tariff-standing]", "data-value") == str(tariff.standing_charge_per_month)
    page.fill("[data-testid=tariff-form] input[name=price]", "1.5")
    page.fill("[data-testid=tariff-form] input[name=standing]", "300")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/me/tariff/") and r.request.method == "PUT") as put:
        page.click("[data-testid=tariff-form] button[type=submit]")
    assert put.value.ok
    page.wait_for_selector("[data-testid=tariff-note].ok", timeout=10_000)
    assert page.get_attribute("[data-testid=tariff-price]", "data-value") == "1.500000"
    own = off_loop(_tariff_of, user=home["user"], facility=home["facility"])
    assert own is not None and own.contract_id != tariff.contract_id and own.currency == tariff.currency
    before = off_loop(_projected, user=home["user"], facility=home["facility"])
    page.goto(f"{portal}/app/#bill")
    page.wait_for_function(
        "(old) => document.querySelector('[data-testid=bill-projected]')?.dataset.value !== old"
        " && document.querySelector('[data-testid=age]:not(.offline)')",
        arg=old_bill,
        timeout=20_000,
    )
    shown_bill = page.get_attribute("[data-testid=bill-projected]", "data-value")
    after = off_loop(_projected, user=home["user"], facility=home["facility"])
    assert shown_bill in {before, after}
    _no_sideways_scroll(page)

    page.goto(f"{portal}/app/#now")
    page.wait_for_function("() => document.querySelector('[data-testid=live-kw]')?.dataset.at > 0", timeout=15_000)
    page.evaluate("() => navigator.serviceWorker.ready.then(() => true)")
    last = page.text_content("[data-testid=live-kw]")
    context.set_offline(True)
    page.reload()
    page.wait_for_selector("[data-testid=age].offline", timeout=15_000)
    assert page.text_content("[data-testid=live-kw]") == last
    assert "Offline" in (page.text_content("[data-testid=age]") or "")
    page.screenshot(path=str(ARTIFACTS / f"consumer-app-offline-{width}.png"), full_page=True)
    context.set_offline(False)
    assert errors == []
    context.close()
