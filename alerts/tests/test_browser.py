"""The Alerts page in Debian's headless Chromium (Playwright) against Daphne, on the demo fleet, at phone width."""

from __future__ import annotations

import numpy as np
import pytest

from accounts.selectors import access_for_tenant
from alerts import services
from alerts.evaluation import readings_evaluate
from alerts.models import Alert, AlertRule, Webhook
from alerts.tests.factories import COLD_ROOM
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


@pytest.fixture
def door_history() -> dict:
    """A cold room in the demo supermarket whose door was open, shut, open and shut again in the last minutes."""
    import time

    from devices import services as device_services
    from devices.models import Facility
    from integrations.scopes import READINGS_READ
    from readings import metadata
    from readings.services import readings_ingest

    seed_demo()
    market = Facility.objects.get(name="Supermarket Berlin Mitte")
    device_type = device_services.device_type_create(
        model_name="EB-CR cold room", channels=COLD_ROOM, firmware_line="x"
    )
    room = device_services.device_create(
        tenant=market.tenant, facility=market, device_type=device_type, serial="SN-BANDS-1", name="Freezer room"
    )
    metadata.clear_caches()
    door = room.channels.get(quantity="door")
    now_ms = int(time.time() * 1000)
    start_ms = (now_ms - 10 * 60_000) // 10_000 * 10_000
    # Every 10 s for 9.5 minutes: open 2 min, shut 3 min, open 1 min, then shut.
    ts = start_ms + 10_000 * np.arange(57, dtype=np.int64)
    minute = (ts - start_ms) / 60_000
    state = (((minute >= 1) & (minute < 3)) | ((minute >= 6) & (minute < 7))).astype(float)
    readings_ingest(
        batches=[
            ReadingsBatch(
                tenant_id=room.tenant_id,
                device_id=room.pk,
                seq=1,
                channel_ids=np.array([door.pk], dtype=np.int64),
                timestamps_ms=ts,
                values=state[None, :],
            )
        ]
    )
    token = AccessTokenFactory(application=ApplicationFactory(tenant=room.tenant), scope=READINGS_READ)
    return {"room": room, "door": door, "start_ms": start_ms, "token": token.token}


def spans(points: list[tuple[int, float]]) -> list[tuple[int, int, bool]]:
    """Door states as [start, end) spans: each reading holds until the next one (the newest left open: -1)."""
    out: list[tuple[int, int, bool]] = []
    for i, (t, v) in enumerate(points):
        end = points[i + 1][0] if i + 1 < len(points) else -1
        on = v >= 0.5
        if out and out[-1][2] == on and out[-1][1] == t:
            out[-1] = (out[-1][0], end, on)
        else:
            out.append((t, end, on))
    return out


def test_a_door_channel_is_drawn_as_state_bands_that_match_the_apis_readings(door_history, portal, browser, client):
    import datetime as dt

    room, door = door_history["room"], door_history["door"]
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_in(page, portal, f"/devices/{room.pk}/")
        page.wait_for_selector('[data-chart-kind="state"]', timeout=15_000)
        page.wait_for_function(f"window.energyboxDashboard.bands({door.pk}).length >= 4", timeout=15_000)
        assert page.evaluate(f"window.energyboxDashboard.chartKind({door.pk})") == "state"
        drawn = page.evaluate(f"window.energyboxDashboard.bands({door.pk})")
        start = dt.datetime.fromtimestamp(door_history["start_ms"] / 1000, tz=dt.UTC)
        auth = f"Bearer {door_history['token']}"
        query = {
            "channel": door.pk,
            "start": start.isoformat(),
            "end": (start + dt.timedelta(minutes=15)).isoformat(),
            "resolution": "raw",
        }
        api = off_loop(lambda: client.get("/api/v1/readings/series/", query, HTTP_AUTHORIZATION=auth).json())
        (series,) = api["series"]
        points = [(int(dt.datetime.fromisoformat(p["t"]).timestamp() * 1000), p["value"]) for p in series["points"]]
        expected = spans(points)
        assert [b["on"] for b in drawn] == [on for _, _, on in expected] == [False, True, False, True, False]
        for band, (first, end, _) in zip(drawn[:-1], expected[:-1], strict=True):
            assert (band["start"], band["end"]) == (first, end)
        assert drawn[-1]["start"] == expected[-1][0] and drawn[-1]["end"] > points[-1][0]  # the newest holds till now
        # The open spans are painted in the channel's colour, the shut ones in grey: a band, not a line.
        colour = page.evaluate(f"window.energyboxDashboard.color({door.pk})")
        rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
        for i, band in enumerate(drawn):
            pixel = page.evaluate(f"window.energyboxDashboard.bandPixel({door.pk}, {i})")
            assert pixel[:3] == (rgb if band["on"] else [0xE3, 0xE6, 0xEB]), (i, pixel)
        assert page.locator(f'[data-channel-last="{door.pk}"]').inner_text() == "off"
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(f'.load:has([data-channels="{door.pk}"])').screenshot(path=str(ARTIFACTS / "state-bands.png"))
        assert errors == []
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "state-bands-failed.png"), full_page=True)
        raise
