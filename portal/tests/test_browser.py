"""The live pages in a real browser: Debian's headless Chromium, driven by Playwright, against Daphne.

Daphne runs in a subprocess on the test database and the real Redis channel layer; readings are
published on that layer exactly as `readings/live.py` says. Screenshots go to `test-artifacts/`.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync

from devices.demo import DEMO_PASSWORD, seed_demo
from devices.models import Channel, Facility
from portal.tests.history import seed_history
from portal.tests.live import publish_readings, publish_status
from portal.tests.servers import ROOT, daphne, server_env
from readings import metadata

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        message = "Debian's chromium is not installed (apt-get install chromium; .ci/run does it)"
        if os.environ.get("ENERGYBOX_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
def portal(postgresql_url: str, redis_url: str):  # type: ignore[no-untyped-def]
    """Daphne serving the portal, sharing this test's database and channel layer."""
    with daphne(server_env()) as base_url:
        yield base_url


@pytest.fixture
def browser(chromium: str):  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def off_loop(fn, /, **kwargs):  # type: ignore[no-untyped-def]
    """Run sync code that must not share a thread with Playwright's event loop (the ORM, async_to_sync)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, **kwargs).result()


def publish(*, device_id: int, facility_id: int, values: dict[int, float]) -> int:
    now = int(time.time() * 1000)
    off_loop(
        async_to_sync(publish_readings),
        device_id=device_id,
        facility_id=facility_id,
        ts=[now],
        values={k: [v] for k, v in values.items()},
    )
    return now


@pytest.fixture
def demo() -> dict:
    """The seeded demo fleet with stored history; requested before `browser`, whose event loop rules out the ORM."""
    seed_demo()
    metadata.clear_caches()
    market = Facility.objects.get(name="Supermarket Berlin Mitte")
    seed_history(market, now_ms=int(time.time() * 1000) - 4_000)
    station = Facility.objects.get(name="Petrol Station A9 Leipzig")
    main = market.devices.get(name="Main distribution")
    fridges = market.devices.get(name="Cold room compressors")
    pumps = station.devices.get(name="Pump island")
    return {
        "market": market,
        "station": station,
        "main": main,
        "fridges": fridges,
        "pumps": pumps,
        "main_total": Channel.objects.get(device=main, name="P total"),
        "fridge_total": Channel.objects.get(device=fridges, name="P total"),
        "pumps_total": Channel.objects.get(device=pumps, name="P total"),
    }


def sign_in(page, base_url: str, next_path: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base_url}/login/?next={next_path}")
    page.fill("#id_username", "retail-admin")
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}{next_path}")


def test_the_facility_dashboard_shows_new_readings_live_within_5_seconds(demo, portal, browser):
    facility, main, fridges = demo["market"], demo["main"], demo["fridges"]
    main_total, fridge_total = demo["main_total"], demo["fridge_total"]
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, portal, f"/facilities/{facility.pk}/")
    page.wait_for_selector('.live-state[data-state="live"]', timeout=10_000)

    # A few seconds of history so the charts have lines, then the reading the test looks for.
    for i in range(5):
        publish(device_id=fridges.pk, facility_id=facility.pk, values={fridge_total.pk: 7000.0 + 150 * i})
        publish(device_id=main.pk, facility_id=facility.pk, values={main_total.pk: 18000.0 + 400 * i})
        time.sleep(0.45)
    off_loop(async_to_sync(publish_status), device_id=main.pk, facility_id=facility.pk, online=True, last_seen_ms=None)
    time.sleep(2.1)  # the 2-second rule: the next reading of each device goes out at once
    sent = publish(device_id=main.pk, facility_id=facility.pk, values={main_total.pk: 23456.0})
    started = time.monotonic()

    page.wait_for_function(
        """([channel, ts]) => {
            const p = window.energyboxDashboard.lastPoint(channel);
            return p !== null && p.t === ts && p.v === 23456
               && document.querySelector('[data-figure="total_kw"]').textContent === "23.46";
        }""",
        arg=[main_total.pk, sent],
        timeout=5_000,
    )
    assert time.monotonic() - started < 5
    assert page.text_content(f'[data-channel-last="{main_total.pk}"]') == "23,456.0"
    assert page.text_content(f'[data-load-kw="{main_total.load_id}"]') == "23.46"
    assert page.text_content(f'[data-device-status="{main.pk}"]') == "online"
    assert page.text_content('[data-figure="projection_kw"]') not in ("", "–")
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(1200)  # one redraw tick so the screenshot shows the newest point
    page.screenshot(path=str(ARTIFACTS / "facility-dashboard.png"), full_page=True)
    assert errors == []


def test_the_park_overview_updates_a_facility_row_live(demo, portal, browser):
    facility, pumps, pumps_total = demo["station"], demo["pumps"], demo["pumps_total"]
    page = browser.new_page(viewport={"width": 1280, "height": 700})
    sign_in(page, portal, "/")
    page.wait_for_selector('.live-state[data-state="live"]', timeout=10_000)
    market, main, main_total = demo["market"], demo["main"], demo["main_total"]
    publish(device_id=main.pk, facility_id=market.pk, values={main_total.pk: 31500.0})
    publish(device_id=pumps.pk, facility_id=facility.pk, values={pumps_total.pk: 4321.0})
    row = f'tr[data-facility-id="{facility.pk}"]'
    page.wait_for_function(
        "sel => document.querySelector(sel + ' [data-cell=\"power\"]').textContent === '4.3'", arg=row, timeout=5_000
    )
    assert page.text_content(f'tr[data-facility-id="{market.pk}"] [data-cell="power"]') == "31.5"
    assert page.text_content(f'{row} [data-cell="online"]') == "1"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "park-overview.png"), full_page=True)
    # Filtering by kind leaves only the petrol station, still live.
    page.select_option('select[name="kind"]', "petrol_station")
    page.wait_for_url(f"{portal}/?kind=petrol_station&tag=")
    page.wait_for_selector('.live-state[data-state="live"]', timeout=10_000)
    assert page.locator("tr[data-facility-id]").count() == 1


def test_the_dashboard_shows_reconnecting_when_the_connection_drops_and_live_once_it_is_back(demo, portal, browser):
    facility = demo["market"]
    page = browser.new_page()
    sign_in(page, portal, f"/facilities/{facility.pk}/")
    page.wait_for_selector('.live-state[data-state="live"]', timeout=10_000)
    # Drop the socket from the browser's side, as a network change would.
    page.evaluate("window.EnergyboxLive.connections.forEach((c) => c.drop())")
    page.wait_for_selector('.live-state[data-state="reconnecting"]', timeout=5_000)
    page.wait_for_selector('.live-state[data-state="live"]', timeout=10_000)
