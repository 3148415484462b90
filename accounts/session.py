"""The portal session's tenant: shared by every app's portal views, so it lives at the lowest layer."""

from __future__ import annotations

from django.http import HttpRequest

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from accounts.selectors import access_for_user

SESSION_TENANT_KEY = "energybox_tenant_id"


def request_access(request: HttpRequest) -> Access:
    """The signed-in user's access to the tenant chosen in this session (their first one by default)."""
    tenant_id = request.session.get(SESSION_TENANT_KEY)
    try:
        return access_for_user(user=request.user, tenant_id=tenant_id)  # type: ignore[arg-type]
    except TenantAccessDenied:
        if tenant_id is None:
            raise
        # The chosen tenant is no longer reachable (membership removed): fall back to the first one.
        request.session.pop(SESSION_TENANT_KEY, None)
        return access_for_user(user=request.user)  # type: ignore[arg-type]
