"""The park set up in a real browser, end to end: Debian's headless Chromium, Daphne, the gateway and the
device simulator, all real. A tenant admin creates a facility and its loads, bulk-provisions two devices
from a CSV, allocates their channels in place; the simulator streams with the downloaded keys, and the new
facility's dashboard shows the live values."""

from __future__ import annotations

import json
import re
import time

import pytest

from accounts.models import Role
from accounts.tests.factories import USER_PASSWORD, MembershipFactory
from devices.keys import private_key_load
from devices.models import Channel, Device, Facility
from devices.tests.factories import DeviceTypeFactory, FacilityFactory
from gateway.simulator import ChannelSpec, DeviceSpec
from portal.tests.servers import SimulatorThread
from portal.tests.test_browser import (  # noqa: F401  (fixtures)
    ARTIFACTS,
    browser,
    chromium,
    gateway_port,
    next_acked,
    off_loop,
    portal,
    simulated,
)

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]

TYPE = "EB-Duo"


@pytest.fixture
def admin():
    """A tenant admin (with one facility already) and a device type; made before `browser` starts its loop."""
    FacilityFactory(name="Zentrale")
    membership = MembershipFactory(tenant=Facility.objects.get(name="Zentrale").tenant, role=Role.ADMIN)
    DeviceTypeFactory(model_name=TYPE)
    return membership.user


def sign_in(page, base_url: str, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base_url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", USER_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")


def specs_from_keys(keys: dict[str, str]) -> list[DeviceSpec]:
    specs = []
    for serial, pem in sorted(keys.items()):
        device = Device.objects.get(serial=serial)
        channels = device.channels.order_by("index")
        specs.append(
            DeviceSpec(
                serial=serial,
                private_key=private_key_load(pem).private_bytes_raw(),
                channels=tuple(ChannelSpec(c.quantity, c.scale, c.phase) for c in channels),
                load_kind="refrigeration",
                name=device.name,
            )
        )
    return specs


def channel_rows(serial: str) -> list[tuple[int, int, int | None]]:
    return list(Channel.objects.filter(device__serial=serial).order_by("index").values_list("pk", "index", "load_id"))


def test_a_tenant_admin_sets_up_a_facility_in_the_browser_and_its_dashboard_goes_live(
    admin,
    portal,  # noqa: F811
    gateway_port,  # noqa: F811
    browser,  # noqa: F811
):
    page = browser.new_page(viewport={"width": 1280, "height": 1200})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, portal, admin.username)

    # 1. A facility, through the menu, with a time zone from the picker and opening hours from the form.
    page.click('.menu a:text("Facilities")')
    page.click('a:text("Add facility")')
    page.fill("#id_name", "Markt Graz")
    page.fill("#id_timezone", "Europe/Vienna")
    page.select_option("#id_kind", "supermarket")
    page.fill("#id_mon_0_open", "07:00")
    page.fill("#id_mon_0_close", "20:00")
    page.fill("#id_peak_target_kw", "55")
    page.click("#facility-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/manage/facilities/\d+/$"))
    facility_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    for load in ("Kühlung", "Licht"):
        page.fill("#load-form #id_name", load)
        page.select_option("#load-form #id_kind", "refrigeration" if load == "Kühlung" else "lighting")
        page.click("#load-form button[type=submit]")
        page.wait_for_selector(f'#loads td:text("{load}")')

    # 2. Two devices from a CSV as German Excel writes it; a dry run first.
    page.click('.menu a:text("Devices")')
    page.click('a:text("Import from CSV")')
    csv = "serial;type;facility;name\r\nGRZ-0001;EB-Duo;Markt Graz;Kühltheke\r\nGRZ-0002;EB-Duo;Markt Graz;Decke\r\n"
    page.set_input_files(
        'input[name="file"]', files=[{"name": "geraete.csv", "mimeType": "text/csv", "buffer": csv.encode("cp1252")}]
    )
    page.click("#import-check")
    page.wait_for_selector("#import-preview")
    assert page.locator("#import-preview tr").count() == 2
    assert off_loop(lambda: Device.objects.filter(serial__startswith="GRZ-").count()) == 0
    page.click("#import-run")
    page.wait_for_selector("#import-keys")
    with page.expect_download() as download:
        page.click("#import-keys")
    keys = json.loads(open(download.value.path(), encoding="utf-8").read())
    assert sorted(keys) == ["GRZ-0001", "GRZ-0002"]

    # 3. Every channel allocated in place on its device's page; unallocated ones stand out until then.
    loads = {"GRZ-0001": "Kühlung", "GRZ-0002": "Licht"}
    for serial, load_name in loads.items():
        device_id = off_loop(lambda serial=serial: Device.objects.get(serial=serial).pk)
        if page.url.endswith("/import/"):
            page.click(f'#import-result a:text("{serial}")')  # the import's result links to the new devices
            page.wait_for_url(f"{portal}/manage/devices/{device_id}/")
        else:
            page.goto(f"{portal}/manage/devices/{device_id}/")
        assert page.locator("tr.unallocated").count() == 2
        for channel_id, _index, _load in off_loop(channel_rows, serial=serial):
            row = f'tr[data-channel-id="{channel_id}"]'
            page.select_option(f"{row} select", label=load_name)
            page.click(f"{row} button[type=submit]")
            page.wait_for_load_state()
        assert page.locator("tr.unallocated").count() == 0
    for serial in loads:
        assert all(load is not None for _pk, _index, load in off_loop(channel_rows, serial=serial))

    # 4. The simulator streams with the downloaded keys; 5. the new facility's dashboard shows the values.
    page.goto(f"{portal}/facilities/{facility_id}/")
    page.wait_for_selector('.live-state[data-state="live"]', timeout=10_000)
    specs = off_loop(specs_from_keys, keys=keys)
    meters = [simulated(spec, port_and_ca=gateway_port) for spec in specs]
    power = {serial: off_loop(channel_rows, serial=serial)[0][0] for serial in loads}
    with SimulatorThread(meters):
        for meter in meters:
            # The next frame the gateway acks, as the simulator sent it, is the point the dashboard shows.
            sample_ms, watts = next_acked(meter, 0, after=len(meter.acked))
            channel_id = power[meter.spec.serial]
            page.wait_for_function(
                """([channel, ts, watts]) => {
                    const p = window.energyboxDashboard.lastPoint(channel);
                    return p !== null && p.t === ts && p.v === watts;
                }""",
                arg=[channel_id, sample_ms, watts],
                timeout=5_000,
            )
            shown = page.text_content(f'[data-channel-last="{channel_id}"]')
            assert shown is not None and abs(float(shown.replace(",", "")) - watts) < 0.051
        started = time.time()
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-device-status]')].every((e) => e.textContent === 'online')",
            timeout=10_000,
        )
        assert time.time() - started < 10
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "park-setup-dashboard.png"), full_page=True)
    assert errors == []


@pytest.fixture
def roles():
    """A facility with a device, a viewer and a facility manager granted only that facility."""
    from devices.tests.factories import DeviceFactory

    device = DeviceFactory()
    other = FacilityFactory(tenant=device.tenant, name="Nicht freigegeben")
    viewer = MembershipFactory(tenant=device.tenant, role=Role.VIEWER).user
    manager = MembershipFactory(tenant=device.tenant, role=Role.FACILITY_MANAGER, facilities=[device.facility]).user
    return {"device": device, "other": other, "viewer": viewer, "manager": manager}


def test_a_viewer_sees_no_controls_and_a_facility_manager_only_those_of_the_grant(roles, portal, browser):  # noqa: F811
    device, other = roles["device"], roles["other"]
    page = browser.new_page()
    sign_in(page, portal, roles["viewer"].username)
    page.goto(f"{portal}/manage/devices/{device.pk}/")
    assert page.locator("#channels tr[data-channel-id]").count() == 2
    assert page.locator("#device-actions").count() == 0 and page.locator("form.allocate").count() == 0
    assert page.locator('.menu a:text("Users")').count() == 0
    page.goto(f"{portal}/manage/facilities/new/")
    assert page.locator('h1:text("Not allowed")').count() == 1
    page.goto(f"{portal}/manage/devices/")
    assert page.locator('a:text("Import from CSV")').count() == 0

    page = browser.new_page()
    sign_in(page, portal, roles["manager"].username)
    page.goto(f"{portal}/manage/devices/{device.pk}/")
    assert page.locator("#device-actions").count() == 1 and page.locator("form.allocate").count() == 2
    page.goto(f"{portal}/manage/facilities/{device.facility_id}/")
    assert page.locator("#load-form").count() == 1
    response = page.goto(f"{portal}/manage/facilities/{other.pk}/")
    assert response is not None and response.status == 404
