"""The park's management pages in the portal: per role, per action, with bad and foreign input."""

from __future__ import annotations

import json
import re
from base64 import b64decode

import pytest
from django.test import Client

from accounts.models import Role
from accounts.tests.factories import MembershipFactory, UserFactory
from devices.keys import private_key_load, public_key_bytes
from devices.models import ChannelAllocation, Device, DeviceGroup, Facility, Load
from devices.tests.factories import DeviceFactory, DeviceGroupFactory, DeviceTypeFactory, FacilityFactory, LoadFactory

pytestmark = pytest.mark.django_db

FACILITY_POST = {
    "name": "Markt Köpenick",
    "address": "Bahnhofstr. 1, Berlin",
    "timezone": "Europe/Berlin",
    "kind": "supermarket",
    "tags": "north, 24h",
    "floor_area_m2": "1250.5",
    "peak_target_kw": "180",
    "holiday_region": "DE-BE",
    "mon_0_open": "07:00",
    "mon_0_close": "13:00",
    "mon_1_open": "14:00",
    "mon_1_close": "23:59",
    "sat_0_open": "08:00",
    "sat_0_close": "18:00",
}


def signed_in(role: Role, facility: Facility | None = None, *, grant: bool = True) -> tuple[Client, Facility]:
    facility = facility or FacilityFactory()
    membership = MembershipFactory(
        tenant=facility.tenant, role=role, facilities=[facility] if grant and role == Role.FACILITY_MANAGER else []
    )
    client = Client()
    client.force_login(membership.user)
    return client, facility


def test_every_portal_page_shows_the_same_menu():
    device = DeviceFactory()
    client, _ = signed_in(Role.ADMIN, device.facility)
    pages = ["/", f"/facilities/{device.facility_id}/", "/manage/facilities/", "/manage/devices/", "/manage/groups/"]
    pages += [f"/manage/devices/{device.pk}/", f"/manage/facilities/{device.facility_id}/", "/integrations/"]
    menus = set()
    for page in pages:
        html = client.get(page).content.decode()
        menus.add(re.search(r'<ul class="menu">.*?</ul>', html, re.S).group(0))
    assert len(menus) == 1
    menu = menus.pop()
    for href in ["/", "/manage/facilities/", "/manage/devices/", "/manage/groups/", "/integrations/"]:
        assert f'href="{href}"' in menu
        assert client.get(href).status_code == 200


def test_the_tenant_switcher_is_on_every_page_for_a_member_of_two_tenants():
    client, facility = signed_in(Role.ADMIN)
    second_tenant = FacilityFactory().tenant
    MembershipFactory(user=facility.tenant.memberships.get().user, tenant=second_tenant, role=Role.VIEWER)
    for page in ["/", "/manage/devices/", "/manage/facilities/"]:
        assert 'id="tenant-switcher"' in client.get(page).content.decode()


def test_a_platform_admin_without_a_tenant_gets_a_landing_page_and_can_enter_a_tenant():
    facility = FacilityFactory(name="Somewhere")
    admin = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'href="/admin/"' in html and facility.tenant.name in html
    response = client.post("/platform/enter/", {"tenant_id": facility.tenant_id})
    assert response.status_code == 302
    assert "Somewhere" in client.get("/").content.decode()


def test_a_staff_member_who_is_not_a_superuser_cannot_enter_a_tenant():
    facility = FacilityFactory()
    client = Client()
    client.force_login(UserFactory(is_staff=True))
    assert client.get("/").status_code == 200
    assert client.post("/platform/enter/", {"tenant_id": facility.tenant_id}).status_code == 403
    assert not facility.tenant.memberships.exists()


def test_an_admin_creates_a_facility_with_every_field_and_opening_hours_from_the_form():
    client, existing = signed_in(Role.ADMIN)
    response = client.post("/manage/facilities/new/", FACILITY_POST)
    assert response.status_code == 302
    facility = Facility.objects.get(tenant=existing.tenant, name="Markt Köpenick")
    assert facility.timezone == "Europe/Berlin"
    assert facility.tags == ["north", "24h"]
    assert str(facility.floor_area_m2) == "1250.5" and facility.peak_target_kw == 180
    assert facility.holiday_region == "DE-BE"
    assert facility.opening_hours == {"mon": [["07:00", "13:00"], ["14:00", "24:00"]], "sat": [["08:00", "18:00"]]}
    # The edit form shows what was saved, so saving it unchanged keeps it.
    page = client.get(f"/manage/facilities/{facility.pk}/").content.decode()
    assert 'value="14:00"' in page and 'list="timezones"' in page and '<option value="Europe/Berlin">' in page


def test_an_unknown_time_zone_is_refused_and_nothing_is_stored():
    client, facility = signed_in(Role.ADMIN)
    response = client.post("/manage/facilities/new/", {**FACILITY_POST, "timezone": "Europe/Atlantis"})
    assert response.status_code == 400
    assert "IANA time zone" in response.content.decode()
    assert not Facility.objects.filter(name="Markt Köpenick").exists()


def test_a_closing_time_before_the_opening_time_is_refused():
    client, _ = signed_in(Role.ADMIN)
    response = client.post("/manage/facilities/new/", {**FACILITY_POST, "mon_0_close": "06:00"})
    assert response.status_code == 400
    assert not Facility.objects.filter(name="Markt Köpenick").exists()


def test_a_facility_manager_edits_a_granted_facility_but_cannot_create_or_edit_another():
    client, facility = signed_in(Role.FACILITY_MANAGER)
    other = FacilityFactory(tenant=facility.tenant, name="Not granted")
    assert client.post("/manage/facilities/new/", FACILITY_POST).status_code == 403
    response = client.post(f"/manage/facilities/{facility.pk}/", {**FACILITY_POST, "name": "Renamed"})
    assert response.status_code == 302
    facility.refresh_from_db()
    assert facility.name == "Renamed"
    assert client.post(f"/manage/facilities/{other.pk}/", {**FACILITY_POST, "name": "X"}).status_code == 404
    other.refresh_from_db()
    assert other.name == "Not granted"


def test_a_viewer_changes_nothing():
    device = DeviceFactory()
    load = LoadFactory(facility=device.facility)
    group = DeviceGroupFactory(tenant=device.tenant)
    client, facility = signed_in(Role.VIEWER, device.facility)
    channel = device.channels.first()
    attempts = [
        ("/manage/facilities/new/", FACILITY_POST),
        (f"/manage/facilities/{facility.pk}/", {**FACILITY_POST, "name": "X"}),
        (f"/manage/facilities/{facility.pk}/archive/", {}),
        (f"/manage/facilities/{facility.pk}/loads/", {"name": "New", "kind": "hvac"}),
        (f"/manage/loads/{load.pk}/", {"name": "X", "kind": "hvac"}),
        ("/manage/devices/new/", {"serial": "NEW-1", "device_type": device.device_type_id, "facility": facility.pk}),
        (f"/manage/devices/{device.pk}/enable/", {"enabled": "0"}),
        (f"/manage/devices/{device.pk}/rotate-key/", {}),
        (f"/manage/devices/{device.pk}/revoke-key/", {}),
        (f"/manage/devices/{device.pk}/groups/", {"group": group.pk, "action": "add"}),
        (f"/manage/channels/{channel.pk}/allocate/", {f"c{channel.pk}-load": load.pk}),
        ("/manage/groups/", {"name": "G"}),
    ]
    for path, data in attempts:
        assert client.post(path, data).status_code == 403, path
    device.refresh_from_db()
    facility.refresh_from_db()
    assert facility.name != "X" and facility.archived_at is None
    assert device.status != Device.Status.DISABLED and device.key_revoked_at is None and device.key_version == 0
    assert not device.groups.exists() and not Load.objects.filter(name="New").exists()
    assert not ChannelAllocation.objects.exists() and not DeviceGroup.objects.filter(name="G").exists()


def test_another_tenants_ids_answer_404_on_every_page():
    foreign = DeviceFactory()
    load = LoadFactory(facility=foreign.facility)
    group = DeviceGroupFactory(tenant=foreign.tenant)
    channel = foreign.channels.first()
    client, _ = signed_in(Role.ADMIN)
    for path in [
        f"/manage/facilities/{foreign.facility_id}/",
        f"/manage/loads/{load.pk}/",
        f"/manage/devices/{foreign.pk}/",
        f"/manage/groups/{group.pk}/",
    ]:
        assert client.get(path).status_code == 404, path
    for path in [
        f"/manage/facilities/{foreign.facility_id}/archive/",
        f"/manage/facilities/{foreign.facility_id}/loads/",
        f"/manage/devices/{foreign.pk}/enable/",
        f"/manage/devices/{foreign.pk}/rotate-key/",
        f"/manage/channels/{channel.pk}/allocate/",
    ]:
        assert client.post(path, {"enabled": "0", "name": "x"}).status_code == 404, path
    foreign.refresh_from_db()
    assert foreign.status != Device.Status.DISABLED and foreign.key_version == 0


def test_loads_are_added_and_edited_with_kind_and_cost_centre():
    client, facility = signed_in(Role.FACILITY_MANAGER)
    client.post(
        f"/manage/facilities/{facility.pk}/loads/",
        {"name": "Cold room", "kind": "refrigeration", "cost_centre": "CC-4711"},
    )
    load = Load.objects.get(facility=facility, name="Cold room")
    assert (load.kind, load.cost_centre) == ("refrigeration", "CC-4711")
    client.post(f"/manage/loads/{load.pk}/", {"name": "Cold room 1", "kind": "refrigeration", "cost_centre": "CC-1"})
    load.refresh_from_db()
    assert (load.name, load.cost_centre) == ("Cold room 1", "CC-1")
    assert "CC-1" in client.get(f"/manage/facilities/{facility.pk}/").content.decode()


def test_provisioning_shows_the_private_key_once_with_a_configuration_file_matching_the_stored_public_key():
    client, facility = signed_in(Role.FACILITY_MANAGER)
    device_type = DeviceTypeFactory()
    response = client.post(
        "/manage/devices/new/",
        {"serial": "SN-PORTAL-1", "name": "Till", "device_type": device_type.pk, "facility": facility.pk},
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    html = response.content.decode()
    href = re.search(r'href="data:application/json;base64,([^"]+)"', html).group(1)
    config = json.loads(b64decode(href))
    device = Device.objects.get(serial="SN-PORTAL-1")
    key = private_key_load(config["private_key_pem"])
    assert public_key_bytes(key) == bytes(device.public_key)
    assert [c["quantity"] for c in config["channels"]] == ["active_power", "active_energy"]
    # The detail page never shows it again.
    assert "PRIVATE KEY" not in client.get(f"/manage/devices/{device.pk}/").content.decode()


def test_a_duplicate_serial_is_refused_with_a_clear_error():
    existing = DeviceFactory(serial="SN-TAKEN")
    client, facility = signed_in(Role.ADMIN, existing.facility)
    response = client.post(
        "/manage/devices/new/", {"serial": "SN-TAKEN", "device_type": existing.device_type_id, "facility": facility.pk}
    )
    assert response.status_code == 400
    assert "cannot be registered" in response.content.decode()
    assert Device.objects.filter(serial="SN-TAKEN").count() == 1


def test_a_facility_manager_cannot_provision_into_a_facility_outside_the_grant():
    client, facility = signed_in(Role.FACILITY_MANAGER)
    other = FacilityFactory(tenant=facility.tenant)
    response = client.post(
        "/manage/devices/new/", {"serial": "SN-OUT-1", "device_type": DeviceTypeFactory().pk, "facility": other.pk}
    )
    assert response.status_code == 400
    assert not Device.objects.filter(serial="SN-OUT-1").exists()


def test_a_device_is_disabled_enabled_rotated_and_revoked():
    device = DeviceFactory()
    client, _ = signed_in(Role.ADMIN, device.facility)
    client.post(f"/manage/devices/{device.pk}/enable/", {"enabled": "0"})
    device.refresh_from_db()
    assert device.status == Device.Status.DISABLED
    client.post(f"/manage/devices/{device.pk}/enable/", {"enabled": "1"})
    device.refresh_from_db()
    assert device.status == Device.Status.PROVISIONED
    old_key = device.public_key
    response = client.post(f"/manage/devices/{device.pk}/rotate-key/")
    device.refresh_from_db()
    assert "PRIVATE KEY" in response.content.decode() and device.public_key != old_key and device.key_version == 1
    client.post(f"/manage/devices/{device.pk}/revoke-key/")
    device.refresh_from_db()
    assert device.key_revoked_at is not None


def test_a_device_moves_to_another_facility_and_its_allocations_end():
    device = DeviceFactory()
    load = LoadFactory(facility=device.facility)
    target = FacilityFactory(tenant=device.tenant)
    client, _ = signed_in(Role.ADMIN, device.facility)
    channel = device.channels.first()
    client.post(f"/manage/channels/{channel.pk}/allocate/", {f"c{channel.pk}-load": load.pk})
    client.post(f"/manage/devices/{device.pk}/move/", {"facility": target.pk})
    device.refresh_from_db()
    channel.refresh_from_db()
    assert device.facility_id == target.pk and channel.load_id is None
    assert list(channel.allocations.values_list("load_id", flat=True)) == [load.pk, None]


def test_channels_are_allocated_in_place_and_unallocated_ones_stand_out():
    device = DeviceFactory()
    load = LoadFactory(facility=device.facility, name="Freezers")
    client, _ = signed_in(Role.FACILITY_MANAGER, device.facility)
    first, second = device.channels.order_by("index")
    html = client.get(f"/manage/devices/{device.pk}/").content.decode()
    assert html.count('class="unallocated"') == 2
    client.post(f"/manage/channels/{first.pk}/allocate/", {f"c{first.pk}-load": load.pk})
    first.refresh_from_db()
    assert first.load_id == load.pk
    html = client.get(f"/manage/devices/{device.pk}/").content.decode()
    assert html.count('class="unallocated"') == 1
    assert f'data-channel-id="{second.pk}" class="unallocated"' in html


def test_a_load_of_another_facility_cannot_be_allocated():
    device = DeviceFactory()
    elsewhere = LoadFactory(facility=FacilityFactory(tenant=device.tenant))
    client, _ = signed_in(Role.ADMIN, device.facility)
    channel = device.channels.first()
    client.post(f"/manage/channels/{channel.pk}/allocate/", {f"c{channel.pk}-load": elsewhere.pk})
    channel.refresh_from_db()
    assert channel.load_id is None and not channel.allocations.exists()


def test_device_groups_are_created_and_devices_added_and_removed():
    device = DeviceFactory()
    client, _ = signed_in(Role.ADMIN, device.facility)
    client.post("/manage/groups/", {"name": "Wave 1", "description": "first"})
    group = DeviceGroup.objects.get(tenant=device.tenant, name="Wave 1")
    client.post(f"/manage/groups/{group.pk}/", {"device": device.pk, "action": "add"})
    assert list(group.devices.all()) == [device]
    client.post(f"/manage/groups/{group.pk}/", {"device": device.pk, "action": "remove"})
    assert not group.devices.exists()
    client.post(f"/manage/groups/{group.pk}/", {"action": "delete"})
    assert not DeviceGroup.objects.filter(pk=group.pk).exists()


def test_a_facility_with_active_devices_cannot_be_archived_until_they_are_disabled():
    device = DeviceFactory()
    client, facility = signed_in(Role.ADMIN, device.facility)
    client.post(f"/manage/facilities/{facility.pk}/archive/")
    facility.refresh_from_db()
    assert facility.archived_at is None
    client.post(f"/manage/devices/{device.pk}/enable/", {"enabled": "0"})
    client.post(f"/manage/facilities/{facility.pk}/archive/")
    facility.refresh_from_db()
    assert facility.archived_at is not None
    assert facility.name not in client.get("/").content.decode().split("<tbody>")[1]


def test_every_form_refuses_a_post_without_a_csrf_token():
    device = DeviceFactory()
    load = LoadFactory(facility=device.facility)
    channel = device.channels.first()
    group = DeviceGroupFactory(tenant=device.tenant)
    membership = MembershipFactory(tenant=device.tenant, role=Role.ADMIN)
    client = Client(enforce_csrf_checks=True)
    client.force_login(membership.user)
    for path in [
        "/manage/facilities/new/",
        f"/manage/facilities/{device.facility_id}/",
        f"/manage/facilities/{device.facility_id}/archive/",
        f"/manage/facilities/{device.facility_id}/loads/",
        f"/manage/loads/{load.pk}/",
        f"/manage/loads/{load.pk}/archive/",
        "/manage/devices/new/",
        f"/manage/devices/{device.pk}/move/",
        f"/manage/devices/{device.pk}/enable/",
        f"/manage/devices/{device.pk}/rotate-key/",
        f"/manage/devices/{device.pk}/revoke-key/",
        f"/manage/devices/{device.pk}/groups/",
        f"/manage/channels/{channel.pk}/allocate/",
        "/manage/groups/",
        f"/manage/groups/{group.pk}/",
        "/platform/enter/",
    ]:
        assert client.post(path, {}).status_code == 403, path
    # ... and every page with a form carries the token.
    for path in [
        "/manage/facilities/new/",
        f"/manage/devices/{device.pk}/",
        f"/manage/groups/{group.pk}/",
        "/manage/groups/",
    ]:
        html = client.get(path).content.decode()
        assert html.count('<form method="post"') == html.count('name="csrfmiddlewaretoken"') > 1, path


def test_the_device_list_is_paginated():
    facility = FacilityFactory()
    device_type = DeviceTypeFactory()
    for n in range(55):
        DeviceFactory(facility=facility, tenant=facility.tenant, device_type=device_type, serial=f"PG-{n:04d}")
    client, _ = signed_in(Role.VIEWER, facility)
    first = client.get("/manage/devices/").content.decode()
    second = client.get("/manage/devices/?page=2").content.decode()
    assert first.count("data-device-id=") == 50 and second.count("data-device-id=") == 5
    assert "PG-0054" in second and "PG-0054" not in first
