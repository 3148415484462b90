"""Households sign themselves up: a user, their household tenant and its first facility, and a link
that confirms the address. Everything else (claiming the meter, the live data) is the platform's."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils.text import slugify
from django.utils.translation import gettext as _

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from accounts.models import Membership, Role, Tenant, User
from accounts.services import email_verification_send
from billing.models import Bill, Contract, Tariff
from billing.services import contract_create, contract_delete, contract_end, tariff_create
from billing.validation import validate_currency
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


# --- The household's own tariff -----------------------------------------------------------------

# Bounds that catch a slipped decimal point in any currency (KRW pays some hundred per kWh).
MAX_PRICE_PER_KWH = Decimal(1000)
MAX_STANDING_CHARGE = Decimal(100_000)
PRICE_PLACES = 6


def _amount(value: Decimal | float | int | str, *, field: str, maximum: Decimal) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ValidationError({field: [_("Enter a number.")]}) from exc
    if not amount.is_finite() or amount < 0 or amount > maximum:
        raise ValidationError(
            {field: [_("Enter an amount from 0 to %(max)s.") % {"max": f"{maximum:,}"}]},
        )
    if amount != amount.quantize(Decimal(1).scaleb(-PRICE_PLACES)):
        raise ValidationError({field: [_("Give at most %(n)d decimal places.") % {"n": PRICE_PLACES}]})
    return amount


def _tariff_name(*, facility: Facility, valid_from: date) -> str:
    base = (_("Own tariff from %(d)s") % {"d": valid_from.isoformat()})[:100]
    name, n = base, 1
    while Tariff.objects.filter(tenant_id=facility.tenant_id, name=name).exists():
        n += 1
        name = f"{base} ({n})"
    return name


@transaction.atomic
def household_tariff_set(
    *,
    access: Access,
    facility: Facility,
    price_per_kwh: Decimal | float | int | str,
    standing_charge_per_month: Decimal | float | int | str,
    currency: str = "EUR",
    valid_from: date,
) -> Contract:
    """The household prices its home itself from `valid_from`: one price per kWh at every hour and a
    standing charge per month, both as its bill shows them (VAT included). The contract in force ends the
    day before; one starting that same day is replaced. Household admins only; bad input raises
    ValidationError and stores nothing."""
    if not access.is_admin or facility.tenant_id != access.tenant_id:
        raise TenantAccessDenied(_("Only the household's admins set its tariff."))
    errors: dict[str, list[str]] = {}
    amounts: dict[str, Decimal] = {}
    for field, value, maximum in (
        ("price_per_kwh", price_per_kwh, MAX_PRICE_PER_KWH),
        ("standing_charge_per_month", standing_charge_per_month, MAX_STANDING_CHARGE),
    ):
        try:
            amounts[field] = _amount(value, field=field, maximum=maximum)
        except ValidationError as exc:
            errors.update(exc.message_dict)
    try:
        currency = validate_currency(currency)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    issued = (
        Bill.objects.filter(tenant_id=facility.tenant_id, facility=facility, status=Bill.Status.FINAL)
        .order_by("-year", "-month")
        .values_list("year", "month")
        .first()
    )
    if issued is not None and valid_from <= date(issued[0] + issued[1] // 12, issued[1] % 12 + 1, 1) - timedelta(
        days=1
    ):
        errors["valid_from"] = [
            _("The bill of %(m)s has been issued; choose a later day.") % {"m": f"{issued[0]}-{issued[1]:02d}"}
        ]
    if errors:
        raise ValidationError(errors)
    flat = [[0] * 24 for _ in range(12)]
    tariff = tariff_create(
        tenant=Tenant.objects.get(pk=facility.tenant_id),
        name=_tariff_name(facility=facility, valid_from=valid_from),
        currency=currency,
        versions=[
            {
                "valid_from": valid_from,
                "energy_rates": [float(amounts["price_per_kwh"])],
                "weekday_schedule": flat,
                "fixed_per_month": amounts["standing_charge_per_month"],
                "vat_percent": Decimal(0),
            }
        ],
    )
    for current in Contract.objects.select_for_update().filter(facility=facility).order_by("valid_from"):
        if current.valid_from >= valid_from:
            if current.valid_to is None or current.valid_from == valid_from:
                contract_delete(contract=current)  # set the same day again, or a change that had not begun yet
        elif current.valid_to is None or current.valid_to >= valid_from:
            contract_end(access=access, contract=current, valid_to=valid_from - timedelta(days=1))
    return contract_create(facility=facility, tariff=tariff, valid_from=valid_from)
