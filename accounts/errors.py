from __future__ import annotations

from django.core.exceptions import PermissionDenied


class TenantAccessDenied(PermissionDenied):
    """The user has no membership in the tenant asked for, or the role does not allow the action."""
