"""The websocket client gauge, in a real Daphne process, moved by real websockets of every kind."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import Role, Tenant
from accounts.tests.factories import MembershipFactory, TenantFactory
from devices.tests.factories import FacilityFactory
from energybox.wsmetrics import KINDS
from integrations.tests.factories import AccessTokenFactory
from portal.tests.live import session_cookie
from portal.tests.servers import daphne, server_env

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def clients_by_kind(base_url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:  # noqa: S310 - our own server
        text = response.read().decode()
    return {
        sample.labels["kind"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "energybox_websocket_clients"
    }


async def wait_for_clients(base_url: str, expected: dict[str, float], timeout_s: float = 20.0) -> None:
    """Until the scrape shows exactly `expected` (the close reaches the server a moment after the client's)."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = await asyncio.to_thread(clients_by_kind, base_url)
        if seen == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the gauge shows {seen}, expected {expected}")
        await asyncio.sleep(0.2)


def test_opening_and_closing_real_websockets_moves_the_client_gauge_of_their_kind(live_layer, redis_url):
    from websockets.asyncio.client import connect

    facility = FacilityFactory()
    portal_user = MembershipFactory(tenant=facility.tenant, role=Role.ADMIN).user
    home = FacilityFactory(tenant=TenantFactory(kind=Tenant.Kind.CONSUMER))
    household_user = MembershipFactory(tenant=home.tenant, role=Role.ADMIN).user
    token = AccessTokenFactory(application__tenant=facility.tenant, user=portal_user)
    portal_cookie, household_cookie = session_cookie(portal_user).decode(), session_cookie(household_user).decode()
    zero = dict.fromkeys(KINDS, 0.0)

    async def scenario(base_url: str) -> None:
        ws_url = base_url.replace("http", "ws")
        origin = "http://localhost"
        await wait_for_clients(base_url, zero)
        sockets = {
            "portal_dashboard": (f"/ws/facilities/{facility.pk}/live", {"Cookie": portal_cookie}, origin),
            "park_overview": ("/ws/facilities/live", {"Cookie": portal_cookie}, origin),
            "alert_badge": ("/ws/alerts/live", {"Cookie": portal_cookie}, origin),
            "consumer_app": (f"/ws/facilities/{home.pk}/live", {"Cookie": household_cookie}, origin),
            "api": (f"/ws/facilities/{facility.pk}/live", {"Authorization": f"Bearer {token.token}"}, None),
        }
        expected = dict(zero)
        opened = {}
        for kind, (path, headers, sent_origin) in sockets.items():
            ws = await connect(f"{ws_url}{path}", origin=sent_origin, additional_headers=headers, open_timeout=30)  # type: ignore[arg-type]
            opened[kind] = ws
            expected[kind] += 1
            await wait_for_clients(base_url, expected)
        second = await connect(
            f"{ws_url}/ws/facilities/{facility.pk}/live", origin=origin, additional_headers={"Cookie": portal_cookie}
        )
        expected["portal_dashboard"] += 1
        await wait_for_clients(base_url, expected)
        await second.close()
        expected["portal_dashboard"] -= 1
        await wait_for_clients(base_url, expected)
        for kind, ws in opened.items():
            await ws.close()
            expected[kind] -= 1
            await wait_for_clients(base_url, expected)
        assert expected == zero

    with daphne(server_env()) as base_url:
        asyncio.run(scenario(base_url))


def test_a_refused_socket_is_not_left_counted(live_layer, redis_url):
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    intruder = MembershipFactory(tenant=TenantFactory(), role=Role.ADMIN).user
    facility = FacilityFactory()
    cookie = session_cookie(intruder).decode()

    async def scenario(base_url: str) -> None:
        ws_url = base_url.replace("http", "ws")
        ws = await connect(
            f"{ws_url}/ws/facilities/{facility.pk}/live",
            origin="http://localhost",
            additional_headers={"Cookie": cookie},
        )
        error = await asyncio.wait_for(ws.recv(), 30)
        assert '"code": 4403' in error or '"code":4403' in error
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 30)
        await wait_for_clients(base_url, dict.fromkeys(KINDS, 0.0))

    with daphne(server_env()) as base_url:
        asyncio.run(scenario(base_url))
