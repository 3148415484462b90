"""What every /api/v1/ client relies on: one error shape, field-level messages, cursors, throttling,
timestamps with offsets, filters and role limits on user-bound tokens."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from accounts.models import Role
from accounts.tests.factories import MembershipFactory
from devices.tests.factories import DeviceFactory, FacilityFactory
from integrations.scopes import FLEET_READ, FLEET_WRITE
from integrations.tests.factories import AccessTokenFactory, bearer

pytestmark = pytest.mark.django_db


@pytest.fixture
def facility():
    return FacilityFactory(tags=["north"])


@pytest.fixture
def token(facility):
    return AccessTokenFactory(application__tenant=facility.tenant, scope=f"{FLEET_READ} {FLEET_WRITE}")


def _post(client, token, path, body):
    return client.post(path, body, content_type="application/json", **bearer(token))


def test_a_service_validation_error_comes_back_as_400_with_the_field_named(client, token):
    response = _post(client, token, "/api/v1/facilities/", {"name": "X", "timezone": "Mars/Olympus"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["status"] == 400
    assert "IANA" in error["fields"]["timezone"][0]


def test_a_duplicate_name_is_a_400_not_a_500(client, token, facility):
    response = _post(client, token, "/api/v1/facilities/", {"name": facility.name, "timezone": "UTC"})
    assert response.status_code == 400
    assert "already exists" in str(response.json()["error"])


def test_a_missing_field_and_a_bad_type_are_each_reported_on_their_field(client, token, facility):
    response = _post(client, token, "/api/v1/devices/", {"device_type": "abc", "facility": facility.pk})
    fields = response.json()["error"]["fields"]
    assert response.status_code == 400
    assert set(fields) == {"serial", "device_type"}


def test_a_bad_serial_is_refused_by_the_device_service(client, token, facility):
    device = DeviceFactory(facility=facility)
    body = {"serial": "??", "device_type": device.device_type_id, "facility": facility.pk}
    response = _post(client, token, "/api/v1/devices/", body)
    assert response.status_code == 400
    assert "serial" in response.json()["error"]["fields"]


def test_malformed_json_gets_the_same_error_shape(client, token):
    response = client.post("/api/v1/facilities/", "{not json", content_type="application/json", **bearer(token))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_an_unknown_filter_choice_is_a_400_with_the_field_named(client, token):
    response = client.get("/api/v1/channels/?quantity=flux", **bearer(token))
    assert response.status_code == 400
    assert "quantity" in response.json()["error"]["fields"]


def test_filters_narrow_the_list(client, token, facility):
    FacilityFactory(tenant=facility.tenant, tags=["south"], name="Southern")
    device = DeviceFactory(facility=facility)
    rows = client.get("/api/v1/facilities/?tag=north", **bearer(token)).json()["results"]
    assert [row["id"] for row in rows] == [facility.pk]
    channels = client.get(f"/api/v1/channels/?device={device.pk}&quantity=active_energy", **bearer(token)).json()
    assert [row["quantity"] for row in channels["results"]] == ["active_energy"]


def test_timestamps_carry_an_explicit_offset(client, token, facility):
    row = client.get(f"/api/v1/facilities/{facility.pk}/", **bearer(token)).json()
    assert row["created_at"].endswith("+00:00")


def test_cursor_pages_visit_every_row_exactly_once(client, token, facility):
    for n in range(6):
        FacilityFactory(tenant=facility.tenant, name=f"Site {n}")
    seen, url = [], "/api/v1/facilities/?page_size=2"
    while url:
        page = client.get(url, **bearer(token)).json()
        assert len(page["results"]) <= 2
        seen += [row["id"] for row in page["results"]]
        url = page["next"]
    assert len(seen) == 7 == len(set(seen))


def test_a_page_size_above_the_maximum_is_capped(client, token):
    page = client.get("/api/v1/facilities/?page_size=1000000", **bearer(token))
    assert page.status_code == 200


def test_each_client_application_has_its_own_request_budget(client, token, settings, facility):
    cache.clear()
    settings.API_THROTTLE_RATE = "3/min"
    other = AccessTokenFactory(application__tenant=facility.tenant, scope=FLEET_READ)
    for _ in range(3):
        assert client.get("/api/v1/facilities/", **bearer(token)).status_code == 200
    throttled = client.get("/api/v1/facilities/", **bearer(token))
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "throttled"
    assert int(throttled["Retry-After"]) > 0
    # A second token of the same application shares its budget; another application does not.
    same_app = AccessTokenFactory(application=token.application, scope=FLEET_READ)
    assert client.get("/api/v1/facilities/", **bearer(same_app)).status_code == 429
    assert client.get("/api/v1/facilities/", **bearer(other)).status_code == 200
    cache.clear()


def test_a_user_bound_token_is_limited_by_that_users_role(client, facility):
    viewer = MembershipFactory(tenant=facility.tenant, role=Role.VIEWER)
    token = AccessTokenFactory(
        application__tenant=facility.tenant, user=viewer.user, scope=f"{FLEET_READ} {FLEET_WRITE}"
    )
    assert client.get("/api/v1/facilities/", **bearer(token)).status_code == 200
    refused = _post(client, token, "/api/v1/loads/", {"facility": facility.pk, "name": "HVAC"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"


def test_a_facility_manager_token_writes_to_its_facility_but_cannot_create_facilities(client, facility):
    manager = MembershipFactory(tenant=facility.tenant, role=Role.FACILITY_MANAGER, facilities=[facility])
    scope = f"{FLEET_READ} {FLEET_WRITE}"
    token = AccessTokenFactory(application__tenant=facility.tenant, user=manager.user, scope=scope)
    assert _post(client, token, "/api/v1/loads/", {"facility": facility.pk, "name": "HVAC"}).status_code == 201
    assert _post(client, token, "/api/v1/facilities/", {"name": "Mine now", "timezone": "UTC"}).status_code == 403


def test_a_token_whose_user_left_the_tenant_stops_working(client, facility):
    membership = MembershipFactory(tenant=facility.tenant)
    token = AccessTokenFactory(application__tenant=facility.tenant, user=membership.user, scope=FLEET_READ)
    assert client.get("/api/v1/facilities/", **bearer(token)).status_code == 200
    membership.delete()
    assert client.get("/api/v1/facilities/", **bearer(token)).status_code == 403


def test_moving_a_device_and_editing_a_channel_go_through_the_services(client, token, facility):
    device = DeviceFactory(facility=facility)
    target = FacilityFactory(tenant=facility.tenant, name="Target")
    moved = client.patch(
        f"/api/v1/devices/{device.pk}/", {"facility": target.pk}, content_type="application/json", **bearer(token)
    )
    assert moved.status_code == 200 and moved.json()["facility"] == target.pk
    channel = device.channels.first()
    bad = client.patch(
        f"/api/v1/channels/{channel.pk}/", {"tags": [""]}, content_type="application/json", **bearer(token)
    )
    assert bad.status_code == 400 and "tags" in bad.json()["error"]["fields"]


def test_ids_too_big_for_the_database_are_a_404_or_a_field_error_not_a_500(client, token, facility):
    huge = 2**70
    assert client.get(f"/api/v1/facilities/{huge}/", **bearer(token)).status_code == 404
    listed = client.get(f"/api/v1/devices/?facility={huge}", **bearer(token))
    assert listed.status_code == 400 and "facility" in listed.json()["error"]["fields"]
    created = _post(client, token, "/api/v1/loads/", {"facility": huge, "name": "X"})
    assert created.status_code == 400 and "facility" in created.json()["error"]["fields"]
