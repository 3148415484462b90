"""The bearer token in the `Sec-WebSocket-Protocol` header, as a browser app sends it, through the real
ASGI application and Redis layer: the same validator and scopes as the Authorization header."""

from __future__ import annotations

import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.models import Tenant
from accounts.tests.factories import MembershipFactory
from devices.tests.factories import DeviceFactory, FacilityFactory
from energybox.asgi import application
from integrations.models import Application
from integrations.scopes import CONSUMER_APP_CLIENT_ID, FLEET_READ, READINGS_READ
from integrations.tests.factories import AccessTokenFactory
from integrations.websocket import BEARER_SUBPROTOCOL, bearer_token
from portal.tests.live import closed_with, publish_readings, snapshot_of

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.services,
    pytest.mark.usefixtures("live_layer", "close_thread_connections"),
]


def make_households() -> dict:
    """Two households, each a member's CONSUMER tenant with a metered home; the first one's app token."""
    app = Application.objects.get(client_id=CONSUMER_APP_CLIENT_ID)
    homes = []
    for name in ("Ours", "Next door"):
        home = FacilityFactory(name=name, tenant__kind=Tenant.Kind.CONSUMER)
        homes.append((home, DeviceFactory(facility=home), MembershipFactory(tenant=home.tenant).user))
    (home, device, user), (other, _, _) = homes
    return {
        "home": home,
        "power": device.channels.get(quantity="active_power").pk,
        "device": device,
        "other": other,
        "token": lambda **kw: AccessTokenFactory(application=app, user=user, **{"scope": READINGS_READ, **kw}),
    }


households = database_sync_to_async(make_households)


def browser_socket(path: str, protocols: list[str], headers: list | None = None) -> WebsocketCommunicator:
    """A browser's handshake: an Origin of the site, and the token among the subprotocols."""
    base = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    return WebsocketCommunicator(application, path, headers=base + (headers or []), subprotocols=protocols)


async def opened(ws: WebsocketCommunicator) -> None:
    connected, protocol = await ws.connect(timeout=5)
    assert connected and protocol == BEARER_SUBPROTOCOL


async def test_a_valid_token_in_the_subprotocol_gets_the_households_home_live():
    h = await households()
    token = await database_sync_to_async(h["token"])()
    ws = browser_socket(f"/ws/facilities/{h['home'].pk}/live", [BEARER_SUBPROTOCOL, token.token])
    await opened(ws)
    assert (await snapshot_of(ws))["facility"]["id"] == h["home"].pk
    now = int(time.time() * 1000)
    await publish_readings(device_id=h["device"].pk, facility_id=h["home"].pk, ts=[now], values={h["power"]: [640.0]})
    message = await ws.receive_json_from(timeout=5)
    assert message["type"] == "readings" and message["values"] == {str(h["power"]): [640.0]}
    await ws.disconnect()


async def test_another_households_home_is_refused_with_4403():
    h = await households()
    token = await database_sync_to_async(h["token"])()
    ws = browser_socket(f"/ws/facilities/{h['other'].pk}/live", [BEARER_SUBPROTOCOL, token.token])
    await opened(ws)
    await closed_with(ws, 4403)


@pytest.mark.parametrize(
    ("kind", "code", "said"),
    [("expired", 4401, "expired"), ("revoked", 4401, "revoked"), ("wrong scope", 4403, READINGS_READ)],
)
async def test_an_expired_revoked_or_narrow_token_is_refused(kind, code, said):
    h = await households()

    def token() -> str:
        if kind == "expired":
            return h["token"](expired=True).token
        if kind == "wrong scope":
            return h["token"](scope=FLEET_READ).token
        issued = h["token"]()
        raw = issued.token
        issued.revoke()
        return raw

    raw = await database_sync_to_async(token)()
    ws = browser_socket(f"/ws/facilities/{h['home'].pk}/live", [BEARER_SUBPROTOCOL, raw])
    await opened(ws)
    error = await closed_with(ws, code)
    assert said in error["reason"] and raw not in error["reason"]


@pytest.mark.parametrize(
    "protocols",
    [[BEARER_SUBPROTOCOL], ["other", BEARER_SUBPROTOCOL], [BEARER_SUBPROTOCOL, "x" * 600]],
    ids=["no token", "not first", "oversized"],
)
async def test_a_malformed_offer_is_refused_with_4401(protocols):
    h = await households()
    ws = browser_socket(f"/ws/facilities/{h['home'].pk}/live", protocols)
    await opened(ws)
    error = await closed_with(ws, 4401)
    assert BEARER_SUBPROTOCOL in error["reason"]


async def test_a_token_in_both_the_header_and_the_subprotocol_is_refused():
    h = await households()
    token = await database_sync_to_async(h["token"])()
    ws = browser_socket(
        f"/ws/facilities/{h['home'].pk}/live",
        [BEARER_SUBPROTOCOL, token.token],
        headers=[(b"authorization", f"Bearer {token.token}".encode())],
    )
    await opened(ws)
    await closed_with(ws, 4401)


def test_the_subprotocol_offer_is_read_strictly():
    def scope(*protocols: str, header: bytes | None = None) -> dict:
        return {"subprotocols": list(protocols), "headers": [(b"authorization", header)] if header else []}

    assert bearer_token(scope(BEARER_SUBPROTOCOL, "abc")) == "abc"
    assert bearer_token(scope("graphql-ws")) is None  # not ours
    assert bearer_token(scope(BEARER_SUBPROTOCOL)) == ""
    assert bearer_token(scope(BEARER_SUBPROTOCOL, "abc", "def")) == ""
    assert bearer_token(scope("abc", BEARER_SUBPROTOCOL)) == ""
    assert bearer_token(scope(BEARER_SUBPROTOCOL, "abc", header=b"Bearer abc")) == ""
    assert bearer_token(scope(header=b"Bearer abc")) == "abc"
