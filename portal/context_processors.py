from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.models import Role, Tenant
from accounts.selectors import access_for_user, membership_list
from accounts.session import SESSION_TENANT_KEY
from alerts.selectors import alert_open_count


def navigation(request: HttpRequest) -> dict[str, Any]:
    """What the one portal menu (templates/base.html) needs on every page: the tenants to switch between."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    memberships = list(membership_list(user=user))  # type: ignore[arg-type]
    tenant_ids = [m.tenant_id for m in memberships]
    chosen = request.session.get(SESSION_TENANT_KEY)
    tenant_id = chosen if chosen in tenant_ids else (tenant_ids[0] if tenant_ids else None)
    current = next((m for m in memberships if m.tenant_id == tenant_id), None)
    return {
        "nav_alerts_open": alerts_open(user=user, tenant_id=tenant_id),
        "nav_memberships": memberships,
        "nav_tenant_id": tenant_id,
        "nav_is_admin": current is not None and current.role == Role.ADMIN,
        # Households get the consumer app (/app/) as their first menu entry.
        "nav_is_household": current is not None and current.tenant.kind == Tenant.Kind.CONSUMER,
    }


def alerts_open(*, user: Any, tenant_id: int | None) -> int:
    """The badge beside Alerts: open alerts of the facilities this member sees."""
    if tenant_id is None:
        return 0
    return alert_open_count(access=access_for_user(user=user, tenant_id=tenant_id))
