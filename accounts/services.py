"""Writes to users, memberships and invitations. Tenant admins manage their tenant's people here."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from accounts.models import Invitation, Membership, Role, Tenant, User

INVITATION_VALID = timedelta(days=14)


@transaction.atomic
def membership_enter_as_platform_admin(*, user: User, tenant: Tenant) -> Membership:
    """A platform superuser joins a tenant as its admin (a recorded membership, never a silent bypass)."""
    if not user.is_superuser:
        raise TenantAccessDenied("Only platform admins may enter a tenant they are not a member of.")
    membership, _created = Membership.objects.get_or_create(user=user, tenant=tenant, defaults={"role": Role.ADMIN})
    return membership


def _require_admin(access: Access, tenant_id: int) -> None:
    if not access.is_admin or access.tenant_id != tenant_id:
        raise TenantAccessDenied(_("Only tenant admins manage users."))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_grant(*, tenant_id: int, role: str, facility_ids: Iterable[int]) -> list[int]:
    # Through the relation, not an import: accounts sits below devices.
    facility_model = Invitation._meta.get_field("facilities").related_model
    if role not in Role.values:
        raise ValidationError({"role": _("Unknown role %(role)r.") % {"role": role}})
    ids = sorted(set(facility_ids))
    if role != Role.FACILITY_MANAGER:
        return []
    if not ids:
        raise ValidationError({"facilities": _("A facility manager needs at least one facility.")})
    if facility_model._default_manager.filter(tenant_id=tenant_id, pk__in=ids).count() != len(ids):  # type: ignore[union-attr]
        raise ValidationError({"facilities": _("Choose facilities of your tenant.")})
    return ids


def _send(*, invitation: Invitation, token: str, accept_url: Callable[[str], str]) -> None:
    tenant_name = invitation.tenant.name
    link = accept_url(token)
    subject = _("You are invited to %(tenant)s on Energybox") % {"tenant": tenant_name}
    body = _(
        "You have been invited to join %(tenant)s on Energybox as %(role)s.\n\n"
        "Open this link to set your password or sign in with single sign-on:\n%(link)s\n\n"
        "The link is valid for 14 days."
    ) % {"tenant": tenant_name, "role": invitation.get_role_display(), "link": link}
    email = invitation.email
    # The mail leaves only once the invitation is stored.
    transaction.on_commit(lambda: send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [email]))
    Invitation.objects.filter(pk=invitation.pk).update(sent_at=timezone.now())


@transaction.atomic
def invitation_create(
    *,
    access: Access,
    email: str,
    role: str,
    facility_ids: Iterable[int] = (),
    accept_url: Callable[[str], str],
) -> Invitation:
    """Invite someone by e-mail; the mail carries a one-time link whose token only the invitee gets."""
    _require_admin(access, access.tenant_id)
    email = email.strip().lower()
    try:
        validate_email(email)
    except ValidationError as exc:
        raise ValidationError({"email": exc.messages}) from exc
    ids = _check_grant(tenant_id=access.tenant_id, role=role, facility_ids=facility_ids)
    if Membership.objects.filter(tenant_id=access.tenant_id, user__email__iexact=email).exists():
        raise ValidationError({"email": _("%(email)s is already a member.") % {"email": email}})
    if Invitation.objects.filter(tenant_id=access.tenant_id, email=email, accepted_at__isnull=True).exists():
        raise ValidationError({"email": _("%(email)s is already invited; resend the invitation.") % {"email": email}})
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        tenant_id=access.tenant_id,
        email=email,
        role=role,
        token_hash=_token_hash(token),
        invited_by_id=access.user_id,
        expires_at=timezone.now() + INVITATION_VALID,
    )
    invitation.facilities.set(ids)
    _send(invitation=invitation, token=token, accept_url=accept_url)
    return invitation


@transaction.atomic
def invitation_resend(*, access: Access, invitation: Invitation, accept_url: Callable[[str], str]) -> Invitation:
    """A new link (the old one stops working) and a new mail; the 14 days start again."""
    _require_admin(access, invitation.tenant_id)
    if invitation.accepted_at is not None:
        raise ValidationError({"invitation": _("The invitation was already accepted.")})
    token = secrets.token_urlsafe(32)
    invitation.token_hash = _token_hash(token)
    invitation.expires_at = timezone.now() + INVITATION_VALID
    invitation.save(update_fields=["token_hash", "expires_at"])
    _send(invitation=invitation, token=token, accept_url=accept_url)
    return invitation


def invitation_revoke(*, access: Access, invitation: Invitation) -> None:
    _require_admin(access, invitation.tenant_id)
    if invitation.accepted_at is not None:
        raise ValidationError({"invitation": _("The invitation was already accepted; remove the member instead.")})
    invitation.delete()


def invitation_for_token(*, token: str) -> Invitation:
    """The open, unexpired invitation of a link; raises Invitation.DoesNotExist for any other token."""
    return Invitation.objects.select_related("tenant").get(
        token_hash=_token_hash(token), accepted_at__isnull=True, expires_at__gt=timezone.now()
    )


@transaction.atomic
def invitation_accept(*, token: str, user: User | None = None, username: str = "", password: str = "") -> Membership:
    """Join the invitation's tenant: as the signed-in `user` (e.g. by SSO), or as a new user with a password."""
    invitation = Invitation.objects.select_for_update().get(pk=invitation_for_token(token=token).pk)
    if user is None:
        if User.objects.filter(username__iexact=username).exists():
            raise ValidationError({"username": _("This user name is taken.")})
        user = User(username=username, email=invitation.email)
        try:
            user.full_clean(exclude=["password"])
            validate_password(password, user=user)
        except ValidationError as exc:
            raise ValidationError(
                exc.message_dict if hasattr(exc, "error_dict") else {"password": exc.messages}
            ) from exc
        user.set_password(password)
        # The invitation link reached this address: it is verified.
        user.verified_email = invitation.email
        user.save()
    elif user.email and user.email.lower() == invitation.email.lower() and not user.email_verified:
        user.verified_email = user.email
        user.save(update_fields=["verified_email"])
    membership, created = Membership.objects.get_or_create(
        user=user, tenant=invitation.tenant, defaults={"role": invitation.role}
    )
    if not created:
        raise ValidationError(
            {"invitation": _("You are already a member of %(tenant)s.") % {"tenant": invitation.tenant}}
        )
    membership.facilities.set(invitation.facilities.all())
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    return membership


def _admins_left(tenant_id: int, *, without: Membership) -> bool:
    return Membership.objects.filter(tenant_id=tenant_id, role=Role.ADMIN).exclude(pk=without.pk).exists()


@transaction.atomic
def membership_change_role(
    *, access: Access, membership: Membership, role: str, facility_ids: Iterable[int] = ()
) -> Membership:
    _require_admin(access, membership.tenant_id)
    ids = _check_grant(tenant_id=membership.tenant_id, role=role, facility_ids=facility_ids)
    if (
        membership.role == Role.ADMIN
        and role != Role.ADMIN
        and not _admins_left(membership.tenant_id, without=membership)
    ):
        raise ValidationError({"role": _("The tenant needs at least one admin.")})
    membership.role = role
    membership.save(update_fields=["role"])
    membership.facilities.set(ids)
    return membership


def membership_remove(*, access: Access, membership: Membership) -> None:
    _require_admin(access, membership.tenant_id)
    if membership.role == Role.ADMIN and not _admins_left(membership.tenant_id, without=membership):
        raise ValidationError({"membership": _("The tenant needs at least one admin.")})
    membership.delete()


# --- E-mail verification --------------------------------------------------------------------------

EMAIL_VERIFY_SALT = "energybox.accounts.email-verify"
EMAIL_VERIFY_MAX_AGE = timedelta(days=3)


def email_verification_send(*, user: User, verify_url: Callable[[str], str]) -> None:
    """Mail the user a link that proves they read their address; it is bound to that address."""
    if not user.email:
        raise ValidationError({"email": _("Add an e-mail address first.")})
    token = signing.dumps({"u": user.pk, "e": user.email.lower()}, salt=EMAIL_VERIFY_SALT)
    subject = _("Confirm your e-mail address for Energybox")
    body = _("Open this link to confirm that this is your address:\n%(link)s\n\nThe link is valid for 3 days.") % {
        "link": verify_url(token)
    }
    email = user.email
    transaction.on_commit(lambda: send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [email]))


@transaction.atomic
def email_verify(*, token: str) -> User:
    """Mark the address of a verification link as verified; a forged, expired or outdated link changes nothing."""
    try:
        data = signing.loads(token, salt=EMAIL_VERIFY_SALT, max_age=EMAIL_VERIFY_MAX_AGE)
    except signing.BadSignature as exc:  # SignatureExpired is one
        raise ValidationError({"token": _("This link is not valid or has expired.")}) from exc
    user = User.objects.select_for_update().filter(pk=data.get("u"), is_active=True).first()
    if user is None or user.email.lower() != data.get("e"):
        raise ValidationError({"token": _("This link was sent to an address that is no longer yours.")})
    if user.email_verified:
        # A replayed link (or the second of two) finds the address confirmed and changes nothing.
        raise ValidationError(
            {"token": _("This link has been used already: %(email)s is confirmed.") % {"email": user.email}}
        )
    user.verified_email = user.email
    user.save(update_fields=["verified_email"])
    return user


@transaction.atomic
def user_email_change(*, user: User, email: str, verify_url: Callable[[str], str]) -> User:
    """Change the user's notification address: it is unverified until the link mailed to it is opened."""
    email = User.objects.normalize_email(email.strip())
    try:
        validate_email(email)
    except ValidationError as exc:
        raise ValidationError({"email": _("Enter a valid e-mail address.")}) from exc
    if User.objects.filter(email__iexact=email).exclude(pk=user.pk).exists():
        raise ValidationError({"email": _("Another account uses this e-mail address.")})
    if email == user.email:
        return user
    user.email = email
    user.save(update_fields=["email"])
    email_verification_send(user=user, verify_url=verify_url)
    return user
