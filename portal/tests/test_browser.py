"""The live pages in a real browser: Debian's headless Chromium, driven by Playwright, against Daphne.

The whole live path runs for real: the device simulator streams 2-second batches over TLS to the
gateway (`manage.py rungateway`, a subprocess), which stores them and publishes them on the Redis
channel layer; Daphne (a subprocess) serves the portal and its consumers. Both share this test's
database. Screenshots go to `test-artifacts/`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync

from devices.demo import DEMO_PASSWORD, seed_demo
from devices.keys import private_key_load
from devices.models import Channel, Facility
from devices.services import IssuedKey, device_key_rotate
from gateway.simulator import ChannelSpec, DeviceSpec, SimulatedDevice
from gateway.tls import client_context
from portal.tests.history import seed_history
from portal.tests.live import publish_readings
from portal.tests.servers import ROOT, SimulatorThread, daphne, gateway, server_env
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
def gateway_port(postgresql_url: str, redis_url: str, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The device gateway, sharing this test's database and channel layer."""
    with gateway({**server_env(), "ENERGYBOX_DATA_DIR": str(tmp_path)}) as port_and_ca:
        yield port_and_ca


def device_spec(issued: IssuedKey, *, load_kind: str) -> DeviceSpec:
    device = issued.device
    return DeviceSpec(
        serial=device.serial,
        private_key=private_key_load(issued.private_key_pem).private_bytes_raw(),
        channels=tuple(ChannelSpec(c.quantity, c.scale, c.phase) for c in device.channels.order_by("index")),
        load_kind=load_kind,
        name=device.name,
    )


def simulated(spec: DeviceSpec, *, port_and_ca: tuple[int, Path]) -> SimulatedDevice:
    port, ca = port_and_ca
    return SimulatedDevice(
        spec,
        host="127.0.0.1",
        port=port,
        ssl_context=client_context(cafile=ca),
        batch=1,
        interval_ms=2000,
        realtime=True,
        record=True,
        seed=7,
    )


def next_acked(device: SimulatedDevice, channel_index: int, *, after: int, timeout: float = 15) -> tuple[int, float]:
    """(sample time, value) of the next batch the gateway acked after the first `after` ones."""
    deadline = time.monotonic() + timeout
    while len(device.acked) <= after:
        assert time.monotonic() < deadline, f"the gateway acked no batch of {device.spec.serial} in {timeout} s"
        time.sleep(0.02)
    batch = device.acked[after]
    scale = device.spec.channels[channel_index].scale
    return batch.start_ms, float(batch.raw[channel_index][0]) * scale


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
        # Fresh key pairs: the simulator authenticates as these devices with the private halves.
        "main_spec": device_spec(device_key_rotate(device=main), load_kind="mains"),
        "pumps_spec": device_spec(device_key_rotate(device=pumps), load_kind="fuel_pumps"),
        "market": market,
        "station": station,
        "main": main,
        "fridges": fridges,
        "pumps": pumps,
        "main_total": Channel.objects.get(device=main, name="P total"),
        "fridge_total": Channel.objects.get(device=fridges, name="P total"),
        "pumps_total": Channel.objects.get(device=pumps, name="P total"),
    }


def shown_kw(text: str) -> float:
    """A power as the portal shows it ("31.5 kW", or "845 W" below 1 kW), in kW."""
    number, unit = text.replace(",", "").split()
    return float(number) / (1000 if unit == "W" else 1)


def sign_in(page, base_url: str, next_path: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base_url}/login/?next={next_path}")
    page.fill("#id_username", "retail-admin")
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}{next_path}")


def test_the_facility_dashboard_shows_the_simulators_readings_within_5_seconds(demo, portal, gateway_port, browser):
    facility, main, main_total = demo["market"], demo["main"], demo["main_total"]
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, portal, f"/facilities/{facility.pk}/")
    page.wait_for_selector('.live-state[data-state="live"]', timeout=10_000)
    meter = simulated(demo["main_spec"], port_and_ca=gateway_port)

    with SimulatorThread([meter]):
        for n in range(3):  # three frames in a row, each on screen within 5 s of being sent
            sample_ms, watts = next_acked(meter, main_total.index, after=n)
            sent_at = (sample_ms + 2000) / 1000  # a real-time device sends a sample one interval after taking it
            page.wait_for_function(
                """([channel, ts, watts]) => {
                    const p = window.energyboxDashboard.lastPoint(channel);
                    const total = document.querySelector('[data-figure="total_kw"]').textContent;
                    const kw = parseFloat(total.replace(/,/g, "")) / (/ W$/.test(total) ? 1000 : 1);
                    return p !== null && p.t === ts && p.v === watts && Math.abs(kw - watts / 1000) < 0.0051;
                }""",
                arg=[main_total.pk, sample_ms, watts],
                timeout=max(100, (sent_at + 5 - time.time()) * 1000),
            )
            assert time.time() - sent_at < 5
        shown = page.text_content(f'[data-channel-last="{main_total.pk}"]')
        assert shown is not None and abs(float(shown.replace(",", "")) - watts) < 0.051
        assert page.text_content(f'[data-device-status="{main.pk}"]') == "online"
        kw = page.text_content(f'[data-load-kw="{main_total.load_id}"]')
        assert kw is not None and abs(shown_kw(kw) - watts / 1000) < 0.0051
        assert page.text_content('[data-figure="projection_kw"]') not in ("", "–")
        ARTIFACTS.mkdir(exist_ok=True)
        page.wait_for_timeout(1200)  # one redraw tick, so the screenshot shows the newest point
        page.screenshot(path=str(ARTIFACTS / "facility-dashboard.png"), full_page=True)
    assert errors == []


def test_the_park_overview_updates_a_facility_row_live(demo, portal, gateway_port, browser):
    facility, pumps_total = demo["station"], demo["pumps_total"]
    market, main, main_total = demo["market"], demo["main"], demo["main_total"]
    page = browser.new_page(viewport={"width": 1280, "height": 700})
    sign_in(page, portal, "/")
    page.wait_for_selector('.live-state[data-state="live"]', timeout=10_000)
    pumps = simulated(demo["pumps_spec"], port_and_ca=gateway_port)
    row = f'tr[data-facility-id="{facility.pk}"]'
    with SimulatorThread([pumps]):
        # Another facility's reading, through the channel layer as the gateway publishes it.
        publish(device_id=main.pk, facility_id=market.pk, values={main_total.pk: 31500.0})
        _, watts = next_acked(pumps, pumps_total.index, after=1)
        page.wait_for_function(
            """([sel, kw]) => {
                const text = document.querySelector(sel + ' [data-cell="power"]').textContent;
                const shown = parseFloat(text.replace(/,/g, "")) / (/ W$/.test(text) ? 1000 : 1);
                return Math.abs(shown - kw) < 0.051;
            }""",
            arg=[row, watts / 1000],
            timeout=5_000,
        )
        assert page.text_content(f'tr[data-facility-id="{market.pk}"] [data-cell="power"]') == "31.5 kW"
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


@pytest.fixture
def backfilled() -> dict:
    """The seeded demo with `make run`'s simulated history; requested before `browser` (the ORM is off its loop)."""
    from accounts.selectors import access_for_tenant
    from devices.demo import DEMO_TENANTS
    from gateway.backfill import demo_history_backfill
    from readings.selectors import readings_series

    seed_demo()
    now = int(time.time() * 1000)
    demo_history_backfill(tenant_slugs=DEMO_TENANTS, days=3, now_ms=now)
    metadata.clear_caches()
    market = Facility.objects.get(name="Supermarket Berlin Mitte")
    counter = Channel.objects.get(device__facility=market, device__name="Main distribution", name="E import")
    return {
        "market": market,
        "counter": counter,
        "now": now,
        "series": readings_series,
        "access": access_for_tenant(tenant=market.tenant),
    }


def test_after_the_demo_backfill_the_dashboard_shows_todays_kwh_and_the_month_peak_of_the_api(
    backfilled, portal, browser
):
    import datetime as dt
    from zoneinfo import ZoneInfo

    market, counter, now = backfilled["market"], backfilled["counter"], backfilled["now"]
    berlin = ZoneInfo(market.timezone)
    local = dt.datetime.fromtimestamp(now / 1000, tz=berlin)
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    quarter_start = local.replace(minute=local.minute - local.minute % 15, second=0, microsecond=0)

    # The API's figure, computed here: the mains counter's 15-minute deltas, × 4 for kW, completed quarters.
    def api_peak_kw() -> float:
        from django.db import connection

        try:
            answer = backfilled["series"](
                access=backfilled["access"],
                channel_ids=[counter.pk],
                start=month_start,
                end=quarter_start,
                resolution="15m",
            )[counter.pk]
        finally:
            connection.close()  # this helper thread's own connection
        inside = answer.timestamps_ms < int(quarter_start.timestamp() * 1000)
        return float((answer.values["delta"][inside] * 4 / 1000).max())

    expected = off_loop(api_peak_kw)
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    sign_in(page, portal, f"/facilities/{market.pk}/")
    page.wait_for_selector('.live-state[data-state="live"]', timeout=10_000)
    shown_peak = page.text_content('[data-figure="month_peak_kw"]')
    shown_today = page.text_content('[data-figure="energy_today_kwh"]')
    assert shown_peak not in (None, "", "–") and shown_today not in (None, "", "–")
    assert float(shown_peak.replace(",", "")) == pytest.approx(expected, abs=0.051)
    assert float(shown_today.replace(",", "")) > 0


@pytest.fixture
def spiked() -> dict:
    """The demo with one 2-second 500 kW reading on the supermarket's main meter an hour ago."""
    import numpy as np

    from readings.services import readings_ingest, rollups_refresh
    from readings.tests.factories import batch_for

    seed_demo()
    metadata.clear_caches()
    market = Facility.objects.get(name="Supermarket Berlin Mitte")
    total = Channel.objects.get(device__facility=market, device__name="Main distribution", name="P total")
    at = int(time.time() * 1000) - 3_600_000
    ts = at - at % 900_000 + np.arange(0, 900_000, 2_000)
    watts = np.full(len(ts), 20_000.0)
    watts[50] = 500_000.0
    readings_ingest(batches=[batch_for(total.device, [total], ts, [watts])])
    rollups_refresh()
    return {"market": market, "total": total}


def test_a_manager_confirms_an_implausible_reading_on_the_data_quality_page(spiked, portal, browser):
    from django.db import connection

    from readings.services import rollups_refresh

    def refresh() -> None:
        try:
            rollups_refresh()  # what the beat does every 10 s
        finally:
            connection.close()  # this helper thread's own connection

    market, total = spiked["market"], spiked["total"]
    page = browser.new_page()
    sign_in(page, portal, f"/facilities/{market.pk}/")
    page.click('[data-link="quality"]')
    page.wait_for_url(f"{portal}/facilities/{market.pk}/quality/")
    row = page.locator(f'tr[data-implausible="{total.pk}"]')
    assert row.count() == 1 and "500" in (row.text_content() or "")
    assert page.text_content('tr[data-flag="implausible"] td:nth-child(2)') == "1"
    page.click(f'button[data-confirm="{total.pk}"]')
    page.wait_for_selector(".message.success")
    off_loop(refresh)
    page.reload()
    page.wait_for_selector('[data-empty="implausible"]')
    assert page.text_content('tr[data-flag="implausible"] td:nth-child(2)') == "0"
