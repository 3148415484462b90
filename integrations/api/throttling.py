from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import cache
from oauth2_provider.models import AccessToken
from rest_framework.exceptions import Throttled
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


class FailureBudget:
    """A client's budget of refused attempts of one kind (e.g. serials that cannot be registered).

    Only refusals count, so normal use never meets it; once spent, further attempts answer 429 until
    the window has passed. Like `ClientRateThrottle`, the budget is per OAuth application, so asking
    for more tokens does not refill it.
    """

    def __init__(self, *, name: str, setting: str) -> None:
        self.name = name
        self.setting = setting

    def _limit(self) -> tuple[int, int]:
        allowed, window = SimpleRateThrottle.parse_rate(None, str(getattr(settings, self.setting)))  # type: ignore[arg-type]
        assert allowed is not None and window is not None
        return allowed, window

    def _key(self, request: Request) -> str:
        token = request.auth
        ident = token.application_id if isinstance(token, AccessToken) else request.META.get("REMOTE_ADDR", "")
        return f"failures:{self.name}:{ident}"

    def check(self, request: Request) -> None:
        allowed, window = self._limit()
        if int(cache.get(self._key(request), 0)) >= allowed:
            raise Throttled(wait=window, detail=f"Too many refused attempts; try again in {window} seconds.")

    def spend(self, request: Request) -> None:
        _, window = self._limit()
        key = self._key(request)
        # add() starts the window with the first refusal; incr() keeps its expiry.
        if not cache.add(key, 1, timeout=window):
            try:
                cache.incr(key)
            except ValueError:  # expired between the two calls
                cache.add(key, 1, timeout=window)
