"""Admin forms whose relations could cross tenants refuse it, and "Add device" goes through the service
(issue 18 and issue 12's "Fix on the way")."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from accounts.tests.factories import UserFactory
from devices.keys import fingerprint
from devices.models import Channel, Device
from devices.tests.factories import TWO_CHANNELS, DeviceFactory, DeviceGroupFactory, LoadFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def device():
    return DeviceFactory()


def _add_device(staff_client, device, **overrides):
    form = {
        "tenant": device.tenant_id,
        "serial": "SN-ADMIN-1",
        "name": "Added in the admin",
        "device_type": device.device_type_id,
        "facility": device.facility_id,
        "firmware_version": "",
        "channels-TOTAL_FORMS": "0",
        "channels-INITIAL_FORMS": "0",
    }
    return staff_client.post(reverse("admin:devices_device_add"), {**form, **overrides})


def test_a_device_added_in_the_admin_gets_its_types_channels_and_a_key_pair(staff_client, device):
    response = _add_device(staff_client, device)

    assert response.status_code == 200, response.content.decode()[:1000]
    added = Device.objects.get(serial="SN-ADMIN-1")
    channels = list(added.channels.order_by("index").values_list("index", "name", "quantity", "unit"))
    assert channels == [(i, c["name"], c["quantity"], c["unit"]) for i, c in enumerate(TWO_CHANNELS)]
    assert all(tenant == added.tenant_id for tenant in added.channels.values_list("tenant_id", flat=True))
    assert added.public_key and added.key_version == 1
    html = response.content.decode()
    assert "BEGIN PRIVATE KEY" in html and fingerprint(bytes(added.public_key)) in html
    assert "no-store" in response["Cache-Control"]


def test_a_device_added_in_the_admin_joins_the_chosen_groups_of_its_tenant(staff_client, device):
    group = DeviceGroupFactory(tenant=device.tenant)
    _add_device(staff_client, device, groups=[group.pk])
    assert list(Device.objects.get(serial="SN-ADMIN-1").groups.all()) == [group]


def test_the_admin_refuses_to_add_a_device_to_another_tenants_group(staff_client, device):
    foreign = DeviceGroupFactory()
    response = _add_device(staff_client, device, groups=[foreign.pk])
    assert response.status_code == 200
    assert "groups of its own tenant" in response.content.decode()
    assert not Device.objects.filter(serial="SN-ADMIN-1").exists()


def test_the_admin_refuses_to_put_an_existing_device_in_another_tenants_group(staff_client, device):
    foreign = DeviceGroupFactory()
    response = staff_client.post(
        reverse("admin:devices_device_change", args=[device.pk]),
        {
            "name": device.name,
            "facility": device.facility_id,
            "firmware_version": "",
            "groups": [foreign.pk],
            "channels-TOTAL_FORMS": "0",
            "channels-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert not device.groups.exists()


def test_the_group_picker_of_a_device_lists_only_its_tenants_groups(staff_client, device):
    own = DeviceGroupFactory(tenant=device.tenant, name="Own group")
    DeviceGroupFactory(name="Foreign group")
    html = staff_client.get(reverse("admin:devices_device_change", args=[device.pk])).content.decode()
    assert own.name in html
    assert "Foreign group" not in html


def _load_options(html: str, select_name: str) -> set[str]:
    select = re.search(rf'<select name="{select_name}".*?</select>', html, re.S)
    assert select is not None, select_name
    return set(re.findall(r'<option value="(\d+)"', select.group(0)))


def test_the_channel_admins_load_picker_lists_only_the_devices_facilitys_loads(staff_client, device):
    own = LoadFactory(facility=device.facility)
    foreign = LoadFactory()
    channel = device.channels.first()

    html = staff_client.get(reverse("admin:devices_channel_change", args=[channel.pk])).content.decode()

    options = _load_options(html, "load")
    assert str(own.pk) in options
    assert str(foreign.pk) not in options


def test_the_channel_admin_refuses_another_tenants_load(staff_client, device):
    foreign = LoadFactory()
    channel = device.channels.first()
    response = staff_client.post(
        reverse("admin:devices_channel_change", args=[channel.pk]),
        {"name": channel.name, "load": foreign.pk, "tags": "[]"},
    )
    assert response.status_code == 200
    channel.refresh_from_db()
    assert channel.load_id is None


def test_the_device_pages_channel_inline_lists_only_its_facilitys_loads(staff_client, device):
    own = LoadFactory(facility=device.facility)
    foreign = LoadFactory(tenant=device.tenant)  # same tenant, other facility
    html = staff_client.get(reverse("admin:devices_device_change", args=[device.pk])).content.decode()
    options = _load_options(html, "channels-0-load")
    assert str(own.pk) in options and str(foreign.pk) not in options
    assert Channel.objects.filter(device=device).count() == len(TWO_CHANNELS)
