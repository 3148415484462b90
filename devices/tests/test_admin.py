"""Every admin changelist, add page and change page answers 200 for a platform admin."""

from __future__ import annotations

import uuid

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.urls import reverse
from oauth2_provider.models import Grant, IDToken, RefreshToken

from accounts.tests.factories import MembershipFactory, UserFactory
from devices.models import Device
from devices.tests.factories import DeviceFactory, DeviceGroupFactory, LoadFactory
from firmware.services import firmware_image_create, firmware_transfer_start
from firmware.tests.helpers import firmware_rollout_for_admin
from integrations.tests.factories import AccessTokenFactory
from readings.models import ConfirmedSpan
from readings.services import readings_counter_reset_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def populated():
    device = DeviceFactory()
    LoadFactory(facility=device.facility)
    DeviceGroupFactory(tenant=device.tenant)
    MembershipFactory(tenant=device.tenant)
    Group.objects.create(name="Support")
    token = AccessTokenFactory(application__tenant=device.tenant, user=UserFactory())
    RefreshToken.objects.create(application=token.application, user=token.user, token="r-1", access_token=token)
    IDToken.objects.create(application=token.application, user=token.user, jti=uuid.uuid4(), expires=token.expires)
    Grant.objects.create(
        application=token.application,
        user=token.user,
        code="c-1",
        expires=token.expires,
        redirect_uri="https://client.example/cb",
        code_challenge="x" * 43,
        code_challenge_method="S256",
    )
    image = firmware_image_create(firmware_line="eb-meter", version="1.0.1", image=b"\x7fELF-image")
    firmware_transfer_start(device=device, image=image)
    from billing.tests.factories import billing_objects

    billing_objects(facility=device.facility)
    readings_counter_reset_record(tenant_id=device.tenant_id, device_id=device.pk, at_ms=1_780_000_000_000)
    channel = device.channels.first()
    ConfirmedSpan.objects.create(tenant_id=device.tenant_id, channel_id=channel.pk, start_ms=0, end_ms=1)
    firmware_rollout_for_admin(device=device, image=image)
    _alerts_objects(device)
    return device


def _alerts_objects(device):
    """One of each alerts object, through the services where a user's request would create it."""
    from django.utils import timezone

    from accounts.selectors import access_for_tenant
    from alerts import models as alerts_models
    from alerts import services as alerts_services
    from alerts.tests.factories import cold_room

    now = timezone.now()
    access = access_for_tenant(tenant=device.tenant)
    alerts_services.event_record(
        tenant_id=device.tenant_id,
        device_id=device.pk,
        facility_id=device.facility_id,
        code=0x20,
        severity=1,
        time_ms=int(now.timestamp() * 1000),
        message="door open",
    )
    unit = alerts_services.cold_unit_create(
        access=access, device_id=cold_room(facility=device.facility).pk, name="Freezer", preset="frozen"
    )
    alert = alerts_services.alert_raise(
        rule=unit.rule,
        source=f"device:{unit.device_id}",
        device_id=unit.device_id,
        facility_id=unit.facility_id,
        value=-12.0,
        at=now,
        message="too warm",
    )
    alerts_models.Excursion.objects.create(unit=unit, alert=alert, started_at=now, worst_c=-12.0)
    webhook = alerts_models.Webhook.objects.create(
        tenant=device.tenant, name="Hook", url="https://hooks.example/a", secret="s"
    )
    alerts_models.WebhookDelivery.objects.create(webhook=webhook, alert=alert, action="raised", body="{}")
    alerts_models.NotificationPreference.objects.create(tenant=device.tenant, user=UserFactory())


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


NO_ADD_PAGE = {("firmware", "firmwaretransfer"), ("auditlog", "logentry")}
# Billing is read-only in the admin: tenants write it through the services.
NO_ADD_PAGE |= {
    ("billing", m)
    for m in ("tariff", "contract", "bill", "costcentre", "billingprofile", "facilitypeak", "demandinterval")
}
NO_ADD_PAGE |= {
    ("readings", "confirmedspan"),  # through readings_confirm, which recomputes the rollups
    ("readings", "counterreset"),  # reported by devices
}
NO_ADD_PAGE |= {("firmware", "firmwaretransfer"), ("firmware", "rollout")}


def _registered():
    return [(model._meta.app_label, model._meta.model_name) for model in admin.site._registry]


@pytest.mark.parametrize(("app", "model"), _registered())
def test_every_changelist_add_and_change_page_renders(staff_client, populated, app, model):
    model_class = next(m for m in admin.site._registry if m._meta.model_name == model)
    assert staff_client.get(reverse(f"admin:{app}_{model}_changelist")).status_code == 200
    add = staff_client.get(reverse(f"admin:{app}_{model}_add"))
    # Tokens and grants are only ever issued by /o/, transfers by the firmware services and audit entries by
    # django-auditlog: no add page.
    assert (
        add.status_code == 200 or ((app, model) in NO_ADD_PAGE or app == "oauth2_provider") and add.status_code == 403
    )
    obj = model_class.objects.first()
    assert obj is not None, f"no {model} to open"
    assert staff_client.get(reverse(f"admin:{app}_{model}_change", args=[obj.pk])).status_code == 200


def test_the_changelists_search_and_filter_by_tenant(staff_client, populated):
    url = reverse("admin:devices_device_changelist")
    response = staff_client.get(url, {"q": populated.serial, "tenant__id__exact": populated.tenant_id})
    assert response.status_code == 200
    assert populated.serial in response.content.decode()
    assert populated.tenant.name in response.content.decode()


def test_the_admin_shows_a_clear_error_for_an_invalid_time_zone(staff_client, populated):
    response = staff_client.post(
        reverse("admin:devices_facility_add"),
        {
            "tenant": populated.tenant_id,
            "name": "New",
            "timezone": "Europe/Atlantis",
            "kind": "office",
            "tags": "[]",
            "metadata": "{}",
            "loads-TOTAL_FORMS": "0",
            "loads-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert "is not an IANA time zone name" in response.content.decode()


def test_the_admin_refuses_a_device_in_another_tenants_facility(staff_client, populated):
    foreign = DeviceFactory()
    response = staff_client.post(
        reverse("admin:devices_device_add"),
        {
            "tenant": populated.tenant_id,
            "serial": "SN-NEW-1",
            "device_type": populated.device_type_id,
            "facility": foreign.facility_id,
            "channels-TOTAL_FORMS": "0",
            "channels-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert "another tenant" in response.content.decode()
    assert not Device.objects.filter(serial="SN-NEW-1").exists()


def test_the_admin_refuses_a_duplicate_serial(staff_client, populated):
    response = staff_client.post(
        reverse("admin:devices_device_add"),
        {
            "tenant": populated.tenant_id,
            "serial": populated.serial,
            "device_type": populated.device_type_id,
            "facility": populated.facility_id,
            "channels-TOTAL_FORMS": "0",
            "channels-INITIAL_FORMS": "0",
        },
    )
    assert "already exists" in response.content.decode()


def test_a_devices_channel_history_fields_are_read_only(staff_client, populated):
    response = staff_client.get(reverse("admin:devices_device_change", args=[populated.pk]))
    html = response.content.decode()
    assert 'name="channels-0-quantity"' not in html
    assert 'name="channels-0-name"' in html
    assert 'name="serial"' not in html


def test_a_firmware_image_uploaded_in_the_admin_is_hashed_and_signed(staff_client, populated):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from firmware.models import FirmwareImage

    response = staff_client.post(
        reverse("admin:firmware_firmwareimage_add"),
        {
            "firmware_line": "eb-meter",
            "version": "2.0.0",
            "notes": "",
            "upload": SimpleUploadedFile("fw.bin", b"new-image"),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    image = FirmwareImage.objects.get(version="2.0.0")
    assert bytes(image.image) == b"new-image" and image.size == 9 and len(bytes(image.signature)) == 64


def test_the_admin_refuses_an_empty_firmware_image(staff_client, populated):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = staff_client.post(
        reverse("admin:firmware_firmwareimage_add"),
        {"firmware_line": "eb-meter", "version": "2.0.1", "upload": SimpleUploadedFile("fw.bin", b"")},
    )
    assert response.status_code == 200
    assert "empty" in response.content.decode()


def test_the_admin_refuses_a_duplicate_firmware_version_with_a_clear_error(staff_client, populated):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from firmware.models import FirmwareImage

    response = staff_client.post(
        reverse("admin:firmware_firmwareimage_add"),
        {"firmware_line": "eb-meter", "version": "1.0.1", "upload": SimpleUploadedFile("fw.bin", b"other")},
    )
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert FirmwareImage.objects.filter(firmware_line="eb-meter", version="1.0.1").count() == 1
