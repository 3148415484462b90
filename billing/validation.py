"""Checks of tariff input, shared by the services (and so by the admin, the portal and the API)."""

from __future__ import annotations

from typing import Any

import pycountry
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from billing.calculation import DAY_TYPES

MAX_PERIODS = 24
MAX_LIST = 20


def validate_currency(code: str) -> str:
    if not isinstance(code, str) or pycountry.currencies.get(alpha_3=code.upper()) is None:
        raise ValidationError({"currency": _("%(code)r is not an ISO 4217 currency code.") % {"code": code}})
    return code.upper()


def _grid(value: Any, *, field: str, allowed: range) -> list[list[int]]:
    if not isinstance(value, list) or len(value) != 12:
        raise ValidationError({field: _("Give 12 rows (January to December) of 24 hours.")})
    for month, row in enumerate(value, start=1):
        if not isinstance(row, list) or len(row) != 24:
            raise ValidationError({field: _("Month %(m)d must have 24 hours.") % {"m": month}})
        for hour, cell in enumerate(row):
            if isinstance(cell, bool) or not isinstance(cell, int) or cell not in allowed:
                raise ValidationError(
                    {
                        field: _("Month %(m)d, hour %(h)d is not covered by a period (%(v)r).")
                        % {"m": month, "h": hour, "v": cell}
                    }
                )
    return value


def validate_energy(rates: Any, schedules: dict[str, Any]) -> None:
    if not isinstance(rates, list) or not 1 <= len(rates) <= MAX_PERIODS:
        raise ValidationError({"energy_rates": _("Give between 1 and %(n)d period prices.") % {"n": MAX_PERIODS}})
    if any(isinstance(r, bool) or not isinstance(r, int | float) for r in rates):
        raise ValidationError({"energy_rates": _("Period prices are numbers (per kWh; negative is allowed).")})
    for name in DAY_TYPES:
        _grid(schedules.get(name), field=f"{name}_schedule", allowed=range(len(rates)))


def validate_windows(windows: Any) -> None:
    if windows in (None, {}):
        return
    if not isinstance(windows, dict) or set(windows) != set(DAY_TYPES):
        raise ValidationError({"demand_windows": _("Give weekday, weekend and holiday grids of 0 and 1.")})
    for name in DAY_TYPES:
        _grid(windows[name], field="demand_windows", allowed=range(2))


def validate_tiers(tiers: Any) -> None:
    if not isinstance(tiers, list) or len(tiers) > MAX_LIST:
        raise ValidationError({"energy_tiers": _("Give at most %(n)d tiers.") % {"n": MAX_LIST}})
    previous = 0.0
    for i, tier in enumerate(tiers):
        if not isinstance(tier, dict) or set(tier) != {"up_to_kwh", "adder"}:
            raise ValidationError({"energy_tiers": _('Each tier is {"up_to_kwh": number or null, "adder": number}.')})
        up_to, adder = tier["up_to_kwh"], tier["adder"]
        if isinstance(adder, bool) or not isinstance(adder, int | float):
            raise ValidationError({"energy_tiers": _("A tier's adder is a number.")})
        if up_to is None:
            if i != len(tiers) - 1:
                raise ValidationError({"energy_tiers": _("Only the last tier may be open-ended.")})
        elif isinstance(up_to, bool) or not isinstance(up_to, int | float) or up_to <= previous:
            raise ValidationError({"energy_tiers": _("Tier limits must grow.")})
        else:
            previous = float(up_to)


def validate_levies(levies: Any) -> None:
    if not isinstance(levies, list) or len(levies) > MAX_LIST:
        raise ValidationError({"levies": _("Give at most %(n)d levies.") % {"n": MAX_LIST}})
    for levy in levies:
        if (
            not isinstance(levy, dict)
            or set(levy) != {"name", "per_kwh"}
            or not isinstance(levy["name"], str)
            or not 0 < len(levy["name"]) <= 80
            or isinstance(levy["per_kwh"], bool)
            or not isinstance(levy["per_kwh"], int | float)
        ):
            raise ValidationError({"levies": _('Each levy is {"name": text, "per_kwh": number}.')})
