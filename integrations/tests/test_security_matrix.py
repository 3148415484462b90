"""Every /api/v1/ endpoint × {no token, expired token, wrong scope, another tenant's token, right token}.

Only the right token reaches tenant A's data. Another tenant's token gets exactly the answer it
would get for an id that does not exist, so it cannot even learn that A's objects exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from devices.models import DeviceGroup, Facility
from devices.tests.factories import DeviceFactory, DeviceGroupFactory, DeviceTypeFactory, FacilityFactory, LoadFactory
from integrations.scopes import ALERTS_READ, ALERTS_WRITE, BILLING_READ, FLEET_READ, FLEET_WRITE, READINGS_READ
from integrations.tests.factories import AccessTokenFactory, ApplicationFactory, bearer

pytestmark = pytest.mark.django_db

MISSING = 987_654_321
RANGE = "start=2026-11-01T00:00:00%2B01:00&end=2026-11-02T00:00:00%2B01:00"


@dataclass
class World:
    facility: Any
    load: Any
    group: Any
    device: Any
    channel: Any
    device_type: Any
    other_facility: Any

    def ids(self, missing: bool = False) -> dict[str, int]:
        if missing:
            return dict.fromkeys(("facility", "load", "group", "device", "channel"), MISSING) | {
                "device_type": self.device_type.pk
            }
        return {
            "facility": self.facility.pk,
            "load": self.load.pk,
            "group": self.group.pk,
            "device": self.device.pk,
            "channel": self.channel.pk,
            "device_type": self.device_type.pk,
        }


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # formatted with World.ids()
    scope: str
    # how another tenant's token must be answered:
    #   "hidden": exactly as for a missing id (404 for a path id, 400 for a body reference)
    #   "list": 200 without any of A's rows
    #   "own": the request is valid within the other tenant and must only touch that tenant
    #   "shared": the shared device-type catalogue, the same for every tenant
    #   "selection": channels chosen by a facility: A's facility selects nothing for the other tenant
    cross: str
    body: Callable[[dict[str, int]], dict[str, Any]] | None = None
    ok: int = 200
    reads: tuple[str, ...] = field(default=())


ENDPOINTS = [
    Endpoint("get", "/api/v1/facilities/", FLEET_READ, "list", reads=("facility",)),
    Endpoint("get", "/api/v1/facilities/{facility}/", FLEET_READ, "hidden"),
    Endpoint("post", "/api/v1/facilities/", FLEET_WRITE, "own", lambda i: {"name": "New", "timezone": "UTC"}, 201),
    Endpoint("get", "/api/v1/loads/?facility={facility}", FLEET_READ, "list", reads=("load",)),
    Endpoint("get", "/api/v1/loads/{load}/", FLEET_READ, "hidden"),
    Endpoint("post", "/api/v1/loads/", FLEET_WRITE, "hidden", lambda i: {"facility": i["facility"], "name": "L"}, 201),
    Endpoint("get", "/api/v1/device-groups/", FLEET_READ, "list", reads=("group",)),
    Endpoint("get", "/api/v1/device-groups/{group}/", FLEET_READ, "hidden"),
    Endpoint("post", "/api/v1/device-groups/", FLEET_WRITE, "own", lambda i: {"name": "G"}, 201),
    Endpoint("get", "/api/v1/device-types/", FLEET_READ, "shared"),
    Endpoint("get", "/api/v1/devices/?facility={facility}", FLEET_READ, "list", reads=("device",)),
    Endpoint("get", "/api/v1/devices/{device}/", FLEET_READ, "hidden"),
    Endpoint(
        "post",
        "/api/v1/devices/",
        FLEET_WRITE,
        "hidden",
        lambda i: {"serial": "NEW-0001", "device_type": i["device_type"], "facility": i["facility"]},
        201,
    ),
    Endpoint("patch", "/api/v1/devices/{device}/", FLEET_WRITE, "hidden", lambda i: {"groups": [i["group"]]}),
    Endpoint("get", "/api/v1/channels/?device={device}", FLEET_READ, "list", reads=("channel",)),
    Endpoint("get", "/api/v1/channels/{channel}/", FLEET_READ, "hidden"),
    Endpoint("patch", "/api/v1/channels/{channel}/", FLEET_WRITE, "hidden", lambda i: {"name": "Renamed"}),
    Endpoint("patch", "/api/v1/facilities/{facility}/", FLEET_WRITE, "hidden", lambda i: {"peak_target_kw": "50"}),
    Endpoint("patch", "/api/v1/loads/{load}/", FLEET_WRITE, "hidden", lambda i: {"cost_centre": "CC-1"}),
    Endpoint("delete", "/api/v1/loads/{load}/", FLEET_WRITE, "hidden", lambda i: {}, 204),
    Endpoint(
        "patch", "/api/v1/device-groups/{group}/", FLEET_WRITE, "hidden", lambda i: {"add_devices": [i["device"]]}
    ),
    Endpoint("delete", "/api/v1/device-groups/{group}/", FLEET_WRITE, "hidden", lambda i: {}, 204),
    Endpoint("get", "/api/v1/device-types/{device_type}/", FLEET_READ, "shared"),
    Endpoint("delete", "/api/v1/devices/{device}/", FLEET_WRITE, "hidden", lambda i: {}, 204),
    Endpoint("post", "/api/v1/devices/{device}/rotate-key/", FLEET_WRITE, "hidden", lambda i: {}),
    Endpoint("post", "/api/v1/devices/{device}/revoke-key/", FLEET_WRITE, "hidden", lambda i: {}),
    Endpoint("patch", "/api/v1/channels/{channel}/", FLEET_WRITE, "hidden", lambda i: {"load": i["load"]}),
    Endpoint("get", "/api/v1/channels/{channel}/allocations/", FLEET_READ, "hidden"),
    Endpoint("get", "/api/v1/readings/series/?channel={channel}&" + RANGE, READINGS_READ, "hidden"),
    Endpoint("get", "/api/v1/readings/series/?channel={channel}&resolution=raw&" + RANGE, READINGS_READ, "hidden"),
    Endpoint("get", "/api/v1/readings/series/?facility={facility}&" + RANGE, READINGS_READ, "selection"),
    Endpoint("get", "/api/v1/readings/latest/?channel={channel}", READINGS_READ, "hidden"),
    Endpoint("get", "/api/v1/readings/export.csv?channel={channel}&" + RANGE, READINGS_READ, "hidden"),
    Endpoint("get", "/api/v1/facilities/{facility}/analysis/?range=today", READINGS_READ, "hidden"),
    Endpoint("get", "/api/v1/benchmark/", READINGS_READ, "list", reads=("facility",)),
    Endpoint("get", "/api/v1/events/?device={device}", ALERTS_READ, "list"),
    Endpoint("get", "/api/v1/alerts/?facility={facility}", ALERTS_READ, "list"),
    Endpoint(
        "post",
        "/api/v1/alert-rules/",
        ALERTS_WRITE,
        "hidden",
        lambda i: {"name": "Peak", "kind": "demand_threshold", "device": i["device"], "threshold": 5, "unit": "kW"},
        201,
    ),
]


@pytest.fixture
def world() -> World:
    facility = FacilityFactory()
    group = DeviceGroupFactory(tenant=facility.tenant)
    device_type = DeviceTypeFactory()
    device = DeviceFactory(facility=facility, device_type=device_type)
    return World(
        facility=facility,
        load=LoadFactory(facility=facility),
        group=group,
        device=device,
        channel=device.channels.first(),
        device_type=device_type,
        other_facility=FacilityFactory(),
    )


def _call(client: Any, endpoint: Endpoint, ids: dict[str, int], headers: dict[str, str]) -> Any:
    body = endpoint.body(ids) if endpoint.body else None
    kwargs: dict[str, Any] = {"content_type": "application/json"} if body is not None else {}
    return getattr(client, endpoint.method)(endpoint.path.format(**ids), body, **kwargs, **headers)


def _wrong_scope(endpoint: Endpoint) -> str:
    return (
        FLEET_READ
        if endpoint.scope == FLEET_WRITE
        else BILLING_READ
        if endpoint.scope != BILLING_READ
        else READINGS_READ
    )


def _id(endpoint: Endpoint) -> str:
    return f"{endpoint.method.upper()} {endpoint.path}"


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=_id)
def test_without_a_token_the_answer_is_401_with_a_bearer_challenge(client, world, endpoint):
    response = _call(client, endpoint, world.ids(), {})
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=_id)
def test_an_expired_token_is_refused_with_401(client, world, endpoint):
    token = AccessTokenFactory(application__tenant=world.facility.tenant, scope=endpoint.scope, expired=True)
    assert _call(client, endpoint, world.ids(), bearer(token)).status_code == 401


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=_id)
def test_a_token_without_the_endpoints_scope_is_refused_with_403(client, world, endpoint):
    token = AccessTokenFactory(application__tenant=world.facility.tenant, scope=_wrong_scope(endpoint))
    response = _call(client, endpoint, world.ids(), bearer(token))
    assert response.status_code == 403
    assert endpoint.scope in response.json()["error"]["message"]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=_id)
def test_another_tenants_token_never_reaches_or_reveals_tenant_as_data(client, world, endpoint):
    other = AccessTokenFactory(application__tenant=world.other_facility.tenant, scope=endpoint.scope)
    facilities_before = Facility.objects.filter(tenant=world.facility.tenant).count()
    groups_before = DeviceGroup.objects.filter(tenant=world.facility.tenant).count()
    response = _call(client, endpoint, world.ids(), bearer(other))
    if endpoint.cross == "hidden":
        assert response.status_code in (400, 404)
        as_if_missing = _call(client, endpoint, world.ids(missing=True), bearer(other))
        assert (response.status_code, response.json()) == (as_if_missing.status_code, as_if_missing.json())
    elif endpoint.cross == "list":
        assert response.status_code == 200
        seen = [row["id"] for row in response.json()["results"]]
        assert all(world.ids()[kind] not in seen for kind in endpoint.reads)
    elif endpoint.cross == "selection":
        assert response.status_code == 200
        assert response.json()["series"] == []
    elif endpoint.cross == "own":
        assert response.status_code == endpoint.ok
    else:
        assert response.status_code == 200
    assert Facility.objects.filter(tenant=world.facility.tenant).count() == facilities_before
    assert DeviceGroup.objects.filter(tenant=world.facility.tenant).count() == groups_before
    world.device.refresh_from_db()
    world.channel.refresh_from_db()
    assert list(world.device.groups.all()) == []
    assert world.channel.name != "Renamed"


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=_id)
def test_the_right_token_succeeds(client, world, endpoint):
    token = AccessTokenFactory(application__tenant=world.facility.tenant, scope=endpoint.scope)
    response = _call(client, endpoint, world.ids(), bearer(token))
    assert response.status_code == endpoint.ok, response.content
    ids = world.ids()
    for kind in endpoint.reads:
        assert ids[kind] in [row["id"] for row in response.json()["results"]]


def test_a_token_of_an_application_without_a_tenant_cannot_call_the_api(client, world):
    token = AccessTokenFactory(application=ApplicationFactory(tenant=None), scope=FLEET_READ)
    assert client.get("/api/v1/facilities/", **bearer(token)).status_code == 403
