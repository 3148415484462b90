from __future__ import annotations

from typing import Any

from django.conf import settings
from oauth2_provider.models import AccessToken
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle


class ClientRateThrottle(SimpleRateThrottle):
    """One budget per OAuth application, shared by all its tokens (a client cannot dodge it by
    asking for more tokens). Unauthenticated requests are counted per IP address."""

    scope = "client"

    def get_rate(self) -> str | None:
        return str(settings.API_THROTTLE_RATE) or None

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        token = request.auth
        if isinstance(token, AccessToken) and token.application_id is not None:
            ident = f"app-{token.application_id}"
        else:
            ident = f"ip-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
