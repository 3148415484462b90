from __future__ import annotations

from auditlog.models import LogEntry
from django.db.models import QuerySet

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from accounts.models import Invitation, Membership, Role, Tenant, User


def membership_list(*, user: User) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("tenant").order_by("tenant__name")


def access_for_user(*, user: User, tenant_id: int | None = None) -> Access:
    """The user's access to one tenant: the one asked for, or their first tenant."""
    if not user.is_authenticated:
        raise TenantAccessDenied("You must sign in.")
    memberships = membership_list(user=user)
    if tenant_id is not None:
        memberships = memberships.filter(tenant_id=tenant_id)
    membership = memberships.first()
    if membership is None:
        raise TenantAccessDenied("You are not a member of this tenant.")
    facility_ids: frozenset[int] | None = None
    if membership.role == Role.FACILITY_MANAGER:
        facility_ids = frozenset(membership.facilities.values_list("id", flat=True))
    return Access(
        tenant_id=membership.tenant_id,
        role=Role(membership.role),
        facility_ids=facility_ids,
        user_id=user.pk,
    )


def access_for_tenant(*, tenant: Tenant, role: Role = Role.ADMIN) -> Access:
    """Access for a system actor acting for a whole tenant (a worker, an integration)."""
    return Access(tenant_id=tenant.pk, role=role, facility_ids=None, user_id=None)


def tenant_get(*, access: Access) -> Tenant:
    return Tenant.objects.get(pk=access.tenant_id)


def member_list(*, access: Access) -> QuerySet[Membership]:
    """The tenant's members; only tenant admins see them."""
    if not access.is_admin:
        raise TenantAccessDenied("Only tenant admins manage users.")
    return (
        Membership.objects.filter(tenant_id=access.tenant_id)
        .select_related("user")
        .prefetch_related("facilities")
        .order_by("user__username")
    )


def invitation_list(*, access: Access) -> QuerySet[Invitation]:
    if not access.is_admin:
        raise TenantAccessDenied("Only tenant admins manage users.")
    return (
        Invitation.objects.filter(tenant_id=access.tenant_id, accepted_at__isnull=True)
        .prefetch_related("facilities")
        .order_by("email")
    )


def audit_entry_list(*, access: Access) -> QuerySet[LogEntry]:
    """The tenant's audit log (django-auditlog), newest first; only tenant admins read it."""
    if not access.is_admin:
        raise TenantAccessDenied("Only tenant admins read the audit log.")
    return (
        LogEntry.objects.filter(additional_data__tenant_id=access.tenant_id)
        .select_related("actor", "content_type")
        .order_by("-timestamp", "-pk")
    )
