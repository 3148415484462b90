"""Findings of the independent security test (issue 18) on /api/v1/: forged cursors and existence oracles."""

from __future__ import annotations

import base64

import pytest
from django.core.cache import cache

from devices.models import Device, DeviceGroup, Facility, Load
from devices.tests.factories import DeviceFactory, DeviceGroupFactory, FacilityFactory, LoadFactory
from integrations.scopes import FLEET_READ, FLEET_WRITE
from integrations.tests.factories import AccessTokenFactory, bearer

pytestmark = pytest.mark.django_db

LISTS = ["channels", "devices", "facilities", "loads", "device-groups", "device-types"]
# base64 of "p=6 OR 1=1", as the security test sent it (%3D is "=")
FORGED = "cD02JTIwT1IlMjAxPTE="


def _cursor(raw: str) -> str:
    return base64.b64encode(raw.encode()).decode()


@pytest.fixture
def facility():
    return FacilityFactory()


@pytest.fixture
def token(facility):
    cache.clear()
    return AccessTokenFactory(application__tenant=facility.tenant, scope=f"{FLEET_READ} {FLEET_WRITE}")


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize(
    "cursor",
    [FORGED, _cursor("p=6 OR 1=1"), _cursor("p=-1"), _cursor("p=99999999999999999999999"), _cursor("o=x"), "%%%"],
)
@pytest.mark.parametrize("page_size", [None, "2"])
def test_a_forged_cursor_is_a_400_with_the_usual_error_body(client, token, path, cursor, page_size):
    params = {"cursor": cursor} | ({"page_size": page_size} if page_size else {})
    response = client.get(f"/api/v1/{path}/", params, **bearer(token))
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["status"] == 400 and error["code"] == "invalid"
    assert "cursor" in error["fields"]


def test_a_genuine_cursor_still_pages_through_every_row(client, token, facility):
    for _ in range(3):
        DeviceGroupFactory(tenant=facility.tenant)
    seen: list[int] = []
    url: str | None = "/api/v1/device-groups/?page_size=2"
    while url:
        page = client.get(url, **bearer(token)).json()
        seen += [row["id"] for row in page["results"]]
        url = page["next"]
    assert seen == sorted(DeviceGroup.objects.filter(tenant=facility.tenant).values_list("pk", flat=True))


def _register(client, token, facility, serial):
    device_type = DeviceFactory(facility=facility).device_type
    body = {"serial": serial, "device_type": device_type.pk, "facility": facility.pk}
    return client.post("/api/v1/devices/", body, content_type="application/json", **bearer(token))


def test_a_serial_of_another_tenant_and_one_of_your_own_get_the_same_generic_refusal(client, token, facility):
    DeviceFactory(serial="THEIRS-0001")  # another tenant
    DeviceFactory(facility=facility, serial="MINE-0001")

    theirs = _register(client, token, facility, "THEIRS-0001")
    mine = _register(client, token, facility, "MINE-0001")

    assert theirs.status_code == mine.status_code == 400
    assert theirs.json() == mine.json()
    message = theirs.json()["error"]["fields"]["serial"][0]
    assert "cannot be registered" in message and "claim" in message
    assert "exist" not in message
    assert Device.objects.filter(serial="THEIRS-0001").get().tenant_id != facility.tenant_id


def test_refused_serials_are_rate_limited_per_application(client, token, facility, settings):
    settings.API_SERIAL_REFUSAL_RATE = "3/hour"
    DeviceFactory(serial="TAKEN-0001")
    answers = [_register(client, token, facility, "TAKEN-0001").status_code for _ in range(4)]
    assert answers == [400, 400, 400, 429]
    # The budget is the application's: another token of it is refused too, even for a free serial.
    sibling = AccessTokenFactory(application=token.application, scope=token.scope)
    assert _register(client, sibling, facility, "FREE-0001").status_code == 429
    assert not Device.objects.filter(serial="FREE-0001").exists()
    # Another application is not affected.
    other = AccessTokenFactory(application__tenant=facility.tenant, scope=token.scope)
    assert _register(client, other, facility, "FREE-0001").status_code == 201


def test_successful_registrations_do_not_spend_the_refusal_budget(client, token, facility, settings):
    settings.API_SERIAL_REFUSAL_RATE = "1/hour"
    assert [_register(client, token, facility, f"NEW-{n:04d}").status_code for n in range(3)] == [201] * 3


def test_names_taken_in_another_tenant_are_accepted_so_they_reveal_nothing(client, token, facility):
    """The sweep: facility and group names are unique per tenant and load names per facility, so
    another tenant's names never collide; serials are the only global key a tenant can send."""
    theirs = FacilityFactory(name="Berlin Mitte")
    DeviceGroupFactory(tenant=theirs.tenant, name="Cold rooms")
    LoadFactory(facility=theirs, name="Freezers")

    def post(path, body):
        return client.post(path, body, content_type="application/json", **bearer(token))

    created = post("/api/v1/facilities/", {"name": "Berlin Mitte", "timezone": "Europe/Berlin"})
    assert created.status_code == 201
    assert post("/api/v1/device-groups/", {"name": "Cold rooms"}).status_code == 201
    assert post("/api/v1/loads/", {"facility": created.json()["id"], "name": "Freezers"}).status_code == 201
    assert Facility.objects.filter(name="Berlin Mitte").count() == 2
    assert Load.objects.filter(name="Freezers").count() == 2
