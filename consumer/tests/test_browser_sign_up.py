"""A household's first minutes in Debian's Chromium at a phone's size, against Daphne, a real SMTP server
(aiosmtpd) and the simulator: sign up from the app, confirm the address by the mailed link, claim the
meter with the serial and claim code of its label, and see its live power over the websocket."""

from __future__ import annotations

import re
import time
from types import SimpleNamespace

import pytest

from accounts.models import Tenant, User
from accounts.tests.test_invitations import smtp  # noqa: F401 - the fixture
from consumer.tests.test_browser_app import _no_sideways_scroll
from devices.demo import METER_1
from devices.models import Device
from devices.services import factory_device_create
from devices.tests.factories import DeviceTypeFactory
from portal.tests.servers import SimulatorThread, daphne, server_env
from portal.tests.test_browser import device_spec, off_loop, simulated

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]

ADDRESS = "new.home@example.com"


@pytest.fixture
def mailing_portal(smtp, settings, postgresql_url, redis_url):  # type: ignore[no-untyped-def]  # noqa: F811
    """Daphne whose mail goes to the test's SMTP server."""
    env = {
        **server_env(),
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": settings.EMAIL_HOST,
        "EMAIL_PORT": str(settings.EMAIL_PORT),
    }
    with daphne(env) as base_url:
        yield base_url, smtp


def _mailed_link(inbox, to: str, timeout: float = 15) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not any(to in rcpts for rcpts, _message in inbox.messages):
        assert time.monotonic() < deadline, f"no mail to {to} in {timeout} s"
        time.sleep(0.1)
    _rcpts, message = next((r, m) for r, m in inbox.messages if to in r)
    body = message.get_payload(decode=True).decode()
    return re.search(r"https?://\S+/manage/verify-email/\S+/", body).group(0)  # type: ignore[union-attr]


def _household(*, email: str) -> tuple[str, str]:
    user = User.objects.get(email=email)
    tenant = user.memberships.get().tenant
    return tenant.kind, str(user.email_verified)


def _label() -> SimpleNamespace:
    issued = factory_device_create(serial="EB-HOME-0001", device_type=DeviceTypeFactory(channels=METER_1))
    return SimpleNamespace(claim_code=issued.claim_code, pem=issued.private_key_pem)


def _spec(*, pem: str):  # type: ignore[no-untyped-def]
    device = Device.objects.get(serial="EB-HOME-0001")
    return device_spec(SimpleNamespace(device=device, private_key_pem=pem), load_kind="appliances")  # type: ignore[arg-type]


def test_sign_up_verify_claim_and_see_live_power(mailing_portal, gateway_port, browser):
    portal, inbox = mailing_portal
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-GB")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(f"{portal}/app/")
    page.click("[data-testid=sign-up]")
    page.wait_for_selector("#sign-up-form")
    _no_sideways_scroll(page)
    page.fill("#id_email", ADDRESS)
    page.fill("#id_password", "a long enough passphrase 42")
    page.fill("#id_household_name", "Our flat")
    page.click("#sign-up-form button[type=submit]")
    page.wait_for_selector(f"[data-signed-up='{ADDRESS}']")
    assert off_loop(_household, email=ADDRESS) == (Tenant.Kind.CONSUMER, "False")

    page.goto(_mailed_link(inbox, ADDRESS))
    page.wait_for_selector("[data-email-verified=yes]")
    assert off_loop(_household, email=ADDRESS) == (Tenant.Kind.CONSUMER, "True")

    # Signed in to the portal by the sign-up, the app needs one click; the household claims its meter.
    label = off_loop(_label)
    page.goto(f"{portal}/app/#devices")
    page.click("[data-testid=sign-in]")
    page.wait_for_selector("form.claim", timeout=15_000)
    page.fill("form.claim input[name=serial]", "EB-HOME-0001")
    page.fill("form.claim input[name=claim_code]", label.claim_code)
    page.click("form.claim button[type=submit]")
    page.wait_for_selector("[data-testid=claim-result].ok", timeout=10_000)

    meter = simulated(off_loop(_spec, pem=label.pem), port_and_ca=gateway_port)
    with SimulatorThread([meter]):
        page.goto(f"{portal}/app/#now")
        page.wait_for_function(
            "() => { const el = document.querySelector('[data-testid=live-kw]');"
            " return el && el.dataset.at > 0 && el.dataset.via === 'socket'; }",
            timeout=30_000,
        )
        assert (page.text_content("[data-testid=live-kw]") or "").endswith("kW")
    assert errors == []
    context.close()
