"""The tenant's audit log (django-auditlog): who changed what and when, visible to tenant admins only."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from django.test import Client

from accounts.models import Role
from accounts.tests.factories import MembershipFactory
from devices.models import Device, Facility
from devices.tests.factories import DeviceFactory, LoadFactory
from devices.tests.test_park_portal import FACILITY_POST

pytestmark = pytest.mark.django_db


def admin_client(tenant):
    membership = MembershipFactory(tenant=tenant, role=Role.ADMIN)
    client = Client()
    client.force_login(membership.user)
    return client, membership.user


def entries_for(obj) -> list[LogEntry]:
    return list(LogEntry.objects.get_for_object(obj).order_by("timestamp", "pk"))


def test_facility_device_allocation_and_key_changes_are_logged_with_their_actor():
    device = DeviceFactory()
    load = LoadFactory(facility=device.facility)
    client, user = admin_client(device.tenant)
    client.post("/manage/facilities/new/", FACILITY_POST)
    facility = Facility.objects.get(name=FACILITY_POST["name"])
    channel = device.channels.first()
    client.post(f"/manage/channels/{channel.pk}/allocate/", {f"c{channel.pk}-load": load.pk})
    client.post(f"/manage/devices/{device.pk}/rotate-key/")
    client.post(f"/manage/devices/{device.pk}/revoke-key/")
    client.post(f"/manage/devices/{device.pk}/enable/", {"enabled": "0"})

    created = entries_for(facility)[0]
    assert created.action == LogEntry.Action.CREATE and created.actor == user
    assert created.changes_dict["timezone"][1] == "Europe/Berlin"
    channel_change = entries_for(channel)[-1]
    assert channel_change.changes_dict["load"][1] == str(load.pk) and channel_change.actor == user
    allocation = channel.allocations.get()
    assert entries_for(allocation)[0].action == LogEntry.Action.CREATE
    device_log = [e.changes_dict for e in entries_for(Device.objects.get(pk=device.pk))]
    assert {"key_version": ["0", "1"]} in device_log
    assert any("key_revoked_at" in c for c in device_log)
    assert any(c.get("status") == ["provisioned", "disabled"] for c in device_log)
    assert all("public_key" not in c for c in device_log)


def test_a_tenant_admin_reads_only_the_own_tenants_log_and_others_read_nothing():
    mine = DeviceFactory(name="Mine")
    theirs = DeviceFactory(name="Theirs")
    client, _ = admin_client(mine.tenant)
    client.post(f"/manage/devices/{mine.pk}/enable/", {"enabled": "0"})
    other, _ = admin_client(theirs.tenant)
    other.post(f"/manage/devices/{theirs.pk}/enable/", {"enabled": "0"})
    html = client.get("/manage/audit/").content.decode()
    assert "Mine" in html and "Theirs" not in html
    assert "disabled" in html
    for role in (Role.VIEWER, Role.FACILITY_MANAGER):
        membership = MembershipFactory(
            tenant=mine.tenant, role=role, facilities=[mine.facility] if role == Role.FACILITY_MANAGER else []
        )
        reader = Client()
        reader.force_login(membership.user)
        assert reader.get("/manage/audit/").status_code == 403


def test_invitations_and_role_changes_are_logged_without_the_token():
    device = DeviceFactory()
    client, user = admin_client(device.tenant)
    viewer = MembershipFactory(tenant=device.tenant, role=Role.VIEWER)
    client.post(f"/manage/users/{viewer.pk}/role/", {f"m{viewer.pk}-role": "admin"})
    client.post("/manage/users/", {"email": "gus@example.com", "role": "viewer"})
    role_change = entries_for(viewer)[-1]
    assert role_change.changes_dict["role"] == ["viewer", "admin"] and role_change.actor == user
    invitation_entry = LogEntry.objects.filter(object_repr__startswith="gus@example.com").get()
    assert "token_hash" not in invitation_entry.changes_dict
    assert "gus@example.com" in client.get("/manage/audit/").content.decode()


def test_a_change_through_the_api_is_logged_with_the_tokens_user():
    from devices.tests.test_park_api import call, token_for

    facility = DeviceFactory().facility
    token = token_for(facility, Role.ADMIN)
    response = call(Client(), "patch", f"/api/v1/facilities/{facility.pk}/", token, {"address": "Hafenstraße 1"})
    assert response.status_code == 200, response.content
    change = entries_for(Facility.objects.get(pk=facility.pk))[-1]
    assert change.changes_dict["address"][1] == "Hafenstraße 1"
    assert change.actor == token.user
