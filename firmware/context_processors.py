from __future__ import annotations

from django.http import HttpRequest

from accounts.errors import TenantAccessDenied
from portal.access import request_access


def firmware_nav(request: HttpRequest) -> dict[str, bool]:
    """Whether the navigation shows the Firmware page: to the tenant admins it is for."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"firmware_nav": False}
    try:
        return {"firmware_nav": request_access(request).is_admin}
    except TenantAccessDenied:
        return {"firmware_nav": False}
