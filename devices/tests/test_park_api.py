"""The park's management through /api/v1/: the portal's actions, with the same services and rules."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.utils import timezone

from accounts.access import Access
from accounts.models import Role
from accounts.tests.factories import MembershipFactory
from devices.keys import private_key_load, public_key_bytes, signature_valid
from devices.models import Device, DeviceGroup, Facility, Load
from devices.selectors import channel_load_at, channel_loads_at
from devices.tests.factories import DeviceFactory, DeviceGroupFactory, DeviceTypeFactory, FacilityFactory, LoadFactory
from integrations.scopes import FLEET_READ, FLEET_WRITE
from integrations.tests.factories import AccessTokenFactory, bearer

pytestmark = pytest.mark.django_db

UTC = dt.UTC


@pytest.fixture
def facility():
    return FacilityFactory()


def token_for(facility: Facility, role: Role | None = None, *, grant: bool = True):
    """A client-credentials token (tenant-wide) or, with a role, one bound to a member of that role."""
    user = None
    if role is not None:
        facilities = [facility] if role == Role.FACILITY_MANAGER and grant else []
        user = MembershipFactory(tenant=facility.tenant, role=role, facilities=facilities).user
    return AccessTokenFactory(application__tenant=facility.tenant, user=user, scope=f"{FLEET_READ} {FLEET_WRITE}")


def call(client, method, path, token, body=None):
    if body is None and method != "post":
        return getattr(client, method)(path, **bearer(token))
    return getattr(client, method)(path, body, content_type="application/json", **bearer(token))


def test_a_facility_is_created_with_every_field_patched_and_archived(client, facility):
    token = token_for(facility)
    body = {
        "name": "Depot",
        "timezone": "America/New_York",
        "kind": "warehouse",
        "floor_area_m2": "800.0",
        "opening_hours": {"mon": [["06:00", "22:00"]]},
        "peak_target_kw": "95.5",
        "holiday_region": "US-NY",
    }
    created = call(client, "post", "/api/v1/facilities/", token, body)
    assert created.status_code == 201, created.json()
    pk = created.json()["id"]
    patched = call(client, "patch", f"/api/v1/facilities/{pk}/", token, {"peak_target_kw": "120", "tags": ["east"]})
    assert patched.status_code == 200
    assert patched.json()["peak_target_kw"] == "120.000" and patched.json()["tags"] == ["east"]
    assert patched.json()["opening_hours"] == {"mon": [["06:00", "22:00"]]}
    assert call(client, "delete", f"/api/v1/facilities/{pk}/", token).status_code == 204
    assert Facility.objects.get(pk=pk).archived_at is not None
    assert call(client, "get", f"/api/v1/facilities/{pk}/", token).status_code == 404


def test_bad_facility_input_is_a_400_naming_the_field_and_stores_nothing(client, facility):
    token = token_for(facility)
    response = call(client, "patch", f"/api/v1/facilities/{facility.pk}/", token, {"timezone": "Nowhere/City"})
    assert response.status_code == 400 and "timezone" in response.json()["error"]["fields"]
    response = call(
        client, "patch", f"/api/v1/facilities/{facility.pk}/", token, {"opening_hours": {"mon": [["9", "5"]]}}
    )
    assert response.status_code == 400
    facility.refresh_from_db()
    assert facility.timezone == "Europe/Berlin" and facility.opening_hours == {}


def test_a_load_gets_a_cost_centre_and_is_archived_only_once_no_channel_feeds_it(client, facility):
    token = token_for(facility, Role.FACILITY_MANAGER)
    device = DeviceFactory(facility=facility)
    created = call(
        client,
        "post",
        "/api/v1/loads/",
        token,
        {"facility": facility.pk, "name": "HVAC", "kind": "hvac", "cost_centre": "CC-9"},
    )
    assert created.status_code == 201 and created.json()["cost_centre"] == "CC-9"
    load_id = created.json()["id"]
    assert (
        call(client, "patch", f"/api/v1/loads/{load_id}/", token, {"cost_centre": "CC-10"}).json()["cost_centre"]
        == "CC-10"
    )
    channel = device.channels.first()
    assert call(client, "patch", f"/api/v1/channels/{channel.pk}/", token, {"load": load_id}).status_code == 200
    refused = call(client, "delete", f"/api/v1/loads/{load_id}/", token)
    assert refused.status_code == 400 and "allocate them elsewhere" in refused.json()["error"]["message"] + str(
        refused.json()
    )
    call(client, "patch", f"/api/v1/channels/{channel.pk}/", token, {"load": None})
    assert call(client, "delete", f"/api/v1/loads/{load_id}/", token).status_code == 204
    assert Load.objects.get(pk=load_id).archived_at is not None


def test_posting_a_device_returns_its_private_key_once_and_the_key_signs_for_the_stored_public_key(client, facility):
    token = token_for(facility)
    body = {"serial": "API-KEY-1", "device_type": DeviceTypeFactory().pk, "facility": facility.pk}
    response = call(client, "post", "/api/v1/devices/", token, body)
    assert response.status_code == 201 and response["Cache-Control"] == "no-store"
    key = private_key_load(response.json()["private_key_pem"])
    device = Device.objects.get(serial="API-KEY-1")
    assert signature_valid(public_key=bytes(device.public_key), signature=key.sign(b"hello"), message=b"hello")
    assert device.key_version == 1 and device.channels.count() == 2
    assert "private_key_pem" not in call(client, "get", f"/api/v1/devices/{device.pk}/", token).json()


def test_a_device_may_bring_its_own_public_key(client, facility):
    token = token_for(facility)
    own = Ed25519PrivateKey.generate()
    body = {"serial": "API-OWN-1", "device_type": DeviceTypeFactory().pk, "facility": facility.pk}
    response = call(client, "post", "/api/v1/devices/", token, {**body, "public_key": public_key_bytes(own).hex()})
    assert response.status_code == 201 and response.json()["private_key_pem"] is None
    assert bytes(Device.objects.get(serial="API-OWN-1").public_key) == public_key_bytes(own)
    bad = call(client, "post", "/api/v1/devices/", token, {**body, "serial": "API-OWN-2", "public_key": "abcd"})
    assert bad.status_code == 400 and "public_key" in bad.json()["error"]["fields"]
    assert not Device.objects.filter(serial="API-OWN-2").exists()


def test_a_duplicate_serial_is_a_400_that_does_not_say_why(client, facility):
    existing = DeviceFactory(facility=facility)
    body = {"serial": existing.serial, "device_type": existing.device_type_id, "facility": facility.pk}
    response = call(client, "post", "/api/v1/devices/", token_for(facility), body)
    assert response.status_code == 400 and "cannot be registered" in str(response.json())


def test_a_device_is_renamed_disabled_enabled_rotated_and_revoked(client, facility):
    device = DeviceFactory(facility=facility)
    token = token_for(facility, Role.FACILITY_MANAGER)
    path = f"/api/v1/devices/{device.pk}/"
    assert call(client, "patch", path, token, {"name": "Till 2", "enabled": False}).json()["status"] == "disabled"
    assert call(client, "patch", path, token, {"enabled": True}).json()["status"] == "provisioned"
    assert call(client, "delete", path, token).status_code == 204
    device.refresh_from_db()
    assert device.status == Device.Status.DISABLED and device.name == "Till 2"
    rotated = call(client, "post", f"{path}rotate-key/", token)
    assert rotated.status_code == 200 and rotated.json()["key_version"] == 1
    device.refresh_from_db()
    assert public_key_bytes(private_key_load(rotated.json()["private_key_pem"])) == bytes(device.public_key)
    assert call(client, "post", f"{path}revoke-key/", token).status_code == 200
    device.refresh_from_db()
    assert device.key_revoked_at is not None


def test_groups_are_renamed_filled_emptied_and_deleted(client, facility):
    device = DeviceFactory(facility=facility)
    token = token_for(facility)
    group = call(client, "post", "/api/v1/device-groups/", token, {"name": "Wave A"}).json()
    path = f"/api/v1/device-groups/{group['id']}/"
    assert call(client, "patch", path, token, {"name": "Wave B", "add_devices": [device.pk]}).status_code == 200
    assert list(DeviceGroup.objects.get(pk=group["id"]).devices.all()) == [device]
    call(client, "patch", path, token, {"remove_devices": [device.pk]})
    assert not DeviceGroup.objects.get(pk=group["id"]).devices.exists()
    assert call(client, "delete", path, token).status_code == 204
    assert not DeviceGroup.objects.filter(pk=group["id"]).exists()


def test_a_channel_allocation_has_an_effective_date_and_the_past_keeps_its_load(client, facility):
    device = DeviceFactory(facility=facility)
    fridge, lights = LoadFactory(facility=facility), LoadFactory(facility=facility)
    channel = device.channels.first()
    token = token_for(facility)
    path = f"/api/v1/channels/{channel.pk}/"
    t1 = timezone.now() - dt.timedelta(days=40)
    t2 = timezone.now() - dt.timedelta(days=3)
    assert call(client, "patch", path, token, {"load": fridge.pk, "valid_from": t1.isoformat()}).status_code == 200
    assert (
        call(client, "patch", path, token, {"load": lights.pk, "valid_from": t2.isoformat()}).json()["load"]
        == lights.pk
    )
    backdated = call(
        client, "patch", path, token, {"load": fridge.pk, "valid_from": (t1 + dt.timedelta(days=1)).isoformat()}
    )
    assert backdated.status_code == 400 and "valid_from" in backdated.json()["error"]["fields"]
    future = call(
        client,
        "patch",
        path,
        token,
        {"load": fridge.pk, "valid_from": (timezone.now() + dt.timedelta(days=1)).isoformat()},
    )
    assert future.status_code == 400
    access = Access(tenant_id=facility.tenant_id, role=Role.ADMIN, facility_ids=None)
    assert channel_load_at(access=access, channel_id=channel.pk, at=t1 - dt.timedelta(seconds=1)) is None
    assert channel_load_at(access=access, channel_id=channel.pk, at=t1 + dt.timedelta(days=10)) == fridge
    assert channel_load_at(access=access, channel_id=channel.pk, at=timezone.now()) == lights
    history = call(client, "get", f"{path}allocations/", token).json()
    assert [(a["load"], a["valid_from"][:10]) for a in history] == [
        (fridge.pk, t1.date().isoformat()),
        (lights.pk, t2.date().isoformat()),
    ]


def test_a_channel_never_allocated_with_dates_reports_its_current_load_at_any_time(facility):
    device = DeviceFactory(facility=facility)
    load = LoadFactory(facility=facility)
    channel = device.channels.first()
    type(channel).objects.filter(pk=channel.pk).update(load=load)  # as the admin's inline sets it
    access = Access(tenant_id=facility.tenant_id, role=Role.ADMIN, facility_ids=None)
    at = dt.datetime(2020, 1, 1, tzinfo=UTC)
    assert channel_loads_at(access=access, channel_ids=[channel.pk], at=at) == {channel.pk: load.pk}
    other = Access(tenant_id=FacilityFactory().tenant_id, role=Role.ADMIN, facility_ids=None)
    assert channel_loads_at(access=other, channel_ids=[channel.pk], at=at) == {}


def test_allocation_changes_over_a_month_agree_with_the_load_at_each_moment(facility):
    from devices.selectors import channel_allocation_changes
    from devices.services import channel_allocate

    access = Access(tenant_id=facility.tenant_id, role=Role.ADMIN, facility_ids=None)
    fridge, lights = LoadFactory(facility=facility), LoadFactory(facility=facility)
    moved, untouched = (
        DeviceFactory(facility=facility).channels.first(),
        DeviceFactory(facility=facility).channels.first(),
    )
    type(moved).objects.filter(pk__in=[moved.pk, untouched.pk]).update(load=fridge)
    moved.refresh_from_db()
    untouched.refresh_from_db()
    start, end = dt.datetime(2026, 4, 1, tzinfo=UTC), dt.datetime(2026, 5, 1, tzinfo=UTC)
    t1, t2 = dt.datetime(2026, 4, 10, 8, tzinfo=UTC), dt.datetime(2026, 4, 20, 8, tzinfo=UTC)
    channel_allocate(access=access, channel=moved, load=lights, valid_from=t1)
    channel_allocate(access=access, channel=moved, load=None, valid_from=t2)
    changes = channel_allocation_changes(access=access, channels=[moved, untouched], start=start, end=end)
    assert changes == {moved.pk: [(start, fridge.pk), (t1, lights.pk), (t2, None)], untouched.pk: [(start, fridge.pk)]}
    for at in (start, t1, t2, dt.datetime(2026, 4, 15, tzinfo=UTC)):
        expected = channel_loads_at(access=access, channel_ids=[moved.pk], at=at)[moved.pk]
        assert [load for since, load in changes[moved.pk] if since <= at][-1] == expected
    other = Access(tenant_id=FacilityFactory().tenant_id, role=Role.ADMIN, facility_ids=None)
    assert channel_allocation_changes(access=other, channels=[moved], start=start, end=end) == {}


def test_a_load_of_another_facility_cannot_be_allocated(client, facility):
    device = DeviceFactory(facility=facility)
    elsewhere = LoadFactory(facility=FacilityFactory(tenant=facility.tenant))
    channel = device.channels.first()
    response = call(client, "patch", f"/api/v1/channels/{channel.pk}/", token_for(facility), {"load": elsewhere.pk})
    assert response.status_code == 400 and "load" in response.json()["error"]["fields"]
    channel.refresh_from_db()
    assert channel.load_id is None and not channel.allocations.exists()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("patch", "/api/v1/facilities/{facility}/", {"name": "X"}),
        ("delete", "/api/v1/facilities/{facility}/", None),
        ("patch", "/api/v1/loads/{load}/", {"name": "X"}),
        ("delete", "/api/v1/loads/{load}/", None),
        ("patch", "/api/v1/device-groups/{group}/", {"name": "X"}),
        ("delete", "/api/v1/device-groups/{group}/", None),
        ("patch", "/api/v1/devices/{device}/", {"enabled": False}),
        ("delete", "/api/v1/devices/{device}/", None),
        ("post", "/api/v1/devices/{device}/rotate-key/", None),
        ("post", "/api/v1/devices/{device}/revoke-key/", None),
        ("patch", "/api/v1/channels/{channel}/", {"load": None}),
        ("get", "/api/v1/channels/{channel}/allocations/", None),
    ],
)
def test_another_tenants_ids_answer_404_and_change_nothing(client, facility, method, path, body):
    device = DeviceFactory(facility=facility)
    ids = {
        "facility": facility.pk,
        "load": LoadFactory(facility=facility).pk,
        "group": DeviceGroupFactory(tenant=facility.tenant).pk,
        "device": device.pk,
        "channel": device.channels.first().pk,
    }
    intruder = token_for(FacilityFactory())
    assert call(client, method, path.format(**ids), intruder, body).status_code == 404
    device.refresh_from_db()
    facility.refresh_from_db()
    assert device.status != Device.Status.DISABLED and device.key_version == 0 and facility.archived_at is None
    assert DeviceGroup.objects.filter(pk=ids["group"], name__startswith="Group").exists()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/v1/facilities/", {"name": "N", "timezone": "UTC"}),
        ("patch", "/api/v1/facilities/{facility}/", {"name": "X"}),
        ("delete", "/api/v1/facilities/{facility}/", None),
        ("post", "/api/v1/loads/", {"facility": "{facility}", "name": "N"}),
        ("patch", "/api/v1/loads/{load}/", {"name": "X"}),
        ("post", "/api/v1/device-groups/", {"name": "N"}),
        ("patch", "/api/v1/device-groups/{group}/", {"name": "X"}),
        ("delete", "/api/v1/device-groups/{group}/", None),
        ("post", "/api/v1/devices/", {"serial": "N-0001", "device_type": "{type}", "facility": "{facility}"}),
        ("patch", "/api/v1/devices/{device}/", {"enabled": False}),
        ("delete", "/api/v1/devices/{device}/", None),
        ("post", "/api/v1/devices/{device}/rotate-key/", None),
        ("post", "/api/v1/devices/{device}/revoke-key/", None),
        ("patch", "/api/v1/channels/{channel}/", {"load": "{load}"}),
    ],
)
@pytest.mark.parametrize("role", [Role.VIEWER, Role.FACILITY_MANAGER])
def test_a_viewer_changes_nothing_and_a_facility_manager_nothing_outside_the_grant(
    client, facility, method, path, body, role
):
    """Both tokens are bound to a user; the facility manager's grant covers another facility only."""
    device = DeviceFactory(facility=facility)
    ids = {
        "facility": facility.pk,
        "load": LoadFactory(facility=facility).pk,
        "group": DeviceGroupFactory(tenant=facility.tenant).pk,
        "device": device.pk,
        "channel": device.channels.first().pk,
        "type": device.device_type_id,
    }
    if role == Role.FACILITY_MANAGER:
        granted = FacilityFactory(tenant=facility.tenant)
        user = MembershipFactory(tenant=facility.tenant, role=role, facilities=[granted]).user
        token = AccessTokenFactory(application__tenant=facility.tenant, user=user, scope=f"{FLEET_READ} {FLEET_WRITE}")
    else:
        token = token_for(facility, role)
    filled = {k: (ids[v[1:-1]] if isinstance(v, str) and v.startswith("{") else v) for k, v in (body or {}).items()}
    response = call(client, method, path.format(**ids), token, filled or None)
    # A facility manager cannot even see facilities outside the grant: those ids read as missing.
    assert response.status_code in (400, 403, 404), response.content
    if role == Role.VIEWER:
        assert response.status_code in (400, 403)
    device.refresh_from_db()
    facility.refresh_from_db()
    assert device.status != Device.Status.DISABLED and device.key_version == 0 and device.key_revoked_at is None
    assert facility.archived_at is None and facility.name != "X"
    assert not Facility.objects.filter(name="N").exists() and not Device.objects.filter(serial="N-0001").exists()
    assert not DeviceGroup.objects.filter(name__in=["N", "X"]).exists()
    assert not device.channels.filter(load__isnull=False).exists()


def test_the_schema_documents_every_management_call(client):
    schema = client.get("/api/schema/?format=json").json()
    paths = schema["paths"]
    for path, method in [
        ("/api/v1/facilities/{id}/", "patch"),
        ("/api/v1/facilities/{id}/", "delete"),
        ("/api/v1/loads/{id}/", "patch"),
        ("/api/v1/loads/{id}/", "delete"),
        ("/api/v1/device-groups/{id}/", "patch"),
        ("/api/v1/device-groups/{id}/", "delete"),
        ("/api/v1/devices/{id}/", "patch"),
        ("/api/v1/devices/{id}/", "delete"),
        ("/api/v1/devices/{id}/rotate-key/", "post"),
        ("/api/v1/devices/{id}/revoke-key/", "post"),
        ("/api/v1/channels/{id}/", "patch"),
        ("/api/v1/channels/{id}/allocations/", "get"),
    ]:
        assert method in paths[path], (path, method)
    assert "public_key" in str(schema["components"]["schemas"]["DeviceRegisterInputRequest"])


def test_key_actions_answer_only_post(client, facility):
    device = DeviceFactory(facility=facility)
    token = token_for(facility)
    for action in ("rotate-key", "revoke-key"):
        path = f"/api/v1/devices/{device.pk}/{action}/"
        assert call(client, "get", path, token).status_code == 405
        moved = call(client, "patch", path, token, {"name": "renamed"})
        assert moved.status_code == 405
    assert Device.objects.get(pk=device.pk).name == device.name
