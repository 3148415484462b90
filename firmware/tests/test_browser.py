"""The firmware pages in a real browser: Debian's headless Chromium, driven by Playwright, against Daphne.

A tenant admin previews a rollout's wave plan, starts it, watches a device fail live over the
websocket with its reason, and pauses, resumes and cancels it with the page's buttons; and uploads an
image for the organisation's own device type with the Firmware page's form.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import connections

from accounts.tests.factories import USER_PASSWORD
from devices.models import Device
from devices.tests.factories import DeviceTypeFactory
from firmware.models import FirmwareImage, Rollout, RolloutDevice
from firmware.services import firmware_transfer_record
from firmware.services.rollouts import rollout_advance
from firmware.signing import signing_public_key
from firmware.tests.helpers import Fleet
from gateway.protocol import firmware_message
from portal.tests.servers import daphne, server_env
from portal.tests.test_browser import ARTIFACTS, browser, chromium, portal  # noqa: F401 - fixtures
from portal.tests.test_browser import off_loop as _off_loop

SIGNING_KEY = "42" * 32

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fleet(settings) -> Fleet:
    """Requested before `browser`, whose event loop rules out the ORM in the test's thread."""
    settings.FIRMWARE_SIGNING_KEY = "42" * 32
    fleet = Fleet(4)
    Device.objects.filter(pk=fleet.devices[0].pk).update(status=Device.Status.OFFLINE)
    Device.objects.filter(pk=fleet.devices[1].pk).update(firmware_version="0.9.0")
    return fleet


def off_loop(fn, /, **kwargs):  # type: ignore[no-untyped-def]
    """ORM work off Playwright's loop, closing the worker thread's connection so teardown can drop the database."""

    def run():  # type: ignore[no-untyped-def]
        try:
            return fn(**kwargs)
        finally:
            connections.close_all()

    return _off_loop(run)


def fail_first_device(rollout_id: int) -> str:
    rollout_advance(rollout_id=rollout_id)
    entry = RolloutDevice.objects.filter(rollout_id=rollout_id, status="in_progress").order_by("id").first()
    assert entry is not None
    firmware_transfer_record(
        transfer_id=entry.transfer_id, device_id=entry.device_id, state="failed", offset=0, message="flash write error"
    )
    rollout_advance(rollout_id=rollout_id)
    return str(entry.device_id)


def counts(rollout_id: int) -> dict[str, int]:
    found: dict[str, int] = {}
    for status in RolloutDevice.objects.filter(rollout_id=rollout_id).values_list("status", flat=True):
        found[status] = found.get(status, 0) + 1
    return found


def test_an_admin_previews_starts_follows_and_controls_a_rollout(fleet, portal, browser):  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{portal}/login/?next=/firmware/")
    page.fill("#id_username", fleet.admin.username)
    page.fill("#id_password", USER_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{portal}/firmware/")
    # The versions as the devices reported them: 3 on 1.0.0, 1 on 0.9.0.
    assert page.text_content('[data-version="1.0.0"] [data-devices]') == "3"
    assert page.text_content('[data-version="0.9.0"] [data-devices]') == "1"

    page.click("nav a[href='/firmware/']")  # the navigation's Firmware link
    page.click("#new-rollout")
    page.fill("#id_name", "Browser rollout")
    page.select_option("#id_device_type", str(fleet.device_type.pk))
    page.select_option("#id_image", str(fleet.new.pk))
    page.select_option("#id_target_kind", "device_type")
    page.fill("#id_from_versions", "1.0.0")
    page.fill("#id_wave_values", "50,100")
    page.click("#preview")
    page.wait_for_selector("#plan")
    assert [page.text_content(f'[data-wave="{n}"] [data-wave-size]') for n in (1, 2)] == ["1", "1"]
    assert page.text_content('[data-reason="offline"] b') == "1"
    assert page.text_content('[data-reason="incompatible"] b') == "1"
    assert off_loop(Rollout.objects.count) == 0  # a preview starts nothing

    page.click("#start")
    page.wait_for_url(f"{portal}/firmware/rollouts/*/")
    rollout_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    page.wait_for_selector('.live-state[data-state="live"]', timeout=10_000)
    page.wait_for_function("document.querySelector('[data-count=\"pending\"]').textContent === '2'")

    device_id = off_loop(fail_first_device, rollout_id=rollout_id)
    row = f'#rollout-devices tr[data-device="{device_id}"]'
    page.wait_for_selector(f'{row}[data-status="retry_wait"]', timeout=10_000)
    assert page.text_content(f"{row} .reason") == "flash write error"
    expected = off_loop(counts, rollout_id=rollout_id)
    for status in ("pending", "retry_wait", "in_progress"):
        assert page.text_content(f'.figure [data-count="{status}"]') == str(expected.get(status, 0))
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "firmware-rollout.png"), full_page=True)

    for button, state in (("#pause", "paused"), ("#resume", "running"), ("#cancel", "cancelled")):
        page.click(button)
        page.wait_for_selector(f'[data-figure="state"][data-state="{state}"]', timeout=10_000)
        assert off_loop(lambda: Rollout.objects.get(pk=rollout_id).state) == state
    assert page.is_hidden("#pause") and page.is_hidden("#resume")
    assert errors == []


def login(page, base_url: str, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base_url}/login/?next=/firmware/")
    page.fill("#id_username", fleet.admin.username)
    page.fill("#id_password", USER_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/firmware/")


def stored_images(line: str) -> list[tuple[str, int, bytes, bytes, int | None]]:
    return list(
        FirmwareImage.objects.filter(firmware_line=line)
        .order_by("version")
        .values_list("version", "size", "sha256", "signature", "tenant_id")
    )


@pytest.fixture
def own_type(settings):  # type: ignore[no-untyped-def]
    """A tenant that owns a device type (before `browser`, as `fleet`) and the platform's signing key."""
    settings.FIRMWARE_SIGNING_KEY = SIGNING_KEY
    fleet = Fleet(1)
    own = DeviceTypeFactory(tenant=fleet.tenant, model_name="Own sensor", firmware_line="own-sensor")
    return fleet, own, signing_public_key()


@pytest.fixture
def signing_portal(postgresql_url: str, redis_url: str):  # type: ignore[no-untyped-def]
    """Daphne as `portal`, signing uploads with the key this test checks against."""
    with daphne({**server_env(), "ENERGYBOX_FIRMWARE_SIGNING_KEY": SIGNING_KEY}) as base_url:
        yield base_url


def test_an_admin_uploads_an_image_for_the_organisations_own_device_type(own_type, signing_portal, browser):  # noqa: F811
    fleet, own, public_key = own_type
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, signing_portal, fleet)
    # The form offers the organisation's own type only, not the platform's.
    options = page.eval_on_selector_all("#image-upload #id_device_type option", "els => els.map(e => e.value)")
    assert str(own.pk) in options and str(fleet.device_type.pk) not in options

    image = os.urandom(5000)
    page.select_option("#image-upload #id_device_type", str(own.pk))
    page.fill("#image-upload #id_version", "2.0.0")
    page.set_input_files(
        "#image-upload #id_upload",
        files=[{"name": "own-2.0.0.bin", "mimeType": "application/octet-stream", "buffer": image}],
    )
    page.fill("#image-upload #id_notes", "first own build")
    page.click("#image-upload button[name=upload_image]")
    page.wait_for_url(f"{signing_portal}/firmware/")
    row = f'[data-images-for="{own.pk}"] tbody tr'
    page.wait_for_selector(row)
    cells = page.eval_on_selector_all(f"{row} td", "els => els.map(e => e.textContent.trim())")
    assert cells[0] == "2.0.0" and cells[3] == "first own build"
    assert cells[1].replace(",", "").replace(".", "").replace("\u202f", "") == "5000"
    # Stored as uploaded, hashed and signed: checked here against the file and the platform's public key.
    ((version, size, sha256, signature, tenant_id),) = off_loop(stored_images, line="own-sensor")
    assert (version, size, bytes(sha256), tenant_id) == ("2.0.0", 5000, hashlib.sha256(image).digest(), fleet.tenant.pk)
    message = firmware_message(firmware_line="own-sensor", version="2.0.0", sha256=hashlib.sha256(image).digest())
    Ed25519PublicKey.from_public_bytes(public_key).verify(bytes(signature), message)  # raises if it does not match

    # Bad input: the same version again, and an empty file; each is refused on the page, nothing stored.
    for version, content, text in (("2.0.0", os.urandom(100), "already has a version 2.0.0"), ("2.1.0", b"", "empty")):
        page.select_option("#image-upload #id_device_type", str(own.pk))
        page.fill("#image-upload #id_version", version)
        page.set_input_files(
            "#image-upload #id_upload",
            files=[{"name": "x.bin", "mimeType": "application/octet-stream", "buffer": content}],
        )
        page.click("#image-upload button[name=upload_image]")
        page.wait_for_selector("#image-upload .errorlist")
        assert text in page.text_content("#image-upload")
    assert [v for v, *_ in off_loop(stored_images, line="own-sensor")] == ["2.0.0"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "firmware-upload.png"), full_page=True)
    assert errors == []
