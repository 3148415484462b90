"""Websocket routes and the authentication stack in front of them.

Each app that serves websockets adds its patterns here. Authentication is the portal session
(`AuthMiddlewareStack`); `WEBSOCKET_AUTH_MIDDLEWARE` lists further middlewares (dotted paths),
applied inside it, that may authenticate a socket another way: an OAuth 2.0 bearer token
middleware sets `scope["user"]` (and optionally `scope["energybox.access"]`, see
`portal.access.scope_access`) when the session left the socket anonymous.
"""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.conf import settings
from django.utils.module_loading import import_string

from alerts.routing import websocket_urlpatterns as alerts_patterns
from energybox.wsmetrics import WebsocketClients
from firmware.routing import websocket_urlpatterns as firmware_patterns
from integrations.websocket import bearer_token
from portal.routing import websocket_urlpatterns as portal_patterns

websocket_urlpatterns: list[Any] = [*portal_patterns, *firmware_patterns, *alerts_patterns]


def websocket_application() -> Any:
    # Counted inside the auth stack, so the count sees who the socket belongs to (energybox/wsmetrics.py).
    app: Any = WebsocketClients(URLRouter(websocket_urlpatterns))
    for dotted in reversed(settings.WEBSOCKET_AUTH_MIDDLEWARE):
        app = import_string(dotted)(app)
    return OriginOrBearer(AuthMiddlewareStack(app))


class OriginOrBearer:
    """Channels' allowed-hosts origin check, except for a handshake with a Bearer token and no Origin.

    The origin check stops other sites from opening a socket with the visitor's session cookie. A
    browser always sends `Origin` and cannot set `Authorization` on a websocket, so a handshake that
    has the second without the first comes from an app or a script, and its token, checked by the
    auth middleware, is its only credential.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.checked = AllowedHostsOriginValidator(inner)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        names = {name.lower() for name, _ in scope.get("headers", ())}
        if b"origin" not in names and bearer_token(scope) is not None:
            # The auth middleware refuses a malformed or wrong token with 4401.
            return await self.inner(scope, receive, send)
        return await self.checked(scope, receive, send)
