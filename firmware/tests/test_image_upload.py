"""Tenants upload images for their own device types: portal and API, signed as the admin's upload is."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.files.uploadedfile import SimpleUploadedFile

from devices.tests.factories import DeviceTypeFactory
from firmware.models import FirmwareImage
from firmware.tests.helpers import Fleet
from gateway.protocol import firmware_message
from integrations.scopes import FIRMWARE_READ, FIRMWARE_WRITE
from integrations.tests.factories import AccessTokenFactory, ApplicationFactory, bearer

pytestmark = pytest.mark.django_db

KEY = "42" * 32
IMAGES = "/api/v1/firmware/images/"


@pytest.fixture(autouse=True)
def _signing_key(settings):
    settings.FIRMWARE_SIGNING_KEY = KEY


def own_type(fleet: Fleet, line: str = "acme-meter"):
    return DeviceTypeFactory(tenant=fleet.tenant, firmware_line=line)


def token(fleet: Fleet, scope: str = f"{FIRMWARE_READ} {FIRMWARE_WRITE}"):
    return AccessTokenFactory(application=ApplicationFactory(tenant=fleet.tenant), scope=scope)


def upload(client, fleet: Fleet, device_type, *, data: bytes = b"\x7fELF acme build", version="3.0.0", scope=None):
    body = {"device_type": device_type.pk, "version": version, "image": SimpleUploadedFile("fw.bin", data)}
    return client.post(IMAGES, data=body, **bearer(token(fleet, scope) if scope else token(fleet)))


def verifies(image: FirmwareImage, data: bytes) -> bool:
    """What a device does before installing, with the public half of the platform's signing key."""
    public = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(KEY)).public_key()
    digest = hashlib.sha256(data).digest()
    public.verify(
        bytes(image.signature),
        firmware_message(firmware_line=image.firmware_line, version=image.version, sha256=digest),
    )
    return bytes(image.sha256) == digest


def test_a_tenant_uploads_a_signed_image_for_its_own_device_type_and_only_it_sees_it(client):
    fleet, other = Fleet(1), Fleet(1)
    device_type = own_type(fleet)
    data = b"\x7fELF" + bytes(range(256)) * 40
    response = upload(client, fleet, device_type, data=data)
    assert response.status_code == 201, response.content
    body = response.json()
    image = FirmwareImage.objects.get(pk=body["id"])
    assert (body["firmware_line"], body["version"], body["size"]) == ("acme-meter", "3.0.0", len(data))
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert image.tenant_id == fleet.tenant.pk and bytes(image.image) == data
    assert verifies(image, data)
    mine = {i["id"] for i in client.get(IMAGES, **bearer(token(fleet))).json()["results"]}
    theirs = {i["id"] for i in client.get(IMAGES, **bearer(token(other))).json()["results"]}
    assert image.pk in mine and image.pk not in theirs
    assert client.get(f"{IMAGES}{image.pk}/", **bearer(token(other))).status_code == 404


def test_a_platform_admins_image_stays_visible_to_tenants_owning_that_type(client):
    fleet = Fleet(1)  # its devices are of a platform type of line eb-meter
    listed = {i["id"] for i in client.get(IMAGES, **bearer(token(fleet))).json()["results"]}
    assert {fleet.old.pk, fleet.new.pk} <= listed


@pytest.mark.parametrize("whose", ["platform", "another tenant", "shared line"])
def test_an_upload_for_a_type_the_tenant_does_not_own_is_refused_and_stores_nothing(client, whose):
    fleet, other = Fleet(1), Fleet(1)
    if whose == "platform":
        device_type, message = fleet.device_type, "platform's catalogue"
    elif whose == "another tenant":
        device_type, message = own_type(other), "no such device type"
    else:  # the tenant owns the type, but the platform's types run the same line
        device_type, message = own_type(fleet, line="eb-meter"), "does not own"
    before = FirmwareImage.objects.count()
    response = upload(client, fleet, device_type)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert FirmwareImage.objects.count() == before


def test_an_upload_needs_firmware_write_and_refuses_empty_and_duplicate_images(client):
    fleet = Fleet(1)
    device_type = own_type(fleet)
    assert upload(client, fleet, device_type, scope=FIRMWARE_READ).status_code == 403
    empty = upload(client, fleet, device_type, data=b"")
    assert empty.status_code == 400
    assert upload(client, fleet, device_type).status_code == 201
    duplicate = upload(client, fleet, device_type, data=b"another build")
    assert duplicate.status_code == 400 and "new version" in duplicate.json()["error"]["message"]
    assert FirmwareImage.objects.filter(tenant=fleet.tenant).count() == 1


def test_another_tenants_image_cannot_be_rolled_out(client):
    fleet, other = Fleet(1), Fleet(1)
    device_type = own_type(fleet)
    image = FirmwareImage.objects.get(pk=upload(client, fleet, device_type).json()["id"])
    sneaky = own_type(other, line="acme-meter-2")
    FirmwareImage.objects.filter(pk=image.pk).update(firmware_line="acme-meter-2")  # same line as their type
    body = {"name": "x", "image": image.pk, "device_type": sneaky.pk, "target": {"kind": "device_type"}}
    response = client.post(
        "/api/v1/firmware/rollouts/", data=body, content_type="application/json", **bearer(token(other))
    )
    assert response.status_code == 400
    assert "no such image" in response.json()["error"]["message"]


def test_the_firmware_page_uploads_an_image_for_an_own_type_and_refuses_others(client):
    fleet = Fleet(1)
    device_type = own_type(fleet)
    client.force_login(fleet.admin)
    page = client.get("/firmware/").content.decode()
    assert 'id="image-upload"' in page and f'value="{device_type.pk}"' in page
    assert f'value="{fleet.device_type.pk}"' not in page.split('id="image-upload"')[1]  # no platform type offered
    sent = {"device_type": device_type.pk, "version": "3.1.0", "upload": SimpleUploadedFile("fw.bin", b"portal build")}
    response = client.post("/firmware/", data=sent)
    assert response.status_code == 302
    image = FirmwareImage.objects.get(tenant=fleet.tenant, version="3.1.0")
    assert verifies(image, b"portal build")
    assert "3.1.0" in client.get("/firmware/").content.decode()
    refused = {"device_type": fleet.device_type.pk, "version": "3.2.0", "upload": SimpleUploadedFile("f", b"x")}
    assert client.post("/firmware/", data=refused).status_code == 400
    assert not FirmwareImage.objects.filter(version="3.2.0").exists()


def test_the_upload_and_the_transfer_states_speak_german():
    from django.utils import translation

    from firmware.models import FirmwareTransfer

    with translation.override("de"):
        assert str(FirmwareTransfer.State.OFFERED.label) == "Angeboten"
        assert translation.gettext("Upload and sign") == "Hochladen und signieren"
        assert translation.gettext("reconnecting…") == "verbinde neu…"
