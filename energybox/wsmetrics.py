"""Websocket clients of this web process, by kind, as a Prometheus gauge.

One ASGI wrapper around the websocket router (energybox/routing.py), inside the auth middleware so
it sees the user and a bearer token's access: a socket counts from the moment its consumer accepts
it until its consumer returns, whatever ends it (a close from either side, a refusal after the
accept, a handler that raised). No consumer needs to know. The kinds:

  - `portal_dashboard`: a facility's or a device's live page in the portal (session);
  - `consumer_app`: the same sockets opened by a household user (the consumer app);
  - `api`: a live subscriber with a bearer token (any of those paths);
  - `park_overview`: the portal's park overview;
  - `alert_badge`: the alert badge every portal page opens;
  - `rollout`: a firmware rollout's progress page.

Under a pre-forking server set PROMETHEUS_MULTIPROC_DIR, as for the worker: the gauge is summed
over the live processes (`livesum`) by /metrics.
"""

from __future__ import annotations

import re
from typing import Any

from channels.db import database_sync_to_async
from prometheus_client import Gauge

WEBSOCKET_CLIENTS = Gauge(
    "energybox_websocket_clients",
    "Websocket clients connected to this web process (accepted, not yet closed), by kind.",
    ["kind"],
    multiprocess_mode="livesum",
)
KINDS = ("portal_dashboard", "consumer_app", "api", "park_overview", "alert_badge", "rollout")
for _kind in KINDS:
    WEBSOCKET_CLIENTS.labels(kind=_kind)  # every kind shows, at 0, from the start

_LIVE = re.compile(r"^/ws/(facilities|devices)/\d+/live/?$")


def _user_is_household(scope: dict[str, Any]) -> bool:
    from accounts.models import Tenant
    from portal.access import scope_access

    try:
        access = scope_access(scope)
    except Exception:  # noqa: BLE001 - the consumer refuses such a socket itself; count it as a dashboard
        return False
    return Tenant.objects.filter(pk=access.tenant_id, kind=Tenant.Kind.CONSUMER).exists()


async def client_kind(scope: dict[str, Any]) -> str:
    from integrations.websocket import bearer_token

    path = str(scope.get("path", ""))
    if path.startswith("/ws/alerts/"):
        return "alert_badge"
    if path.startswith("/ws/firmware/"):
        return "rollout"
    if bearer_token(scope) is not None:
        return "api"
    if not _LIVE.match(path):
        return "park_overview"
    return "consumer_app" if await database_sync_to_async(_user_is_household)(scope) else "portal_dashboard"


class WebsocketClients:
    """ASGI middleware: counts the accepted websockets of the application it wraps."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if scope.get("type") != "websocket":
            return await self.inner(scope, receive, send)
        counted: list[str] = []

        async def counting_send(message: dict[str, Any]) -> None:
            if message.get("type") == "websocket.accept" and not counted:
                kind = await client_kind(scope)
                WEBSOCKET_CLIENTS.labels(kind=kind).inc()
                counted.append(kind)
            await send(message)

        try:
            return await self.inner(scope, receive, counting_send)
        finally:
            for kind in counted:
                WEBSOCKET_CLIENTS.labels(kind=kind).dec()
