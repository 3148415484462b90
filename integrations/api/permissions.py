from __future__ import annotations

from typing import Any

from oauth2_provider.models import AccessToken
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from accounts.access import Access
from integrations.selectors import access_for_token

ACCESS_ATTR = "energybox_access"


class HasTenantScope(BasePermission):
    """A valid bearer token with the view's scope for this method, whose application has a tenant.

    The view declares `read_scope` (GET, HEAD, OPTIONS) and `write_scope` (everything else). The
    resulting `Access` is stored on the request for the view's selectors and services.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        token = request.auth
        if not isinstance(token, AccessToken):
            return False  # DRF answers 401 with a WWW-Authenticate challenge
        scope = view.read_scope if request.method in SAFE_METHODS else getattr(view, "write_scope", None)
        if scope is None or not token.allow_scopes([scope]):
            raise PermissionDenied(f"This token lacks the scope {scope!r}." if scope else "Method not allowed.")
        setattr(request, ACCESS_ATTR, access_for_token(token=token))
        return True


def request_access(request: Request) -> Access:
    access = getattr(request, ACCESS_ATTR, None)
    if access is None:
        raise PermissionDenied("No tenant access for this request.")
    return access
