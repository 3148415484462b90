"""The Alerts page in Debian's headless Chromium (Playwright) against Daphne, on the demo fleet, at phone width."""

from __future__ import annotations

import numpy as np
import pytest

from accounts.selectors import access_for_tenant
from alerts import services
from alerts.evaluation import readings_evaluate
from alerts.models import Alert, AlertRule, Webhook
from devices.demo import seed_demo
from devices.models import Channel
from integrations.scopes import ALERTS_READ
from integrations.tests.factories import AccessTokenFactory, ApplicationFactory
from portal.tests.test_browser import ARTIFACTS, off_loop, sign_in
from readings.batch import ReadingsBatch

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def warm_cold_room() -> dict:
    seed_demo()
    air = (
        Channel.objects.filter(device__name="Cold room climate", quantity="temperature")
        .select_related("device")
        .first()
    )
    device = air.device
    access = access_for_tenant(tenant=device.tenant)
    services.alert_rule_create(
        access=access,
        spec=services.RuleSpec(name="Cold room limit", kind="temperature", device_id=device.pk, threshold=5, unit="°C"),
    )
    batch = ReadingsBatch(
        tenant_id=device.tenant_id,
        device_id=device.pk,
        seq=1,
        channel_ids=np.array([air.pk], dtype=np.int64),
        timestamps_ms=np.array([1_764_170_000_000], dtype=np.int64),
        values=np.array([[9.4]]),
    )
    readings_evaluate(batches=[batch])
    token = AccessTokenFactory(application=ApplicationFactory(tenant=device.tenant), scope=ALERTS_READ)
    return {"alert": Alert.objects.get(), "token": token.token}


def test_a_tenant_admin_sees_the_alert_and_its_badge_and_acknowledges_it_on_a_phone(
    warm_cold_room, portal, browser, client
):
    alert = warm_cold_room["alert"]
    page = browser.new_page(viewport={"width": 390, "height": 844})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_in(page, portal, "/alerts/")
        row = page.locator(f'[data-alert="{alert.pk}"]')
        row.wait_for(timeout=10_000)
        auth = f"Bearer {warm_cold_room['token']}"
        api = off_loop(lambda: client.get(f"/api/v1/alerts/{alert.pk}/", HTTP_AUTHORIZATION=auth).json())
        assert f"{api['value']:.1f}" in row.inner_text()  # the API's figure
        page.wait_for_selector('[data-alert-badge][data-live="1"]', timeout=10_000)
        assert page.locator("[data-alert-badge]").inner_text() == "1"
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        row.locator('input[name="comment"]').fill("Door was left ajar, closed it")
        row.locator("button[type=submit]").click()
        page.wait_for_selector(f'[data-alert="{alert.pk}"][data-state="acknowledged"]', timeout=10_000)
        stored = off_loop(lambda: Alert.objects.get(pk=alert.pk))
        assert stored.state == Alert.State.ACKNOWLEDGED and stored.comment == "Door was left ajar, closed it"
        assert errors == []
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "alerts-acknowledge.png"), full_page=True)
        raise


def test_the_rule_webhook_cold_unit_and_preference_pages_fit_a_phone_and_work(warm_cold_room, portal, browser):
    tenant_id = warm_cold_room["alert"].tenant_id
    hook = off_loop(
        lambda: Webhook.objects.create(
            tenant_id=tenant_id, name="Ops", url="https://hooks.example.com/energybox", secret="s"
        )
    )
    page = browser.new_page(viewport={"width": 390, "height": 844})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_in(page, portal, "/alerts/webhooks/")
        page.wait_for_selector(f'[data-webhook="{hook.pk}"]', timeout=10_000)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        # The portal's server has no allow-list: a loopback target is refused there and nothing is stored.
        page.fill('input[name="name"]', "Loopback")
        page.fill('input[name="url"]', "https://127.0.0.1:8443/hook")
        page.click("form.stacked button[type=submit]")
        page.wait_for_selector("text=non-public address", timeout=10_000)
        page.locator(f'[data-webhook="{hook.pk}"] button[type=submit]').click()
        page.wait_for_selector("text=No webhooks yet.", timeout=10_000)
        for path in ("/alerts/rules/", "/alerts/cold-units/", "/alerts/preferences/"):
            page.goto(portal + path)
            page.wait_for_selector("form.stacked", timeout=10_000)
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
        page.goto(portal + "/alerts/rules/")
        page.locator('[data-rule] a[href$="/"]').first.click()
        page.fill('input[name="name"]', "Cold room limit (changed)")
        page.click("form.stacked button[type=submit]")
        page.wait_for_selector("text=Cold room limit (changed)", timeout=10_000)
        assert off_loop(lambda: Webhook.objects.exists()) is False
        assert off_loop(lambda: AlertRule.objects.get().name) == "Cold room limit (changed)"
        assert errors == []
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "alerts-settings.png"), full_page=True)
        raise
