"""OAuth 2.0 bearer tokens on the live websockets, through the real ASGI application and Redis layer."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from accounts.models import Role
from accounts.tests.factories import MembershipFactory
from devices.tests.factories import DeviceFactory, FacilityFactory
from energybox.asgi import application
from integrations.scopes import FLEET_READ, READINGS_READ
from integrations.tests.factories import AccessTokenFactory, ApplicationFactory
from integrations.websocket import bearer_token
from portal.tests.live import closed_with, communicator, publish_readings, snapshot_of

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.services,
    pytest.mark.usefixtures("live_layer", "close_thread_connections"),
]


def make_world() -> dict:
    """A tenant with a facility and a metered device, an integration of it, and a second tenant's facility."""
    facility = FacilityFactory(name="Store")
    device = DeviceFactory(facility=facility)
    application = ApplicationFactory(tenant=facility.tenant)
    return {
        "facility": facility,
        "device": device,
        "power": device.channels.get(quantity="active_power").pk,
        "application": application,
        "token": AccessTokenFactory(application=application, scope=READINGS_READ),
        "other_facility": FacilityFactory(name="Not theirs"),
    }


world = database_sync_to_async(make_world)
token_for = database_sync_to_async(AccessTokenFactory)


async def open_socket(path: str, token: str | bytes):
    raw = token if isinstance(token, bytes) else f"Bearer {token}".encode()
    ws = communicator(path, authorization=raw)
    assert (await ws.connect(timeout=5))[0]
    return ws


async def test_a_token_with_readings_read_gets_its_tenants_facility_live():
    w = await world()
    ws = await open_socket(f"/ws/facilities/{w['facility'].pk}/live", w["token"].token)
    snapshot = await snapshot_of(ws)
    assert snapshot["facility"]["id"] == w["facility"].pk
    now = int(time.time() * 1000)
    device = w["device"].pk
    await publish_readings(device_id=device, facility_id=w["facility"].pk, ts=[now], values={w["power"]: [1500.0]})
    message = await ws.receive_json_from(timeout=5)
    assert message["type"] == "readings" and message["values"] == {str(w["power"]): [1500.0]}
    await ws.disconnect()


async def test_a_token_gets_a_device_socket_and_the_park_of_its_tenant():
    w = await world()
    ws = await open_socket(f"/ws/devices/{w['device'].pk}/live", w["token"].token)
    assert [d["id"] for d in (await snapshot_of(ws))["devices"]] == [w["device"].pk]
    await ws.disconnect()
    park = await open_socket("/ws/facilities/live", w["token"].token)
    await park.send_json_to({"type": "subscribe", "facilities": [w["facility"].pk]})
    assert [f["id"] for f in (await snapshot_of(park))["facilities"]] == [w["facility"].pk]
    await park.disconnect()


async def test_another_tenants_facility_is_refused_with_4403():
    w = await world()
    ws = await open_socket(f"/ws/facilities/{w['other_facility'].pk}/live", w["token"].token)
    await closed_with(ws, 4403)


async def test_the_park_never_lists_another_tenants_facility_for_a_token():
    w = await world()
    park = await open_socket("/ws/facilities/live", w["token"].token)
    await park.send_json_to({"type": "subscribe", "facilities": [w["other_facility"].pk]})
    await closed_with(park, 4403)


@pytest.mark.parametrize(
    "header",
    [b"Bearer not-a-token-we-issued", b"Bearer ", b"Bearer two words", b"Bearer " + b"x" * 600],
    ids=["unknown", "empty", "spaces", "oversized"],
)
async def test_an_unknown_or_malformed_token_is_refused_with_4401(header):
    w = await world()
    ws = await open_socket(f"/ws/facilities/{w['facility'].pk}/live", header)
    error = await closed_with(ws, 4401)
    assert "token" in error["reason"].lower() or "authorization" in error["reason"].lower()


async def test_an_expired_token_is_refused_with_4401():
    w = await world()
    expired = await token_for(application=w["application"], scope=READINGS_READ, expired=True)
    ws = await open_socket(f"/ws/facilities/{w['facility'].pk}/live", expired.token)
    error = await closed_with(ws, 4401)
    assert "expired" in error["reason"]


async def test_a_token_without_readings_read_is_refused_with_4403_naming_the_scope():
    w = await world()
    fleet_only = await token_for(application=w["application"], scope=FLEET_READ)
    ws = await open_socket(f"/ws/facilities/{w['facility'].pk}/live", fleet_only.token)
    error = await closed_with(ws, 4403)
    assert READINGS_READ in error["reason"]


async def test_a_users_token_is_narrowed_to_that_users_facility_grant():
    w = await world()

    def manager_token():
        granted = FacilityFactory(tenant=w["facility"].tenant, name="Granted")
        membership = MembershipFactory(tenant=w["facility"].tenant, role=Role.FACILITY_MANAGER, facilities=[granted])
        token = AccessTokenFactory(application=w["application"], user=membership.user, scope=READINGS_READ)
        return granted, token

    granted, token = await database_sync_to_async(manager_token)()
    ws = await open_socket(f"/ws/facilities/{granted.pk}/live", token.token)
    assert (await snapshot_of(ws))["facility"]["id"] == granted.pk
    await ws.disconnect()
    outside = await open_socket(f"/ws/facilities/{w['facility'].pk}/live", token.token)
    await closed_with(outside, 4403)


async def test_a_token_replayed_after_revocation_is_refused():
    w = await world()
    ws = await open_socket(f"/ws/facilities/{w['facility'].pk}/live", w["token"].token)
    await snapshot_of(ws)
    await ws.disconnect()
    raw = w["token"].token
    await database_sync_to_async(w["token"].revoke)()
    again = await open_socket(f"/ws/facilities/{w['facility'].pk}/live", raw)
    await closed_with(again, 4401)


def test_the_authorization_header_is_read_strictly():
    def scope(*values: bytes) -> dict:
        return {"headers": [(b"authorization", value) for value in values]}

    assert bearer_token(scope(b"Bearer abc")) == "abc"
    assert bearer_token(scope(b"bearer\tabc")) == "abc"
    assert bearer_token(scope(b"Basic dXNlcjpwdw==")) is None  # not ours: the session decides
    assert bearer_token(scope(b"Bearer")) == ""
    assert bearer_token(scope(b"Bearerabc")) == ""
    assert bearer_token(scope(b"Bearer abc", b"Bearer def")) == ""
    assert bearer_token(scope(b"Basic dXNlcjpwdw==", b"Bearer abc")) == ""
    assert bearer_token({"headers": []}) is None


async def test_an_app_without_an_origin_header_connects_with_its_token_but_not_with_a_session():
    from portal.tests.live import session_cookie

    w = await world()
    path = f"/ws/facilities/{w['facility'].pk}/live"
    app = WebsocketCommunicator(application, path, headers=[(b"authorization", f"Bearer {w['token'].token}".encode())])
    assert (await app.connect(timeout=5))[0]
    assert (await snapshot_of(app))["facility"]["id"] == w["facility"].pk
    await app.disconnect()
    membership = await database_sync_to_async(MembershipFactory)(tenant=w["facility"].tenant)
    cookie = await database_sync_to_async(session_cookie)(membership.user)
    cross_site = WebsocketCommunicator(application, path, headers=[(b"cookie", cookie)])
    assert (await cross_site.connect(timeout=5))[0] is False
    forged = WebsocketCommunicator(
        application, path, headers=[(b"authorization", b"Bearer forged"), (b"cookie", cookie)]
    )
    assert (await forged.connect(timeout=5))[0]
    await closed_with(forged, 4401)  # past the origin check, the token is all that counts


async def test_an_open_socket_is_closed_when_its_token_expires():
    w = await world()
    soon = await token_for(
        application=w["application"], scope=READINGS_READ, expires=timezone.now() + dt.timedelta(seconds=1.5)
    )
    ws = await open_socket(f"/ws/facilities/{w['facility'].pk}/live", soon.token)
    await snapshot_of(ws)
    error = await ws.receive_json_from(timeout=5)
    assert error["code"] == 4401 and "expired" in error["reason"]
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}


async def test_an_open_socket_is_closed_soon_after_its_token_is_revoked(settings):
    settings.LIVE_TOKEN_RECHECK_S = 0.3
    w = await world()
    ws = await open_socket(f"/ws/facilities/{w['facility'].pk}/live", w["token"].token)
    await snapshot_of(ws)
    assert await ws.receive_nothing(timeout=0.8)  # rechecks pass while the token is valid
    await database_sync_to_async(w["token"].revoke)()
    await closed_with(ws, 4401)
