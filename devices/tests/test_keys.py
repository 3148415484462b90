"""Device identity: Ed25519 key pairs, shown once, only the public half stored; rotation and revocation."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts.tests.factories import UserFactory
from devices.keys import private_key_load, public_key_bytes, signature_valid
from devices.models import Device
from devices.services import device_key_revoke, device_key_rotate, device_provision
from devices.tests.factories import DeviceFactory, DeviceTypeFactory, FacilityFactory

pytestmark = pytest.mark.django_db


def provision(serial="SN-KEY-1"):
    facility = FacilityFactory()
    return device_provision(tenant=facility.tenant, serial=serial, device_type=DeviceTypeFactory(), facility=facility)


def test_provisioning_stores_only_the_public_key():
    issued = provision()
    private_key = private_key_load(issued.private_key_pem)
    device = Device.objects.get(pk=issued.device.pk)
    assert bytes(device.public_key) == public_key_bytes(private_key)
    assert len(bytes(device.public_key)) == 32
    assert device.key_version == 1 and device.channels.count() == 2
    assert signature_valid(public_key=bytes(device.public_key), signature=private_key.sign(b"m"), message=b"m")


def test_rotation_replaces_the_key_and_lifts_a_revocation():
    issued = provision()
    old_public = bytes(issued.device.public_key)
    device_key_revoke(device=issued.device)
    assert issued.device.key_revoked_at is not None
    rotated = device_key_rotate(device=issued.device)
    assert bytes(rotated.device.public_key) != old_public
    assert rotated.device.key_version == 2 and rotated.device.key_revoked_at is None
    assert public_key_bytes(private_key_load(rotated.private_key_pem)) == bytes(rotated.device.public_key)


def test_the_command_provisions_a_device_and_prints_its_private_key_once():
    facility = FacilityFactory()
    device_type = DeviceTypeFactory()
    out = StringIO()
    call_command(
        "provision_device",
        "--serial=SN-CMD-1",
        f"--tenant={facility.tenant.slug}",
        f"--facility={facility.name}",
        f"--type={device_type.model_name}",
        stdout=out,
    )
    text = out.getvalue()
    assert "BEGIN PRIVATE KEY" in text and "shown once" in text
    pem = text[text.index("-----BEGIN") :]
    device = Device.objects.get(serial="SN-CMD-1")
    assert bytes(device.public_key) == public_key_bytes(private_key_load(pem))


def test_the_command_rotates_into_a_key_file_and_revokes(tmp_path):
    issued = provision()
    key_file = tmp_path / "device.pem"
    out = StringIO()
    call_command("provision_device", f"--rotate={issued.device.serial}", f"--key-file={key_file}", stdout=out)
    assert "BEGIN" not in out.getvalue()
    assert key_file.stat().st_mode & 0o777 == 0o600
    issued.device.refresh_from_db()
    assert bytes(issued.device.public_key) == public_key_bytes(private_key_load(key_file.read_text()))
    call_command("provision_device", f"--revoke={issued.device.serial}", stdout=StringIO())
    issued.device.refresh_from_db()
    assert issued.device.key_revoked_at is not None


def test_the_command_explains_bad_input():
    with pytest.raises(CommandError, match="needs --serial, --tenant, --facility, --type"):
        call_command("provision_device")
    with pytest.raises(CommandError, match="No device with serial"):
        call_command("provision_device", "--rotate=SN-NOPE")
    facility = FacilityFactory()
    with pytest.raises(CommandError, match="has no facility"):
        call_command(
            "provision_device", "--serial=SN-X", f"--tenant={facility.tenant.slug}", "--facility=Nope", "--type=x"
        )
    other = FacilityFactory()  # another tenant's facility cannot be named
    with pytest.raises(CommandError, match="has no facility"):
        call_command(
            "provision_device",
            "--serial=SN-X",
            f"--tenant={facility.tenant.slug}",
            f"--facility={other.pk}",
            f"--type={DeviceTypeFactory().model_name}",
        )
    existing = provision("SN-DUP")
    with pytest.raises(CommandError, match="cannot be registered"):
        call_command(
            "provision_device",
            f"--serial={existing.device.serial}",
            f"--tenant={existing.device.tenant.slug}",
            f"--facility={existing.device.facility.name}",
            f"--type={existing.device.device_type.model_name}",
        )


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_adding_a_device_in_the_admin_shows_its_private_key_once(staff_client):
    facility = FacilityFactory()
    device_type = DeviceTypeFactory()
    response = staff_client.post(
        reverse("admin:devices_device_add"),
        {
            "tenant": facility.tenant_id,
            "serial": "SN-ADMIN-1",
            "device_type": device_type.pk,
            "facility": facility.pk,
            "status": "provisioned",
            "channels-TOTAL_FORMS": "0",
            "channels-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200, response.content.decode()[:2000]
    html = response.content.decode()
    assert "only time these private keys are shown" in html
    assert "no-store" in response["Cache-Control"]
    pem = html[html.index("-----BEGIN PRIVATE KEY-----") : html.index("-----END PRIVATE KEY-----") + 25]
    device = Device.objects.get(serial="SN-ADMIN-1")
    assert bytes(device.public_key) == public_key_bytes(private_key_load(pem))
    # The change page afterwards shows the fingerprint, never a private key.
    change = staff_client.get(reverse("admin:devices_device_change", args=[device.pk])).content.decode()
    assert "PRIVATE KEY" not in change


def test_the_admin_rotate_action_shows_new_keys_and_revoke_refuses_old_ones(staff_client):
    devices = [DeviceFactory(), DeviceFactory()]
    old = {d.pk: bytes(d.public_key or b"") for d in devices}
    url = reverse("admin:devices_device_changelist")
    response = staff_client.post(url, {"action": "rotate_keys", "_selected_action": [d.pk for d in devices]})
    html = response.content.decode()
    assert html.count("-----BEGIN PRIVATE KEY-----") == 2
    for device in devices:
        device.refresh_from_db()
        assert bytes(device.public_key) != old[device.pk] and device.key_version == 1
    response = staff_client.post(url, {"action": "revoke_keys", "_selected_action": [devices[0].pk]}, follow=True)
    assert "Revoked the keys of 1 device(s)" in response.content.decode()
    devices[0].refresh_from_db()
    devices[1].refresh_from_db()
    assert devices[0].key_revoked_at is not None and devices[1].key_revoked_at is None
