from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from accounts.selectors import access_for_user
from accounts.session import SESSION_TENANT_KEY, request_access  # noqa: F401  (re-exported: portal and integrations import them here)

# A websocket auth middleware (an OAuth 2.0 bearer token, say) may put a ready `Access` here, or the
# exception that refuses the socket.
SCOPE_ACCESS_KEY = "energybox.access"
# ... and, for a credential that can lapse while the socket is open, an object with `expires` (an
# aware datetime) and `recheck()` (sync: raises the refusing exception once it is no longer valid).
SCOPE_CREDENTIAL_KEY = "energybox.credential"


def scope_access(scope: Mapping[str, Any]) -> Access:
    """The access of a websocket: the one an auth middleware set, else the portal session's user.

    Sync (it reads the session and memberships): call it through `database_sync_to_async`.
    Raises `NotSignedIn` for an anonymous socket and `TenantAccessDenied` for a user without a tenant.
    """
    preset = scope.get(SCOPE_ACCESS_KEY)
    if isinstance(preset, Access):
        return preset
    if isinstance(preset, Exception):
        raise preset
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        raise NotSignedIn("Sign in to the portal first.")
    session = scope.get("session")
    tenant_id = session.get(SESSION_TENANT_KEY) if session is not None else None
    try:
        return access_for_user(user=user, tenant_id=tenant_id)
    except TenantAccessDenied:
        if tenant_id is None:
            raise
        return access_for_user(user=user)


class NotSignedIn(TenantAccessDenied):
    """No user on the socket."""
