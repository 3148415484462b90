"""The demo's tariffs: a German commercial (RLM) tariff for Demo Retail, a Swedish household tariff for the home.

Prices are realistic for 2026 but illustrative; `make run` seeds them through the services.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Tenant
from billing import services
from billing.models import Contract, Tariff
from devices.models import Facility

RETAIL_TARIFF = "Gewerbe RLM (Demo)"
HOUSEHOLD_TARIFF = "Hushåll fast pris (Demo)"


def _hours(rate: int, other: int, hours: range) -> list[list[int]]:
    return [[rate if hour in hours else other for hour in range(24)] for _ in range(12)]


def retail_version(valid_from: date) -> dict[str, Any]:
    """Supplier energy HT 06-22 on weekdays, NT otherwise; grid fees by utilisation hours (split 2,500 h)."""
    return {
        "valid_from": valid_from,
        "energy_rates": [0.2450, 0.1950],
        "weekday_schedule": _hours(0, 1, range(6, 22)),
        "weekend_schedule": _hours(1, 1, range(0)),
        "holiday_schedule": _hours(1, 1, range(0)),
        "demand_mode": "utilisation",
        "utilisation_split_hours": 2500,
        "low_use_demand_price": 18.50,  # Leistungspreis below 2,500 h, per kW and year
        "low_use_energy_price": 0.0790,  # Arbeitspreis below 2,500 h, per kWh
        "high_use_demand_price": 120.40,
        "high_use_energy_price": 0.0195,
        "fixed_per_month": 15.00,  # Grundpreis
        "fixed_per_meter_month": 20.00,  # Messstellenbetrieb (RLM meter)
        "levies": [
            {"name": "Stromsteuer", "per_kwh": 0.0205},
            {"name": "Konzessionsabgabe", "per_kwh": 0.0011},
            {"name": "KWKG-Umlage", "per_kwh": 0.00277},
            {"name": "Aufschlag für besondere Netznutzung", "per_kwh": 0.01558},
            {"name": "Offshore-Netzumlage", "per_kwh": 0.00941},
        ],
        "vat_percent": 19,
    }


def household_version(valid_from: date) -> dict[str, Any]:
    flat = [[0] * 24 for _ in range(12)]
    return {
        "valid_from": valid_from,
        "energy_rates": [0.95],
        "weekday_schedule": flat,
        "weekend_schedule": flat,
        "holiday_schedule": flat,
        "fixed_per_month": 395.0,  # nätabonnemang
        "levies": [{"name": "Elnät överföring", "per_kwh": 0.28}, {"name": "Energiskatt", "per_kwh": 0.439}],
        "vat_percent": 25,
    }


def _ensure(tenant: Tenant, name: str, currency: str, version: dict[str, Any], facilities: list[Facility]) -> None:
    tariff = Tariff.objects.filter(tenant=tenant, name=name).first() or services.tariff_create(
        tenant=tenant, name=name, currency=currency, versions=[version]
    )
    for facility in facilities:
        if not Contract.objects.filter(facility=facility).exists():
            services.contract_create(facility=facility, tariff=tariff, valid_from=version["valid_from"])


@transaction.atomic
def seed_billing_demo(*, today: date | None = None) -> None:
    """Idempotent: the demo tenants get their tariffs and every demo facility a contract from 1 January."""
    year_start = date((today or timezone.localdate()).year, 1, 1)
    retail = Tenant.objects.filter(slug="demo-retail").first()
    if retail is not None:
        facilities = list(Facility.objects.filter(tenant=retail))
        _ensure(retail, RETAIL_TARIFF, "EUR", retail_version(year_start), facilities)
    home = Tenant.objects.filter(slug="demo-home").first()
    if home is not None:
        _ensure(
            home, HOUSEHOLD_TARIFF, "SEK", household_version(year_start), list(Facility.objects.filter(tenant=home))
        )
