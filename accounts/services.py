"""Writes to users and memberships."""

from __future__ import annotations

from django.db import transaction

from accounts.errors import TenantAccessDenied
from accounts.models import Membership, Role, Tenant, User


@transaction.atomic
def membership_enter_as_platform_admin(*, user: User, tenant: Tenant) -> Membership:
    """A platform superuser joins a tenant as its admin (a recorded membership, never a silent bypass)."""
    if not user.is_superuser:
        raise TenantAccessDenied("Only platform admins may enter a tenant they are not a member of.")
    membership, created = Membership.objects.get_or_create(user=user, tenant=tenant, defaults={"role": Role.ADMIN})
    return membership
