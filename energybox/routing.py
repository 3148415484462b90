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

from portal.routing import websocket_urlpatterns as portal_patterns

websocket_urlpatterns: list[Any] = [*portal_patterns]


def websocket_application() -> Any:
    app: Any = URLRouter(websocket_urlpatterns)
    for dotted in reversed(settings.WEBSOCKET_AUTH_MIDDLEWARE):
        app = import_string(dotted)(app)
    return AllowedHostsOriginValidator(AuthMiddlewareStack(app))
