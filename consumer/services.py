"""Households sign themselves up: a user, their household tenant and its first facility, and a link
that confirms the address. Everything else (claiming the meter, the live data) is the platform's."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils.text import slugify
from django.utils.translation import gettext as _

from accounts.models import Membership, Role, Tenant, User
from accounts.services import email_verification_send
from devices.models import Facility
from devices.services import facility_create

MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 100


@transaction.atomic
def household_sign_up(
    *, email: str, password: str, household_name: str, timezone: str, verify_url: Callable[[str], str]
) -> User:
    """Create a household's admin user (named by the address), its CONSUMER tenant and its home, and
    mail the confirmation link. Bad input raises ValidationError and stores nothing."""
    email = User.objects.normalize_email(email.strip())
    household_name = household_name.strip()
    errors: dict[str, list[str]] = {}
    if len(email) > MAX_EMAIL_LENGTH:
        errors["email"] = [_("The e-mail address is too long.")]
    else:
        try:
            validate_email(email)
        except ValidationError:
            errors["email"] = [_("Enter a valid e-mail address.")]
    if not household_name or len(household_name) > MAX_NAME_LENGTH:
        errors["household_name"] = [_("Name your household in 1 to %(n)d characters.") % {"n": MAX_NAME_LENGTH}]
    if "email" not in errors and (
        User.objects.filter(email__iexact=email).exists() or User.objects.filter(username__iexact=email).exists()
    ):
        errors["email"] = [_("An account with this e-mail address exists already. Sign in instead.")]
    user = User(username=email, email=email)
    if not errors:
        try:
            validate_password(password, user=user)
        except ValidationError as exc:
            errors["password"] = exc.messages
    if errors:
        raise ValidationError(errors)
    user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    tenant = Tenant(
        name=household_name,
        slug=f"{slugify(household_name)[:40] or 'home'}-{secrets.token_hex(4)}",
        kind=Tenant.Kind.CONSUMER,
    )
    tenant.full_clean()
    tenant.save()
    Membership.objects.create(user=user, tenant=tenant, role=Role.ADMIN)
    try:
        facility_create(tenant=tenant, name=household_name, timezone=timezone, kind=Facility.Kind.HOME)
    except ValidationError as exc:
        raise ValidationError({"timezone": exc.message_dict.get("timezone", exc.messages)}) from exc
    email_verification_send(user=user, verify_url=verify_url)
    return user
